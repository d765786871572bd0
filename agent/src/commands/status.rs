//! `catalyst-bootstrap status`: the state file, read for humans or scripts.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::config;
use crate::exit::Exit;
use crate::memory::untrusted::Untrusted;
use crate::report::state::{self, Outcome, Phase, State};

/// Exit codes of `status`, distinct from each other and from clap's 2.
const DONE: u8 = 0;
const FAILED: u8 = 1;
const NOT_DONE: u8 = 3;
const UNREADABLE: u8 = 4;

/// `status --help`'s epilogue (and the man page's).
pub(crate) const HELP: &str = "\
Exit codes:
  0   done (the `done` stamp exists)
  1   a phase failed (see DETAIL; `run` retries what heals)
  2   command-line usage error
  3   not done yet, or not started (with --wait: still not done at --timeout;
      with no configuration at all it reads the default state directory)
  4   the state file cannot be read (damaged: the next run sets it aside as
      state.json.corrupt and starts over; or written by a newer version)
  78  a configuration exists but does not load, so the state directory is
      unknown (pass --state-dir DIR)
";

/// How often `--wait` says it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(15);

pub(crate) async fn show(dir: &Path, as_json: bool, wait: Option<Duration>) -> anyhow::Result<u8> {
    let started = Instant::now();
    let mut said: Option<(String, Instant)> = None;
    loop {
        let done = state::is_done(dir);
        let state = match State::read(dir) {
            Ok(state) => state,
            Err(err) => {
                print!("{}", render_unreadable(dir, &err, as_json));
                return Ok(UNREADABLE);
            }
        };
        let failed = state.as_ref().is_some_and(|s| {
            Phase::ALL
                .iter()
                .any(|p| s.phase(*p).outcome == Outcome::Failed)
        });
        let (code, word) = match (done, failed, &state) {
            (true, _, _) => (DONE, "done"),
            (false, true, _) => (FAILED, "failed"),
            (false, false, None) => (NOT_DONE, "not started"),
            (false, false, Some(_)) => (NOT_DONE, "not done yet"),
        };
        let timed_out = wait.is_some_and(|limit| started.elapsed() >= limit);
        if wait.is_none() || code != NOT_DONE || timed_out {
            if timed_out {
                eprintln!(
                    "catalyst-bootstrap status: still {word} after {}; giving up (--timeout)",
                    config::format_duration(Duration::from_secs(started.elapsed().as_secs()))
                );
            }
            let text = if as_json {
                render_json(word, state.as_ref())
            } else {
                render_text(dir, word, state.as_ref())
            };
            print!("{text}");
            return Ok(code);
        }
        // Progress on stderr (stdout stays the final answer): on every
        // change, and every PROGRESS_EVERY while nothing changes.
        let now = progress(dir, word, state.as_ref());
        let due = said
            .as_ref()
            .is_none_or(|(last, at)| *last != now || at.elapsed() >= PROGRESS_EVERY);
        if due {
            eprintln!(
                "catalyst-bootstrap status: waiting ({}s so far): {now}",
                started.elapsed().as_secs()
            );
            said = Some((now, Instant::now()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One line on where the job is.
fn progress(dir: &Path, word: &str, state: Option<&State>) -> String {
    let Some(state) = state else {
        return format!(
            "{word}: no {} yet (is catalyst-bootstrap.service started?)",
            dir.join(state::STATE_FILE).display()
        );
    };
    let phases: Vec<String> = Phase::ALL
        .iter()
        .map(|p| format!("{} {}", p.name(), outcome_word(state.phase(*p).outcome)))
        .collect();
    format!("{word}: {}", phases.join(", "))
}

fn outcome_word(outcome: Outcome) -> String {
    serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn render_unreadable(dir: &Path, err: &anyhow::Error, as_json: bool) -> String {
    let path = dir.join(state::STATE_FILE);
    // A file that does not parse (rather than one that cannot be opened,
    // or one from a newer version) is what `run` moves aside.
    let damaged = Exit::of(err) == Exit::Internal;
    let next = if damaged {
        format!(
            "the next run moves it aside to {}.corrupt and starts over \
             (safe: the seed is only ever created, and a repeated PUT is answered already-set)",
            path.display()
        )
    } else {
        String::new()
    };
    let error = Untrusted::new(format!("{err:#}")).shown();
    if as_json {
        return format!(
            "{:#}\n",
            json!({ "result": "unreadable", "error": error, "next_run": next })
        );
    }
    let mut out = format!("catalyst-bootstrap: state file unreadable\n{error}\n");
    if damaged {
        let _ = writeln!(out, "{next}");
    }
    out
}

fn render_json(word: &str, state: Option<&State>) -> String {
    format!("{:#}\n", json!({ "result": word, "state": state }))
}

fn render_text(dir: &Path, word: &str, state: Option<&State>) -> String {
    let mut out = format!("catalyst-bootstrap: {word}\n");
    let Some(state) = state else {
        let _ = writeln!(out, "no state in {} yet", dir.display());
        return out;
    };
    let shown = |text: &str| Untrusted::new(text).shown();
    let _ = writeln!(out, "deployment {}\n", shown(&state.deployment_id));
    let _ = writeln!(
        out,
        "{:<11} {:<12} {:>8}  {:<24}  {:<24}  DETAIL",
        "PHASE", "OUTCOME", "ATTEMPTS", "STARTED", "FINISHED"
    );
    for phase in Phase::ALL {
        let r = state.phase(phase);
        let outcome = outcome_word(r.outcome);
        let _ = writeln!(
            out,
            "{:<11} {:<12} {:>8}  {:<24}  {:<24}  {}",
            phase.name(),
            outcome,
            r.attempts,
            shown(r.started_at.as_deref().unwrap_or("-")),
            shown(r.finished_at.as_deref().unwrap_or("-")),
            // The file may have been edited by hand or be from an older
            // version: its text is shown like any outside text.
            shown(r.detail.as_deref().unwrap_or(""))
        );
    }
    if !state.applied.is_empty() {
        let _ = writeln!(out, "\n{:<40} {:<24} FILE", "SECRET", "OUTCOME");
        for a in &state.applied {
            let outcome = if a.removed {
                "applied, file removed"
            } else {
                "applied"
            };
            let _ = writeln!(
                out,
                "{:<40} {:<24} {}",
                shown(&a.secret),
                outcome,
                shown(&a.file)
            );
        }
    }
    if !state.handed.is_empty() {
        let _ = writeln!(out, "\n{:<48} {:<36} FILE", "OBJECT", "API VERSION");
        for h in &state.handed {
            let _ = writeln!(
                out,
                "{:<48} {:<36} {}",
                shown(&h.object),
                shown(&h.api_version),
                shown(&h.file)
            );
        }
    }
    out
}
