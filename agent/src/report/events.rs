//! Kubernetes Events: each phase outcome the journal tells with a
//! `MESSAGE_ID` (those the `events!` declaration marks `cluster`) is also
//! an `events.k8s.io/v1` Event regarding this node's Node, so `kubectl get
//! events` and `kubectl describe node` tell the bootstrap story.
//!
//! Best-effort, by construction: the job only puts a ready-made body on a
//! small bounded queue (`try_send`, never waiting; a full queue drops the
//! Event); one task, started once the wait phase has the API server, posts
//! them in order, each with a total timeout and no retry. Failures are
//! logged at DEBUG only: a cluster without the events API makes no noise.
//! Before the API server is ready there is nowhere to post: outcomes until
//! then (the wait phase failing at the deadline) are in the journal only.
//! At exit, [`Events::flush`] gives what is still queued a bounded chance.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::peers::cluster::Cluster;
use crate::report::journal::Event;
use crate::report::state::Phase;

/// The `reportingController` of every Event.
pub(crate) const CONTROLLER: &str = "catalyst.openova.io/bootstrap";
/// Node Events live in `default`, as kubelet's do.
const NAMESPACE: &str = "default";
const PATH: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
/// Each POST, connection included; never retried.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the process waits at exit for Events still queued.
pub(crate) const FLUSH: Duration = Duration::from_secs(1);
/// Events waiting to be posted; more are dropped (a run has about six).
const QUEUE: usize = 32;
/// The API server's limits on `note`, `reportingInstance` and names.
const MAX_NOTE: usize = 1024;
const MAX_INSTANCE: usize = 128;
const MAX_NAME: usize = 253;

/// Where outcomes go as Kubernetes Events.
pub(crate) struct Events {
    node: String,
    queue: Mutex<Option<mpsc::Sender<Bytes>>>,
    drain: Mutex<Option<JoinHandle<()>>>,
}

impl Events {
    pub(crate) fn new(node: &str) -> Events {
        Events {
            node: node.to_string(),
            queue: Mutex::new(None),
            drain: Mutex::new(None),
        }
    }

    /// From now on, Events are posted to `cluster` (the first call only).
    /// Must run inside the tokio runtime.
    pub(crate) fn attach(&self, cluster: Cluster) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let mut drain = self.drain.lock().unwrap_or_else(|e| e.into_inner());
        if queue.is_some() || drain.is_some() {
            return;
        }
        let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
        *queue = Some(tx);
        *drain = Some(tokio::spawn(async move {
            while let Some(body) = rx.recv().await {
                match tokio::time::timeout(SEND_TIMEOUT, cluster.post(PATH, body)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::debug!("Event not recorded: {e}"),
                    Err(_) => tracing::debug!(
                        "Event not recorded: no answer within {}s",
                        SEND_TIMEOUT.as_secs()
                    ),
                }
            }
        }));
    }

    /// Queues `event` as a Kubernetes Event, if it is one the cluster is
    /// told of and there is an API server to tell; `phase` names the
    /// `action` when the event itself does not (a phase failing).
    pub(crate) fn emit(&self, event: Event, phase: Option<Phase>, note: &str) {
        let Some(reason) = event.reason() else { return };
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = queue.as_ref() else {
            tracing::debug!("Event {reason} not recorded: no API server yet");
            return;
        };
        let action = phase.map_or_else(|| action(event), action_of);
        let body = match serde_json::to_vec(&self.body(event, reason, action, note)) {
            Ok(body) => body,
            Err(e) => return tracing::debug!("Event {reason} not recorded: {e}"),
        };
        if tx.try_send(Bytes::from(body)).is_err() {
            tracing::debug!("Event {reason} not recorded: the queue is full");
        }
    }

    /// Waits at most `within` for the queued Events to be posted; the rest
    /// are dropped. No more are queued after this.
    pub(crate) async fn flush(&self, within: Duration) {
        drop(self.queue.lock().unwrap_or_else(|e| e.into_inner()).take());
        let drain = self.drain.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some(mut drain) = drain else { return };
        if tokio::time::timeout(within, &mut drain).await.is_err() {
            drain.abort();
            tracing::debug!(
                "Events not recorded: still posting after {}s",
                within.as_secs_f64()
            );
        }
    }

    fn body(&self, event: Event, reason: &str, action: &str, note: &str) -> KubeEvent {
        let node = &self.node;
        KubeEvent {
            metadata: ObjectMeta {
                name: Some(name(node)),
                namespace: Some(NAMESPACE.into()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(jiff::Timestamp::now())),
            reporting_controller: Some(CONTROLLER.into()),
            reporting_instance: Some(cut(&format!("catalyst-bootstrap-{node}"), MAX_INSTANCE)),
            action: Some(action.into()),
            reason: Some(reason.into()),
            type_: Some(
                if event.is_warning() {
                    "Warning"
                } else {
                    "Normal"
                }
                .into(),
            ),
            note: Some(cut(note, MAX_NOTE)),
            regarding: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.clone()),
                // kubelet's Node events carry the node's name as its uid.
                uid: Some(node.clone()),
                ..ObjectReference::default()
            }),
            ..KubeEvent::default()
        }
    }
}

