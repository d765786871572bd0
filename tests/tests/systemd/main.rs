//! The packaged agent under a real systemd (PID 1 in a systemd-nspawn
//! container), against the fakes on the host's loopback.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use catalyst_bootstrap_tests::catalyst::{Step, sha256_hex};
use catalyst_bootstrap_tests::container::Container;
use catalyst_bootstrap_tests::faults::INJECTED;
use catalyst_bootstrap_tests::http::PlainServer;
use catalyst_bootstrap_tests::node::{
    UNIT, assert_token_gone, diagnose, fakes, provision, retrying, started, wait_until,
};
use catalyst_bootstrap_tests::sandbox::{DEPLOYMENT_ID, PUBLIC_ADDRESS, SOVEREIGN_FQDN, Sandbox};
use catalyst_bootstrap_tests::ship::{artifacts, render_cloud_init};
use serde_json::Value;

mod cloud_init;
mod handoff;
mod token;

const SECRETS: &str = "/api/v1/namespaces/openbao/secrets";

/// The job ran and the unit ended: without RemainAfterExit= a finished
/// unit is inactive (dead) with result success, and the agent left its
/// done stamp.
fn finished_ok(c: &Container) -> bool {
    c.show(UNIT, "ActiveState") == "inactive"
        && c.show(UNIT, "Result") == "success"
        && c.exec(&["test", "-e", "/var/lib/catalyst-bootstrap/done"])
            .status
            .success()
}

/// Waits for [`finished_ok`], showing what systemd says when it does not come.
fn wait_finished(c: &Container, what: &str) {
    let end = Instant::now() + Duration::from_secs(90);
    while !finished_ok(c) {
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}: ActiveState={} Result={}\n{}",
            c.show(UNIT, "ActiveState"),
            c.show(UNIT, "Result"),
            diagnose(c)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// systemd restarted the agent once (NRestarts is reset when the unit ends,
/// so its log says it).
fn assert_restarted_once(c: &Container) {
    let log = c.sh("journalctl -u catalyst-bootstrap --no-pager -o cat");
    assert!(
        log.contains("restart counter is at 1") && !log.contains("restart counter is at 2"),
        "{}",
        diagnose(c)
    );
}

fn journal_entries(c: &Container) -> Vec<Value> {
    c.sh("journalctl -u catalyst-bootstrap -o json --no-pager")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[test]
fn unit_does_the_job_and_reports_to_systemd_and_journald() {
    let (_rt, sb) = fakes();
    let busy = || Step::Respond {
        status: 503,
        body: r#"{"error":"write-failed","detail":"disk busy"}"#.into(),
        retry_after: None,
    };
    sb.catalyst.script([busy(), busy()]);
    let c = Container::boot(&[(&artifacts().dir, "/mnt/pkg")]);
    provision(&c, &sb);

    // Watch the status line while `systemctl start` blocks.
    let done = AtomicBool::new(false);
    let (start, statuses) = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut seen: Vec<String> = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let text = c.show(UNIT, "StatusText");
                if !text.is_empty() && seen.last() != Some(&text) {
                    seen.push(text);
                }
                std::thread::sleep(Duration::from_millis(30));
            }
            seen
        });
        let start = c.exec(&["systemctl", "start", UNIT]);
        done.store(true, Ordering::Relaxed);
        (start, watcher.join().unwrap())
    });
    assert!(
        start.status.success(),
        "systemctl start failed:\n{}",
        diagnose(&c)
    );
    // start returned only after READY=1, that is after the job.
    assert_eq!(
        sb.catalyst.store_count(DEPLOYMENT_ID),
        1,
        "kubeconfig captured before start returned"
    );
    assert!(
        sb.seed_secret().is_some(),
        "seed written before start returned"
    );
    wait_finished(&c, "the unit to end");
    let status = diagnose(&c);
    assert!(
        status.contains("Deactivated successfully")
            && status.contains("Done: kubeconfig delivered"),
        "systemctl status does not say the job succeeded:\n{status}"
    );
    println!("StatusText seen during start:\n  {}", statuses.join("\n  "));
    println!("What an SRE sees:\n{}", diagnose(&c));
    assert!(
        statuses
            .iter()
            .any(|s| s.contains("attempt 1 failed") && s.contains("503 write-failed")),
        "{statuses:#?}"
    );

    // Structured journal entries, and the catalog explains them.
    let entries = journal_entries(&c);
    let ours: Vec<&Value> = entries
        .iter()
        .filter(|e| e["SYSLOG_IDENTIFIER"] == "catalyst-bootstrap" && e.get("MESSAGE_ID").is_some())
        .collect();
    assert!(!ours.is_empty(), "no entry of the agent with MESSAGE_ID");
    assert!(
        ours.iter()
            .all(|e| e["CATALYST_DEPLOYMENT_ID"] == DEPLOYMENT_ID),
        "{ours:#?}"
    );
    let phases: Vec<&str> = ours
        .iter()
        .filter_map(|e| e["CATALYST_PHASE"].as_str())
        .collect();
    for phase in ["wait", "kubeconfig", "seed"] {
        assert!(phases.contains(&phase), "no entry for phase {phase}");
    }
    assert!(
        ours.iter()
            .any(|e| e["MESSAGE_ID"] == "c0af651214a84c2aa716219b3091166e"
                && e.get("CATALYST_ATTEMPT").is_none())
    );
    assert!(
        entries.iter().any(|e| e.get("CATALYST_ATTEMPT").is_some()),
        "attempt numbers are recorded"
    );
    let explained = c.sh("journalctl -u catalyst-bootstrap --catalog --no-pager");
    assert!(
        explained.contains("catalyst-bootstrap delivered the kubeconfig"),
        "{explained}"
    );

    // The single-use credential is gone, systemd's copy too; no secret in
    // journal or state.
    assert_token_gone(&c);
    let journal = c.sh("journalctl -o export --no-pager");
    assert!(
        !journal.contains(&sb.token),
        "the bearer token is in the journal"
    );
    let state = c.sh("cat /var/lib/catalyst-bootstrap/*");
    assert!(!state.contains(&sb.token));
    let wire = sb.seed_secret().unwrap()["data"]["recovery-seed"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !journal.contains(&wire) && !state.contains(&wire),
        "the seed leaked"
    );

    // The done stamp: a restart does nothing and sends nothing.
    let (puts, api) = (sb.catalyst.requests().len(), sb.api.requests().len());
    c.sh("systemctl restart catalyst-bootstrap");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(c.show(UNIT, "ConditionResult"), "no");
    assert_eq!(
        (sb.catalyst.requests().len(), sb.api.requests().len()),
        (puts, api),
        "a request after the stamp"
    );
}

