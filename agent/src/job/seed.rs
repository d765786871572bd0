//! The OpenBao recovery seed: 32 bytes from the kernel CSPRNG, written once
//! as a Secret with create (never apply, never update), and never anywhere
//! but locked memory on its way there.
//!
//! The Secret carries Helm's ownership metadata for the configured release
//! (`openbao` in `openbao` by default), so the bp-openbao chart, which
//! renders the same Secret, adopts it instead of refusing to install. A
//! Secret that already exists without that metadata gets it added with a
//! JSON merge patch that names only the three metadata keys (so `data`
//! cannot change); its value is never rewritten.

use std::borrow::Cow;
use std::collections::BTreeMap;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use crate::config::{HelmRelease, SeedTarget};
use crate::exit::Exit;
use crate::memory::locked::LockedBuf;
use crate::memory::untrusted::{self, Alphabet, Untrusted};
use crate::peers::cluster::{Cluster, Created, KubeError};
use crate::peers::retry::{Classify, Verdict};

const SEED_BYTES: usize = 32;
/// Standard base64 of 32 bytes, with padding.
const SEED_TEXT: usize = 44;
/// `data` values are base64 again on the wire.
const SEED_WIRE: usize = 60;
pub(crate) const SINGLE_USE_ANNOTATION: &str = "openbao.openova.io/single-use";
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
const MANAGED_BY_HELM: &str = "Helm";
const RELEASE_NAME_ANNOTATION: &str = "meta.helm.sh/release-name";
const RELEASE_NAMESPACE_ANNOTATION: &str = "meta.helm.sh/release-namespace";
/// Merge patches that lose the race with another writer, read again and resent.
const PATCH_TRIES: usize = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SeedOutcome {
    Written,
    /// A Secret was already there (ours from an earlier attempt, or a
    /// peer's); its value is kept, its Helm ownership as described.
    Kept(Ownership),
    /// OpenBao's init marker exists: it is initialised and needs no seed.
    Skipped,
}

