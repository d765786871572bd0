//! Bootstrap Secrets: the Secret manifests cloud-init leaves in
//! `secrets_dir` (the registry pull token, object-storage keys, the cloud
//! API token), written with server-side apply and then overwritten and
//! removed, so that neither a `last-applied-configuration` annotation nor a
//! plaintext file outlives the write.
//!
//! A manifest is read straight into locked memory and its request body is
//! built there; the parsed YAML document in between lives on the heap for
//! the parse only, and the wiping allocator zeroes it when it is freed.
//! Every value is registered with `untrusted`, so an answer that repeats one
//! is withheld. Error messages name the file and the field, never a value.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use nix::fcntl::OFlag;
use serde_json::{Map, Value, json};

use crate::config;
use crate::exit::Exit;
use crate::memory::locked::LockedBuf;
use crate::memory::untrusted::{self, Alphabet, Untrusted};
use crate::peers::cluster::{Cluster, KubeError};
use crate::peers::retry::{Classify, Verdict};
use crate::report::state::Applied;

/// The field manager of every apply: the fields it owns are the manifest's.
pub(crate) const FIELD_MANAGER: &str = "catalyst-bootstrap";
/// A Secret is at most 1 MiB; its manifest, base64 and YAML around it, a bit more.
const MAX_MANIFEST: usize = 2 << 20;
const FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "type",
    "data",
    "stringData",
    "immutable",
];
const METADATA_FIELDS: &[&str] = &["name", "namespace", "labels", "annotations"];

/// One Secret to apply: where it came from, what it is, and the apply body
/// (in locked memory; cloning it for a retry shares the buffer).
pub(crate) struct Manifest {
    /// The file's name in `secrets_dir`.
    pub(crate) file: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    body: Bytes,
}

impl Manifest {
    /// `namespace/name`, as state.json, `status` and the journal name it.
    pub(crate) fn secret(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// What `secrets_dir` holds for this run.
pub(crate) struct Bundle {
    pub(crate) dir: PathBuf,
    /// Manifests to apply, in file-name order.
    pub(crate) manifests: Vec<Manifest>,
    /// Files of Secrets that state.json records as applied but not yet
    /// removed: a stop came between the record and the removal. They are
    /// removed unread (a stop in the middle of the overwrite leaves zeros,
    /// which would not parse).
    pub(crate) leftovers: Vec<String>,
}

impl Bundle {
    /// Reads and checks every `*.yaml` file in `dir`; a missing directory
    /// holds none. Refusals are exit 78 (a file cloud-init should have
    /// written otherwise: owner, mode, type) or 65 (its content).
    pub(crate) fn load(dir: &Path, applied: &[Applied]) -> anyhow::Result<Bundle> {
        let mut bundle = Bundle {
            dir: dir.to_path_buf(),
            manifests: Vec::new(),
            leftovers: Vec::new(),
        };
        let names = config::file::yaml_files(dir)
            .with_context(|| format!("`secrets_dir` {} cannot be listed", dir.display()))
            .context(Exit::Config)?;
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for name in names {
            // Only a file whose removal was cut short; a file written again
            // under a removed one's name (a rotated credential) is new.
            if applied.iter().any(|a| a.file == name && !a.removed) {
                bundle.leftovers.push(name);
                continue;
            }
            let manifest = read(&dir.join(&name), &name)?;
            if let Some(first) = seen.insert(manifest.secret(), name.clone()) {
                return Err(anyhow!(
                    "bootstrap Secret manifests {} and {} both define Secret {}; \
                     each Secret may come from one file only",
                    dir.join(first).display(),
                    dir.join(&name).display(),
                    manifest.secret()
                ))
                .context(Exit::Data);
            }
            bundle.manifests.push(manifest);
        }
        Ok(bundle)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.manifests.is_empty() && self.leftovers.is_empty()
    }

    /// For `check-config`: each Secret and its file, never a value.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for m in &self.manifests {
            out += &format!(
                "bootstrap_secret: {} (from {}, valid)\n",
                m.secret(),
                m.file
            );
        }
        for file in &self.leftovers {
            out +=
                &format!("bootstrap_secret: {file} (applied by an earlier run; to be removed)\n");
        }
        if out.is_empty() {
            out = format!("bootstrap_secret: none in {}\n", self.dir.display());
        }
        out
    }
}

