//! `catalyst-bootstrap status`: the state file, read for humans or scripts.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::state::{self, Outcome, Phase, State};
use crate::untrusted::Untrusted;

/// Exit codes of `status`.
const DONE: u8 = 0;
const FAILED: u8 = 1;
const NOT_DONE: u8 = 2;

pub(crate) async fn show(dir: &Path, as_json: bool, wait: bool) -> anyhow::Result<u8> {
    loop {
        let done = state::is_done(dir);
        let state = State::read(dir)?;
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
        if !wait || code != NOT_DONE {
            let text = if as_json {
                render_json(word, state.as_ref())
            } else {
                render_text(dir, word, state.as_ref())
            };
            print!("{text}");
            return Ok(code);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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
        "{:<11} {:<12} {:>8}  {:<20}  {:<20}  DETAIL",
        "PHASE", "OUTCOME", "ATTEMPTS", "STARTED", "FINISHED"
    );
    for phase in Phase::ALL {
        let r = state.phase(phase);
        let outcome = serde_json::to_value(r.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<11} {:<12} {:>8}  {:<20}  {:<20}  {}",
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
    out
}
