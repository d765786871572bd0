//! Which agent binary the tests run, and how: this workspace's build (never
//! a stale one), or `CATALYST_BOOTSTRAP_BIN` through a runner such as
//! qemu-user.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The agent binary of this workspace's build.
pub fn agent_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CATALYST_BOOTSTRAP_BIN") {
        return PathBuf::from(path);
    }
    let bin = built_agent();
    assert!(
        !is_stale(&bin),
        "{} is missing or older than agent/src; run `cargo test --workspace` (or `cargo build -p catalyst-bootstrap`), \
         which builds it, rather than testing a stale binary",
        bin.display()
    );
    bin
}

/// Where cargo puts the agent for the profile of the running program:
/// target/<profile>/deps/<test> or target/<profile>/<bin>.
pub fn built_agent() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("catalyst-bootstrap")
}

/// `bin` is missing or older than the agent's sources.
pub fn is_stale(bin: &Path) -> bool {
    let built = std::fs::metadata(bin).and_then(|m| m.modified()).ok();
    let agent = crate::ship::root().join("agent");
    let manifest = std::fs::metadata(agent.join("Cargo.toml"))
        .and_then(|m| m.modified())
        .ok();
    let sources = newest_change(&agent.join("src")).max(manifest);
    built.is_none_or(|b| sources.is_some_and(|s| b < s))
}

/// The command that runs the agent before its arguments: the runner prefix
/// from `CATALYST_BOOTSTRAP_RUNNER` (split on whitespace; for example
/// `qemu-aarch64-static` to run an arm64 `CATALYST_BOOTSTRAP_BIN` on
/// x86_64), then the agent binary. With qemu-user the process started is
/// the emulator running the agent: it has the agent's PID, and signals sent
/// to it reach the agent.
pub fn agent_command() -> std::process::Command {
    let runner = agent_runner();
    let mut cmd = match runner.split_first() {
        Some((program, args)) => {
            let mut cmd = std::process::Command::new(program);
            cmd.args(args).arg(agent_binary());
            cmd
        }
        None => std::process::Command::new(agent_binary()),
    };
    cmd.stdin(Stdio::null());
    cmd
}

/// `CATALYST_BOOTSTRAP_RUNNER`, split on whitespace; empty when unset.
pub fn agent_runner() -> Vec<String> {
    std::env::var("CATALYST_BOOTSTRAP_RUNNER")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// True when the agent runs through a runner (an emulator): it starts
/// slower and some of what a test observes from outside is the emulator's.
pub fn under_emulation() -> bool {
    !agent_runner().is_empty()
}

/// How long a wait that is not itself the assertion should allow: `base`
/// natively, four times that under emulation (qemu-user starts the agent
/// in hundreds of milliseconds and runs it several times slower).
pub fn patience(base: Duration) -> Duration {
    if under_emulation() { base * 4 } else { base }
}

/// For a test that cannot hold under emulation: prints that `test` is
/// skipped and why (so the run shows it, never a silent pass) and returns
/// true; natively returns false and the test runs.
pub fn skip_under_emulation(test: &str, reason: &str) -> bool {
    if !under_emulation() {
        return false;
    }
    let line = format!(
        "SKIPPED under CATALYST_BOOTSTRAP_RUNNER={:?}: {test}: {reason}",
        agent_runner().join(" ")
    );
    println!("{line}");
    eprintln!("{line}");
    true
}

/// The newest modification time of any file under `dir`.
fn newest_change(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_change(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(time);
    }
    newest
}