/// What became of the Helm ownership metadata of a Secret that was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ownership {
    /// Nothing to do: adoption is off, or the metadata is already there.
    Unchanged,
    /// The metadata was missing (all or part) and was added.
    Added,
    /// Another owner is named (another release, or another manager): left
    /// alone, since Helm would refuse either way and taking it over is a
    /// human's decision. The text says who.
    Foreign(String),
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
        metadata["labels"] = json!({ MANAGED_BY_LABEL: MANAGED_BY_HELM });
        metadata["annotations"][RELEASE_NAME_ANNOTATION] = release.name.as_str().into();
        metadata["annotations"][RELEASE_NAMESPACE_ANNOTATION] = release.namespace.as_str().into();
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
    cluster.ensure_namespace(&target.namespace).await?;
    let collection = format!("/api/v1/namespaces/{}/secrets", target.namespace);
    if cluster.create(&collection, body.clone()).await? == Created::New {
        return Ok(SeedOutcome::Written);
    }
    let path = secret_path(&target.namespace, &target.name);
    let mut tries = 0;
    loop {
        // The answer holds the seed: it is only ever borrowed from, and the
        // allocator wipes the buffer when it is dropped.
        let response = cluster.get(&path).await?;
        let Some(existing) = response.as_deref().and_then(|b| view(b, &target.key)) else {
            return Err(SeedError::ExistsWithoutKey {
                namespace: target.namespace.clone(),
                name: target.name.clone(),
                key: target.key.clone(),
            });
        };
        let Some(release) = &target.helm_release else {
            return Ok(SeedOutcome::Kept(Ownership::Unchanged));
        };
        match existing.ownership(release) {
            Needs::Nothing => return Ok(SeedOutcome::Kept(Ownership::Unchanged)),
            Needs::LeaveAlone(owner) => return Ok(SeedOutcome::Kept(Ownership::Foreign(owner))),
            Needs::Patch => {}
        }
        let patch = ownership_patch(release, &existing.resource_version);
        drop(existing);
        drop(response);
        tries += 1;
        match cluster.merge_patch(&path, patch).await {
            Ok(_) => return Ok(SeedOutcome::Kept(Ownership::Added)),
            // Changed since we read it: read it again and decide again.
            Err(KubeError::Status {
                code: 409, reason, ..
            }) if reason.matches() == "Conflict" && tries < PATCH_TRIES => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// What a run would do about the seed, as `doctor` reports it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The marker exists: nothing (as [`SeedOutcome::Skipped`]).
    Skip,
    /// No seed Secret: create the namespace if absent, then the Secret.
    Create,
    /// A seed is there: keep it; its ownership as [`Ownership`] would become
    /// (`Added` meaning: would be added).
    Keep(Ownership),
    /// The Secret exists without the key: a run fails (exit 65).
    ExistsWithoutKey,
}

/// [`ensure`]'s decisions from GETs alone: nothing is created or patched.
/// The Secret's value comes into memory as it does for `ensure` (borrowed,
/// wiped when dropped) and goes nowhere.
pub(crate) async fn plan(cluster: &Cluster, target: &SeedTarget) -> Result<Plan, KubeError> {
    if cluster
        .get(&secret_path(&target.namespace, &target.marker))
        .await?
        .is_some()
    {
        return Ok(Plan::Skip);
    }
    let Some(response) = cluster
        .get(&secret_path(&target.namespace, &target.name))
        .await?
    else {
        return Ok(Plan::Create);
    };
    let Some(existing) = view(&response, &target.key) else {
        return Ok(Plan::ExistsWithoutKey);
    };
    let Some(release) = &target.helm_release else {
        return Ok(Plan::Keep(Ownership::Unchanged));
    };
    Ok(Plan::Keep(match existing.ownership(release) {
        Needs::Nothing => Ownership::Unchanged,
        Needs::Patch => Ownership::Added,
        Needs::LeaveAlone(owner) => Ownership::Foreign(owner),
    }))
}

/// The merge patch that gives an existing Secret Helm's ownership metadata.
/// It names the three keys and the resourceVersion just read, nothing else:
/// a merge patch changes only the fields it names, so `data` (and every
/// other label and annotation) stays as it is, and a Secret changed since
/// it was read is refused with 409 instead of being patched blind.
fn ownership_patch(release: &HelmRelease, resource_version: &str) -> Bytes {
    Bytes::from(
        json!({"metadata": {
            "resourceVersion": resource_version,
            "labels": { MANAGED_BY_LABEL: MANAGED_BY_HELM },
            "annotations": {
                RELEASE_NAME_ANNOTATION: release.name,
                RELEASE_NAMESPACE_ANNOTATION: release.namespace,
            },
        }})
        .to_string(),
    )
}

/// What an existing Secret needs for Helm to adopt it into a release.
#[derive(Debug, PartialEq, Eq)]
enum Needs {
    Nothing,
    Patch,
    /// Someone else is named as its owner (described).
    LeaveAlone(String),
}

/// An existing Secret's non-secret metadata, once it is known to hold the seed.
#[derive(Debug)]
struct Existing<'a> {
    resource_version: String,
    labels: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
    annotations: BTreeMap<Cow<'a, str>, Cow<'a, str>>,
}

impl Existing<'_> {
    fn ownership(&self, release: &HelmRelease) -> Needs {
        let label = |k: &str| self.labels.get(k).map(|v| v.as_ref());
        let annotation = |k: &str| self.annotations.get(k).map(|v| v.as_ref());
        let managed_by = label(MANAGED_BY_LABEL);
        let name = annotation(RELEASE_NAME_ANNOTATION);
        let namespace = annotation(RELEASE_NAMESPACE_ANNOTATION);
        let ours = (release.name.as_str(), release.namespace.as_str());
        if managed_by == Some(MANAGED_BY_HELM) && (name, namespace) == (Some(ours.0), Some(ours.1))
        {
            return Needs::Nothing;
        }
        if name.is_some_and(|n| n != ours.0) || namespace.is_some_and(|n| n != ours.1) {
            // The annotations are the cluster's text, not ours.
            return Needs::LeaveAlone(
                Untrusted::new(format!(
                    "Helm release {}/{}",
                    name.unwrap_or("?"),
                    namespace.unwrap_or("?")
                ))
                .shown(),
            );
        }
        match managed_by {
            Some(other) if other != MANAGED_BY_HELM => {
                Needs::LeaveAlone(Untrusted::new(format!("{MANAGED_BY_LABEL}={other}")).shown())
            }
            _ => Needs::Patch,
        }
    }
}

