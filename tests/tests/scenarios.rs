//! End-to-end scenarios: the real binary against the fakes.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use catalyst_bootstrap_tests::apiserver::Fault;
use catalyst_bootstrap_tests::catalyst::Step;
use catalyst_bootstrap_tests::helm;
use catalyst_bootstrap_tests::sandbox::{
    DEPLOYMENT_ID, Finished, PUBLIC_ADDRESS, SOVEREIGN_FQDN, Sandbox, Signal, Start,
};
use http::Method;
use serde_json::{Value, json};

const SECRETS: &str = "/api/v1/namespaces/openbao/secrets";
const MARKER: &str = "/api/v1/namespaces/openbao/secrets/openbao-init-marker";

fn assert_exit(out: &Finished, code: i32) {
    assert_eq!(
        out.code,
        Some(code),
        "unexpected exit; stderr:\n{}",
        out.stderr
    );
}

/// The agent said `needle` on stderr.
fn assert_stderr(out: &Finished, needle: &str) {
    assert!(
        out.stderr.contains(needle),
        "{needle:?} not in stderr:\n{}",
        out.stderr
    );
}

fn yaml(text: &[u8]) -> Value {
    serde_saphyr::from_slice(text).expect("valid YAML")
}

/// A sandbox whose API server is down, and an agent already waiting for it.
async fn agent_waiting_for_the_api_server() -> (Sandbox, catalyst_bootstrap_tests::sandbox::Agent) {
    let sb = Sandbox::with(Start {
        api_up: false,
        ..Start::default()
    });
    let agent = sb.spawn(&["run"]);
    agent
        .wait_for_stderr(Duration::from_secs(20), |e| {
            e.contains("wait phase started")
        })
        .await;
    (sb, agent)
}

