//! Fault cases: bootstrap Secrets, stopped at each boundary: before the
//! apply is written, after it is written but before state.json records it,
//! and after the record but before the file is removed.

use super::*;

const CLOUD: &str = "/api/v1/namespaces/flux-system/secrets/cloud-credentials";
const GHCR: &str = "/api/v1/namespaces/flux-system/secrets/ghcr-pull";
const STORAGE: &str = "/api/v1/namespaces/flux-system/secrets/object-storage";

/// The three upstream manifests, and `fault` on applying `secret`.
fn refused(sb: &Sandbox, secret: &str, times: usize, fault: Fault) {
    sb.write_upstream_secrets();
    api_fault(sb, Method::PATCH, secret, times, fault);
}

/// Before the restart: `file` is still there (its Secret is not recorded),
/// and the API server behaves again.
fn kept_then_heal(sb: &Sandbox, file: &str) {
    assert!(
        sb.manifests_left().iter().any(|f| f == file),
        "{file} went before its Secret was recorded"
    );
    sb.api.clear_faults();
}

pub(crate) const CASES: &[Case] = &[
    Case {
        name: "secret_killed_before_write",
        area: Area::Secrets,
        fault: "SIGKILL while the API server refuses a bootstrap Secret's apply (503)",
        start: Start::DEFAULT,
        setup: |sb| {
            let fault = status(503, "ServiceUnavailable", "etcd leader changed");
            refused(sb, CLOUD, 1000, fault);
        },
        drive: Drive::Signal {
            ready: |_, e| e.contains("applying Secret flux-system/cloud-credentials"),
            signal: Signal::SIGKILL,
        },
        exit: None,
        says: "",
        outcome: "killed; its file stays (the Secret is not written); the restart applies all three and removes their files",
        resume: Some(|sb| kept_then_heal(sb, "cloud-credentials.yaml")),
    },
    Case {
        name: "secret_killed_after_write_before_record",
        area: Area::Secrets,
        fault: "SIGKILL after the API server wrote a bootstrap Secret, before the agent heard back",
        start: Start::DEFAULT,
        setup: |sb| refused(sb, GHCR, 1, Fault::CommitThenDelay(Duration::from_secs(60))),
        drive: Drive::Signal {
            ready: |sb, _| sb.api.object(GHCR).is_some(),
            signal: Signal::SIGKILL,
        },
        exit: None,
        says: "",
        outcome: "killed; state.json does not record it, so its file stays; the restart applies it again (idempotent) and removes the file",
        resume: Some(|sb| kept_then_heal(sb, "ghcr-pull.yaml")),
    },
    Case {
        name: "secret_recorded_file_not_removable",
        area: Area::Secrets,
        fault: "`secrets_dir` read-only: a Secret is written and recorded, but its file cannot be overwritten",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.write_upstream_secrets();
            secrets_read_only(sb);
        },
        drive: Drive::Run,
        exit: Some(78),
        says: "the agent needs write access to `secrets_dir`",
        outcome: "exit 78 naming the file and ReadWritePaths=; the restart removes the recorded file unread and applies the rest",
        resume: Some(secrets_writable),
    },
    Case {
        name: "secret_echoed_in_status",
        area: Area::Secrets,
        fault: "the API server (a webhook) refuses a bootstrap Secret with a Status that quotes it",
        start: Start::DEFAULT,
        setup: |sb| {
            let fault = Fault::EchoInStatus {
                code: 422,
                reason: "Invalid",
            };
            refused(sb, STORAGE, 1, fault);
        },
        drive: Drive::Run,
        exit: Some(65),
        says: "withheld",
        outcome: "exit 65; the message is withheld, no value anywhere; its file stays for the operator",
        resume: Some(|sb| sb.api.clear_faults()),
    },
];
