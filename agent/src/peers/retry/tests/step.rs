//! The retry step: attempts, deadlines, what it tells, and how errors read.

use super::*;

fn exact() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(10),
        ..production()
    }
}

/// Fails once, then succeeds.
async fn second_try(n: u32) -> Result<u32, Fake> {
    if n == 1 {
        Err(Fake(Verdict::Retry(Retry::default())))
    } else {
        Ok(n)
    }
}

/// A catalyst-api down for `span` (refusing connections, or answering
/// 503 when `overloaded`), retried with production delays and every
/// jitter draw `draw`: the tries sent during the outage, and how long
/// after it ended the kubeconfig was captured.
async fn outage(span: Duration, overloaded: bool, draw: fn() -> f64) -> (u32, Duration) {
    let log = Log::default();
    let policy = production();
    let start = Instant::now();
    let recovered = start + span;
    let far = start + Duration::from_secs(1800);
    let during = step(&policy, far, "thing", &log)
        .retry_with(draw, |n| async move {
            if Instant::now() >= recovered {
                return Ok(n - 1);
            }
            Err(Fake(Verdict::Retry(Retry {
                refused: !overloaded,
                overloaded,
                after: None,
            })))
        })
        .await
        .unwrap();
    (during, Instant::now() - recovered)
}