fn phase_outcome(sb: &Sandbox, phase: &str) -> String {
    sb.state()[phase]["outcome"].as_str().unwrap().to_string()
}

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

    // systemd saw the phases, then READY=1 with the final status.
    let lines = sb.notify.lines();
    let ready = lines
        .iter()
        .position(|l| l == "READY=1")
        .expect("READY=1 sent");
    assert_eq!(
        ready,
        lines.len() - 2,
        "READY=1 comes last, with the final STATUS: {lines:#?}"
    );
    assert!(
        lines[ready + 1]
            .starts_with("STATUS=Done: kubeconfig delivered; seed: recovery seed written")
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
async fn api_server_up_late() {
    let sb = Sandbox::with(Start {
        api_up: false,
        api_ready: false,
        ..Start::default()
    });
    let agent = sb.spawn(&["run"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    sb.api.set_up(true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        sb.catalyst.requests().is_empty(),
        "no PUT before the API server is ready"
    );
    sb.api.set_ready(true);
    let out = agent.finish().await;
    assert_exit(&out, 0);
    assert!(
        sb.notify
            .statuses()
            .iter()
            .any(|s| s.contains("waiting for the API server") && s.contains("s so far"))
    );
    assert!(sb.api.count(&Method::GET, "/readyz") >= 2);
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_appears_late() {
    let sb = Sandbox::with(Start {
        kubeconfig: false,
        ..Start::default()
    });
    let agent = sb.spawn(&["run"]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(sb.api.requests().is_empty());
    sb.write_kubeconfig();
    let out = agent.finish().await;
    assert_exit(&out, 0);
    assert!(
        sb.notify
            .statuses()
            .iter()
            .any(|s| s.contains("k3s.yaml does not exist yet"))
    );
    assert!(sb.seed_secret().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalyst_api_503_three_times_then_204() {
    let sb = Sandbox::new();
    sb.catalyst
        .script((0..3).map(|_| Step::error(503, "write-failed")));
    let out = sb.run().await;
    assert_exit(&out, 0);
    let statuses: Vec<_> = sb.catalyst.requests().iter().map(|p| p.status).collect();
    assert_eq!(statuses, vec![Some(503), Some(503), Some(503), Some(204)]);
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 1);
    assert_eq!(sb.state()["kubeconfig"]["attempts"], 4);
    let retry = sb
        .notify
        .statuses()
        .into_iter()
        .find(|s| s.contains("attempt 3 failed"))
        .expect("retry status");
    assert!(
        retry.contains("503 write-failed") && retry.contains("next try in"),
        "{retry}"
    );
    assert!(
        sb.notify
            .lines()
            .iter()
            .any(|l| l.starts_with("EXTEND_TIMEOUT_USEC="))
    );
    sb.assert_no_leaks(&[&out.stderr]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let sb = Sandbox::new();
    sb.catalyst.script([Step::Respond {
        status: 429,
        body: r#"{"error":"rate-limited"}"#.into(),
        retry_after: Some("2".into()),
    }]);
    let out = sb.run().await;
    assert_exit(&out, 0);
    let puts = sb.catalyst.requests();
    assert_eq!(puts.len(), 2);
    let gap = puts[1].at - puts[0].at;
    // max_delay in the sandbox is 400 ms: only Retry-After explains 2 s.
    assert!(gap >= Duration::from_secs(2), "second try after {gap:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_response_then_already_set_is_success() {
    let sb = Sandbox::new();
    sb.catalyst.script([Step::StoreThenDrop]);
    let out = sb.run().await;
    assert_exit(&out, 0);
    let statuses: Vec<_> = sb.catalyst.requests().iter().map(|p| p.status).collect();
    assert_eq!(statuses, vec![None, Some(403)], "dropped, then already-set");
    assert_eq!(
        sb.catalyst.store_count(DEPLOYMENT_ID),
        1,
        "exactly one stored kubeconfig"
    );
    assert_stderr(&out, "already has this deployment's kubeconfig");
    assert_eq!(
        sb.state()["kubeconfig"]["detail"],
        "already captured by an earlier attempt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_token_exits_77_after_one_request() {
    for (step, code) in [
        (Step::error(401, "missing-bearer"), "missing-bearer"),
        (Step::error(403, "invalid-bearer"), "invalid-bearer"),
        (Step::error(403, "no-bearer-hash"), "no-bearer-hash"),
    ] {
        let sb = Sandbox::new();
        sb.catalyst.script([step]);
        let out = sb.run().await;
        assert_exit(&out, 77);
        assert_eq!(
            sb.catalyst.requests().len(),
            1,
            "{code}: exactly one request"
        );
        assert!(
            out.stderr.contains(code) && out.stderr.contains("bearer token rejected"),
            "{}",
            out.stderr
        );
        assert_eq!(phase_outcome(&sb, "kubeconfig"), "failed");
        assert!(
            sb.seed_secret().is_some(),
            "the seed does not depend on the PUT"
        );
        assert!(!sb.state_dir().join("done").exists());
        assert!(
            sb.notify
                .statuses()
                .last()
                .unwrap()
                .starts_with("Failed (exit 77)")
        );
        sb.assert_no_leaks(&[&out.stderr]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_token_mismatch_is_rejected_by_the_contract_handler() {
    let sb = Sandbox::new();
    sb.write_secret_file(
        "bearer",
        &format!("{}\n", catalyst_bootstrap_tests::sandbox::new_token()),
    );
    let out = sb.run().await;
    assert_exit(&out, 77);
    assert_eq!(sb.catalyst.requests()[0].status, Some(403));
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unprocessable_body_exits_65_and_redirect_exits_76_without_following() {
    let sb = Sandbox::new();
    sb.catalyst.script([Step::error(422, "body-too-large")]);
    assert_exit(&sb.run().await, 65);
    assert_eq!(sb.catalyst.requests().len(), 1);

    let sb = Sandbox::new();
    let elsewhere = Sandbox::new();
    sb.catalyst.script([Step::Redirect {
        status: 307,
        location: format!("{}/steal", elsewhere.catalyst.url()),
    }]);
    let out = sb.run().await;
    assert_exit(&out, 76);
    assert_stderr(&out, "not following");
    assert!(
        elsewhere.catalyst.requests().is_empty(),
        "the bearer token must not travel to the redirect target"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_is_retried_and_logged_loudly() {
    let sb = Sandbox::new();
    sb.catalyst.script([Step::Respond {
        status: 404,
        body: "deployment not found\n".into(),
        retry_after: None,
    }]);
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_eq!(sb.catalyst.requests().len(), 2);
    assert!(
        out.stderr.contains("ERROR") && out.stderr.contains("does not know deployment"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_seed_is_kept_byte_for_byte() {
    let sb = Sandbox::new();
    sb.api.insert_secret(
        "openbao",
        "openbao-recovery-seed",
        json!({"recovery-seed": STANDARD.encode("a-peer-wrote-this-seed-before-us-000000000000")}),
    );
    let before = sb.seed_secret().unwrap();
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_eq!(
        sb.seed_secret().unwrap()["data"],
        before["data"],
        "kept byte for byte"
    );
    assert_stderr(&out, "already holds a seed; kept it");
    // Nothing but the coordination Lease is ever updated, and the seed
    // Secret's ownership metadata patched in (see the Helm scenarios).
    assert!(sb.api.requests().iter().all(|r| {
        r.path.contains("/leases/")
            || (r.method == Method::PATCH && r.path == SEED)
            || (r.method != Method::PUT && r.method != Method::PATCH && r.method != Method::DELETE)
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_marker_means_no_seed() {
    let sb = Sandbox::new();
    sb.api.insert(MARKER, json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"openbao-init-marker","namespace":"openbao","labels":{"catalyst.openova.io/component":"openbao-init-marker"}},"data":{"initialised-at":"MjAyNi0wMS0wMQ=="}}));
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert!(sb.seed_secret().is_none());
    assert_eq!(sb.api.count(&Method::POST, SECRETS), 0);
    assert_stderr(&out, "OpenBao is already initialised; no seed written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_after_secret_commit_keeps_our_own_seed() {
    let sb = Sandbox::new();
    sb.api
        .fault(Method::POST, SECRETS, 1, Fault::CommitThenDrop);
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_eq!(
        sb.api.count(&Method::POST, SECRETS),
        2,
        "retried after the reset"
    );
    assert_stderr(&out, "kept it unchanged");
    assert!(sb.seed_secret().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_errors_on_create_are_retried() {
    let sb = Sandbox::new();
    sb.api.fault(
        Method::POST,
        SECRETS,
        1,
        Fault::Status {
            code: 500,
            reason: "InternalError",
            message: "etcdserver: request timed out".into(),
        },
    );
    sb.api.fault(
        Method::POST,
        SECRETS,
        1,
        Fault::Status {
            code: 429,
            reason: "TooManyRequests",
            message: "slow down".into(),
        },
    );
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_eq!(sb.api.count(&Method::POST, SECRETS), 3);
    assert_stderr(&out, "500 InternalError: etcdserver: request timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_namespace_is_waited_out() {
    let sb = Sandbox::new();
    sb.api.insert_namespace("openbao");
    sb.api.terminate_namespace("openbao");
    let agent = sb.spawn(&["run"]);
    agent
        .wait_for_stderr(Duration::from_secs(20), |e| e.contains("being terminated"))
        .await;
    sb.api.finish_termination("openbao");
    let out = agent.finish().await;
    assert_exit(&out, 0);
    assert!(sb.seed_secret().is_some());
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
    agent
        .wait_for_stderr(Duration::from_secs(20), |e| {
            e.matches("attempt").count() >= 2
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_missing_at_the_deadline_exits_69_naming_the_file() {
    let sb = Sandbox::with(Start {
        kubeconfig: false,
        ..Start::default()
    });
    sb.write_config("deadline: 1s\n");
    let out = sb.run().await;
    assert_exit(&out, 69);
    assert!(
        out.stderr.contains("k3s.yaml does not exist yet")
            && out.stderr.contains("deadline passed"),
        "{}",
        out.stderr
    );
    assert_eq!(phase_outcome(&sb, "wait"), "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_kubeconfigs_exit_65() {
    let settled = std::time::SystemTime::now() - Duration::from_secs(30);
    // kubectl refuses a repeated name; so does the agent, naming it.
    let twice = |k3s: String| {
        let twice = k3s.replacen(
            "clusters:\n",
            "clusters:\n- name: default\n  cluster: {server: https://10.0.0.1:6443}\n",
            1,
        );
        assert_ne!(twice, k3s, "the fake's kubeconfig has a clusters list");
        twice
    };
    let cases: [(&dyn Fn(String) -> String, &str); 3] = [
        (&twice, "cluster name \"default\" appears more than once"),
        (&|_| "this: [is not\n".into(), "is not a usable kubeconfig"),
        (
            &|_| "apiVersion: v1\nkind: Config\nclusters: []\n".into(),
            "it has no clusters",
        ),
    ];
    for (content, expect) in cases {
        let sb = Sandbox::new();
        std::fs::write(sb.kubeconfig_path(), content(sb.api.kubeconfig())).unwrap();
        std::fs::File::options()
            .write(true)
            .open(sb.kubeconfig_path())
            .unwrap()
            .set_modified(settled)
            .unwrap();
        let out = sb.run().await;
        assert_exit(&out, 65);
        assert!(
            out.stderr.contains(expect) && out.stderr.contains("k3s.yaml"),
            "{}",
            out.stderr
        );
        assert!(sb.catalyst.requests().is_empty());
    }

    // Under 1 MiB as k3s wrote it, over 1 MiB once rewritten to a long
    // public name: refused before sending.
    let sb = Sandbox::new();
    let long_name = format!("{}.example", ["sovereign-control-plane"; 8].join("."));
    sb.write_config(&format!("public_address: {long_name}\n"));
    let base = sb.api.kubeconfig();
    let padding = 1024 * 1024 - 100 - base.len();
    std::fs::write(
        sb.kubeconfig_path(),
        format!("{base}padding: {}\n", "x".repeat(padding)),
    )
    .unwrap();
    let out = sb.run().await;
    assert_exit(&out, 65);
    assert_stderr(&out, "catalyst-api accepts at most 1048576");
    assert!(sb.catalyst.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_goes_into_the_query() {
    let sb = Sandbox::new();
    sb.write_config("region: nbg1\n");
    assert_exit(&sb.run().await, 0);
    assert_eq!(
        sb.catalyst.requests()[0].query.as_deref(),
        Some("region=nbg1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_command_reports_each_outcome() {
    let sb = Sandbox::new();
    let out = sb.spawn(&["status"]).finish().await;
    assert_exit(&out, 3);
    assert!(out.stdout.contains("not started"), "{}", out.stdout);

    sb.catalyst.script([Step::error(401, "missing-bearer")]);
    assert_exit(&sb.run().await, 77);
    let out = sb.spawn(&["status"]).finish().await;
    assert_exit(&out, 1);
    assert!(
        out.stdout.contains("kubeconfig  failed") && out.stdout.contains("missing-bearer"),
        "{}",
        out.stdout
    );

    assert_exit(&sb.run().await, 0);
    let out = sb.spawn(&["status", "--json"]).finish().await;
    assert_exit(&out, 0);
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["result"], "done");
    assert_eq!(json["state"]["kubeconfig"]["outcome"], "done");
    assert_eq!(json["state"]["kubeconfig"]["attempts"], 2);
    assert_eq!(json["state"]["deployment_id"], DEPLOYMENT_ID);
    // Times to the millisecond, as the log lines have them.
    let started = json["state"]["kubeconfig"]["started_at"].as_str().unwrap();
    assert_eq!(started.len(), "2026-11-22T05:14:02.711Z".len(), "{started}");
    assert!(
        started.ends_with('Z') && started.as_bytes()[19] == b'.',
        "{started}"
    );
}

/// state.json is a file anyone with root may have edited: `status` shows its
/// text escaped, never as terminal control.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_a_hostile_state_file_escaped() {
    let sb = Sandbox::new();
    sb.catalyst.script([Step::error(401, "missing-bearer")]);
    assert_exit(&sb.run().await, 77);
    let path = sb.state_dir().join("state.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    state["kubeconfig"]["detail"] = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m\nREADY=1".into();
    std::fs::write(&path, state.to_string()).unwrap();
    let out = sb.spawn(&["status"]).finish().await;
    assert_exit(&out, 1);
    assert!(
        !out.stdout.contains(['\u{1b}', '\u{7}', '\u{9b}'])
            && out.stdout.contains("\\u{1b}]0;owned"),
        "{:?}",
        out.stdout
    );
    let detail_lines = out.stdout.lines().filter(|l| l.contains("READY=1")).count();
    assert_eq!(detail_lines, 1, "{}", out.stdout);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("kubeconfig") && l.contains("\\nREADY=1"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_wait_blocks_until_done() {
    let (sb, agent) = agent_waiting_for_the_api_server().await;
    let waiter = sb.spawn(&["status", "--wait"]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiter.try_finished(),
        "status --wait returned before the job was done"
    );
    sb.api.set_up(true);
    assert_exit(&agent.finish().await, 0);
    let out = waiter.finish().await;
    assert_exit(&out, 0);
    assert!(out.stdout.contains("catalyst-bootstrap: done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_used_where_readyz_is_missing() {
    let sb = Sandbox::new();
    sb.api.fault(
        Method::GET,
        "/readyz",
        1000,
        Fault::Status {
            code: 404,
            reason: "NotFound",
            message: "the server could not find the requested resource".into(),
        },
    );
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert!(sb.api.count(&Method::GET, "/healthz") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_timeout_fires_and_the_retry_completes() {
    let sb = Sandbox::new();
    sb.write_config("read_timeout: 500ms\n");
    // The fake stalls 3 s before answering (and storing): the agent gives up
    // on that try after 500 ms and its next try is answered at once.
    sb.catalyst.script([Step::Delay(Duration::from_secs(3))]);
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_stderr(&out, "attempt 1 failed: cannot reach catalyst-api");
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 1);
    assert_eq!(sb.state()["kubeconfig"]["attempts"], 2);
}

const SEED: &str = "/api/v1/namespaces/openbao/secrets/openbao-recovery-seed";

/// The bp-openbao chart 1.2.x installs as release `openbao` in `openbao`
/// (bootstrap-kit slot 08) and renders the seed Secret itself.
fn helm_install_of_openbao(sb: &Sandbox) -> Result<(), String> {
    helm::install_over(
        &sb.seed_secret().expect("seed Secret"),
        "openbao",
        "openbao",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_seed_is_adoptable_by_todays_openbao_release() {
    let sb = Sandbox::new();
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_eq!(helm_install_of_openbao(&sb), Ok(()));
    let meta = &sb.seed_secret().unwrap()["metadata"];
    assert_eq!(meta["annotations"]["openbao.openova.io/single-use"], "true");
    assert_eq!(
        sb.api.count(&Method::PATCH, SEED),
        0,
        "created with it, not patched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_helm_release_owns_the_seed() {
    let sb = Sandbox::new();
    sb.write_config("seed:\n  helm_release:\n    name: bp-openbao\n    namespace: flux-system\n");
    assert_exit(&sb.run().await, 0);
    let secret = sb.seed_secret().unwrap();
    assert_eq!(
        helm::install_over(&secret, "bp-openbao", "flux-system"),
        Ok(())
    );
    let refused = helm_install_of_openbao(&sb).unwrap_err();
    assert!(
        refused.contains("key \"meta.helm.sh/release-name\" must equal \"openbao\": current value is \"bp-openbao\""),
        "{refused}"
    );
    assert_eq!(
        secret["metadata"]["annotations"]["openbao.openova.io/single-use"],
        "true"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_release_none_leaves_the_seed_unowned() {
    let sb = Sandbox::new();
    sb.write_config("seed:\n  helm_release: none\n");
    assert_exit(&sb.run().await, 0);
    let secret = sb.seed_secret().unwrap();
    assert!(secret["metadata"].get("labels").is_none());
    assert_eq!(
        secret["metadata"]["annotations"],
        json!({"openbao.openova.io/single-use": "true"})
    );
    assert_eq!(
        helm_install_of_openbao(&sb),
        Err(
            "Secret \"openbao-recovery-seed\" in namespace \"openbao\" exists and cannot be imported \
             into the current release: invalid ownership metadata; \
             label validation error: missing key \"app.kubernetes.io/managed-by\": must be set to \"Helm\"; \
             annotation validation error: missing key \"meta.helm.sh/release-name\": must be set to \"openbao\"; \
             annotation validation error: missing key \"meta.helm.sh/release-namespace\": must be set to \"openbao\""
                .to_string()
        )
    );
}

/// The bp-openbao init Job's read path: the Secret as JSON from the API
/// server, `data.recovery-seed`, base64-decoded: the 44-character seed.
/// Its text search for `"recovery-seed":` must find that key and nothing
/// else (labels, annotations, managedFields).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_job_reads_the_seed_from_the_stored_object() {
    let sb = Sandbox::new();
    assert_exit(&sb.run().await, 0);
    let (code, text) = sb.api.fetch(SEED).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(text.matches("\"recovery-seed\":").count(), 1, "{text}");
    assert!(
        text.contains("managedFields"),
        "the object as stored, with managedFields"
    );
    let secret: Value = serde_json::from_str(&text).unwrap();
    let seed = STANDARD
        .decode(secret["data"]["recovery-seed"].as_str().unwrap())
        .unwrap();
    assert_eq!(seed.len(), 44);
    assert!(
        seed.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(c))
    );
    assert_eq!(STANDARD.decode(&seed).unwrap().len(), 32);
    // What the Job takes after the key is the value itself.
    let after = &text[text.find("\"recovery-seed\":").unwrap() + 16..];
    assert!(after.starts_with(&format!(
        "\"{}\"",
        secret["data"]["recovery-seed"].as_str().unwrap()
    )));
    assert_eq!(helm_install_of_openbao(&sb), Ok(()));
}

/// A seed Secret from before the default: `existing` is its metadata.
async fn existing_seed_gets_ownership(existing: Value) -> (Sandbox, Finished, Value) {
    let sb = Sandbox::new();
    sb.api.insert_namespace("openbao");
    let mut meta = json!({"name": "openbao-recovery-seed", "namespace": "openbao"});
    merge(&mut meta, &existing);
    sb.api.insert(
        SEED,
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta,
               "data": {"recovery-seed": STANDARD.encode("a-peer-wrote-this-seed-before-us-0000000000=")}}),
    );
    let before = sb.seed_secret().unwrap();
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_eq!(
        sb.seed_secret().unwrap()["data"],
        before["data"],
        "the seed is never rewritten"
    );
    assert_eq!(sb.api.creations(SEED), 0);
    (sb, out, before)
}

fn merge(target: &mut Value, extra: &Value) {
    for (k, v) in extra.as_object().unwrap() {
        target[k] = v.clone();
    }
}

/// Every PATCH of the seed Secret: metadata only, conditional on the version read.
fn seed_patches(sb: &Sandbox) -> Vec<Value> {
    sb.api
        .requests()
        .into_iter()
        .filter(|r| r.method == Method::PATCH && r.path == SEED)
        .map(|r| r.body.expect("a JSON patch"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_seed_without_metadata_is_given_ownership() {
    let (sb, out, before) = existing_seed_gets_ownership(json!({})).await;
    assert_eq!(helm_install_of_openbao(&sb), Ok(()));
    let patches = seed_patches(&sb);
    assert_eq!(patches.len(), 1);
    assert_eq!(
        patches[0],
        json!({"metadata": {
            "resourceVersion": before["metadata"]["resourceVersion"],
            "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {"meta.helm.sh/release-name": "openbao", "meta.helm.sh/release-namespace": "openbao"},
        }})
    );
    assert_stderr(
        &out,
        "kept it unchanged; added Helm ownership metadata for release openbao/openbao",
    );
    sb.assert_no_leaks(&[&out.stderr, &out.stdout]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_seed_with_other_metadata_keeps_it_and_gains_ownership() {
    let (sb, out, _) = existing_seed_gets_ownership(json!({
        "labels": {"app.kubernetes.io/name": "openbao"},
        "annotations": {"openbao.openova.io/single-use": "true", "meta.helm.sh/release-name": "openbao"},
    }))
    .await;
    assert_eq!(helm_install_of_openbao(&sb), Ok(()));
    let meta = &sb.seed_secret().unwrap()["metadata"];
    assert_eq!(meta["labels"]["app.kubernetes.io/name"], "openbao", "kept");
    assert_eq!(
        meta["annotations"]["openbao.openova.io/single-use"], "true",
        "kept"
    );
    assert_eq!(seed_patches(&sb).len(), 1);
    assert_stderr(&out, "added Helm ownership metadata");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_seed_already_owned_is_not_patched() {
    let (sb, out, before) = existing_seed_gets_ownership(json!({
        "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"meta.helm.sh/release-name": "openbao", "meta.helm.sh/release-namespace": "openbao"},
    }))
    .await;
    assert_eq!(seed_patches(&sb).len(), 0);
    assert_eq!(sb.seed_secret().unwrap(), before, "byte for byte");
    assert_stderr(&out, "already holds a seed; kept it unchanged");
    assert!(
        !out.stderr.contains("added Helm ownership"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_seed_of_another_release_is_not_taken() {
    let (sb, out, before) = existing_seed_gets_ownership(json!({
        "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"meta.helm.sh/release-name": "bp-openbao", "meta.helm.sh/release-namespace": "openbao"},
    }))
    .await;
    assert_eq!(seed_patches(&sb).len(), 0);
    assert_eq!(sb.seed_secret().unwrap(), before, "byte for byte");
    assert!(helm_install_of_openbao(&sb).is_err());
    assert_stderr(
        &out,
        "belongs to Helm release bp-openbao/openbao, not openbao/openbao",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_seed_patch_conflict_is_read_again_and_retried() {
    let sb = Sandbox::new();
    sb.api.insert_secret(
        "openbao",
        "openbao-recovery-seed",
        json!({"recovery-seed": STANDARD.encode("a-peer-wrote-this-seed-before-us-0000000000=")}),
    );
    let before = sb.seed_secret().unwrap();
    sb.api.fault(
        Method::PATCH,
        SEED,
        1,
        Fault::Status {
            code: 409,
            reason: "Conflict",
            message: "Operation cannot be fulfilled on secrets \"openbao-recovery-seed\": the object has been modified; please apply your changes to the latest version and try again".into(),
        },
    );
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_eq!(seed_patches(&sb).len(), 2);
    assert_eq!(sb.seed_secret().unwrap()["data"], before["data"]);
    assert_eq!(helm_install_of_openbao(&sb), Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_carries_catalyst_api_but_never_the_local_api_server() {
    let proxy = catalyst_bootstrap_tests::proxy::ConnectProxy::start().await;
    let sb = Sandbox::new();
    let mut cmd = sb.command(&["run"]);
    cmd.env("HTTPS_PROXY", &proxy.url);
    let out = catalyst_bootstrap_tests::sandbox::Agent::spawn(cmd)
        .finish()
        .await;
    assert_exit(&out, 0);
    let catalyst = sb.catalyst.url().trim_start_matches("https://").to_string();
    assert_eq!(
        proxy.targets(),
        vec![catalyst],
        "exactly the PUT went through the proxy"
    );
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 1);

    // NO_PROXY exempts catalyst-api too.
    let sb = Sandbox::new();
    let mut cmd = sb.command(&["run"]);
    cmd.env("HTTPS_PROXY", &proxy.url)
        .env("NO_PROXY", "127.0.0.1");
    let before = proxy.targets().len();
    assert_exit(
        &catalyst_bootstrap_tests::sandbox::Agent::spawn(cmd)
            .finish()
            .await,
        0,
    );
    assert_eq!(proxy.targets().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_address_from_the_hetzner_metadata_service() {
    use catalyst_bootstrap_tests::http::PlainServer;
    // Not up in the first moments of the boot, then the node's address.
    let metadata = PlainServer::start(vec![
        (503, b"".to_vec()),
        (200, b"198.51.100.23\n".to_vec()),
    ]);
    let sb = Sandbox::with(Start {
        cert_names: &["localhost", "127.0.0.1", "198.51.100.23"],
        ..Start::default()
    });
    sb.write_config(&format!(
        "public_address: hetzner-metadata\nmetadata_url: {}\n",
        metadata.url
    ));
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_eq!(metadata.hits(), 2);
    assert_stderr(
        &out,
        "public address from the metadata service: 198.51.100.23",
    );
    let stored = yaml(&sb.catalyst.stored(DEPLOYMENT_ID).unwrap());
    assert_eq!(
        stored["clusters"][0]["cluster"]["server"],
        format!("https://198.51.100.23:{}", sb.api.addr().port())
    );

    // Garbage instead of an address: refused before sending, exit 65.
    let metadata = PlainServer::start(vec![(200, b"<html>captive portal</html>".to_vec())]);
    let sb = Sandbox::new();
    sb.write_config(&format!(
        "public_address: hetzner-metadata\nmetadata_url: {}\n",
        metadata.url
    ));
    let out = sb.run().await;
    assert_exit(&out, 65);
    assert_stderr(&out, "not an IPv4 address");
    assert!(sb.catalyst.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_kubeconfig_is_reported_without_quoting_its_key() {
    let sb = Sandbox::new();
    // The client key is the file's last line: a broken line after it makes
    // the YAML parser quote the key in its error, which must not reach a log.
    let broken = format!(
        "{}    client-certificate-data: [oops\n",
        sb.api.kubeconfig()
    );
    std::fs::write(sb.kubeconfig_path(), broken).unwrap();
    let settled = std::time::SystemTime::now() - Duration::from_secs(30);
    std::fs::File::options()
        .write(true)
        .open(sb.kubeconfig_path())
        .unwrap()
        .set_modified(settled)
        .unwrap();
    let out = sb.run().await;
    assert_exit(&out, 65);
    assert_stderr(&out, "is not a usable kubeconfig");
    sb.assert_no_leaks(&[&out.stderr]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_echoes_the_request_does_not_get_the_key_into_the_log() {
    let sb = Sandbox::new();
    // A misrouted URL answering 400 with the request it got, as debug
    // proxies and echo servers do.
    let kubeconfig = sb.api.kubeconfig();
    let key_line = kubeconfig
        .lines()
        .find(|l| l.contains("client-key-data"))
        .unwrap();
    let echoed =
        serde_json::json!({"error": "bad-request", "detail": format!("cannot parse {key_line}")})
            .to_string();
    sb.catalyst.script([Step::Respond {
        status: 400,
        body: echoed,
        retry_after: None,
    }]);
    let out = sb.run().await;
    assert_exit(&out, 76);
    assert_stderr(&out, "catalyst-api answered 400 bad-request");
    sb.assert_no_leaks(&[&out.stderr]);
}

/// The stored kubeconfig's first cluster.
fn delivered_cluster(sb: &Sandbox) -> Value {
    let stored = yaml(
        &sb.catalyst
            .stored(DEPLOYMENT_ID)
            .expect("kubeconfig captured"),
    );
    stored["clusters"][0]["cluster"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_checks_the_certificate_where_it_can_reach_the_server() {
    // Not an address of this node (NAT, floating IP): checked on loopback,
    // with no connection attempt to the outside.
    let sb = Sandbox::new();
    let port = sb.api.addr().port();
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_stderr(
        &out,
        &format!("certificate (checked at 127.0.0.1:{port}) is valid for {PUBLIC_ADDRESS}"),
    );
    assert!(!out.stderr.contains("not reachable from this node"));
    assert!(delivered_cluster(&sb).get("tls-server-name").is_none());

    // One of the node's own addresses, where the API server listens:
    // checked there. (127.0.0.2 stands in for the public IPv4 on eth0.)
    const OWN: &str = "127.0.0.2";
    let start = Start {
        cert_names: &["localhost", "127.0.0.1", OWN],
        ..Start::default()
    };
    let sb = Sandbox::with(start);
    sb.write_config(&format!("public_address: {OWN}\n"));
    sb.api.serve_on(OWN.parse().unwrap());
    let port = sb.api.addr().port();
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_stderr(
        &out,
        &format!("certificate (checked at {OWN}:{port}) is valid for {OWN}"),
    );

    // Its own address, but not reachable there (the API server listens on
    // another interface only): checked on loopback instead, saying why.
    let sb = Sandbox::with(start);
    sb.write_config(&format!("public_address: {OWN}\n"));
    let port = sb.api.addr().port();
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_stderr(
        &out,
        &format!("public address {OWN}:{port} is not reachable from this node"),
    );
    assert_stderr(
        &out,
        &format!("certificate (checked at 127.0.0.1:{port}) is valid for {OWN}"),
    );

    // A DNS name is checked on loopback with the name as SNI (it may not
    // resolve yet at first boot).
    let sb = Sandbox::with(Start {
        cert_names: &["localhost", "127.0.0.1", SOVEREIGN_FQDN],
        ..Start::default()
    });
    sb.write_config(&format!("public_address: {SOVEREIGN_FQDN}\n"));
    let port = sb.api.addr().port();
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_stderr(&out, &format!("is valid for {SOVEREIGN_FQDN}"));
    assert_eq!(
        delivered_cluster(&sb)["server"],
        format!("https://{SOVEREIGN_FQDN}:{port}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_falls_back_to_the_sovereign_fqdn_as_tls_server_name() {
    // What k3s gets from the shell today: --tls-san=<fqdn> only.
    let sb = Sandbox::with(Start {
        cert_names: &["localhost", "127.0.0.1", SOVEREIGN_FQDN],
        ..Start::default()
    });
    sb.write_config(&format!("sovereign_fqdn: {SOVEREIGN_FQDN}\n"));
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_stderr(
        &out,
        &format!(
            "is not valid for {PUBLIC_ADDRESS} but is for {SOVEREIGN_FQDN}; the kubeconfig gets tls-server-name"
        ),
    );
    let cluster = delivered_cluster(&sb);
    assert_eq!(cluster["tls-server-name"], SOVEREIGN_FQDN);
    assert_eq!(
        cluster["server"],
        format!("https://{PUBLIC_ADDRESS}:{}", sb.api.addr().port())
    );
    sb.assert_no_leaks(&[&out.stderr, &out.stdout]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_refuses_a_kubeconfig_that_cannot_verify() {
    let sb = Sandbox::with(Start {
        cert_names: &["localhost", "127.0.0.1"],
        ..Start::default()
    });
    sb.write_config(&format!("sovereign_fqdn: {SOVEREIGN_FQDN}\n"));
    let out = sb.run().await;
    assert_exit(&out, 68);
    assert_stderr(
        &out,
        &format!("not valid for {PUBLIC_ADDRESS} (it names localhost, 127.0.0.1)"),
    );
    assert_stderr(&out, &format!("nor for the fallback name {SOVEREIGN_FQDN}"));
    assert_stderr(&out, &format!("start k3s with --tls-san={PUBLIC_ADDRESS}"));
    assert!(sb.catalyst.requests().is_empty(), "nothing may be sent");
    // The seed does not depend on the kubeconfig.
    assert!(sb.seed_secret().is_some());
    assert_eq!(phase_outcome(&sb, "kubeconfig"), "failed");
    let status = sb.notify.statuses().pop().unwrap_or_default();
    assert!(status.contains("--tls-san"), "{status}");
    sb.assert_no_leaks(&[&out.stderr, &out.stdout]);

    // `preflight: warn` sends it anyway, saying so.
    let sb = Sandbox::with(Start {
        cert_names: &["localhost", "127.0.0.1"],
        ..Start::default()
    });
    sb.write_config("preflight: warn\n");
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_stderr(&out, "no `sovereign_fqdn` is configured to fall back on");
    assert_stderr(
        &out,
        "sending the kubeconfig anyway because of `preflight: warn`",
    );
    assert!(sb.catalyst.stored(DEPLOYMENT_ID).is_some());
    assert!(delivered_cluster(&sb).get("tls-server-name").is_none());
}

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/catalyst-bootstrap";

/// An agent as control-plane node `node`, with a state directory of its own.
fn spawn_node(sb: &Sandbox, node: &str) -> catalyst_bootstrap_tests::sandbox::Agent {
    let dir = sb.path(&format!("state-{node}"));
    sb.spawn(&[
        "--node-name",
        node,
        "--state-dir",
        dir.to_str().unwrap(),
        "run",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_control_plane_nodes_write_one_seed_and_send_one_kubeconfig() {
    let sb = Sandbox::new();
    // The PUT outlasts the Lease three times over: only renewal keeps the
    // others from taking over.
    sb.write_config("lease_duration: 2s\n");
    sb.catalyst.script([Step::Delay(Duration::from_secs(6))]);
    let nodes = ["cp-1", "cp-2", "cp-3"];
    let agents: Vec<_> = nodes.iter().map(|n| spawn_node(&sb, n)).collect();
    let mut outs = Vec::new();
    for agent in agents {
        outs.push(agent.finish().await);
    }
    for out in &outs {
        assert_exit(out, 0);
        sb.assert_no_leaks(&[&out.stderr, &out.stdout]);
    }
    assert_eq!(sb.catalyst.requests().len(), 1, "one PUT");
    assert_eq!(sb.api.count(&Method::POST, SECRETS), 1, "one seed create");
    let lease = sb.api.object(LEASE).expect("the Lease exists");
    let holder = lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        lease["metadata"]["annotations"]["catalyst.openova.io/completed-by"],
        holder.as_str()
    );
    assert_eq!(
        lease["metadata"]["annotations"]["catalyst.openova.io/deployment-id"],
        DEPLOYMENT_ID
    );
    let followers = outs
        .iter()
        .filter(|o| {
            o.stderr
                .contains(&format!("control-plane node {holder} did the work"))
        })
        .count();
    assert_eq!(
        followers, 2,
        "the two others name the node that did the work"
    );
    for node in nodes {
        let dir = sb.path(&format!("state-{node}"));
        assert!(dir.join("done").exists(), "{node} is done");
        let state: Value =
            serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
        assert_eq!(state["lease"]["outcome"], "done");
        if node != holder {
            assert_eq!(
                state["seed"]["detail"],
                format!("done by control-plane node {holder}")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holder_is_taken_over_after_expiry_without_a_second_seed() {
    let sb = Sandbox::new();
    sb.write_config("lease_duration: 2s\n");
    // The holder dies while its PUT hangs.
    sb.catalyst.script([Step::Delay(Duration::from_secs(60))]);
    let first = spawn_node(&sb, "cp-1");
    first
        .wait_for_stderr(Duration::from_secs(20), |e| {
            e.contains("recovery seed written") && e.contains("sending the kubeconfig")
        })
        .await;
    let seed = sb.seed_secret().expect("the holder wrote the seed");
    first.signal(Signal::SIGKILL);
    assert_eq!(first.finish().await.code, None, "killed");
    sb.catalyst.clear_script();

    let out = spawn_node(&sb, "cp-2").finish().await;
    assert_exit(&out, 0);
    assert_stderr(
        &out,
        "control-plane node cp-1 holds Lease kube-system/catalyst-bootstrap",
    );
    assert_stderr(
        &out,
        "node cp-1 stopped renewing Lease kube-system/catalyst-bootstrap",
    );
    assert_stderr(&out, "already holds a seed; kept it");
    assert_eq!(sb.seed_secret().unwrap(), seed, "no second seed");
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 1);
    let lease = sb.api.object(LEASE).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "cp-2");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    assert_eq!(
        lease["metadata"]["annotations"]["catalyst.openova.io/completed-by"],
        "cp-2"
    );
    sb.assert_no_leaks(&[&out.stderr, &out.stdout]);
}

/// What the agent produced while it waited.
#[derive(Debug)]
struct DuringWait {
    seconds: f64,
    /// Log entries (a message may span several lines).
    lines: Vec<String>,
    datagrams: Vec<String>,
    state_writes: usize,
}

/// Starts the agent in a sandbox where something it waits for is missing,
/// lets it wait `wait`, counts what it logged, sent to systemd and wrote
/// to its state file meanwhile, then lets the wait end with `end` and runs
/// the job to success.
async fn wait_for(
    start: Start,
    wait: Duration,
    end: impl FnOnce(&Sandbox),
) -> (Sandbox, DuringWait, Finished) {
    let sb = Sandbox::with(start);
    let writes = sb.watch_state_writes();
    let agent = sb.spawn(&["run"]);
    agent
        .wait_for_stderr(Duration::from_secs(20), |e| {
            e.contains("wait phase started")
        })
        .await;
    let began = std::time::Instant::now();
    let entries = |text: &str| -> Vec<String> {
        let mut entries: Vec<String> = Vec::new();
        for line in text.lines() {
            match entries.last_mut() {
                Some(last) if !line.starts_with("20") => last.push_str(line),
                _ => entries.push(line.to_string()),
            }
        }
        entries
    };
    // From the entry that says the phase started, and from the start for
    // datagrams (none is sent before the wait phase).
    let lines = entries(&agent.stderr())
        .iter()
        .position(|e| e.contains("wait phase started"))
        .unwrap()
        + 1;
    writes.take();
    tokio::time::sleep(wait).await;
    let during = DuringWait {
        seconds: began.elapsed().as_secs_f64(),
        lines: entries(&agent.stderr()).split_off(lines),
        datagrams: sb.notify.messages(),
        state_writes: writes.take(),
    };
    println!(
        "during {:.1}s of waiting: {} log entries on stderr, {} notify datagrams, {} state.json writes",
        during.seconds,
        during.lines.len(),
        during.datagrams.len(),
        during.state_writes
    );
    end(&sb);
    let out = agent.finish().await;
    assert_exit(&out, 0);
    (sb, during, out)
}

/// Waiting for what is expected to take time is no failure: one line when
/// it starts and progress at most every 15 s, STATUS= about once a second
/// with EXTEND_TIMEOUT_USEC, state.json at most every 10 s.
fn assert_quiet(during: &DuringWait) {
    let seconds = during.seconds;
    assert!(
        during.lines.len() as f64 <= 1.0 + seconds / 15.0
            && !during.lines.iter().any(|l| l.contains("WARN")),
        "{during:#?}"
    );
    assert!(
        during.datagrams.len() as f64 <= 2.0 * seconds + 2.0,
        "{during:#?}"
    );
    assert!(
        during
            .datagrams
            .iter()
            .any(|d| d.contains("EXTEND_TIMEOUT_USEC=")),
        "systemd's start timeout is still extended: {during:#?}"
    );
    assert!(
        during.state_writes as f64 <= 1.0 + seconds / 10.0,
        "{during:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_wait_for_the_kubeconfig_is_quiet() {
    let (sb, during, out) = wait_for(
        Start {
            kubeconfig: false,
            ..Start::default()
        },
        Duration::from_secs(16),
        |sb| {
            // Saved during the wait: how long, how many polls, why.
            let wait = &sb.state()["wait"];
            assert!(wait["attempts"].as_u64().unwrap() > 10, "{wait}");
            let detail = wait["detail"].as_str().unwrap();
            assert!(
                detail.contains("s so far") && detail.contains("k3s.yaml does not exist yet"),
                "{detail}"
            );
            sb.write_kubeconfig()
        },
    )
    .await;
    assert_quiet(&during);
    let [started, progress] = &during.lines[..] else {
        panic!("a start and a progress line: {during:#?}")
    };
    assert!(
        started.contains("INFO")
            && started.contains("waiting for")
            && started.contains("k3s.yaml does not exist yet"),
        "{during:#?}"
    );
    assert!(
        progress.contains("INFO")
            && progress.contains("still waiting after 15s")
            && progress.contains("polls; last: ")
            && progress.contains("k3s.yaml does not exist yet"),
        "{during:#?}"
    );
    assert!(
        during
            .datagrams
            .iter()
            .any(|d| d.contains("k3s.yaml does not exist yet") && d.contains("s so far")),
        "{during:#?}"
    );
    assert_stderr(&out, "k3s.yaml: done after 16.");
    assert!(sb.seed_secret().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_wait_for_readyz_is_quiet() {
    let (sb, during, out) = wait_for(
        Start {
            api_ready: false,
            ..Start::default()
        },
        Duration::from_secs(7),
        |sb| sb.api.set_ready(true),
    )
    .await;
    assert_quiet(&during);
    assert!(
        during.lines[0].contains("INFO") && during.lines[0].contains("waiting for the API server"),
        "{during:#?}"
    );
    assert_stderr(&out, "to be ready: done after 7.");
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_says_who_holds_the_lease_for_the_whole_wait() {
    let sb = Sandbox::new();
    // Polled every second; taken over once it has not changed for 4 s.
    sb.write_config("lease_duration: 4s\n");
    sb.api.insert(
        LEASE,
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "catalyst-bootstrap", "namespace": "kube-system"},
               "spec": {"holderIdentity": "cp-gone", "leaseDurationSeconds": 4}}),
    );
    let out = sb.run().await;
    assert_exit(&out, 0);
    let statuses = sb.notify.statuses();
    let first = statuses
        .iter()
        .position(|s| s.contains("cp-gone holds Lease"))
        .unwrap_or_else(|| panic!("{statuses:#?}"));
    let held = statuses
        .iter()
        .position(|s| s.contains("cp-gone stopped renewing") || s.contains("and does the work"))
        .unwrap_or_else(|| panic!("{statuses:#?}"));
    let between = &statuses[first..held];
    assert!(
        between.iter().all(|s| s.contains("cp-gone holds Lease")),
        "the waiting text stays while waiting: {between:#?}"
    );
    let waiting: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("cp-gone"))
        .collect();
    assert!(
        waiting.len() <= 4 && !waiting.iter().any(|l| l.contains("WARN")),
        "{waiting:#?}"
    );
    assert!(
        waiting
            .iter()
            .any(|l| l.contains("INFO") && l.contains("done after")),
        "the wait's end is logged with how long it took: {waiting:#?}"
    );
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
                .all(|(f, _)| f.as_deref() != Some("agent/src/journal.rs")),
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
