//! Telling what the job does: one place turns what happened (a phase
//! started, an attempt failed, a wait goes on, a phase ended with an
//! outcome) into journal lines, STATUS= and the state file. The job only
//! says what happened; the outcomes say how they read (see `outcome`).

pub(crate) mod events;
pub(crate) mod journal;
pub(crate) mod notify;
pub(crate) mod state;

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use self::events::Events;
use self::journal::{Event, record};
use self::notify::Notifier;
use self::state::{Outcome, Phase, Store, now};
use crate::peers::retry::{Progress, RetryPolicy, Step};

/// One line for the journal: an event with a stable `MESSAGE_ID`, or a
/// plain line at its level.
pub(crate) enum Line {
    Event(Event, String),
    Info(String),
    Warn(String),
}

/// Something that happened, as the journal tells it.
pub(crate) trait Told {
    fn lines(&self) -> Vec<Line>;
}

/// How a whole phase ended: also what state.json and STATUS= keep of it.
pub(crate) trait Ended: Told {
    fn detail(&self) -> String;
}

/// Turns what the job does into journal lines, STATUS= and the state file;
/// outcomes also into Kubernetes Events, once there is an API server.
#[derive(Clone, Copy)]
pub(crate) struct Teller<'a> {
    pub(crate) store: &'a Store,
    pub(crate) notifier: &'a Notifier,
    pub(crate) events: &'a Events,
}

impl<'a> Teller<'a> {
    pub(crate) fn tell(&self, what: &impl Told) {
        for line in what.lines() {
            match line {
                Line::Event(event, text) => {
                    record(event, &text);
                    self.events.emit(event, None, &text);
                }
                Line::Info(text) => tracing::info!("{text}"),
                Line::Warn(text) => tracing::warn!("{text}"),
            }
        }
    }

    pub(crate) fn started(&self, phase: Phase) -> anyhow::Result<()> {
        self.store.phase(phase, |r| {
            r.outcome = Outcome::Running;
            r.started_at = Some(now());
            r.finished_at = None;
            r.detail = None;
        })?;
        record(
            Event::PhaseStarted,
            &format!("{} phase started", phase.name()),
        );
        Ok(())
    }

    pub(crate) fn ended(&self, phase: Phase, outcome: &impl Ended) -> anyhow::Result<()> {
        self.tell(outcome);
        let detail = outcome.detail();
        self.settled(phase, &detail)?;
        // The wait is over once the others start: keep STATUS short.
        if phase == Phase::Wait {
            self.notifier.clear(phase.name());
        } else {
            self.notifier.phase(phase.name(), detail.clone(), None);
        }
        record(
            Event::PhaseDone,
            &format!("{} phase done: {detail}", phase.name()),
        );
        Ok(())
    }

    /// Records `phase` as done, by this run or by another node (`detail` says).
    pub(crate) fn settled(&self, phase: Phase, detail: &str) -> anyhow::Result<()> {
        self.store.phase(phase, |r| {
            r.outcome = Outcome::Done;
            r.finished_at = Some(now());
            r.detail = Some(detail.to_string());
        })
    }

    pub(crate) fn failed(&self, phase: Phase, err: &anyhow::Error) {
        let text = format!("{err:#}");
        let _ = self.store.phase(phase, |r| {
            r.outcome = Outcome::Failed;
            r.finished_at = Some(now());
            r.detail = Some(text.clone());
        });
        self.notifier
            .phase(phase.name(), format!("failed: {text}"), None);
        let text = format!("{} phase failed: {text}", phase.name());
        record(Event::PhaseFailed, &text);
        self.events.emit(Event::PhaseFailed, Some(phase), &text);
    }

    /// For the phase's own requests (the PUT, the create): each failed
    /// attempt is told, and counted in the state file's `attempts`.
    pub(crate) fn request<'b>(&self, phase: Phase, what: &'b str) -> Reporter<'b>
    where
        'a: 'b,
    {
        Reporter {
            phase,
            what,
            store: self.store,
            notifier: self.notifier,
            counted: true,
            polls: false,
            wait: Mutex::new(None),
        }
    }

    /// For polling something expected to take time.
    pub(crate) fn poll<'b>(&self, phase: Phase, what: &'b str) -> Reporter<'b>
    where
        'a: 'b,
    {
        Reporter {
            polls: true,
            ..self.request(phase, what)
        }
    }

    /// For a step that prepares the phase's request: not counted.
    pub(crate) fn prepare<'b>(&self, phase: Phase, what: &'b str) -> Reporter<'b>
    where
        'a: 'b,
    {
        Reporter {
            counted: false,
            ..self.request(phase, what)
        }
    }
}

/// How often a wait logs that it is still waiting.
const WAIT_LOG_EVERY: Duration = Duration::from_secs(15);
/// How often a wait updates STATUS= (which shows the seconds waited), each
/// time extending systemd's start timeout by `WAIT_EXTEND` (plus margin).
const WAIT_STATUS_EVERY: Duration = Duration::from_secs(1);
const WAIT_EXTEND: Duration = Duration::from_secs(30);
/// How often a wait writes its progress (`detail`, `attempts`) to state.json.
const WAIT_SAVE_EVERY: Duration = Duration::from_secs(10);