#[tokio::test(start_paused = true)]
async fn a_long_overload_is_caught_sooner_than_by_a_shell_at_any_phase() {
    // The shell tries every 10 s: a shell node at a random phase
    // captures up to 10 s after recovery, 5 s on average. The agent:
    // one try per 7.5 s cadence, each point up to 1.875 s later.
    for draw in [(|| 0.0) as fn() -> f64, || 0.5, || 0.999] {
        for secs in [5.0, 30.0, 120.0, 121.7] {
            let span = Duration::from_secs_f64(secs);
            let (during, after) = outage(span, true, draw).await;
            let rounds = (secs / 7.5).ceil() as u32;
            assert!(during <= rounds, "{secs} s: {during} tries");
            assert!(
                after < Duration::from_secs_f64(9.375),
                "{secs} s, draw {}: captured {after:?} after recovery",
                draw()
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn slow_overloaded_answers_keep_the_nodes_grid() {
    // Tries start on the grid, however long each answer took; an
    // answer too slow to leave a quarter cadence before the next point
    // skips it.
    for (answer, draw, want) in [
        (3.0, (|| 0.0) as fn() -> f64, [7.5, 7.5, 7.5]),
        (3.0, || 1.0, [9.375, 7.5, 7.5]),
        (12.0, || 0.0, [15.0, 15.0, 15.0]),
    ] {
        let log = Log::default();
        let policy = production();
        let starts = Mutex::new(Vec::new());
        let far = Instant::now() + Duration::from_secs(1800);
        step(&policy, far, "thing", &log)
            .retry_with(draw, |n| {
                starts.lock().unwrap().push(Instant::now());
                async move {
                    tokio::time::sleep(secs(answer)).await;
                    if n == 4 {
                        return Ok(());
                    }
                    Err(Fake(Verdict::Retry(Retry {
                        overloaded: true,
                        ..Retry::default()
                    })))
                }
            })
            .await
            .unwrap();
        let starts = starts.into_inner().unwrap();
        let gaps: Vec<_> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(
            gaps.iter().zip(want).all(|(&g, w)| close(g, secs(w))),
            "answers in {answer} s, draw {}: {gaps:?}",
            draw()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn other_delays_count_from_the_answer() {
    // A server's `Retry-After` is relative to its answer (the try then
    // waits for the next point of its grid), and a backoff gives the
    // peer that long to heal after the failure.
    let told = Retry {
        after: Some(Duration::from_secs(10)),
        overloaded: true,
        ..Retry::default()
    };
    // Answers take 3 s; then 10 s as told and on to the grid's 15 s, or
    // the first backoff step (1 s, spread to 0.8 s by the draw).
    for (hint, want) in [(told, 15.0), (Retry::default(), 3.8)] {
        let log = Log::default();
        let policy = production();
        let starts = Mutex::new(Vec::new());
        let far = Instant::now() + Duration::from_secs(1800);
        step(&policy, far, "thing", &log)
            .retry_with(
                || 0.0,
                |n| {
                    starts.lock().unwrap().push(Instant::now());
                    async move {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        if n == 2 {
                            return Ok(());
                        }
                        Err(Fake(Verdict::Retry(hint)))
                    }
                },
            )
            .await
            .unwrap();
        let starts = starts.into_inner().unwrap();
        let gap = starts[1] - starts[0];
        assert!(close(gap, secs(want)), "{hint:?}: {gap:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_spell_is_caught_within_its_own_length_or_one_cadence() {
    for draw in [(|| 0.0) as fn() -> f64, || 0.5, || 0.999] {
        // Not whole seconds, so recovery falls between two probes.
        for span in [0.35, 1.3, 5.3, 9.1, 30.7, 120.45] {
            let (_, after) = outage(secs(span), false, draw).await;
            let bound = (span + 0.2).min(9.375);
            assert!(
                after <= secs(bound),
                "{span} s, draw {}: captured {after:?} after recovery",
                draw()
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_starts_exactly_at_the_deadline_runs() {
    let log = Log::default();
    let policy = exact();
    let deadline = Instant::now() + Duration::from_millis(10);
    let got = step(&policy, deadline, "thing", &log)
        .retry_with(|| 0.5, second_try)
        .await
        .unwrap();
    assert_eq!(got, 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_that_would_start_after_the_deadline_does_not() {
    let log = Log::default();
    let policy = exact();
    let deadline = Instant::now() + Duration::from_millis(9);
    let err = step(&policy, deadline, "thing", &log)
        .retry_with(|| 0.5, second_try)
        .await
        .unwrap_err();
    assert_eq!(Exit::of(&err), Exit::Deadline);
    assert!(
        format!("{err:#}").contains("thing: gave up after 1 attempts; last error: fake"),
        "{err:#}"
    );
    assert_eq!(*log.0.lock().unwrap(), vec!["attempt 1"]);
}

#[tokio::test(start_paused = true)]
async fn retries_until_success() {
    let log = Log::default();
    let far = Instant::now() + Duration::from_secs(60);
    let got = step(&fast(), far, "thing", &log)
        .retry(|n| async move {
            if n < 3 {
                Err(Fake(Verdict::Retry(Retry::default())))
            } else {
                Ok(n)
            }
        })
        .await
        .unwrap();
    assert_eq!(got, 3);
    assert_eq!(
        *log.0.lock().unwrap(),
        vec![
            "attempt 1",
            "retry 1: fake: Retry(Retry { after: None, refused: false, overloaded: false })",
            "attempt 2",
            "retry 2: fake: Retry(Retry { after: None, refused: false, overloaded: false })",
            "attempt 3",
            "succeeded 3"
        ]
    );
}

/// A reporter that does not wait out refused connections quietly hears
/// them like any failure (`Progress::unanswered`'s default).
#[tokio::test(start_paused = true)]
async fn a_refused_try_is_told_as_a_retry_by_default() {
    let log = Log::default();
    let far = Instant::now() + Duration::from_secs(60);
    let refused = Retry {
        refused: true,
        ..Retry::default()
    };
    let got = step(&fast(), far, "thing", &log)
        .retry(|n| async move {
            if n < 2 {
                Err(Fake(Verdict::Retry(refused)))
            } else {
                Ok(n)
            }
        })
        .await
        .unwrap();
    assert_eq!(got, 2);
    assert_eq!(
        *log.0.lock().unwrap(),
        vec![
            "attempt 1",
            "retry 1: fake: Retry(Retry { after: None, refused: true, overloaded: false })",
            "attempt 2",
            "succeeded 2"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_alarming_failure_is_told_before_it_is_retried() {
    let log = Log::default();
    let far = Instant::now() + Duration::from_secs(60);
    step(&fast(), far, "thing", &log)
        .retry(|n| async move {
            if n == 1 {
                Err(Fake(Verdict::Retry(Retry {
                    after: Some(Duration::from_millis(1)),
                    ..Retry::default()
                })))
            } else {
                Ok(())
            }
        })
        .await
        .unwrap();
    let log = log.0.lock().unwrap();
    assert_eq!(log[1], "alarm: loud");
    assert!(log[2].starts_with("retry 1: "), "{log:?}");
}

#[tokio::test]
async fn permanent_failure_stops_at_once_with_its_kind() {
    let log = Log::default();
    let far = Instant::now() + Duration::from_secs(60);
    let err = step(&fast(), far, "thing", &log)
        .retry(|_| async { Err::<(), _>(Fake(Verdict::Permanent(Exit::Rejected))) })
        .await
        .unwrap_err();
    assert_eq!(Exit::of(&err), Exit::Rejected);
    assert_eq!(*log.0.lock().unwrap(), vec!["attempt 1"]);
}

#[tokio::test(start_paused = true)]
async fn deadline_ends_retrying_with_the_last_error() {
    let log = Log::default();
    let soon = Instant::now() + Duration::from_millis(20);
    let policy = fast();
    let step = step(&policy, soon, "reaching thing", &log);
    let retrying = step.retry(|_| async {
        // Each attempt takes a moment, so the clock moves whatever the delay.
        tokio::time::sleep(Duration::from_millis(1)).await;
        Err::<(), _>(Fake(Verdict::Retry(Retry::default())))
    });
    // Well before this (paused) second, or it would retry forever.
    let err = tokio::time::timeout(Duration::from_secs(1), retrying)
        .await
        .expect("gives up at the deadline by itself")
        .unwrap_err();
    assert_eq!(Exit::of(&err), Exit::Deadline);
    let msg = format!("{err:#}");
    assert!(
        msg.contains("reaching thing: gave up after") && msg.contains("fake: Retry"),
        "{msg}"
    );
}

#[tokio::test]
async fn the_deadline_bounds_an_attempt_that_never_ends() {
    let log = Log::default();
    let soon = Instant::now() + Duration::from_millis(100);
    let started = Instant::now();
    let err = step(&fast(), soon, "reaching thing", &log)
        .retry(|n| async move {
            if n == 1 {
                return Err(Fake(Verdict::Retry(Retry::default())));
            }
            std::future::pending::<Result<(), Fake>>().await
        })
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(Exit::of(&err), Exit::Deadline);
    let msg = format!("{err:#}");
    assert!(
        msg.contains("gave up after 2 attempts; last error: no complete answer before the deadline (attempt 1 failed: fake: Retry"),
        "{msg}"
    );
}

#[test]
fn innermost_cause_without_doc_links() {
    #[derive(Debug, thiserror::Error)]
    #[error("error sending request for url (https://x.example/): client error")]
    struct Outer(#[source] std::io::Error);
    let err = Outer(std::io::Error::other(
        "peer closed connection without sending TLS close_notify: https://docs.rs/rustls/latest/x",
    ));
    assert_eq!(
        innermost(&err),
        "peer closed connection without sending TLS close_notify"
    );
}

#[test]
fn a_chain_shows_each_cause_once() {
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Layer(String, #[source] Option<Box<Layer>>);
    let inner = Layer("connection reset".into(), None);
    let repeats = Layer(
        "request failed: connection reset".into(),
        Some(Box::new(inner)),
    );
    let outer = Layer("sending".into(), Some(Box::new(repeats)));
    assert_eq!(
        Chain(&outer).to_string(),
        "sending: request failed: connection reset"
    );
}

#[test]
fn most_failures_raise_no_alarm() {
    #[derive(Debug, thiserror::Error)]
    #[error("quiet")]
    struct Quiet;
    impl Classify for Quiet {
        fn verdict(&self) -> Verdict {
            Verdict::Retry(Retry::default())
        }
    }
    assert_eq!(Quiet.alarm(), None);
}

#[test]
fn refused_is_found_through_the_chain() {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);
    let refused = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
    assert!(is_refused(&refused));
    let reset = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    assert!(!is_refused(&reset));
}