/// What the outcome is about, as the Event's `action`.
fn action(event: Event) -> &'static str {
    match event {
        Event::KubeconfigDelivered | Event::KubeconfigAlreadyCaptured => "Kubeconfig",
        Event::SeedWritten | Event::SeedKept | Event::SeedSkipped => "Seed",
        Event::SecretApplied | Event::SecretFileRemoved => "Secrets",
        Event::ObjectApplied
        | Event::KindAwaited
        | Event::ManifestSkipped
        | Event::MarkerWritten => "Manifests",
        Event::PreflightPassed | Event::PreflightFallback | Event::PreflightIgnored => "Preflight",
        _ => "Bootstrap",
    }
}

fn action_of(phase: Phase) -> &'static str {
    match phase {
        Phase::Wait => "Wait",
        Phase::Kubeconfig => "Kubeconfig",
        Phase::Seed => "Seed",
        Phase::Secrets => "Secrets",
        Phase::Manifests => "Manifests",
    }
}

/// `<node>.<16 hex digits>`, as kubelet names its Events: the time in
/// nanoseconds, unique within the process.
fn name(node: &str) -> String {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = u64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(0);
    let prev = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    let stamp = now.max(prev + 1);
    // Node names are ASCII (a DNS subdomain, checked by config).
    let node = node.get(..MAX_NAME - 17).unwrap_or(node);
    format!("{node}.{stamp:016x}")
}

/// `text` within `max` bytes, cut at a character boundary (with `…`).
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_a_valid_node_event() {
        let events = Events::new("cp-1");
        let body = events.body(
            Event::PhaseFailed,
            "PhaseFailed",
            action_of(Phase::Kubeconfig),
            &"é".repeat(600),
        );
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["apiVersion"], "events.k8s.io/v1");
        assert_eq!(json["kind"], "Event");
        assert_eq!(json["metadata"]["namespace"], "default");
        let name = json["metadata"]["name"].as_str().unwrap();
        let (node, hex) = name.split_once('.').unwrap();
        assert_eq!(node, "cp-1");
        assert_eq!(hex.len(), 16);
        assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(json["reportingController"], CONTROLLER);
        assert_eq!(json["reportingInstance"], "catalyst-bootstrap-cp-1");
        assert_eq!(json["action"], "Kubeconfig");
        assert_eq!(json["type"], "Warning");
        assert_eq!(
            json["regarding"],
            serde_json::json!({"apiVersion": "v1", "kind": "Node", "name": "cp-1", "uid": "cp-1"})
        );
        let note = json["note"].as_str().unwrap();
        assert!(note.len() <= MAX_NOTE && note.ends_with('…'));
        // MicroTime: RFC 3339 with microseconds.
        let time = json["eventTime"].as_str().unwrap();
        assert_eq!(time.len(), "2026-12-01T23:43:17.123456Z".len(), "{time}");
    }

    #[test]
    fn names_are_unique_and_bounded() {
        let long = "n".repeat(253);
        let a = name(&long);
        let b = name(&long);
        assert_ne!(a, b);
        assert!(a.len() <= MAX_NAME);
        assert!(cut(&"x".repeat(300), MAX_INSTANCE).len() <= MAX_INSTANCE);
    }

    #[test]
    fn actions_name_the_phase() {
        assert_eq!(action(Event::PreflightFallback), "Preflight");
        assert_eq!(action(Event::KubeconfigAlreadyCaptured), "Kubeconfig");
        assert_eq!(action(Event::SecretApplied), "Secrets");
        assert_eq!(action(Event::SeedKept), "Seed");
        assert_eq!(action(Event::JobDone), "Bootstrap");
    }

    #[tokio::test]
    async fn without_an_api_server_nothing_waits() {
        let events = Events::new("cp-1");
        events.emit(Event::JobDone, None, "done");
        let started = std::time::Instant::now();
        events.flush(FLUSH).await;
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
