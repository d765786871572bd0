use super::*;
use std::sync::Mutex;

/// The policy a run uses when the configuration sets no `retry.*` key.
fn production() -> RetryPolicy {
    crate::config::RetryDelays::default().into()
}

#[derive(Debug, thiserror::Error)]
#[error("fake: {0:?}")]
struct Fake(Verdict);
impl Classify for Fake {
    fn verdict(&self) -> Verdict {
        self.0
    }
    fn alarm(&self) -> Option<String> {
        matches!(self.0, Verdict::Retry(Retry { after: Some(_), .. })).then(|| "loud".into())
    }
}

#[derive(Default)]
struct Log(Mutex<Vec<String>>);
impl Progress for Log {
    fn attempt(&self, n: u32) {
        self.0.lock().unwrap().push(format!("attempt {n}"));
    }
    fn alarm(&self, text: &str) {
        self.0.lock().unwrap().push(format!("alarm: {text}"));
    }
    fn retrying(&self, n: u32, error: &str, _next: Duration) {
        self.0.lock().unwrap().push(format!("retry {n}: {error}"));
    }
    fn succeeded(&self, n: u32) {
        self.0.lock().unwrap().push(format!("succeeded {n}"));
    }
}

fn step<'a>(policy: &'a RetryPolicy, deadline: Instant, what: &'a str, log: &'a Log) -> Step<'a> {
    Step {
        what,
        policy,
        deadline,
        progress: log,
    }
}

fn fast() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(1),
        max: Duration::from_millis(4),
        ..production()
    }
}

#[test]
fn delay_grows_exponentially_within_cap_and_jitter() {
    let p = RetryPolicy {
        jitter: 0.2,
        ..production()
    };
    let plain = Retry::default();
    for (failed, base) in [(1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0), (40, 60.0)] {
        let d = p.delay(failed, &plain).as_secs_f64();
        assert!(
            d >= base * 0.8 - 1e-9 && d <= (base * 1.2f64).min(60.0) + 1e-9,
            "{failed}: {d}"
        );
    }
}

#[test]
fn an_overloaded_server_is_tried_once_per_cadence_on_the_nodes_grid() {
    let p = production();
    let overloaded = Retry {
        overloaded: true,
        ..Retry::default()
    };
    // Tries that began on the grid (7.5 s) and were answered in 50 ms:
    // the next point, drawn up to a quarter cadence later.
    for k in [0.0, 1.0, 7.0, 40.0] {
        for draw in [0.0, 0.5, 1.0] {
            let elapsed = secs(7.5 * k + 0.05);
            let wait = p.wait_after(9, &overloaded, elapsed, || draw);
            assert!(
                close(wait, secs(7.45 + 1.875 * draw)),
                "{k} {draw}: {wait:?}"
            );
        }
    }
    // Its own word wins when longer, and lands on the grid too.
    let told = Retry {
        after: Some(Duration::from_secs(20)),
        ..overloaded
    };
    assert!(close(
        p.wait_after(1, &told, secs(0.05), || 0.0),
        secs(22.45)
    ));
}

#[test]
fn refused_connections_are_probed_quickly_then_on_the_grid() {
    let p = production();
    let refused = Retry {
        refused: true,
        ..Retry::default()
    };
    // 0.2 s, doubling, while that comes before the next point.
    for (n, elapsed, want) in [(1, 0.02, 0.2), (3, 0.62, 0.8), (5, 3.04, 3.2)] {
        let wait = p.wait_after(n, &refused, secs(elapsed), || 0.5);
        assert!(close(wait, secs(want)), "{n}: {wait:?}");
    }
    // Then the next point of the grid: 22.5 s plus the draw.
    for draw in [0.0, 0.5, 1.0] {
        let wait = p.wait_after(30, &refused, secs(20.0), || draw);
        assert!(close(wait, secs(2.5 + 1.875 * draw)), "{draw}: {wait:?}");
    }
}