/// A Secret's metadata, when its JSON has a non-empty `data[key]`. Values
/// are borrowed, never copied out; only the metadata is kept.
fn view<'a>(secret: &'a [u8], key: &str) -> Option<Existing<'a>> {
    #[derive(Deserialize)]
    struct View<'a> {
        #[serde(borrow, default)]
        metadata: Metadata<'a>,
        #[serde(borrow, default)]
        data: BTreeMap<Cow<'a, str>, Option<Cow<'a, str>>>,
    }
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "camelCase")]
    struct Metadata<'a> {
        #[serde(default)]
        resource_version: String,
        #[serde(borrow, default)]
        labels: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
        #[serde(borrow, default)]
        annotations: Option<BTreeMap<Cow<'a, str>, Cow<'a, str>>>,
    }
    let v = serde_json::from_slice::<View>(secret).ok()?;
    let value = v.data.get(key).and_then(|value| value.as_deref());
    let present = value.is_some_and(|s| !s.is_empty());
    if let Some(wire) = value.filter(|_| present) {
        // A seed this process did not make (a peer's, an earlier run's) is
        // as secret as its own: no outside text may repeat it either.
        untrusted::register(Alphabet::Base64, wire.as_bytes());
        if let Ok(text) = STANDARD.decode(wire).map(zeroize::Zeroizing::new) {
            untrusted::register(Alphabet::Base64, &text);
        }
    }
    present.then(|| Existing {
        resource_version: v.metadata.resource_version,
        labels: v.metadata.labels.unwrap_or_default(),
        annotations: v.metadata.annotations.unwrap_or_default(),
    })
}

#[cfg(test)]
fn has_key(secret: &[u8], key: &str) -> bool {
    view(secret, key).is_some()
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

    fn release(name: &str, namespace: &str) -> HelmRelease {
        HelmRelease {
            name: name.into(),
            namespace: namespace.into(),
        }
    }

    fn needs(secret: serde_json::Value) -> Needs {
        let text = secret.to_string();
        view(text.as_bytes(), "recovery-seed")
            .expect("holds the key")
            .ownership(&release("openbao", "openbao"))
    }

    fn secret(metadata: serde_json::Value) -> serde_json::Value {
        json!({"metadata": metadata, "data": {"recovery-seed": "QUFB"}})
    }

    #[test]
    fn what_an_existing_secret_needs_for_adoption() {
        let owned = json!({
            "resourceVersion": "7",
            "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {"meta.helm.sh/release-name": "openbao", "meta.helm.sh/release-namespace": "openbao"},
        });
        assert_eq!(needs(secret(owned)), Needs::Nothing);
        assert_eq!(needs(secret(json!({"resourceVersion": "7"}))), Needs::Patch);
        assert_eq!(
            needs(secret(json!({"labels": {}, "annotations": {"x": "y"}}))),
            Needs::Patch
        );
        assert_eq!(
            needs(secret(
                json!({"annotations": {"meta.helm.sh/release-name": "openbao"}})
            )),
            Needs::Patch,
            "part of ours"
        );
        assert_eq!(
            needs(secret(
                json!({"annotations": {"meta.helm.sh/release-name": "bp-openbao"}})
            )),
            Needs::LeaveAlone("Helm release bp-openbao/?".into())
        );
        assert_eq!(
            needs(secret(json!({
                "labels": {"app.kubernetes.io/managed-by": "Helm"},
                "annotations": {"meta.helm.sh/release-name": "openbao", "meta.helm.sh/release-namespace": "flux-system"},
            }))),
            Needs::LeaveAlone("Helm release openbao/flux-system".into())
        );
        assert_eq!(
            needs(secret(
                json!({"labels": {"app.kubernetes.io/managed-by": "kustomize"}})
            )),
            Needs::LeaveAlone("app.kubernetes.io/managed-by=kustomize".into())
        );
    }

    #[test]
    fn ownership_patch_names_only_metadata() {
        let patch = ownership_patch(&release("openbao", "openbao"), "42");
        let v: serde_json::Value = serde_json::from_slice(&patch).unwrap();
        assert_eq!(
            v,
            json!({"metadata": {
                "resourceVersion": "42",
                "labels": {"app.kubernetes.io/managed-by": "Helm"},
                "annotations": {"meta.helm.sh/release-name": "openbao", "meta.helm.sh/release-namespace": "openbao"},
            }})
        );
    }

    #[test]
    fn view_reads_metadata_without_the_value() {
        let text = secret(json!({"resourceVersion": "9", "labels": {"a": "b"}})).to_string();
        let v = view(text.as_bytes(), "recovery-seed").unwrap();
        assert_eq!(v.resource_version, "9");
        assert_eq!(v.labels.get("a").map(|c| c.as_ref()), Some("b"));
        assert!(v.annotations.is_empty());
        assert!(!format!("{v:?}").contains("QUFB"));
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
