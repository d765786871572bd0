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
mod tests;
