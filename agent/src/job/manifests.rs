//! The hand-off: the Kubernetes objects cloud-init leaves in
//! `manifests.dir` (Flux's `GitRepository` and `Kustomization`s, the
//! Crossplane `Provider`), applied with server-side apply once the bootstrap
//! Secrets are there, each waiting until the API server serves its kind.
//!
//! Files are read and checked when the agent starts, so a bad file stops the
//! run before anything is sent, and read again when the phase starts:
//! upstream rewrites `flux-bootstrap.yaml` with `sed` just before the k3s
//! install, which may come after the agent started. Only kind, namespace
//! and name are ever shown; every string value of a body is registered with
//! `untrusted`, so an answer that echoes the body is withheld.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use bytes::Bytes;
use serde_json::Value;

use crate::config;
use crate::exit::Exit;
use crate::memory::untrusted::{self, Alphabet, Untrusted};
use crate::report::state::Handed;

/// A file whose name ends so is best-effort (upstream's Crossplane Provider).
pub(crate) const OPTIONAL: &str = ".optional.yaml";
/// Far above any hand-off file (upstream's is a few KiB).
const MAX_FILE: usize = 1 << 20;

/// One object to apply. Its body is never shown.
pub(crate) struct Object {
    /// 1-based, counting the file's non-empty documents.
    pub(crate) doc: usize,
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
    pub(crate) body: Bytes,
}

impl Object {
    /// `Kind namespace/name` or `Kind name`: how every surface names it.
    pub(crate) fn id(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    /// What state.json records of it once applied.
    pub(crate) fn handed(&self, file: &str) -> Handed {
        Handed {
            file: file.to_string(),
            api_version: self.api_version.clone(),
            object: self.id(),
        }
    }
}

/// One file of `manifests.dir`.
pub(crate) struct File {
    pub(crate) name: String,
    pub(crate) optional: bool,
    pub(crate) objects: Vec<Object>,
}

/// What `manifests.dir` holds.
pub(crate) struct Manifests {
    pub(crate) dir: PathBuf,
    /// In file-name order.
    pub(crate) files: Vec<File>,
}

impl Manifests {
    /// Reads and checks every `*.yaml` file in `dir`; a missing directory
    /// holds none. Refusals are exit 78 (a file cloud-init should have
    /// written otherwise: owner, mode, type) or 65 (its content).
    pub(crate) fn load(dir: &Path) -> anyhow::Result<Manifests> {
        let names = config::file::yaml_files(dir)
            .with_context(|| format!("`manifests.dir` {} cannot be listed", dir.display()))
            .context(Exit::Config)?;
        let mut files = Vec::new();
        for name in names {
            let objects = read(&dir.join(&name))?;
            files.push(File {
                optional: name.ends_with(OPTIONAL),
                name,
                objects,
            });
        }
        Ok(Manifests {
            dir: dir.to_path_buf(),
            files,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.files.iter().all(|f| f.objects.is_empty())
    }

    /// For `check-config`: each object and its file, never a body.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        for file in &self.files {
            let how = if file.optional {
                "optional"
            } else {
                "required"
            };
            for o in &file.objects {
                out += &format!(
                    "manifest: {} ({}) from {} ({how}, valid)\n",
                    o.id(),
                    o.api_version,
                    file.name
                );
            }
        }
        if out.is_empty() {
            out = format!("manifest: none in {}\n", self.dir.display());
        }
        out
    }
}

/// One file, checked and turned into its objects.
fn read(path: &Path) -> anyhow::Result<Vec<Object>> {
    let refuse = |what: String, exit: Exit| {
        Err(anyhow!("manifest file {}: {what}", path.display())).context(exit)
    };
    let (bytes, meta) = match config::file::read_nofollow(path, MAX_FILE) {
        Ok(read) => read,
        Err(e) => return refuse(e.to_string(), config::file::refusal_exit(&e)),
    };
    if let Some(uid) = config::file::foreign_owner(&meta) {
        let why = format!(
            "is owned by uid {uid}, not by root; only root may hand the agent objects to apply as cluster-admin"
        );
        return refuse(why, Exit::Config);
    }
    if meta.mode() & 0o022 != 0 {
        return refuse(
            format!(
                "has mode {:04o}: group or others may write it; write it with mode 0644 or 0600",
                meta.mode() & 0o7777
            ),
            Exit::Config,
        );
    }
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return refuse("is not UTF-8 text".into(), Exit::Data);
    };
    let docs: Vec<Value> = match serde_saphyr::from_multiple(text) {
        Ok(docs) => docs,
        Err(e) => {
            let at = config::file::yaml_location(&e);
            return refuse(format!("is not valid YAML{at}"), Exit::Data);
        }
    };
    let mut objects = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let object = parse(doc, i + 1).map_err(|what| {
            anyhow!(
                "manifest file {}, document {}: {what}",
                path.display(),
                i + 1
            )
            .context(Exit::Data)
        })?;
        if let Some(twice) = objects
            .iter()
            .find(|o: &&Object| o.api_version == object.api_version && o.id() == object.id())
        {
            return refuse(
                format!(
                    "documents {} and {} are both {}",
                    twice.doc,
                    object.doc,
                    object.id()
                ),
                Exit::Data,
            );
        }
        objects.push(object);
    }
    Ok(objects)
}

