//! A running agent: its output collected as it goes, signals, and how it
//! finished.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::kill;
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::Signal;
use crate::journal::FakeJournal;

/// A running agent whose stdout and stderr are collected as it goes.
pub struct Agent {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    /// Set for `spawn_journaled`: its entries count as stderr.
    pub(super) journal: Option<FakeJournal>,
    /// The PID, kept for the journal after the process is reaped.
    pid: i32,
}

#[derive(Debug)]
pub struct Finished {
    /// Its PID: what it sent the journal and `NOTIFY_SOCKET` carries it.
    pub pid: i32,
    pub code: Option<i32>,
    pub stdout: String,
    /// With `spawn_journaled`, its journal entries too, one line each.
    pub stderr: String,
    /// How many entries it sent to the journal.
    pub journal_entries: usize,
}

fn collect(
    stream: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>,
    sink: Arc<Mutex<String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(mut stream) = stream else { return };
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
}

impl Agent {
    pub fn spawn(mut cmd: Command) -> Agent {
        let mut child = cmd.spawn().expect("spawning the agent");
        let pid = child.id().expect("a new child has a PID") as i32;
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take(), stdout.clone()),
            collect(child.stderr.take(), stderr.clone()),
        ];
        Agent {
            child,
            stdout,
            stderr,
            readers,
            journal: None,
            pid,
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn stderr(&self) -> String {
        let mut text = self.stderr.lock().unwrap().clone();
        if let Some(journal) = &self.journal {
            text.push_str(&journal.text(Some(self.pid)));
        }
        text
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).expect("signalling the agent");
    }

    /// Waits until `cond` holds for stderr, or panics after `timeout`.
    pub async fn wait_for_stderr(&self, timeout: Duration, cond: impl Fn(&str) -> bool) {
        let end = tokio::time::Instant::now() + timeout;
        while !cond(&self.stderr()) {
            assert!(
                tokio::time::Instant::now() < end,
                "timed out; stderr so far:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// True once the process has exited (it is not reaped twice: `finish` still works).
    pub fn try_finished(&self) -> bool {
        // kill(pid, 0) fails once the child is gone or a zombie is reaped; a
        // zombie still "exists", so look at its state instead.
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id().unwrap_or(0)))
            .map(|s| {
                s.split(") ")
                    .nth(1)
                    .is_some_and(|rest| rest.starts_with('Z'))
            })
            .unwrap_or(true)
    }

    /// Waits for the exit (at most two minutes) and returns what it printed.
    pub async fn finish(mut self) -> Finished {
        let status = tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .expect("agent did not exit within 120 s")
            .expect("waiting for the agent");
        for r in self.readers.drain(..) {
            let _ = r.await;
        }
        let journal_entries = self.journal.as_ref().map_or(0, |journal| {
            journal
                .entries()
                .iter()
                .filter(|e| e.pid == self.pid)
                .count()
        });
        Finished {
            pid: self.pid,
            code: status.code(),
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr(),
            journal_entries,
        }
    }
}

/// True when `path` exists and no one but the owner may read it.
pub fn is_private(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 == 0)
}

/// The run ended with `code`; says what it printed when not.
pub fn assert_exit(out: &Finished, code: i32) {
    assert_eq!(
        out.code,
        Some(code),
        "unexpected exit; stderr:\n{}",
        out.stderr
    );
}