#[test]
fn kill_9_mid_retry_then_systemd_restart_ends_with_one_seed_and_one_kubeconfig() {
    let (_rt, sb, c) = retrying(8, 2);

    // While it retries: the token is in neither argv nor the environment.
    let pid = c.show(UNIT, "MainPID");
    assert_ne!(pid, "0");
    let exposed = c.sh(&format!(
        "tr '\\0' '\\n' < /proc/{pid}/cmdline; tr '\\0' '\\n' < /proc/{pid}/environ"
    ));
    assert!(!exposed.contains(&sb.token), "bearer in argv or environ");
    assert!(
        exposed.contains("CREDENTIALS_DIRECTORY="),
        "the credential is passed as a systemd credential"
    );

    c.sh(&format!("kill -9 {pid}"));
    wait_finished(&c, "systemd to restart the agent and the job to finish");
    assert_restarted_once(&c);
    assert_eq!(
        sb.catalyst.store_count(DEPLOYMENT_ID),
        1,
        "exactly one stored kubeconfig"
    );
    assert_eq!(
        sb.api.count(&http::Method::POST, SECRETS),
        1,
        "exactly one seed created"
    );
}

/// catalyst-api's error text carrying `\nREADY=1\n` (and terminal escapes)
/// cannot make systemd think the unit is ready: start stays pending, the
/// credential stays, and after a SIGKILL mid-retry the restart completes the
/// job.
#[test]
fn catalyst_api_text_cannot_tell_systemd_the_job_is_done() {
    let (_rt, sb) = fakes();
    let injected = || Step::Respond {
        status: 503,
        body: serde_json::json!({"error": INJECTED, "detail": "x\u{7}"}).to_string(),
        retry_after: None,
    };
    sb.catalyst.script((0..1000).map(|_| injected()));
    let c = started(&sb);
    wait_until(
        "the agent to retry catalyst-api's 503",
        Duration::from_secs(60),
        || c.show(UNIT, "StatusText").contains("READY=1"),
    );
    // One line: the agent sent `node-b\nREADY=1…` escaped; systemd 252
    // drops the backslashes when it splits the datagram into lines.
    let status = c.show(UNIT, "StatusText");
    assert!(
        status.contains("node-bnREADY=1nMAINPID=1n") && !status.contains('\u{1b}'),
        "{status}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        c.show(UNIT, "ActiveState"),
        "activating",
        "systemd heard READY=1 before the job was done:\n{}",
        diagnose(&c)
    );
    assert!(
        c.exec(&["test", "-e", "/etc/credstore/kubeconfig-bearer"])
            .status
            .success()
    );
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 0);

    let pid = c.show(UNIT, "MainPID");
    c.sh(&format!("kill -9 {pid}"));
    sb.catalyst.clear_script();
    wait_finished(&c, "the restart to finish the job");
    assert_restarted_once(&c);
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 1);
    // The kill may come between the seed's create and its record: the
    // restart's create is then answered 409 and keeps it.
    assert_eq!(
        sb.api
            .creations("/api/v1/namespaces/openbao/secrets/openbao-recovery-seed"),
        1,
        "one seed created"
    );
    assert_token_gone(&c);
}