/// One manifest file, checked and turned into its apply body.
fn read(path: &Path, file: &str) -> anyhow::Result<Manifest> {
    let refuse = |what: String, exit: Exit| {
        Err(anyhow!(
            "bootstrap Secret manifest {}: {what}",
            path.display()
        ))
        .context(exit)
    };
    let (bytes, meta) = match config::file::read_locked(path, MAX_MANIFEST) {
        Ok(read) => read,
        Err(e) => return refuse(e.to_string(), config::file::refusal_exit(&e)),
    };
    if let Some(uid) = config::file::foreign_owner(&meta) {
        let why =
            format!("is owned by uid {uid}, not by root; only root may hand the agent a Secret");
        return refuse(why, Exit::Config);
    }
    if meta.mode() & 0o077 != 0 {
        return refuse(
            format!(
                "has mode {:04o}: group and others may access it; write it with mode 0600 \
                 (cloud-init `write_files`: `permissions: '0600'`)",
                meta.mode() & 0o7777
            ),
            Exit::Config,
        );
    }
    let doc: Value = match serde_saphyr::from_slice(bytes.as_bytes()) {
        Ok(doc) => doc,
        Err(e) => {
            let at = config::file::yaml_location(&e);
            return refuse(format!("is not valid YAML{at}"), Exit::Data);
        }
    };
    drop(bytes);
    parse(&doc, file).map_err(|field| {
        anyhow!("bootstrap Secret manifest {}: {field}", path.display()).context(Exit::Data)
    })
}

/// Names a field (from the file: escaped like outside text).
fn field(name: &str) -> String {
    format!("`{}`", Untrusted::new(name).shown())
}

/// The checked manifest and its body, or what is wrong with which field.
fn parse(doc: &Value, file: &str) -> Result<Manifest, String> {
    let Value::Object(top) = doc else {
        return Err("is not a Secret manifest: expected a mapping at the top level".into());
    };
    if let Some(unknown) = top.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field {} (a Secret manifest has {})",
            field(unknown),
            FIELDS.join(", ")
        ));
    }
    if top.get("apiVersion").and_then(Value::as_str) != Some("v1") {
        return Err("field `apiVersion` must be `v1`".into());
    }
    if top.get("kind").and_then(Value::as_str) != Some("Secret") {
        return Err("field `kind` must be `Secret` (one Secret per file)".into());
    }
    let Some(Value::Object(meta)) = top.get("metadata") else {
        return Err("field `metadata` is missing or not a mapping".into());
    };
    if let Some(unknown) = meta.keys().find(|k| !METADATA_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "unknown field `metadata.{}` (allowed: {})",
            Untrusted::new(unknown.as_str()).shown(),
            METADATA_FIELDS.join(", ")
        ));
    }
    let name = match meta.get("name").and_then(Value::as_str) {
        Some(n) if config::dns_subdomain(n).is_ok() => n.to_string(),
        Some(_) => {
            return Err("field `metadata.name` is not a DNS subdomain name \
                 (lowercase a-z, 0-9, '-' and '.', at most 253 characters)"
                .into());
        }
        None => return Err("field `metadata.name` is missing".into()),
    };
    let namespace = match meta.get("namespace").and_then(Value::as_str) {
        Some(n) if config::dns_label(n).is_ok() => n.to_string(),
        Some(_) => {
            return Err("field `metadata.namespace` is not a DNS label \
                 (lowercase a-z, 0-9 and '-', at most 63 characters)"
                .into());
        }
        None => {
            return Err("field `metadata.namespace` is missing \
                 (the agent does not guess where a Secret belongs)"
                .into());
        }
    };
    let mut metadata = json!({"name": name, "namespace": namespace});
    for key in ["labels", "annotations"] {
        if let Some(value) = meta.get(key) {
            let Some(map) = strings(value) else {
                return Err(format!("field `metadata.{key}` must map names to strings"));
            };
            metadata[key] = Value::Object(map);
        }
    }
    let mut head = Map::new();
    head.insert("apiVersion".into(), "v1".into());
    head.insert("kind".into(), "Secret".into());
    head.insert("metadata".into(), metadata);
    match top.get("type") {
        None => {}
        Some(Value::String(t)) if !t.is_empty() => {
            head.insert("type".into(), t.as_str().into());
        }
        Some(_) => return Err("field `type` must be a non-empty string".into()),
    }
    match top.get("immutable") {
        None => {}
        Some(Value::Bool(b)) => {
            head.insert("immutable".into(), (*b).into());
        }
        Some(_) => return Err("field `immutable` must be true or false".into()),
    }
    let data = entries(top, "data")?;
    let text = entries(top, "stringData")?;
    if let Some((key, _)) = data.iter().find(|(k, _)| text.iter().any(|(t, _)| t == k)) {
        return Err(format!(
            "key {} is in both `data` and `stringData`; give it once",
            field(key)
        ));
    }
    let body = body(head, &data, &text)?;
    Ok(Manifest {
        file: file.to_string(),
        namespace,
        name,
        body,
    })
}

