//! The OpenBao recovery seed: 32 bytes from the kernel CSPRNG, written once
//! as a Secret with create (never apply, never update), and never anywhere
//! but locked memory on its way there.

use std::borrow::Cow;
use std::collections::BTreeMap;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use crate::cluster::{Cluster, Created, KubeError};
use crate::config::SeedTarget;
use crate::exit::Exit;
use crate::locked::LockedBuf;
use crate::retry::{Classify, Verdict};
use crate::untrusted::{self, Alphabet};

const SEED_BYTES: usize = 32;
/// Standard base64 of 32 bytes, with padding.
const SEED_TEXT: usize = 44;
/// `data` values are base64 again on the wire.
const SEED_WIRE: usize = 60;
pub(crate) const SINGLE_USE_ANNOTATION: &str = "openbao.openova.io/single-use";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeedOutcome {
    Written,
    /// A Secret was already there (ours from an earlier attempt, or a peer's).
    Kept,
    /// OpenBao's init marker exists: it is initialised and needs no seed.
    Skipped,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SeedError {
    #[error(transparent)]
    Kube(#[from] KubeError),
    #[error(
        "Secret {namespace}/{name} already exists but has no non-empty `{key}` key; it is left untouched. \
         Inspect it; delete it to let catalyst-bootstrap write a fresh seed"
    )]
    ExistsWithoutKey {
        namespace: String,
        name: String,
        key: String,
    },
}

impl Classify for SeedError {
    fn verdict(&self) -> Verdict {
        match self {
            SeedError::Kube(e) => e.verdict(),
            SeedError::ExistsWithoutKey { .. } => Verdict::Permanent(Exit::Data),
        }
    }
}

/// The JSON body that creates the Secret, in locked memory; cloning it for a
/// retry shares the same buffer.
pub(crate) fn secret_body(target: &SeedTarget) -> anyhow::Result<Bytes> {
    let mut raw = LockedBuf::with_capacity(SEED_BYTES)?;
    raw.append_with(SEED_BYTES, |buf| {
        getrandom::fill(buf).context("reading the kernel CSPRNG")
    })?;
    let mut text = LockedBuf::with_capacity(SEED_TEXT)?;
    text.append_with(SEED_TEXT, |buf| encode_exact(raw.as_bytes(), buf))?;
    register_hex(raw.as_bytes())?;
    drop(raw);
    untrusted::register(Alphabet::Base64, text.as_bytes());

    let mut metadata = json!({
        "name": target.name,
        "namespace": target.namespace,
        "annotations": { SINGLE_USE_ANNOTATION: "true" },
    });
    if let Some(release) = &target.helm_release {
        // What Helm checks before it adopts an existing object (and keeps its value).
        metadata["labels"] = json!({ "app.kubernetes.io/managed-by": "Helm" });
        metadata["annotations"]["meta.helm.sh/release-name"] = release.name.as_str().into();
        metadata["annotations"]["meta.helm.sh/release-namespace"] =
            release.namespace.as_str().into();
    }
    let head = format!(
        r#"{{"apiVersion":"v1","kind":"Secret","metadata":{metadata},"type":"Opaque","data":{{{}:""#,
        serde_json::Value::from(target.key.as_str())
    );
    let tail = r#""}}"#;
    let mut body = LockedBuf::with_capacity(head.len() + SEED_WIRE + tail.len())?;
    body.append(head.as_bytes())?;
    body.append_with(SEED_WIRE, |buf| encode_exact(text.as_bytes(), buf))?;
    untrusted::register(Alphabet::Base64, &body.as_bytes()[head.len()..]);
    body.append(tail.as_bytes())?;
    Ok(Bytes::from_owner(body))
}

/// The seed's bytes as hex, known to [`untrusted`] like its other forms.
fn register_hex(raw: &[u8]) -> anyhow::Result<()> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = LockedBuf::with_capacity(raw.len() * 2)?;
    hex.append_with(raw.len() * 2, |buf| {
        for (pair, byte) in buf.chunks_exact_mut(2).zip(raw) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0xf)];
        }
        Ok(())
    })?;
    untrusted::register(Alphabet::Hex, hex.as_bytes());
    Ok(())
}

fn encode_exact(input: &[u8], out: &mut [u8]) -> anyhow::Result<()> {
    let n = STANDARD
        .encode_slice(input, out)
        .context("base64 encoding")?;
    anyhow::ensure!(n == out.len(), "base64 length {n}, expected {}", out.len());
    Ok(())
}

fn secret_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/secrets/{name}")
}

