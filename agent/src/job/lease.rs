//! Coordination between control-plane nodes. Several may run the agent
//! against one cluster; the holder of the Lease `kube-system/catalyst-bootstrap`
//! does the work, renews the Lease while it works and records its completion
//! on it. The others wait for that record, or take over when the holder stops
//! renewing.
//!
//! Expiry is judged the way client-go's leader election does: by how long
//! the Lease has stayed unchanged on this node's monotonic clock, never by
//! comparing another node's `renewTime` with ours (clocks are often wrong at
//! first boot).

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use tokio::time::Instant;

use crate::exit::Exit;
use crate::peers::cluster::{Cluster, KubeError};
use crate::peers::retry::{Classify, Step, Verdict};
use crate::report::untrusted::Untrusted;

const NAMESPACE: &str = "kube-system";
pub(crate) const NAME: &str = "catalyst-bootstrap";
const COLLECTION: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";
const COMPLETED_BY: &str = "catalyst.openova.io/completed-by";
const COMPLETED_AT: &str = "catalyst.openova.io/completed-at";
const DEPLOYMENT_ID: &str = "catalyst.openova.io/deployment-id";

pub(crate) struct Coordinator<'a> {
    pub(crate) cluster: &'a Cluster,
    pub(crate) node: &'a str,
    pub(crate) deployment_id: &'a str,
    pub(crate) duration: Duration,
}

/// Another holder's `leaseDurationSeconds` counts as at most this many of
/// this node's own `lease_duration`: anyone who can write Leases in
/// kube-system could otherwise set it to decades and stop every takeover. A
/// holder that really renews changes the Lease within its own duration / 3,
/// so it keeps the Lease whatever this bound is.
const MAX_PEER_DURATION: u32 = 4;

/// How the wait for the Lease ended.
pub(crate) enum Claim {
    /// This node holds the Lease and does the work.
    Held(Box<Held>),
    /// Another node recorded on the Lease that it did the work.
    DoneBy { node: Untrusted, at: Untrusted },
}

/// The Lease as this node last wrote it.
pub(crate) struct Held(Mutex<Lease>);

/// One look at the Lease.
enum Round {
    Held(Box<Lease>),
    DoneBy {
        node: Untrusted,
        at: Untrusted,
    },
    /// Someone else holds it and renews it, for `duration` at a time.
    Wait {
        holder: Untrusted,
        duration: Duration,
    },
    /// Someone else changed it between our read and our write: look again.
    Raced,
}

/// Why a look at the Lease, or a write to it, did not end the step.
#[derive(Debug, thiserror::Error)]
enum LeaseError {
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// Not a failure: another node holds it; look again after `poll`.
    #[error(
        "control-plane node {} holds Lease {NAMESPACE}/{NAME}; waiting for it to finish \
         (or to stop renewing for {}s)",
        holder.shown(),
        duration.as_secs()
    )]
    Held {
        holder: Untrusted,
        duration: Duration,
        poll: Duration,
    },
    #[error("the Lease was deleted before completion could be recorded")]
    Deleted,
}

impl Classify for LeaseError {
    fn verdict(&self) -> Verdict {
        match self {
            LeaseError::Kube(e) => e.verdict(),
            LeaseError::Held { poll, .. } => Verdict::Pending(*poll),
            LeaseError::Deleted => Verdict::Permanent(Exit::Internal),
        }
    }
}

/// What a waiting node remembers between looks at the Lease.
#[derive(Default)]
struct Seen {
    /// The Lease's resourceVersion and when this node first saw it.
    version: Option<(String, Instant)>,
    /// Whether the clamp of the holder's duration was logged.
    clamped: bool,
}

fn path() -> String {
    format!("{COLLECTION}/{NAME}")
}

fn timestamp() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn holder(lease: &Lease) -> Option<&str> {
    lease
        .spec
        .as_ref()?
        .holder_identity
        .as_deref()
        .filter(|h| !h.is_empty())
}

fn encode(lease: &Lease) -> Result<Bytes, KubeError> {
    serde_json::to_vec(lease)
        .map(Bytes::from)
        .map_err(|e| KubeError::Decode {
            path: path(),
            error: Untrusted::new(e.to_string()),
        })
}

