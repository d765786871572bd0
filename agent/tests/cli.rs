//! The command-line surface of the binary itself. (These also make
//! `cargo test --workspace` build the binary the end-to-end suite runs.)

use std::process::Command;

fn agent() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_catalyst-bootstrap"));
    cmd.env_clear();
    cmd
}

#[test]
fn version_and_help() {
    let out = agent().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        concat!("catalyst-bootstrap ", env!("CARGO_PKG_VERSION"))
    );
    let out = agent().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "run",
        "status",
        "check-config",
        "Exit codes",
        "77 bearer rejected",
        "78 bad configuration",
        "2 usage error",
        // Each flag's help is its configuration key's doc line.
        "16 lowercase hex characters",
        "https only",
        "state file, done stamp, lock [default: /var/lib/catalyst-bootstrap]",
        "a lowercase DNS label",
        "[default: 30m]",
    ] {
        assert!(help.contains(word), "{word} missing from --help:\n{help}");
    }
}

#[test]
fn secrets_cannot_be_passed_on_the_command_line() {
    let out = agent().args(["run", "--token", "x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "clap refuses unknown flags");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unexpected argument '--token'"));
}

#[test]
fn status_without_state_is_not_done() {
    let dir = tempfile::tempdir().unwrap();
    let out = agent()
        .args(["status", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "not done: distinct from usage error 2"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("not started"));
}

#[test]
fn status_help_lists_its_exit_codes() {
    let out = agent().args(["status", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in [
        "0   done",
        "1   a phase failed",
        "2   command-line usage error",
        "3   not done yet",
        "4   the state file",
        "78  a configuration exists but does not load",
    ] {
        assert!(
            help.contains(word),
            "{word} missing from status --help:\n{help}"
        );
    }
}

/// A configuration that does not load is an error, never a silent read of
/// the default state directory.
#[test]
fn status_with_a_broken_config_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "deployment_id: [\n").unwrap();
    let out = agent()
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--state-dir") && stderr.contains("config.yaml"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("not started"));
}

/// A damaged state.json is a documented code, and `status` says what the
/// next run does with it.
#[test]
fn status_of_a_damaged_state_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("state.json"), "{\"version\": 1, \"deploym").unwrap();
    let out = agent()
        .args(["status", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("state.json.corrupt") && stdout.contains("starts over"),
        "{stdout}"
    );
}

/// `--wait` with no state gives up at `--timeout` and says meanwhile what
/// it waits for.
#[test]
fn status_wait_without_state_times_out_with_progress() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = agent()
        .args(["status", "--wait", "--timeout", "1s", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("waiting (0s so far): not started") && stderr.contains("giving up"),
        "{stderr}"
    );
}