/// One attempt: marker check, namespace, Secret. Every step is safe to repeat.
pub(crate) async fn ensure(
    cluster: &Cluster,
    target: &SeedTarget,
    body: &Bytes,
) -> Result<SeedOutcome, SeedError> {
    if cluster
        .get(&secret_path(&target.namespace, &target.marker))
        .await?
        .is_some()
    {
        return Ok(SeedOutcome::Skipped);
    }
    let namespace =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target.namespace}});
    cluster
        .create("/api/v1/namespaces", Bytes::from(namespace.to_string()))
        .await?;
    let collection = format!("/api/v1/namespaces/{}/secrets", target.namespace);
    match cluster.create(&collection, body.clone()).await? {
        Created::New => Ok(SeedOutcome::Written),
        Created::AlreadyExists => {
            let existing = cluster
                .get(&secret_path(&target.namespace, &target.name))
                .await?;
            if existing.as_deref().is_some_and(|b| has_key(b, &target.key)) {
                Ok(SeedOutcome::Kept)
            } else {
                Err(SeedError::ExistsWithoutKey {
                    namespace: target.namespace.clone(),
                    name: target.name.clone(),
                    key: target.key.clone(),
                })
            }
        }
    }
}

/// Whether a Secret's JSON has a non-empty `data[key]` (or `stringData`).
/// Values are borrowed, never copied out.
fn has_key(secret: &[u8], key: &str) -> bool {
    #[derive(Deserialize)]
    struct View<'a> {
        #[serde(borrow, default)]
        data: BTreeMap<Cow<'a, str>, Option<Cow<'a, str>>>,
    }
    serde_json::from_slice::<View>(secret)
        .map(|v| {
            v.data
                .get(key)
                .is_some_and(|value| value.as_deref().is_some_and(|s| !s.is_empty()))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HelmRelease;

    fn target() -> SeedTarget {
        SeedTarget {
            namespace: "openbao".into(),
            name: "openbao-recovery-seed".into(),
            key: "recovery-seed".into(),
            marker: "openbao-init-marker".into(),
            helm_release: None,
        }
    }

    fn decode(body: &Bytes) -> (serde_json::Value, Vec<u8>) {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        let wire = v["data"]["recovery-seed"].as_str().unwrap().to_string();
        let text = STANDARD.decode(wire).unwrap();
        assert_eq!(text.len(), 44);
        assert!(!text.contains(&b'\n'));
        let raw = STANDARD.decode(&text).unwrap();
        (v, raw)
    }

    #[test]
    fn body_has_the_contract_shape() {
        let body = secret_body(&target()).unwrap();
        let (v, raw) = decode(&body);
        assert_eq!(raw.len(), 32);
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Secret");
        assert_eq!(v["type"], "Opaque");
        assert_eq!(v["metadata"]["name"], "openbao-recovery-seed");
        assert_eq!(v["metadata"]["namespace"], "openbao");
        assert_eq!(
            v["metadata"]["annotations"],
            json!({"openbao.openova.io/single-use": "true"})
        );
        assert_eq!(v["data"].as_object().unwrap().len(), 1);
        assert!(
            v["metadata"].get("labels").is_none(),
            "no Helm metadata unless configured"
        );
    }

    #[test]
    fn helm_release_adds_ownership_metadata() {
        let mut t = target();
        t.helm_release = Some(HelmRelease {
            name: "bp-openbao".into(),
            namespace: "openbao".into(),
        });
        let (v, raw) = decode(&secret_body(&t).unwrap());
        assert_eq!(raw.len(), 32);
        assert_eq!(
            v["metadata"]["labels"],
            json!({"app.kubernetes.io/managed-by": "Helm"})
        );
        assert_eq!(
            v["metadata"]["annotations"],
            json!({
                "openbao.openova.io/single-use": "true",
                "meta.helm.sh/release-name": "bp-openbao",
                "meta.helm.sh/release-namespace": "openbao",
            })
        );
    }

    #[test]
    fn every_body_has_a_fresh_seed() {
        let (_, a) = decode(&secret_body(&target()).unwrap());
        let (_, b) = decode(&secret_body(&target()).unwrap());
        assert_ne!(a, b);
        assert!(a.iter().any(|&x| x != 0));
    }

    #[test]
    fn key_presence_check() {
        assert!(has_key(
            br#"{"data":{"recovery-seed":"QUFB"}}"#,
            "recovery-seed"
        ));
        assert!(!has_key(
            br#"{"data":{"recovery-seed":""}}"#,
            "recovery-seed"
        ));
        assert!(!has_key(br#"{"data":{"other":"QUFB"}}"#, "recovery-seed"));
        assert!(!has_key(br#"{"metadata":{}}"#, "recovery-seed"));
        assert!(!has_key(b"not json", "recovery-seed"));
    }
}