fn decode(bytes: &[u8]) -> Result<Lease, KubeError> {
    serde_json::from_slice(bytes).map_err(|e| KubeError::Decode {
        path: path(),
        error: Untrusted::new(e.to_string()),
    })
}

impl Coordinator<'_> {
    /// Waits until this node holds the Lease or another node has recorded
    /// that it did the work; each look that finds another node holding it
    /// is a pending attempt of `step`.
    pub(crate) async fn claim(&self, step: &Step<'_>) -> anyhow::Result<Claim> {
        let seen = Mutex::new(Seen::default());
        step.retry(|_| self.look(&seen)).await
    }

    /// One attempt: a look at the Lease, taken again at once when another
    /// node changed it between our read and our write.
    async fn look(&self, seen: &Mutex<Seen>) -> Result<Claim, LeaseError> {
        loop {
            match self.round(seen).await? {
                Round::Held(lease) => return Ok(Claim::Held(Box::new(Held(Mutex::new(*lease))))),
                Round::DoneBy { node, at } => return Ok(Claim::DoneBy { node, at }),
                Round::Wait { holder, duration } => {
                    return Err(LeaseError::Held {
                        holder,
                        duration,
                        poll: self.poll(),
                    });
                }
                Round::Raced => {}
            }
        }
    }

    /// How often a waiting node looks at the Lease.
    fn poll(&self) -> Duration {
        (self.duration / 4).clamp(Duration::from_millis(100), Duration::from_secs(2))
    }

    async fn round(&self, seen: &Mutex<Seen>) -> Result<Round, KubeError> {
        let Some(bytes) = self.cluster.get(&path()).await? else {
            return self.create().await;
        };
        let lease = decode(&bytes)?;
        let annotations = lease.metadata.annotations.as_ref();
        let record = |key| annotations.and_then(|a| a.get(key)).cloned();
        // A record from another deployment (a reused cluster) does not count.
        let done_by = record(COMPLETED_BY)
            .filter(|_| record(DEPLOYMENT_ID).as_deref() == Some(self.deployment_id));
        if let Some(node) = done_by {
            return Ok(Round::DoneBy {
                node: Untrusted::new(node),
                at: Untrusted::new(record(COMPLETED_AT).unwrap_or_default()),
            });
        }
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let duration = self.peer_duration(&lease, seen);
        let expired = {
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            match &seen.version {
                Some((v, since)) if *v == version => since.elapsed() >= duration,
                _ => {
                    seen.version = Some((version, Instant::now()));
                    false
                }
            }
        };
        match holder(&lease) {
            Some(h) if h != self.node && !expired => Ok(Round::Wait {
                holder: Untrusted::new(h),
                duration,
            }),
            previous => {
                if let Some(p) = previous.filter(|p| *p != self.node) {
                    tracing::info!(
                        "node {} stopped renewing Lease {NAMESPACE}/{NAME} {}s ago; taking over",
                        Untrusted::new(p).shown(),
                        duration.as_secs()
                    );
                }
                self.take(lease).await
            }
        }
    }

    /// How long the holder may leave the Lease unchanged before it counts as
    /// gone: its own word, within [`MAX_PEER_DURATION`] times ours.
    fn peer_duration(&self, lease: &Lease, seen: &Mutex<Seen>) -> Duration {
        let said = lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.duration, Duration::from_secs);
        let bound = self.duration * MAX_PEER_DURATION;
        if said <= bound {
            return said;
        }
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        if !seen.clamped {
            seen.clamped = true;
            tracing::warn!(
                "Lease {NAMESPACE}/{NAME} says leaseDurationSeconds {}; counting it as {}s \
                 ({MAX_PEER_DURATION} x this node's lease_duration) before taking over",
                said.as_secs(),
                bound.as_secs()
            );
        }
        bound
    }

    fn spec(&self, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.node.to_string()),
            lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
            acquire_time: Some(timestamp()),
            renew_time: Some(timestamp()),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    async fn create(&self) -> Result<Round, KubeError> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(NAME.to_string()),
                namespace: Some(NAMESPACE.to_string()),
                ..ObjectMeta::default()
            },
            spec: Some(self.spec(0)),
        };
        match self.cluster.post(COLLECTION, encode(&lease)?).await {
            Ok(bytes) => Ok(Round::Held(Box::new(decode(&bytes)?))),
            Err(KubeError::Status { code: 409, .. }) => Ok(Round::Raced),
            Err(e) => Err(e),
        }
    }

    async fn take(&self, mut lease: Lease) -> Result<Round, KubeError> {
        let before = lease.spec.take().unwrap_or_default();
        let transitions = before.lease_transitions.unwrap_or(0)
            + i32::from(before.holder_identity.as_deref() != Some(self.node));
        lease.spec = Some(self.spec(transitions));
        self.write(&lease)
            .await
            .map(|written| written.map_or(Round::Raced, |l| Round::Held(Box::new(l))))
    }

    /// A conditional update: `None` when the resourceVersion was stale.
    async fn write(&self, lease: &Lease) -> Result<Option<Lease>, KubeError> {
        match self.cluster.put(&path(), encode(lease)?).await {
            Ok(bytes) => Ok(Some(decode(&bytes)?)),
            Err(KubeError::Status { code: 409, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Runs `work` while renewing the Lease. Losing the Lease does not stop
    /// the work: every step of it is safe to repeat (the seed is only ever
    /// created, a second PUT is answered `already-set`), so finishing beats
    /// leaving it half done.
    pub(crate) async fn renewing<T>(&self, held: &Held, work: impl Future<Output = T>) -> T {
        let renew = async {
            loop {
                tokio::time::sleep(self.duration / 3).await;
                if let Err(e) = self.renew(held).await {
                    tracing::warn!("renewing Lease {NAMESPACE}/{NAME}: {e}");
                    if matches!(e, Renewal::Lost(_)) {
                        return;
                    }
                }
            }
        };
        tokio::pin!(work);
        tokio::select! {
            out = &mut work => return out,
            () = renew => {}
        }
        work.await
    }

    async fn renew(&self, held: &Held) -> Result<(), Renewal> {
        let mut lease = held.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(timestamp());
        }
        let written = match self.write(&lease).await? {
            Some(written) => written,
            None => {
                let bytes = self.cluster.get(&path()).await?.ok_or_else(|| {
                    Renewal::Lost("the Lease was deleted; finishing the work anyway".into())
                })?;
                let current = decode(&bytes)?;
                if let Some(other) = holder(&current).filter(|h| *h != self.node) {
                    return Err(Renewal::Lost(format!(
                        "node {} took it over; finishing the work anyway",
                        Untrusted::new(other).shown()
                    )));
                }
                current
            }
        };
        *held.0.lock().unwrap_or_else(|e| e.into_inner()) = written;
        Ok(())
    }

    /// Records on the Lease that this node did the work, so the others
    /// finish instead of taking over.
    pub(crate) async fn complete(&self, held: Box<Held>, step: &Step<'_>) -> anyhow::Result<()> {
        step.retry(|_| self.record_completion(&held)).await
    }

    /// One attempt: the record written, reading the Lease again at once
    /// when another write came between.
    async fn record_completion(&self, held: &Held) -> Result<(), LeaseError> {
        loop {
            let mut lease = held.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let annotations = lease.metadata.annotations.get_or_insert_default();
            annotations.insert(COMPLETED_BY.to_string(), self.node.to_string());
            annotations.insert(COMPLETED_AT.to_string(), crate::report::state::now());
            annotations.insert(DEPLOYMENT_ID.to_string(), self.deployment_id.to_string());
            if self.write(&lease).await?.is_some() {
                return Ok(());
            }
            let bytes = self
                .cluster
                .get(&path())
                .await?
                .ok_or(LeaseError::Deleted)?;
            *held.0.lock().unwrap_or_else(|e| e.into_inner()) = decode(&bytes)?;
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum Renewal {
    #[error("{0}")]
    Kube(#[from] KubeError),
    #[error("lost it: {0}")]
    Lost(String),
}