/// Reports one step's attempts to systemd, the journal and the state file.
///
/// A request that fails (the PUT, a Kubernetes write) is reported on every
/// failed attempt: a WARN line, STATUS=, the state file. Waiting for what is
/// expected to take time (the kubeconfig file, `/readyz`) is no failure: it is logged when it starts, every
/// `WAIT_LOG_EVERY` while it lasts and when it ends, and STATUS= and the
/// state file follow it at a bounded rate, never per poll.
pub(crate) struct Reporter<'a> {
    phase: Phase,
    what: &'a str,
    store: &'a Store,
    notifier: &'a Notifier,
    /// Whether attempts count in the state file's `attempts`, which counts
    /// the phase's own requests (the PUT, the create), not the steps that
    /// prepare them (address discovery, the certificate check); for the
    /// wait phase, its polls.
    counted: bool,
    /// Each attempt polls for something expected to take time: a failed
    /// one means "not yet", not an error.
    polls: bool,
    /// The wait in progress, if any.
    wait: Mutex<Option<Wait>>,
}

struct Wait {
    what: String,
    since: Instant,
    /// Polls that found it not there (yet).
    polls: u32,
    logged: Instant,
    shown: Option<Instant>,
    saved: Option<Instant>,
}

impl Reporter<'_> {
    /// A step reported here, retried by `policy` until `deadline`.
    pub(crate) fn step<'s>(&'s self, policy: &'s RetryPolicy, deadline: Instant) -> Step<'s> {
        Step {
            what: self.what,
            policy,
            deadline,
            progress: self,
        }
    }

    fn is_waiting(&self) -> bool {
        self.wait
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// One more poll that found `what` still going on, for `reason` (may
    /// be empty). The first poll starts the wait.
    fn waiting(&self, what: &str, reason: &str) {
        let now = Instant::now();
        let mut slot = self.wait.lock().unwrap_or_else(|e| e.into_inner());
        let because = |prefix: &str| {
            if reason.is_empty() {
                String::new()
            } else {
                format!("{prefix}{reason}")
            }
        };
        if slot.as_ref().is_none_or(|w| w.what != what) {
            let text = if reason.is_empty() {
                what.to_string()
            } else {
                format!("{what} ({reason})")
            };
            record(Event::WaitStarted, &text);
            *slot = Some(Wait {
                what: what.to_string(),
                since: now,
                polls: 0,
                logged: now,
                shown: None,
                saved: None,
            });
        }
        let Some(wait) = slot.as_mut() else { return };
        wait.polls += 1;
        let waited = (now - wait.since).as_secs();
        if now - wait.logged >= WAIT_LOG_EVERY {
            wait.logged = now;
            record(
                Event::WaitProgress,
                &format!(
                    "{what}: still waiting after {waited}s ({} polls{})",
                    wait.polls,
                    because("; last: ")
                ),
            );
        }
        if wait.shown.is_none_or(|t| now - t >= WAIT_STATUS_EVERY) {
            wait.shown = Some(now);
            self.notifier.phase(
                self.phase.name(),
                format!("{what} ({waited}s so far{})", because("; ")),
                Some(WAIT_EXTEND),
            );
        }
        if wait.saved.is_none_or(|t| now - t >= WAIT_SAVE_EVERY) {
            wait.saved = Some(now);
            let detail = format!(
                "{what}: {waited}s so far, {} polls{}",
                wait.polls,
                because("; last: ")
            );
            if let Err(e) = self.store.phase(self.phase, |r| r.detail = Some(detail)) {
                tracing::warn!("{e:#}");
            }
        }
    }

    /// The wait in progress, if any, ended well (a failed one is reported
    /// by its phase).
    fn end_wait(&self) {
        let wait = self.wait.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(wait) = wait {
            record(
                Event::WaitDone,
                &format!(
                    "{}: done after {:.1}s",
                    wait.what,
                    wait.since.elapsed().as_secs_f64()
                ),
            );
        }
    }
}

impl Progress for Reporter<'_> {
    fn attempt(&self, n: u32) {
        let waiting = self.polls || self.is_waiting();
        if self.counted {
            if waiting {
                self.store.phase_unsaved(self.phase, |r| r.attempts += 1);
            } else if let Err(e) = self.store.phase(self.phase, |r| r.attempts += 1) {
                tracing::warn!("{e:#}");
            }
        }
        // A new step; while waiting, the wait's own text stays.
        if n == 1 && !self.is_waiting() {
            self.notifier
                .phase(self.phase.name(), self.what.to_string(), None);
        }
    }

    fn retrying(&self, n: u32, error: &str, next: Duration) {
        if self.polls {
            self.waiting(self.what, error);
            return;
        }
        let text = format!(
            "{} (attempt {n} failed: {error}; next try in {:.1}s)",
            self.what,
            next.as_secs_f64()
        );
        self.notifier
            .phase(self.phase.name(), text.clone(), Some(next));
        record(Event::AttemptFailed, &text);
        let _ = self.store.phase(self.phase, |r| {
            r.detail = Some(format!("attempt {n}: {error}"))
        });
    }

    fn alarm(&self, text: &str) {
        tracing::error!("{text}");
    }

    /// Probes of a port nobody listens on come every fraction of a second
    /// (to capture the moment it opens): a wait, told when it starts, every
    /// 15 s and when it ends, not a warning per probe.
    fn unanswered(&self, _n: u32, error: &str, _next: Duration) {
        self.waiting(self.what, error);
    }

    fn succeeded(&self, _n: u32) {
        self.end_wait();
    }
}