/// A failure an operator fixes (here a configuration error, 78) keeps the
/// token for the restart, though systemd's copy goes with the unit; a
/// rejected token (77) is worthless and goes too.
#[test]
fn the_token_stays_for_a_fixable_failure_and_goes_with_a_rejection() {
    let (_rt, sb) = fakes();
    sb.catalyst.forget_token(DEPLOYMENT_ID);
    let c = Container::boot(&[(&artifacts().dir, "/mnt/pkg")]);
    provision(&c, &sb);
    c.write(
        "/etc/catalyst-bootstrap/config.d/50-typo.yaml",
        "deadlin: 5m\n",
        "0644",
    );
    let failed = |code: &str| {
        wait_until("the unit to fail", Duration::from_secs(60), || {
            c.show(UNIT, "ActiveState") == "failed"
        });
        assert_eq!(c.show(UNIT, "ExecMainStatus"), code, "{}", diagnose(&c));
        assert_eq!(c.show(UNIT, "NRestarts"), "0");
    };
    let _ = c.exec(&["systemctl", "start", UNIT]);
    failed("78");
    assert!(
        c.exec(&["test", "-e", "/etc/credstore/kubeconfig-bearer"])
            .status
            .success(),
        "the token went with a configuration error:\n{}",
        diagnose(&c)
    );
    assert!(
        !c.exec(&["test", "-e", "/run/credentials/catalyst-bootstrap.service"])
            .status
            .success()
    );

    c.sh("rm /etc/catalyst-bootstrap/config.d/50-typo.yaml; systemctl reset-failed catalyst-bootstrap");
    let _ = c.exec(&["systemctl", "start", UNIT]);
    failed("77");
    assert_token_gone(&c);
}

/// Two machines booted at once each have their own cgroup tree: when they
/// shared nspawn's `/payload`, one machine's systemd removed the unit's
/// cgroup while the other's started ExecStopPost= in it (`219/CGROUP`).
#[test]
fn machines_booted_together_do_not_share_a_cgroup() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Container::boot(&[]));
        let b = s.spawn(|| Container::boot(&[]));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (a, b) = (a.cgroups(), b.cgroups());
    assert!(!a.is_empty(), "no cgroup for the machine's PID 1");
    for line in a
        .lines()
        .filter(|l| l.contains("name=systemd") || l.starts_with("0::"))
    {
        assert!(
            !b.lines().any(|l| l == line),
            "both machines' PID 1 are in {line}"
        );
    }
}
