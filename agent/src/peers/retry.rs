//! Retrying: the backoff policy, the verdict every error boundary gives its
//! failures, and the one loop that applies both under the overall deadline.

use std::error::Error as StdError;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::time::Instant;
use tracing::Instrument;

use crate::exit::Exit;
use crate::memory::untrusted::Untrusted;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RetryPolicy {
    /// Delay after the first failure.
    pub(crate) initial: Duration,
    /// Ceiling of the exponential delay.
    pub(crate) max: Duration,
    pub(crate) multiplier: f64,
    /// Spread each delay by up to this fraction, so nodes provisioned
    /// together do not retry in lockstep.
    pub(crate) jitter: f64,
    /// Ceiling of a server's `Retry-After`; a broken proxy must not park us.
    pub(crate) max_retry_after: Duration,
    /// First probe after a refused connection; each next one doubles, until
    /// the probes land on the node's own cadence ([`RetryPolicy::cadence`]).
    /// Probing a closed port costs the server nothing, so a short outage (a
    /// restart) is caught within about its own length.
    pub(crate) refused_first: Duration,
    /// The shell's cadence (`retry.overloaded_delay`, `curl --retry-delay
    /// 10`): while catalyst-api refuses or answers that it is overloaded
    /// (429, 5xx) without saying when to come back, each node tries at
    /// `share` of it. Not a growing backoff, or the tries after a long
    /// overload come a growing step behind and so does the capture (~30 s
    /// after a 120 s overload, when the backoff grew).
    pub(crate) overloaded_every: Duration,
    /// Below 1, so that a node captures sooner after recovery than a shell
    /// node at any phase (bench/fleet.md); each node sends up to 1/share
    /// times the shell's tries.
    pub(crate) share: f64,
    /// Each point of the cadence is drawn up to this fraction of it later,
    /// without adding up: nodes that started together arrive over a little
    /// more than their own spread, the more of them catalyst-api serves in
    /// each round, and a node's worst wait stays under the shell's.
    pub(crate) spread: f64,
}

impl RetryPolicy {
    /// The policy for the delays a configuration sets (`retry.*`); the rest
    /// is the algorithm's own.
    pub(crate) fn new(initial: Duration, max: Duration, overloaded: Duration) -> Self {
        RetryPolicy {
            initial,
            max,
            multiplier: 2.0,
            jitter: 0.2,
            max_retry_after: Duration::from_secs(300),
            refused_first: Duration::from_millis(200),
            overloaded_every: overloaded,
            share: 0.75,
            spread: 0.25,
        }
    }

    /// Polling something on this node (a file, the local API server): quick,
    /// because the critical path starts the moment it is there; a poll is a
    /// stat or a request on a kept-alive loopback connection.
    pub(crate) fn local_poll() -> Self {
        RetryPolicy {
            refused_first: Duration::from_millis(25),
            share: 1.0,
            ..RetryPolicy::new(
                Duration::from_millis(25),
                Duration::from_millis(50),
                Duration::from_millis(50),
            )
        }
    }

    /// The node's own cadence while the peer refuses or is overloaded: never
    /// quicker than the first backoff step, so that
    /// `retry.overloaded_delay: 0s` cannot hammer the server.
    fn cadence(&self) -> Duration {
        self.overloaded_every.max(self.initial).mul_f64(self.share)
    }

    /// The delay before attempt `failed + 1`, after `failed` failures that
    /// were neither refused nor overloaded, or came with `Retry-After`.
    #[cfg(test)]
    fn delay(&self, failed: u32, hint: &Retry) -> Duration {
        self.delay_with(failed, hint, random_unit)
    }

    /// [`RetryPolicy::delay`], its jitter drawn from `unit` (uniform in [0, 1)).
    fn delay_with(&self, failed: u32, hint: &Retry, unit: impl FnOnce() -> f64) -> Duration {
        if let Some(after) = hint.after {
            // Honour the server, plus jitter upwards only.
            let after = after.min(self.max_retry_after);
            return after + after.mul_f64(self.jitter * unit());
        }
        let exp = self
            .multiplier
            .powi(failed.saturating_sub(1).min(63) as i32);
        let base = self.initial.mul_f64(exp).min(self.max);
        let spread = 1.0 + self.jitter * (2.0 * unit() - 1.0);
        base.mul_f64(spread).min(self.max)
    }

