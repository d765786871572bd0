//! Scenarios: the seed phase: create-only, kept, skipped, retried.

use super::*;

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
    // Nothing is ever updated but the seed Secret's ownership metadata
    // patched in (see the Helm scenarios).
    assert!(sb.api.requests().iter().all(|r| {
        (r.method == Method::PATCH && r.path == SEED)
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