/// A mapping of names to strings, or `None`.
fn strings(value: &Value) -> Option<Map<String, Value>> {
    let map = value.as_object()?;
    map.values().all(Value::is_string).then(|| map.clone())
}

/// The entries of `data` or `stringData`, keys checked, values as text.
fn entries<'a>(top: &'a Map<String, Value>, name: &str) -> Result<Vec<(&'a str, &'a str)>, String> {
    let Some(value) = top.get(name) else {
        return Ok(Vec::new());
    };
    let Value::Object(map) = value else {
        return Err(format!(
            "field `{name}` must be a mapping of keys to values"
        ));
    };
    map.iter()
        .map(|(key, value)| {
            if config::secret_key(key).is_err() {
                return Err(format!(
                    "field `{name}` has a key that is not a valid Secret key \
                     (a-z, A-Z, 0-9, '-', '_' and '.', at most 253 characters)"
                ));
            }
            match value.as_str() {
                Some(text) => Ok((key.as_str(), text)),
                None => Err(format!(
                    "field `{name}.{}` must be a string (quote numbers and booleans)",
                    Untrusted::new(key.as_str()).shown()
                )),
            }
        })
        .collect()
}

/// The apply body: `head` with `data` after it, built in locked memory.
/// `stringData` goes as base64 `data` too: the API server stores only
/// `data`, and applying `stringData` would leave the field ownership of
/// `data` to nobody (kubernetes/kubernetes#108008).
fn body(
    head: Map<String, Value>,
    data: &[(&str, &str)],
    text: &[(&str, &str)],
) -> Result<Bytes, String> {
    let head = Value::Object(head).to_string();
    let open = format!("{},\"data\":{{", &head[..head.len() - 1]);
    let keys: Vec<String> = data
        .iter()
        .chain(text)
        .map(|(k, _)| Value::from(*k).to_string())
        .collect();
    let size = open.len()
        + keys.iter().map(|k| k.len() + 4).sum::<usize>()
        + data.iter().map(|(_, v)| v.len()).sum::<usize>()
        + text
            .iter()
            .map(|(_, v)| v.len().div_ceil(3) * 4)
            .sum::<usize>()
        + 2;
    let locked = |e: anyhow::Error| format!("cannot hold it in locked memory: {e:#}");
    let mut body = LockedBuf::with_capacity(size).map_err(locked)?;
    body.append(open.as_bytes()).map_err(locked)?;
    let mut keys = keys.iter();
    let mut first = true;
    for (key, value) in data {
        register_value(key, value)?;
        let start = body.as_bytes().len();
        entry(&mut body, keys.next(), &mut first, value.as_bytes()).map_err(locked)?;
        untrusted::register(Alphabet::Base64, &body.as_bytes()[start..]);
    }
    for (_, value) in text {
        untrusted::register(Alphabet::Base64, value.as_bytes());
        untrusted::register(Alphabet::Hex, value.as_bytes());
        let mut wire = LockedBuf::with_capacity(value.len().div_ceil(3) * 4).map_err(locked)?;
        wire.append_with(value.len().div_ceil(3) * 4, |out| {
            STANDARD
                .encode_slice(value.as_bytes(), out)
                .map(drop)
                .context("base64 encoding")
        })
        .map_err(locked)?;
        untrusted::register(Alphabet::Base64, wire.as_bytes());
        entry(&mut body, keys.next(), &mut first, wire.as_bytes()).map_err(locked)?;
    }
    body.append(b"}}").map_err(locked)?;
    Ok(Bytes::from_owner(body))
}

/// Appends `"key":"value"` to the body.
fn entry(
    body: &mut LockedBuf,
    key: Option<&String>,
    first: &mut bool,
    value: &[u8],
) -> anyhow::Result<()> {
    if !std::mem::take(first) {
        body.append(b",")?;
    }
    body.append(key.context("a key for every value")?.as_bytes())?;
    body.append(b":\"")?;
    body.append(value)?;
    body.append(b"\"")
}