    /// How long to wait, from now, before the try after try `n`, which
    /// failed with `hint`, `elapsed` after the step's first try began. The
    /// one rule [`Step::retry`] follows (and the fleet simulation,
    /// `crate::fleet`, drives).
    ///
    /// Refused and overloaded tries keep to the node's own grid: one point
    /// per [`RetryPolicy::cadence`] from its first try. Nodes keep the
    /// phases their starts gave them, as the shell's do: a fleet whose
    /// starts were spread stays spread, and a 503 does not pull a node onto
    /// the moment catalyst-api came back, where every other waiting node
    /// is. (Probing every 0.2 s did: 3000 nodes were captured ~290 s after
    /// a 120 s outage, the shell's ~40 s.) Early in a refused spell, quicker
    /// probes come between the points.
    pub(crate) fn wait_after(
        &self,
        n: u32,
        hint: &Retry,
        elapsed: Duration,
        unit: impl FnOnce() -> f64,
    ) -> Duration {
        if !(hint.overloaded || hint.refused) {
            return self.delay_with(n, hint, unit);
        }
        let every = self.cadence();
        // An overloaded server is tried no sooner than a quarter cadence
        // after its answer (also after a quick probe that found it open but
        // busy), nor sooner than it asked (`Retry-After`, capped).
        let earliest = if hint.overloaded {
            let told = hint.after.unwrap_or_default().min(self.max_retry_after);
            elapsed + told.max(every / 4)
        } else {
            elapsed
        };
        let point = (earliest.as_secs_f64() / every.as_secs_f64()).floor() + 1.0;
        let at = every.mul_f64(point + self.spread * unit());
        let wait = at.saturating_sub(elapsed);
        if hint.refused {
            let exp = self.multiplier.powi(n.saturating_sub(1).min(63) as i32);
            wait.min(self.refused_first.mul_f64(exp))
        } else {
            wait
        }
    }
}

/// Uniform in [0, 1).
fn random_unit() -> f64 {
    (getrandom::u64().unwrap_or(0) >> 11) as f64 / (1u64 << 53) as f64
}

/// How a retryable failure wants to be retried.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Retry {
    /// The server said when (`Retry-After`).
    pub(crate) after: Option<Duration>,
    /// The connection was refused: nobody is listening yet.
    pub(crate) refused: bool,
    /// The server answered that it is overloaded.
    pub(crate) overloaded: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Verdict {
    /// Retrying cannot help; the process ends with this kind.
    Permanent(Exit),
    Retry(Retry),
}

impl Verdict {
    /// A connection, TLS or timeout error may heal; a refused connection is
    /// probed again quickly.
    pub(crate) fn transport(err: &(dyn StdError + 'static)) -> Verdict {
        Verdict::Retry(Retry {
            refused: is_refused(err),
            after: None,
            overloaded: false,
        })
    }
}

/// Implemented by each boundary's error type: its one classification.
pub(crate) trait Classify {
    fn verdict(&self) -> Verdict;

    /// What an operator must hear at once about a failure that is retried
    /// anyway (a 404 that may be a misrouted ingress or a wrong id).
    fn alarm(&self) -> Option<String> {
        None
    }
}

/// True when the innermost I/O error of a chain is "connection refused".
fn is_refused(err: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        cur = e.source();
    }
    false
}