#[test]
fn retry_after_is_honoured_and_clamped() {
    let p = production();
    let d = p.delay(
        1,
        &Retry {
            after: Some(Duration::from_secs(7)),
            overloaded: false,
            refused: false,
        },
    );
    assert!(
        d >= Duration::from_secs(7) && d <= Duration::from_secs_f64(8.4),
        "{d:?}"
    );
    let d = p.delay(
        1,
        &Retry {
            after: Some(Duration::from_secs(86400)),
            overloaded: false,
            refused: false,
        },
    );
    assert!(d <= Duration::from_secs(360), "{d:?}");
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn close(a: Duration, b: Duration) -> bool {
    a.abs_diff(b) < Duration::from_micros(1)
}

#[test]
fn delay_arithmetic_is_exact_for_a_given_draw() {
    let p = production();
    let plain = Retry::default();
    // The middle draw spreads nothing: the bare exponential, capped.
    for (failed, want) in [(0, 1.0), (1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0)] {
        let d = p.delay_with(failed, &plain, || 0.5);
        assert!(close(d, secs(want)), "{failed}: {d:?}");
    }
    // The extremes spread by the jitter either way, still under the cap.
    assert!(close(p.delay_with(2, &plain, || 0.0), secs(1.6)));
    assert!(close(p.delay_with(2, &plain, || 1.0), secs(2.4)));
    assert!(close(p.delay_with(6, &plain, || 1.0), secs(38.4)));
    assert!(close(p.delay_with(7, &plain, || 0.0), secs(48.0)));
    assert!(close(p.delay_with(7, &plain, || 1.0), secs(60.0)));
    // Far past the cap, without overflow.
    assert!(close(p.delay_with(u32::MAX, &plain, || 0.5), secs(60.0)));
}

#[test]
fn the_grid_arithmetic_is_exact() {
    let p = production();
    let overloaded = Retry {
        overloaded: true,
        ..Retry::default()
    };
    // A quarter cadence (1.875 s) after the answer, then the next point.
    let at = |elapsed: f64, hint: &Retry, draw: f64| p.wait_after(2, hint, secs(elapsed), || draw);
    assert!(close(at(5.5, &overloaded, 0.0), secs(2.0)));
    assert!(close(at(5.7, &overloaded, 0.0), secs(9.3)));
    assert!(close(at(5.7, &overloaded, 1.0), secs(11.175)));
    // A slow answer costs a round, never a try sooner.
    assert!(close(at(12.0, &overloaded, 0.0), secs(3.0)));
    assert!(close(at(14.0, &overloaded, 0.0), secs(8.5)));
    let after = |s| Retry {
        after: Some(secs(s)),
        ..overloaded
    };
    assert!(close(at(0.05, &after(7.0), 0.0), secs(7.45)));
    assert!(close(at(0.05, &after(7.5), 0.5), secs(15.8875)));
    // Capped at 5 min, then the next point.
    assert!(close(at(0.05, &after(1e6), 0.0), secs(307.45)));
    // A zero cadence falls back to the first backoff step (100 ms here).
    let unset = RetryPolicy {
        overloaded_every: Duration::ZERO,
        initial: Duration::from_millis(100),
        ..p
    };
    let wait = unset.wait_after(9, &overloaded, secs(0.0), || 0.0);
    assert!(close(wait, secs(0.075)), "{wait:?}");
    // Other failures keep the exponential backoff.
    assert!(close(at(3.0, &Retry::default(), 0.5), secs(2.0)));
}

#[test]
fn the_local_poll_policy() {
    assert_eq!(
        RetryPolicy::local_poll(),
        RetryPolicy {
            initial: Duration::from_millis(25),
            max: Duration::from_millis(50),
            multiplier: 2.0,
            jitter: 0.2,
            max_retry_after: Duration::from_secs(300),
            refused_first: Duration::from_millis(25),
            overloaded_every: Duration::from_millis(50),
            share: 1.0,
            spread: 0.25,
        }
    );
}

#[test]
fn random_draws_are_spread_over_the_unit_interval() {
    let draws: Vec<f64> = (0..200).map(|_| random_unit()).collect();
    assert!(draws.iter().all(|u| (0.0..1.0).contains(u)), "{draws:?}");
    // 2^-200 odds of a false alarm for each.
    assert!(draws.iter().any(|u| *u < 0.5), "{draws:?}");
    assert!(draws.iter().any(|u| *u >= 0.5), "{draws:?}");
}

mod step;