/// A text from the file, escaped like outside text.
fn shown(text: &str) -> String {
    Untrusted::new(text).shown()
}

/// The checked object, or what is wrong with which field.
fn parse(doc: &Value, index: usize) -> Result<Object, String> {
    let Value::Object(top) = doc else {
        return Err("is not a Kubernetes object: expected a mapping at the top level".into());
    };
    let text = |field: &str| top.get(field).and_then(Value::as_str).unwrap_or_default();
    let api_version = text("apiVersion");
    if !valid_api_version(api_version) {
        return Err(
            "field `apiVersion` is missing or not `version` or `group/version` (e.g. `v1`, \
             `source.toolkit.fluxcd.io/v1`)"
                .into(),
        );
    }
    let kind = text("kind");
    if kind.is_empty() || !kind.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return Err("field `kind` is missing or not a kind name (e.g. `Kustomization`)".into());
    }
    if kind.ends_with("List") {
        return Err(format!(
            "kind {} is a list; give each object its own document",
            shown(kind)
        ));
    }
    if api_version == "v1" && kind == "Secret" {
        return Err(
            "is a Secret: Secrets go in `secrets_dir`, whose files are wiped once applied".into(),
        );
    }
    let Some(Value::Object(meta)) = top.get("metadata") else {
        return Err("field `metadata` is missing or not a mapping".into());
    };
    let name = match meta.get("name").and_then(Value::as_str) {
        Some(n) if valid_name(n) => n.to_string(),
        Some(_) => {
            return Err("field `metadata.name` is not a valid object name \
                 (letters, digits, '-', '.', '_' and ':', at most 253 characters)"
                .into());
        }
        None => {
            return Err(
                "field `metadata.name` is missing (server-side apply needs a name; \
                 `generateName` is not enough)"
                    .into(),
            );
        }
    };
    let namespace = match meta.get("namespace") {
        None => None,
        Some(Value::String(n)) if config::dns_label(n).is_ok() => Some(n.clone()),
        Some(_) => {
            return Err("field `metadata.namespace` is not a DNS label \
                 (lowercase a-z, 0-9 and '-', at most 63 characters)"
                .into());
        }
    };
    register_values(doc, &[]);
    let body = serde_json::to_vec(doc).map_err(|e| format!("cannot be encoded: {e}"))?;
    Ok(Object {
        doc: index,
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        namespace,
        name,
        body: Bytes::from(body),
    })
}

/// Registers every string of the body that names neither the object nor
/// its type, so no echo of the body reaches an operator surface.
fn register_values(value: &Value, path: &[&str]) {
    match value {
        Value::String(s) => {
            let identity = matches!(
                path,
                ["apiVersion"] | ["kind"] | ["metadata", "name" | "namespace"]
            );
            if !identity {
                untrusted::register_text(Alphabet::Base64, s.as_bytes());
            }
        }
        Value::Object(map) => {
            for (key, v) in map {
                let mut path = path.to_vec();
                path.push(key);
                register_values(v, &path);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| register_values(v, &["[]"])),
        _ => {}
    }
}

fn valid_api_version(s: &str) -> bool {
    let version = |v: &str| {
        v.starts_with('v') && v.len() <= 63 && v.bytes().all(|c| c.is_ascii_alphanumeric())
    };
    match s.split_once('/') {
        None => version(s),
        Some((group, v)) => config::dns_subdomain(group).is_ok() && version(v),
    }
}

/// A name the API server could take as a path segment; it checks the rest.
fn valid_name(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b':'))
}

#[cfg(test)]
mod tests;