/// The innermost cause of a transport error, which is the part that says
/// what happened ("Connection refused", "invalid peer certificate:
/// UnknownIssuer"); the outer layers only repeat the URL and the library.
pub(crate) fn innermost(err: &(dyn StdError + 'static)) -> String {
    let mut cur = err;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let text = cur.to_string();
    // rustls appends a documentation link to some messages.
    let text = match text.find(": https://docs.rs/") {
        Some(i) => &text[..i],
        None => &text,
    };
    // A library's message may quote what the peer sent (a certificate's
    // names, a malformed header).
    Untrusted::new(text).shown()
}

/// Told about each attempt, to report it (STATUS=, journal, state file).
pub(crate) trait Progress {
    fn attempt(&self, n: u32);
    /// A retried failure needs attention now (see [`Classify::alarm`]).
    fn alarm(&self, text: &str);
    /// Attempt `n` failed with `error`; the next starts after `next`.
    fn retrying(&self, n: u32, error: &str, next: Duration);
    /// Attempt `n` found nobody listening (`error`: connection refused);
    /// the next probe starts after `next`. Told like any failure unless
    /// the reporter waits it out quietly.
    fn unanswered(&self, n: u32, error: &str, next: Duration) {
        self.retrying(n, error, next);
    }
    /// Attempt `n` succeeded.
    fn succeeded(&self, n: u32);
}

/// One step of the job that may take several attempts: a request, or a wait
/// for something expected to take time. Every retry and every poll of the
/// agent goes through [`Step::retry`].
pub(crate) struct Step<'a> {
    /// What the step does, as its messages name it ("delivering the kubeconfig").
    pub(crate) what: &'a str,
    pub(crate) policy: &'a RetryPolicy,
    /// No attempt starts, and none runs, past this.
    pub(crate) deadline: Instant,
    pub(crate) progress: &'a dyn Progress,
}

impl Step<'_> {
    /// Runs `op` until it succeeds, fails permanently, or the next try would
    /// start after the deadline. Each attempt runs in its own span.
    pub(crate) async fn retry<T, E, F, Fut>(&self, op: F) -> anyhow::Result<T>
    where
        E: Classify + StdError + Send + Sync + 'static,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.retry_with(random_unit, op).await
    }

    /// [`Step::retry`], its jitter drawn from `unit`.
    async fn retry_with<T, E, F, Fut>(&self, unit: fn() -> f64, mut op: F) -> anyhow::Result<T>
    where
        E: Classify + StdError + Send + Sync + 'static,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let Step {
            what,
            policy,
            deadline,
            progress,
        } = *self;
        let mut n = 0;
        let mut last: Option<String> = None;
        let first = Instant::now();
        loop {
            n += 1;
            progress.attempt(n);
            let span = tracing::info_span!("attempt", catalyst_attempt = n);
            // The deadline bounds each attempt too: a peer that drips its
            // answer a byte at a time never trips a per-read timeout.
            let err = match tokio::time::timeout_at(deadline, op(n).instrument(span.clone())).await
            {
                Ok(Ok(value)) => {
                    progress.succeeded(n);
                    return Ok(value);
                }
                Ok(Err(err)) => err,
                Err(_) => {
                    let before = last.map(|l| format!(" (attempt {} failed: {l})", n - 1));
                    return Err(anyhow!(
                        "{what}: gave up after {n} attempts; last error: no complete answer \
                         before the deadline{}",
                        before.unwrap_or_default()
                    ))
                    .context(Exit::Deadline);
                }
            };
            let verdict = err.verdict();
            let refused = matches!(verdict, Verdict::Retry(hint) if hint.refused);
            let next = match verdict {
                Verdict::Permanent(kind) => return Err(anyhow::Error::new(err).context(kind)),
                Verdict::Retry(hint) => policy.wait_after(n, &hint, first.elapsed(), unit),
            };
            if let Some(alarm) = err.alarm() {
                span.in_scope(|| progress.alarm(&alarm));
            }
            let text = Chain(&err).to_string();
            if Instant::now() + next > deadline {
                return Err(anyhow!(
                    "{what}: gave up after {n} attempts; last error: {text}"
                ))
                .context(Exit::Deadline);
            }
            // Inside the attempt's span, so the journal entry carries CATALYST_ATTEMPT.
            span.in_scope(|| {
                if refused {
                    progress.unanswered(n, &text, next);
                } else {
                    progress.retrying(n, &text, next);
                }
            });
            last = Some(text);
            tokio::time::sleep(next).await;
        }
    }
}

/// An error and its sources on one line, as `{:#}` shows an anyhow chain.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn StdError + 'static));

impl Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cur = self.0.source();
        let mut last = self.0.to_string();
        while let Some(e) = cur {
            let text = e.to_string();
            // hyper and reqwest repeat their source in their own message.
            if !last.contains(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            cur = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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

    fn step<'a>(
        policy: &'a RetryPolicy,
        deadline: Instant,
        what: &'a str,
        log: &'a Log,
    ) -> Step<'a> {
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
        let at =
            |elapsed: f64, hint: &Retry, draw: f64| p.wait_after(2, hint, secs(elapsed), || draw);
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
}
