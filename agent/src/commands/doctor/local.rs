//! doctor's checks of this node's own inputs: the bearer credential and
//! the state directory.

use std::path::Path;

use super::{Line, fail, ok, warn};
use crate::config::Config;
use crate::config::token::{self, BearerToken};
use crate::memory::untrusted::Untrusted;
use crate::report::state::{self, Outcome, Phase, State};

pub(super) fn credential(config: &Config, done: bool) -> Line {
    match BearerToken::load_as_the_unit_would(
        config.token_file.as_deref(),
        Path::new(token::CREDSTORE),
        done,
    ) {
        Ok(token) => ok(
            "credential",
            format!(
                "bearer token in {} is present and well-formed (64 lowercase hex; not shown)",
                token.source().display()
            ),
        ),
        Err(_) if done => ok(
            "credential",
            "no bearer token, and none needed: the job is done and the unit deletes the \
             single-use token after use",
        ),
        Err(e) => fail(
            "credential",
            format!("{e:#}"),
            "provide the 64-hex token where the message says (the systemd credential \
             `kubeconfig-bearer`, or `token_file`)",
        ),
    }
}

pub(super) fn state_line(config: &Config, done: bool) -> Line {
    let dir = &config.state_dir;
    if done {
        return ok(
            "state",
            format!(
                "{} exists: the job is done; a run exits at once",
                dir.join(state::DONE_STAMP).display()
            ),
        );
    }
    // Checked with access(2): nothing is created.
    let existing = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or(Path::new("/"));
    if nix::unistd::access(existing, nix::unistd::AccessFlags::W_OK).is_err() {
        return fail(
            "state",
            format!(
                "{} is not writable by this user, so a run could not record progress",
                existing.display()
            ),
            "run as root (the unit does), or fix the directory's owner and mode",
        );
    }
    let state = match State::read(dir) {
        Ok(s) => s,
        Err(e) => {
            return fail(
                "state",
                format!("{e:#}"),
                "a run sets a damaged file aside (state.json.corrupt) and starts over",
            );
        }
    };
    let Some(state) = state else {
        return ok(
            "state",
            format!(
                "no {} yet, no done stamp: a run starts from the beginning",
                dir.join(state::STATE_FILE).display()
            ),
        );
    };
    if state.deployment_id != config.deployment_id {
        return fail(
            "state",
            format!(
                "{} belongs to deployment {}, not {}",
                dir.join(state::STATE_FILE).display(),
                Untrusted::new(state.deployment_id.clone()).shown(),
                config.deployment_id
            ),
            "a reused node: move the state directory aside",
        );
    }
    let phases = Phase::ALL
        .iter()
        .map(|p| {
            let word = match state.phase(*p).outcome {
                Outcome::Pending => "pending",
                Outcome::Running => "running",
                Outcome::Done => "done",
                Outcome::Failed => "failed",
                Outcome::Interrupted => "interrupted",
            };
            format!("{} {word}", p.name())
        })
        .collect::<Vec<_>>()
        .join(", ");
    let failed = Phase::ALL
        .iter()
        .find(|p| state.phase(**p).outcome == Outcome::Failed);
    match failed {
        Some(p) => warn(
            "state",
            format!(
                "{phases}; no done stamp; {} failed: {}",
                p.name(),
                Untrusted::new(state.phase(*p).detail.clone().unwrap_or_default()).shown()
            ),
            "`catalyst-bootstrap status` shows every phase; a run retries what heals",
        ),
        None => ok(
            "state",
            format!("{phases}; no done stamp: a run resumes where the last one stopped"),
        ),
    }
}
