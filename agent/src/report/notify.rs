//! sd_notify(3): what `systemctl status` shows while the agent works.
//! Without `NOTIFY_SOCKET` every call is a no-op.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

use crate::memory::untrusted::one_line;

/// The status line, one part per phase, so two phases running at once both
/// stay visible ("kubeconfig: …; seed: …").
#[derive(Default)]
pub(crate) struct Notifier {
    parts: Mutex<Vec<(&'static str, String)>>,
    /// READY=1 went out: once the critical work is done, and the job's
    /// end only updates the status line.
    ready: AtomicBool,
}

impl Notifier {
    /// Sets `phase`'s part of the status line. `extend` asks systemd for that
    /// much more start-up time (plus a margin) while we wait.
    pub(crate) fn phase(&self, phase: &'static str, text: String, extend: Option<Duration>) {
        let line = {
            let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
            match parts.iter_mut().find(|(p, _)| *p == phase) {
                Some(part) => part.1 = text,
                None => parts.push((phase, text)),
            }
            parts
                .iter()
                .map(|(p, t)| format!("{p}: {t}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let extend_usec = extend.map(|d| {
            let usec = (d + Duration::from_secs(30)).as_micros();
            u32::try_from(usec).unwrap_or(u32::MAX)
        });
        match extend_usec {
            Some(usec) => send(&[
                NotifyState::Status(&line),
                NotifyState::ExtendTimeoutUsec(usec),
            ]),
            None => send(&[NotifyState::Status(&line)]),
        }
    }

    /// Drops a finished phase's part from the status line.
    pub(crate) fn clear(&self, phase: &'static str) {
        self.parts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(p, _)| *p != phase);
    }

    /// READY=1 (the first time) with `text` as the status line.
    pub(crate) fn ready(&self, text: &str) {
        if self.ready.swap(true, Ordering::Relaxed) {
            send(&[NotifyState::Status(text)]);
        } else {
            send(&[NotifyState::Ready, NotifyState::Status(text)]);
        }
    }

    /// The last word of a run that failed, so `systemctl status` shows why
    /// even when the failure came before any phase started.
    pub(crate) fn failed(&self, code: u8, text: &str) {
        send(&[NotifyState::Status(&format!(
            "Failed (exit {code}): {text}"
        ))]);
    }

    pub(crate) fn stopping(&self, text: &str) {
        send(&[NotifyState::Stopping, NotifyState::Status(text)]);
    }
}

/// Sends one datagram. Every value is one line without control characters,
/// whatever the caller passed: a newline in a status text would otherwise
/// start a new assignment (`READY=1`, `MAINPID=`) that systemd obeys.
fn send(states: &[NotifyState]) {
    let texts: Vec<_> = states
        .iter()
        .map(|state| match state {
            NotifyState::Status(text) => Some(one_line(text)),
            _ => None,
        })
        .collect();
    let states: Vec<NotifyState> = states
        .iter()
        .zip(&texts)
        .map(|(state, text)| match text {
            Some(text) => NotifyState::Status(text),
            None => state.clone(),
        })
        .collect();
    if let Err(e) = sd_notify::notify(&states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}
