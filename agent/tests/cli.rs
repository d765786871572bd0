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
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("not started"));
}
