//! Scenarios: the whole job, restarts, signals, the done stamp and the sandbox.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_does_the_whole_job() {
    let sb = Sandbox::new();
    let out = sb.run().await;
    assert_exit(&out, 0);

    // The Secret, exactly as the contract says.
    let secret = sb.seed_secret().expect("seed Secret created");
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(
        secret["metadata"]["annotations"],
        json!({"openbao.openova.io/single-use": "true",
               "meta.helm.sh/release-name": "openbao", "meta.helm.sh/release-namespace": "openbao"})
    );
    assert_eq!(
        secret["metadata"]["labels"],
        json!({"app.kubernetes.io/managed-by": "Helm"})
    );
    let data = secret["data"].as_object().unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), vec!["recovery-seed"]);
    let text = STANDARD
        .decode(data["recovery-seed"].as_str().unwrap())
        .unwrap();
    assert_eq!(text.len(), 44, "44-character base64 text");
    assert!(!text.contains(&b'\n'));
    assert_eq!(STANDARD.decode(&text).unwrap().len(), 32);
    assert!(
        !secret.to_string().contains("last-applied-configuration"),
        "no kubectl.kubernetes.io/last-applied-configuration copy of the seed"
    );
    assert!(
        sb.api.object("/api/v1/namespaces/openbao").is_some(),
        "namespace created"
    );

    // The kubeconfig: server rewritten, every other field identical.
    let stored = sb
        .catalyst
        .stored(DEPLOYMENT_ID)
        .expect("kubeconfig captured");
    let mut want = yaml(sb.api.kubeconfig().as_bytes());
    want["clusters"][0]["cluster"]["server"] =
        format!("https://{PUBLIC_ADDRESS}:{}", sb.api.addr().port()).into();
    assert_eq!(yaml(&stored), want);
    let puts = sb.catalyst.requests();
    assert_eq!(puts.len(), 1);
    assert_eq!(
        puts[0].authorization.as_deref(),
        Some(format!("Bearer {}", sb.token).as_str())
    );
    assert_eq!(puts[0].query, None);

    // systemd saw the phases, READY=1 once the critical work was done (here
    // with no hand-off to wait for), then the final status.
    let lines = sb.notify.lines();
    let ready: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i] == "READY=1")
        .collect();
    assert_eq!(ready.len(), 1, "READY=1 once: {lines:#?}");
    assert_eq!(
        lines[ready[0] + 1],
        "STATUS=kubeconfig, seed and bootstrap Secrets done; handing the cluster to Flux"
    );
    assert!(
        lines[lines.len() - 1]
            .starts_with("STATUS=Done: kubeconfig delivered; seed: recovery seed written"),
        "{lines:#?}"
    );
    let statuses = sb.notify.statuses();
    let first = |needle: &str| {
        statuses
            .iter()
            .position(|s| s.contains(needle))
            .unwrap_or_else(|| panic!("{needle}: {statuses:#?}"))
    };
    assert!(first("k3s.yaml") < first("waiting for the API server"));
    assert!(first("waiting for the API server") < first("kubeconfig: delivering"));
    assert!(first("waiting for the API server") < first("seed: writing Secret"));
    assert!(
        !statuses.last().unwrap().contains("wait:"),
        "a finished wait leaves the status line"
    );

    // State and stamp.
    for phase in ["wait", "kubeconfig", "seed"] {
        assert_eq!(phase_outcome(&sb, phase), "done", "{phase}");
    }
    assert!(sb.state_dir().join("done").exists());
    sb.assert_no_leaks(&[&out.stderr, &out.stdout]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_seed_phase_neither_reseeds_nor_resends() {
    let sb = Sandbox::new();
    // First run: the seed is written, catalyst-api is overloaded until the deadline.
    sb.write_config("deadline: 2s\n");
    sb.catalyst
        .script((0..100).map(|_| Step::error(503, "kubeconfigs-dir-unwritable")));
    let out = sb.run().await;
    assert_exit(&out, 69);
    assert!(
        out.stderr.contains("gave up after") && out.stderr.contains("kubeconfigs-dir-unwritable"),
        "{}",
        out.stderr
    );
    assert_eq!(phase_outcome(&sb, "seed"), "done");
    assert_eq!(phase_outcome(&sb, "kubeconfig"), "failed");
    assert!(
        sb.state()["kubeconfig"]["detail"]
            .as_str()
            .unwrap()
            .contains("gave up")
    );
    let seed = sb.seed_secret().unwrap();
    assert_eq!(sb.api.count(&Method::POST, SECRETS), 1);

    // Second run: catalyst-api healthy. The seed is not touched again.
    sb.catalyst.clear_script();
    sb.write_config("");
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_eq!(sb.api.count(&Method::POST, SECRETS), 1, "no second seed");
    assert_eq!(sb.seed_secret().unwrap(), seed);
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 1);

    // Third run without the done stamp (as after a crash right before it):
    // the state file says everything is done; nothing is sent again.
    std::fs::remove_file(sb.state_dir().join("done")).unwrap();
    let puts = sb.catalyst.requests().len();
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_eq!(sb.catalyst.requests().len(), puts, "no second PUT");
    assert_eq!(sb.api.count(&Method::POST, SECRETS), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_retry_saves_state_and_resume_completes() {
    let sb = Sandbox::new();
    sb.catalyst
        .script((0..1000).map(|_| Step::error(503, "write-failed")));
    let agent = sb.spawn(&["run"]);
    // Mid-retry, and once the seed (which runs alongside) is done: on a
    // busy machine the second retry can come before the seed's create.
    agent
        .wait_for_stderr(Duration::from_secs(20), |e| {
            e.matches("attempt").count() >= 2 && e.contains("seed phase done")
        })
        .await;
    agent.signal(Signal::SIGTERM);
    let out = agent.finish().await;
    assert_exit(&out, 75);
    assert_stderr(&out, "stopped by SIGTERM");
    assert!(sb.notify.lines().contains(&"STOPPING=1".to_string()));
    assert!(!sb.notify.lines().contains(&"READY=1".to_string()));
    assert_eq!(phase_outcome(&sb, "kubeconfig"), "interrupted");
    assert_eq!(phase_outcome(&sb, "seed"), "done");
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 0);

    sb.catalyst.clear_script();
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 1);
    assert_eq!(
        sb.api.count(&Method::POST, SECRETS),
        1,
        "the seed was not written twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_while_waiting_for_the_api_server() {
    let (sb, agent) = agent_waiting_for_the_api_server().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    agent.signal(Signal::SIGINT);
    let out = agent.finish().await;
    assert_exit(&out, 75);
    assert_eq!(phase_outcome(&sb, "wait"), "interrupted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn done_stamp_means_nothing_to_do() {
    let sb = Sandbox::new();
    assert_exit(&sb.run().await, 0);
    let (api, puts) = (sb.api.requests().len(), sb.catalyst.requests().len());
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_stderr(&out, "an earlier run finished");
    assert_eq!(
        (sb.api.requests().len(), sb.catalyst.requests().len()),
        (api, puts),
        "no request at all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_on_the_same_state_refuses() {
    let (sb, first) = agent_waiting_for_the_api_server().await;
    let second = sb.run().await;
    assert_exit(&second, 75);
    assert_stderr(&second, "is already working in");
    sb.api.set_up(true);
    assert_exit(&first.finish().await, 0);
}

/// Journal priorities follow syslog's meaning: INFO is informational (6),
/// not notice (5), so `journalctl -p notice` shows only what needs a look.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_priorities_are_syslog_levels() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: spawn_journaled needs root");
        return;
    }
    let sb = Sandbox::new();
    sb.catalyst.script([Step::error(503, "write-failed")]);
    let agent = sb.spawn_journaled(&["run"], &[]);
    let pid = agent.pid();
    assert_exit(&agent.finish().await, 0);
    let entries: Vec<_> = sb
        .journal
        .entries()
        .into_iter()
        .filter(|e| e.pid == pid)
        .collect();
    let priority = |needle: &str| {
        entries
            .iter()
            .find(|e| e.get("MESSAGE").is_some_and(|m| m.contains(needle)))
            .and_then(|e| e.get("PRIORITY"))
            .unwrap_or_else(|| panic!("{needle}: {entries:#?}"))
    };
    assert_eq!(priority("wait phase started"), "6");
    assert_eq!(priority("attempt 1 failed"), "4");
    // Every INFO line an SRE may search for has its MESSAGE_ID.
    let id = |needle: &str| {
        entries
            .iter()
            .find(|e| e.get("MESSAGE").is_some_and(|m| m.contains(needle)))
            .and_then(|e| e.get("MESSAGE_ID"))
            .unwrap_or_else(|| panic!("{needle}: no MESSAGE_ID"))
    };
    assert_eq!(id("rewritten to"), "ad0092d0f3784eeda56a734c492ceb1f");
    assert_eq!(
        id("sending the kubeconfig to"),
        "1b2da0855a5a490188c64f5626e8a931"
    );
    // CODE_FILE/CODE_LINE name where each event was logged, not the one
    // line in journal.rs that every event went through.
    let sites: std::collections::BTreeSet<_> = entries
        .iter()
        .filter(|e| e.get("MESSAGE_ID").is_some())
        .map(|e| (e.get("CODE_FILE"), e.get("CODE_LINE")))
        .collect();
    assert!(
        sites.len() > 3
            && sites
                .iter()
                .all(|(f, _)| f.as_deref() != Some("agent/src/report/journal.rs")),
        "{sites:?}"
    );
}

/// The sandbox binary (README's first command): `--help` is usage, not an
/// error, and a run removes its temporary directory (token, client key,
/// state) before it exits with the agent's code.
#[test]
fn sandbox_prints_usage_and_leaves_nothing_behind() {
    let sandbox = env!("CARGO_BIN_EXE_sandbox");
    let help = std::process::Command::new(sandbox)
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--cert=fallback"));

    let bad = std::process::Command::new(sandbox)
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("usage:") && !stderr.contains("backtrace"),
        "{stderr}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let run = std::process::Command::new(sandbox)
        .env("TMPDIR", tmp.path())
        .env(
            "CATALYST_BOOTSTRAP_BIN",
            catalyst_bootstrap_tests::sandbox::agent_binary(),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(run.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("retry.overloaded_delay"),
        "the banner names the shortened settings:\n{stdout}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "the sandbox left {left:?} behind");
}