/// Checks that a `data` value is base64 and registers what it decodes to.
fn register_value(key: &str, value: &str) -> Result<(), String> {
    let invalid = || {
        format!(
            "field `data.{}` is not valid base64 (put plain text under `stringData`)",
            Untrusted::new(key).shown()
        )
    };
    let room = value.len() / 4 * 3 + 3;
    let mut raw = LockedBuf::with_capacity(room).map_err(|e| format!("{e:#}"))?;
    let mut len = 0;
    raw.append_with(room, |out| {
        len = STANDARD.decode_slice(value.as_bytes(), out)?;
        Ok(())
    })
    .map_err(|_| invalid())?;
    let decoded = &raw.as_bytes()[..len];
    untrusted::register(Alphabet::Base64, decoded);
    untrusted::register(Alphabet::Hex, decoded);
    Ok(())
}

fn secret_path(namespace: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/secrets/{name}")
}

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub(crate) struct ApplyError(#[from] KubeError);

impl Classify for ApplyError {
    /// As for the seed, except that the API server refusing the manifest
    /// (`400`, `422`: an invalid type's keys, a changed immutable Secret)
    /// is unusable input, not a bug.
    fn verdict(&self) -> Verdict {
        match self.0.code() {
            Some(400 | 422) => Verdict::Permanent(Exit::Data),
            _ => self.0.verdict(),
        }
    }
}

/// One attempt: the namespace, then the apply. Both are safe to repeat.
pub(crate) async fn apply(cluster: &Cluster, manifest: &Manifest) -> Result<(), ApplyError> {
    cluster.ensure_namespace(&manifest.namespace).await?;
    cluster
        .apply(
            &secret_path(&manifest.namespace, &manifest.name),
            FIELD_MANAGER,
            manifest.body.clone(),
        )
        .await?;
    Ok(())
}

/// Overwrites `file` in `dir` with zeros, syncs it, removes it and syncs
/// the directory. `false` when it was already gone.
pub(crate) fn remove(dir: &Path, file: &str) -> anyhow::Result<bool> {
    let path = dir.join(file);
    let failed = |e: std::io::Error| {
        let exit = match e.raw_os_error() {
            Some(nix::libc::EROFS | nix::libc::EACCES | nix::libc::EPERM) => Exit::Config,
            _ => Exit::State,
        };
        anyhow!(e)
            .context(format!(
                "removing {} (the Secret is written; the file must not stay): \
                 the agent needs write access to `secrets_dir` (ReadWritePaths= in the unit)",
                path.display()
            ))
            .context(exit)
    };
    let mut f = match OpenOptions::new()
        .write(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(failed(e)),
    };
    let len = f.metadata().map_err(failed)?.len();
    let zeros = [0u8; 4096];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        f.write_all(&zeros[..n]).map_err(failed)?;
        left -= n as u64;
    }
    f.sync_all().map_err(failed)?;
    drop(f);
    std::fs::remove_file(&path).map_err(failed)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(failed)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::PermissionsExt;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    const PULL: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: ghcr-pull\n  namespace: flux-system\n  labels: {app: flux}\ntype: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{\"auths\":{\"ghcr.io\":{\"auth\":\"c2VjcmV0LXRva2VuLXZhbHVlLTAxMjM0NTY3ODk=\"}}}'\n";

    fn error(text: &str) -> (Exit, String) {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "s.yaml", text, 0o600);
        let err = Bundle::load(dir.path(), &[]).err().expect("refused");
        (Exit::of(&err), format!("{err:#}"))
    }

    #[test]
    fn a_manifest_becomes_an_apply_body_with_data_only() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", PULL, 0o600);
        write(dir.path(), "notes.txt", "ignored", 0o644);
        let bundle = Bundle::load(dir.path(), &[]).unwrap();
        assert_eq!(bundle.manifests.len(), 1);
        let m = &bundle.manifests[0];
        assert_eq!(
            (m.file.as_str(), m.secret().as_str()),
            ("a.yaml", "flux-system/ghcr-pull")
        );
        let body: Value = serde_json::from_slice(&m.body).unwrap();
        assert_eq!(body["metadata"]["labels"]["app"], "flux");
        assert_eq!(body["type"], "kubernetes.io/dockerconfigjson");
        assert!(body.get("stringData").is_none());
        let wire = body["data"][".dockerconfigjson"].as_str().unwrap();
        assert!(STANDARD.decode(wire).unwrap().starts_with(b"{\"auths\""));
    }

    #[test]
    fn refusals_name_the_field_and_never_the_value() {
        let cases: &[(&str, Exit, &str)] = &[
            (
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: b}\n",
                Exit::Data,
                "`kind`",
            ),
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\n",
                Exit::Data,
                "`metadata.namespace` is missing",
            ),
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: Not_A_Name, namespace: b}\n",
                Exit::Data,
                "`metadata.name`",
            ),
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\nsecretdata: {}\n",
                Exit::Data,
                "unknown field `secretdata`",
            ),
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b, uid: x}\n",
                Exit::Data,
                "`metadata.uid`",
            ),
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\ndata: {token: not*base64*hunter2hunter2}\n",
                Exit::Data,
                "`data.token` is not valid base64",
            ),
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\nstringData: {port: 443}\n",
                Exit::Data,
                "`stringData.port` must be a string",
            ),
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\ndata: {k: aGk=}\nstringData: {k: hunter2hunter2}\n",
                Exit::Data,
                "both `data` and `stringData`",
            ),
            (
                "apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\nstringData: {k: \"hunter2hunter2\n",
                Exit::Data,
                "not valid YAML",
            ),
        ];
        for (text, exit, says) in cases {
            let (got, message) = error(text);
            assert_eq!(got, *exit, "{message}");
            assert!(
                message.contains(says) && message.contains("s.yaml"),
                "{message}"
            );
            assert!(!message.contains("hunter2"), "a value in {message}");
        }
    }

    #[test]
    fn owner_mode_type_and_duplicates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", PULL, 0o640);
        let err = Bundle::load(dir.path(), &[]).err().unwrap();
        assert_eq!(Exit::of(&err), Exit::Config);
        assert!(format!("{err:#}").contains("mode 0640"), "{err:#}");

        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("a.yaml")).unwrap();
        let err = Bundle::load(dir.path(), &[]).err().unwrap();
        assert_eq!(Exit::of(&err), Exit::Config);
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");

        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        write(dir.path(), "a.yaml", PULL, 0o600);
        write(dir.path(), "b.yaml", PULL, 0o600);
        let err = Bundle::load(dir.path(), &[]).err().unwrap();
        assert_eq!(Exit::of(&err), Exit::Data);
        assert!(
            format!("{err:#}").contains("a.yaml and ")
                && format!("{err:#}").contains("flux-system/ghcr-pull"),
            "{err:#}"
        );
    }

    #[test]
    fn a_missing_directory_holds_none_and_recorded_files_are_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            Bundle::load(&dir.path().join("none"), &[])
                .unwrap()
                .is_empty()
        );
        // An overwrite cut short leaves zeros: not parsed, only removed.
        write(dir.path(), "a.yaml", "\0\0\0\0", 0o600);
        let applied = [Applied {
            file: "a.yaml".into(),
            secret: "flux-system/ghcr-pull".into(),
            removed: false,
        }];
        let bundle = Bundle::load(dir.path(), &applied).unwrap();
        assert!(bundle.manifests.is_empty());
        assert_eq!(bundle.leftovers, ["a.yaml"]);
        // Once its removal is recorded, a file of that name is a new one.
        write(dir.path(), "a.yaml", PULL, 0o600);
        let removed = [Applied {
            removed: true,
            ..applied[0].clone()
        }];
        let bundle = Bundle::load(dir.path(), &removed).unwrap();
        assert_eq!(bundle.manifests.len(), 1);
        assert!(bundle.leftovers.is_empty());
    }

    #[test]
    fn remove_overwrites_then_unlinks() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yaml", PULL, 0o600);
        // A second link shows what the overwrite left in the inode.
        std::fs::hard_link(dir.path().join("a.yaml"), dir.path().join("peek")).unwrap();
        assert!(remove(dir.path(), "a.yaml").unwrap());
        assert!(!dir.path().join("a.yaml").exists());
        let left = std::fs::read(dir.path().join("peek")).unwrap();
        assert_eq!(left.len(), PULL.len());
        assert!(left.iter().all(|b| *b == 0));
        assert!(!remove(dir.path(), "a.yaml").unwrap());
    }
}
