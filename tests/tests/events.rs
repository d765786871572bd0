//! Kubernetes Events, the real binary against the fake API server: each
//! phase outcome is an `events.k8s.io/v1` Event regarding the Node, and the
//! events API failing or hanging never fails nor delays the job.

use std::time::{Duration, Instant};

use catalyst_bootstrap_tests::apiserver::Fault;
use catalyst_bootstrap_tests::catalyst::Step;
use catalyst_bootstrap_tests::sandbox::{Finished, Sandbox, assert_exit};
use http::Method;
use serde_json::Value;

const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
const CONTROLLER: &str = "catalyst.openova.io/bootstrap";

/// Runs the agent as control-plane node `node` to the end.
async fn run_as(sb: &Sandbox, node: &str) -> Finished {
    sb.spawn_node(node).finish().await
}

/// The Events regarding Node `node`, oldest first; each well-formed.
fn events_of(sb: &Sandbox, node: &str) -> Vec<Value> {
    let events: Vec<Value> = sb
        .api
        .events("default")
        .into_iter()
        .filter(|e| e["regarding"]["name"] == node)
        .collect();
    for e in &events {
        assert_eq!(e["apiVersion"], "events.k8s.io/v1", "{e}");
        assert_eq!(e["regarding"]["kind"], "Node", "{e}");
        assert_eq!(e["regarding"]["apiVersion"], "v1", "{e}");
        assert_eq!(e["reportingController"], CONTROLLER, "{e}");
        assert_eq!(
            e["reportingInstance"],
            format!("catalyst-bootstrap-{node}"),
            "{e}"
        );
        let name = e["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with(&format!("{node}.")), "{name}");
    }
    events
}

fn reasons(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect()
}

fn no_warn_lines(out: &Finished) {
    assert!(
        !out.stderr.lines().any(|l| l.contains(" WARN ")),
        "a WARN line:\n{}",
        out.stderr
    );
}

fn all_events_json(sb: &Sandbox) -> String {
    serde_json::to_string(&sb.api.events("default")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_tells_its_story_as_node_events() {
    let sb = Sandbox::new();
    let out = run_as(&sb, "cp-1").await;
    assert_exit(&out, 0);
    let events = events_of(&sb, "cp-1");
    let reasons = reasons(&events);
    // The kubeconfig and the seed go side by side: either may come first.
    assert_eq!(reasons.last(), Some(&"JobDone"), "{reasons:?}");
    let mut middle = reasons[..reasons.len() - 1].to_vec();
    let preflight = middle.iter().position(|r| *r == "PreflightPassed");
    let delivered = middle.iter().position(|r| *r == "KubeconfigDelivered");
    assert!(preflight < delivered, "{reasons:?}");
    middle.sort();
    assert_eq!(
        middle,
        ["KubeconfigDelivered", "PreflightPassed", "SeedWritten"],
        "{reasons:?}"
    );
    for e in &events {
        assert_eq!(e["type"], "Normal", "{e}");
        let time = e["eventTime"].as_str().unwrap();
        assert_eq!(time.len(), "2026-01-01T00:00:00.000000Z".len(), "{time}");
    }
    let action = |reason: &str| {
        events
            .iter()
            .find(|e| e["reason"] == reason)
            .map(|e| e["action"].as_str().unwrap().to_string())
    };
    assert_eq!(action("PreflightPassed").as_deref(), Some("Preflight"));
    assert_eq!(action("KubeconfigDelivered").as_deref(), Some("Kubeconfig"));
    assert_eq!(action("SeedWritten").as_deref(), Some("Seed"));
    let note = |reason: &str| {
        events
            .iter()
            .find(|e| e["reason"] == reason)
            .map(|e| e["note"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert!(note("SeedWritten").contains("recovery seed written to Secret"));
    assert!(note("JobDone").starts_with("Done: kubeconfig delivered"));
    // The list as kubectl reads it.
    let (code, list) = sb.api.fetch(EVENTS).await;
    assert_eq!(code, 200);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list["kind"], "EventList");
    assert_eq!(list["items"].as_array().unwrap().len(), events.len());
    no_warn_lines(&out);
    let json = all_events_json(&sb);
    sb.assert_no_leaks(&[&out.stderr, &json]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_is_a_warning_event() {
    let sb = Sandbox::new();
    sb.catalyst.script([Step::error(403, "invalid-bearer")]);
    let out = run_as(&sb, "cp-1").await;
    assert_exit(&out, 77);
    let events = events_of(&sb, "cp-1");
    let reasons = reasons(&events);
    assert!(reasons.contains(&"SeedWritten"), "{reasons:?}");
    assert!(!reasons.contains(&"JobDone"), "{reasons:?}");
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e["reason"] == "PhaseFailed")
        .collect();
    assert_eq!(failed.len(), 1, "{reasons:?}");
    let failed = failed[0];
    assert_eq!(failed["type"], "Warning");
    assert_eq!(failed["action"], "Kubeconfig");
    let note = failed["note"].as_str().unwrap();
    assert!(
        note.starts_with("kubeconfig phase failed:")
            && note.contains("bearer token rejected")
            && note.contains("invalid-bearer"),
        "{note}"
    );
    let json = all_events_json(&sb);
    sb.assert_no_leaks(&[&out.stderr, &json]);
}

/// A node that comes second does the whole job too and says what it found:
/// the kubeconfig already set, the seed kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_did_the_work_first() {
    let sb = Sandbox::new();
    assert_exit(&run_as(&sb, "cp-1").await, 0);
    let out = run_as(&sb, "cp-2").await;
    assert_exit(&out, 0);
    let events = events_of(&sb, "cp-2");
    let mut told = reasons(&events);
    assert_eq!(told.pop(), Some("JobDone"), "{told:?}");
    told.sort();
    assert_eq!(
        told,
        ["KubeconfigAlreadyCaptured", "PreflightPassed", "SeedKept"]
    );
    let event = |reason: &str| events.iter().find(|e| e["reason"] == reason).unwrap();
    let captured = event("KubeconfigAlreadyCaptured");
    assert_eq!(captured["type"], "Normal");
    assert_eq!(captured["action"], "Kubeconfig");
    let note = captured["note"].as_str().unwrap();
    assert!(
        note.contains("403 already-set") && note.contains("another control-plane node"),
        "{note}"
    );
    let kept = event("SeedKept");
    assert_eq!(kept["type"], "Normal");
    assert_eq!(kept["action"], "Seed");
    let note = kept["note"].as_str().unwrap();
    assert!(note.contains("kept it unchanged"), "{note}");
    let note = event("JobDone")["note"].as_str().unwrap();
    assert!(note.contains("already captured"), "{note}");
    // cp-1's own story is untouched by cp-2's.
    assert_eq!(reasons(&events_of(&sb, "cp-1")).last(), Some(&"JobDone"));
    let json = all_events_json(&sb);
    sb.assert_no_leaks(&[&out.stderr, &json]);
}

/// The events API answering 500, or not at all: the job succeeds as fast
/// as without it (give or take the bounded flush at exit), and quietly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_events_api_neither_fails_nor_delays_the_job() {
    let started = Instant::now();
    let baseline = Sandbox::new();
    assert_exit(&run_as(&baseline, "cp-1").await, 0);
    let normal = started.elapsed();

    let sb = Sandbox::new();
    let fault = Fault::Status {
        code: 500,
        reason: "InternalError",
        message: "etcdserver: request timed out".into(),
    };
    sb.api.fault(Method::POST, EVENTS, 100, fault);
    let started = Instant::now();
    let out = run_as(&sb, "cp-1").await;
    let took = started.elapsed();
    assert_exit(&out, 0);
    no_warn_lines(&out);
    assert!(sb.api.events("default").is_empty());
    assert!(sb.api.count(&Method::POST, EVENTS) >= 4, "each tried once");
    assert!(
        took < normal + Duration::from_secs(2),
        "{took:?} against {normal:?} without the fault"
    );

    // Each POST hangs for longer than the job takes: the job does not wait
    // on it; the process waits at most a second for the queue at exit.
    let sb = Sandbox::new();
    sb.api.fault(
        Method::POST,
        EVENTS,
        100,
        Fault::Delay(Duration::from_secs(5)),
    );
    let started = Instant::now();
    let out = run_as(&sb, "cp-1").await;
    let took = started.elapsed();
    assert_exit(&out, 0);
    no_warn_lines(&out);
    assert!(
        took < normal + Duration::from_secs(3),
        "{took:?} against {normal:?} without the fault"
    );
    assert!(sb.seed_secret().is_some());
}
