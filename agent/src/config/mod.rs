//! Configuration: image defaults under `/usr/lib`, the node's file under
//! `/etc`, drop-ins in `config.d/*.yaml` (systemd's rule: an `/etc` drop-in
//! masks the `/usr/lib` one of the same name; lexical order, later wins),
//! then command-line flags. Every error names the key and the file it came
//! from.
//!
//! Every key is declared once, in [`KEYS`]: its kind, default, doc line and
//! flag. Loading, validation, `check-config`, the command-line flags and
//! docs/configuration.md's table all follow from it.

pub(crate) mod file;
mod keys;
mod parse;
pub(crate) mod token;

use self::keys::Initial::{Unset, Value as Is};
#[cfg(test)]
pub(crate) use self::keys::Kind;
use self::keys::Kind::{Duration as Dur, Table, TextOrTable};
#[cfg(any(test, feature = "fleet"))]
pub(crate) use self::keys::default_duration;
pub(crate) use self::keys::{Initial, KEYS, RetryDelays, default_text, key};
use self::parse::*;
pub(crate) use self::parse::{
    dns_label, dns_subdomain, format_duration, parse_duration, secret_key,
};

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Map, Value};

use crate::exit::Exit;

pub(crate) const ETC_DIR: &str = "/etc/catalyst-bootstrap";
const USR_DIR: &str = "/usr/lib/catalyst-bootstrap";
const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// Where the public address comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AddressSource {
    Literal(PublicAddress),
    /// `public_address: hetzner-metadata`: asked from the metadata service.
    HetznerMetadata(reqwest::Url),
}

/// What a kubeconfig whose certificate check failed gets: refused, or sent
/// with a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Preflight {
    Enforce,
    Warn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PublicAddress {
    Ip(IpAddr),
    Name(String),
}

impl PublicAddress {
    /// The host as it goes into a URL authority (IPv6 in brackets).
    pub(crate) fn url_host(&self) -> String {
        match self {
            PublicAddress::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            PublicAddress::Ip(ip) => ip.to_string(),
            PublicAddress::Name(name) => name.clone(),
        }
    }
}

/// Where the seed goes and where OpenBao leaves its "already initialised" marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SeedTarget {
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) key: String,
    pub(crate) marker: String,
    /// The Helm release that renders this Secret (bp-openbao 1.2.x: release
    /// `openbao` in `openbao`, the default); the Secret carries the ownership
    /// metadata Helm needs to adopt it. `None` (`seed.helm_release: none`):
    /// no metadata, for charts that do not render the Secret.
    pub(crate) helm_release: Option<HelmRelease>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HelmRelease {
    pub(crate) name: String,
    pub(crate) namespace: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) deployment_id: String,
    pub(crate) catalyst_api_url: reqwest::Url,
    pub(crate) public_address: AddressSource,
    /// The name k3s always has in `--tls-san`; the kubeconfig's
    /// `tls-server-name` when the certificate does not name the address.
    pub(crate) sovereign_fqdn: Option<String>,
    pub(crate) preflight: Preflight,
    /// This node's name in the Kubernetes Events it posts.
    pub(crate) node_name: String,
    /// Where `lease_duration` was set, if it was: no longer used, so a run
    /// warns about it (see `warn_ignored`).
    pub(crate) lease_duration_set: Option<String>,
    pub(crate) kubeconfig: PathBuf,
    pub(crate) token_file: Option<PathBuf>,
    pub(crate) region: Option<String>,
    pub(crate) ca_bundle: Option<PathBuf>,
    pub(crate) deadline: Duration,
    pub(crate) state_dir: PathBuf,
    /// Bootstrap Secret manifests (see `job::secrets`).
    pub(crate) secrets_dir: PathBuf,
    /// The hand-off's objects (see `job::manifests`).
    pub(crate) manifests_dir: PathBuf,
    pub(crate) optional_wait: Duration,
    pub(crate) done_marker: Option<PathBuf>,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) seed: SeedTarget,
    pub(crate) retry: RetryDelays,
    /// Each key's effective value as `check-config` shows it.
    shown: BTreeMap<&'static str, String>,
    /// The files read, in the order they apply (later wins).
    files: Vec<String>,
    /// Which layer (file or flag) set each key that is not at its default.
    origins: BTreeMap<String, String>,
}

/// Values given on the command line; they win over every file.
#[derive(Debug, Default, Clone)]
pub(crate) struct Overrides(pub(crate) Vec<(&'static str, String)>);

impl Overrides {
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Loads the layered configuration. `explicit` replaces the `/usr/lib` and
/// `/etc` files with one file (plus the `config.d` beside it).
pub(crate) fn load(explicit: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
    load_layers(explicit, overrides).context(Exit::Config)
}

fn load_layers(explicit: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
    let (files, main) = match explicit {
        Some(file) => {
            if !file.exists() {
                bail!("configuration file {} does not exist", file.display());
            }
            let dir = file.parent().unwrap_or(Path::new("."));
            let mut files = vec![file.to_path_buf()];
            files.extend(drop_ins(&[&dir.join("config.d")])?);
            (files, file.to_path_buf())
        }
        None => {
            let mut files: Vec<PathBuf> = [USR_DIR, ETC_DIR]
                .iter()
                .map(|dir| Path::new(dir).join("config.yaml"))
                .filter(|main| main.exists())
                .collect();
            files.extend(drop_ins(&[
                &Path::new(USR_DIR).join("config.d"),
                &Path::new(ETC_DIR).join("config.d"),
            ])?);
            if files.is_empty() {
                bail!(
                    "no configuration: {ETC_DIR}/config.yaml does not exist (nor does any drop-in in \
                     {ETC_DIR}/config.d/); write it, or pass --config FILE"
                );
            }
            (files, Path::new(ETC_DIR).join("config.yaml"))
        }
    };
    let mut layers = Layers::new(&main);
    for file in &files {
        layers.add_file(file)?;
    }
    for (key, value) in &overrides.0 {
        layers.set(
            key,
            Value::String(value.clone()),
            &format!("--{}", self::key(key).flag_name()),
        );
    }
    layers.build()
}

/// The state directory `status` reads: `--state-dir`, else the configured
/// `state_dir`. A configuration that exists but does not load is an error
/// (reading the default directory instead would show another directory's
/// state, or none, as if it were this node's); only when there is no
/// configuration at all is the default the answer: nothing can have moved
/// the state elsewhere, and `status --wait` started before cloud-init wrote
/// the configuration waits instead of failing.
pub(crate) fn state_dir_for_status(
    explicit: Option<&Path>,
    overrides: &Overrides,
) -> anyhow::Result<PathBuf> {
    state_dir_for_status_in(explicit, overrides, &[USR_DIR, ETC_DIR])
}

/// [`state_dir_for_status`] with the configuration directories as given.
fn state_dir_for_status_in(
    explicit: Option<&Path>,
    overrides: &Overrides,
    config_dirs: &[&str],
) -> anyhow::Result<PathBuf> {
    if let Some(dir) = overrides.get("state_dir") {
        return Ok(PathBuf::from(dir));
    }
    if nothing_configured_in(explicit, config_dirs) {
        return Ok(PathBuf::from(default_text("state_dir")));
    }
    load(explicit, overrides)
        .map(|c| c.state_dir)
        .context("finding the state directory (pass --state-dir DIR to read one directly)")
}

/// No configuration file and no drop-in exists (and none was named): the
/// node was never configured, as opposed to configured wrongly.
pub(crate) fn nothing_configured(explicit: Option<&Path>) -> bool {
    nothing_configured_in(explicit, &[USR_DIR, ETC_DIR])
}

fn nothing_configured_in(explicit: Option<&Path>, config_dirs: &[&str]) -> bool {
    explicit.is_none()
        && config_dirs.iter().all(|dir| {
            let dir = Path::new(dir);
            !dir.join("config.yaml").exists()
                && drop_ins(&[&dir.join("config.d")]).is_ok_and(|d| d.is_empty())
        })
}

/// One configuration document on its own, as the fuzz target feeds it.
#[cfg(fuzzing)]
pub(crate) fn from_text(text: &str) -> anyhow::Result<Config> {
    let mut layers = Layers::new(Path::new("config.yaml"));
    layers.add_text(text, "config.yaml")?;
    layers.build()
}

/// The `*.yaml` drop-ins of `dirs`, systemd's way: a file masks any file of
/// the same name in an earlier directory (`/etc` over `/usr/lib`), and all
/// that remain apply in lexical order of their names. An absent directory
/// has none. Each is read later through [`self::file::read`], which refuses
/// anything but a regular file.
fn drop_ins(dirs: &[&Path]) -> anyhow::Result<Vec<PathBuf>> {
    let mut by_name = BTreeMap::new();
    for dir in dirs {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading drop-in directory {}", dir.display()));
            }
        };
        for entry in entries {
            let entry =
                entry.with_context(|| format!("reading drop-in directory {}", dir.display()))?;
            if entry.path().extension().is_some_and(|e| e == "yaml") {
                by_name.insert(entry.file_name(), entry.path());
            }
        }
    }
    Ok(by_name.into_values().collect())
}

/// The merged key/value tree plus, for every leaf, the file or flag that set it.
struct Layers {
    values: Map<String, Value>,
    origin: BTreeMap<String, String>,
    /// The main file, where a missing key should go.
    main: PathBuf,
    /// Each key's effective value as `check-config` shows it, filled by `build`.
    shown: RefCell<BTreeMap<&'static str, String>>,
    /// The files read, in order.
    files: Vec<String>,
}

/// How `check-config` shows a parsed value.
trait Show {
    fn show(&self) -> String;
}

impl Show for String {
    fn show(&self) -> String {
        self.clone()
    }
}

impl Show for PathBuf {
    fn show(&self) -> String {
        self.display().to_string()
    }
}

impl Show for reqwest::Url {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Show for Duration {
    fn show(&self) -> String {
        format_duration(*self)
    }
}

impl Show for PublicAddress {
    fn show(&self) -> String {
        self.url_host()
    }
}

impl Show for Preflight {
    fn show(&self) -> String {
        match self {
            Preflight::Enforce => "enforce",
            Preflight::Warn => "warn",
        }
        .into()
    }
}

impl Layers {
    fn new(main: &Path) -> Layers {
        Layers {
            values: Map::new(),
            origin: BTreeMap::new(),
            main: main.to_path_buf(),
            shown: RefCell::default(),
            files: Vec::new(),
        }
    }

    fn add_file(&mut self, file: &Path) -> anyhow::Result<()> {
        let (bytes, _) = self::file::read(file, MAX_CONFIG_BYTES)
            .with_context(|| format!("configuration file {}", file.display()))?;
        let text = std::str::from_utf8(&bytes)
            .with_context(|| format!("configuration file {} is not UTF-8 text", file.display()))?;
        self.files.push(file.display().to_string());
        self.add_text(text, &file.display().to_string())
    }

    fn add_text(&mut self, text: &str, origin: &str) -> anyhow::Result<()> {
        let doc: Value = serde_saphyr::from_str(text).map_err(|e| match e.without_snippet() {
            serde_saphyr::Error::DuplicateMappingKey { key, location } => {
                let key = key.as_ref().map(|k| format!(" `{k}`")).unwrap_or_default();
                anyhow!(
                    "{origin}: duplicate key{key} on line {}; each key may appear once per file",
                    location.line()
                )
            }
            e => anyhow!("{origin}: not valid YAML: {e}"),
        })?;
        match doc {
            Value::Null => Ok(()),
            Value::Object(map) => self.merge("", map, origin),
            _ => bail!("{origin}: expected a mapping of keys to values at the top level"),
        }
    }

    fn merge(&mut self, prefix: &str, map: Map<String, Value>, origin: &str) -> anyhow::Result<()> {
        for (name, value) in map {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            let Some(key) = KEYS.iter().find(|k| k.name == path) else {
                let hint = nearest_key(&path)
                    .map(|k| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default();
                bail!("{origin}: unknown key `{path}`{hint}");
            };
            match (value, key.kind) {
                (Value::Object(inner), Table | TextOrTable) => self.merge(&path, inner, origin)?,
                (_, Table) => bail!("{origin}: `{path}` must be a mapping"),
                (value, _) => self.set(&path, value, origin),
            }
        }
        Ok(())
    }

    fn set(&mut self, path: &str, value: Value, origin: &str) {
        let mut map = &mut self.values;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                map.insert(part.to_string(), value);
                break;
            }
            let entry = map.entry(part).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                // A scalar from an earlier layer (Kind::TextOrTable) gives way.
                *entry = Value::Object(Map::new());
            }
            map = entry.as_object_mut().expect("made an object above");
        }
        self.origin.insert(path.to_string(), origin.to_string());
    }

    fn get(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let mut value = self.values.get(parts.next()?)?;
        for part in parts {
            value = value.get(part)?;
        }
        Some(value)
    }

    fn origin(&self, path: &str) -> &str {
        self.origin.get(path).map_or("defaults", String::as_str)
    }

    fn show(&self, path: &str, text: String) {
        self.shown.borrow_mut().insert(key(path).name, text);
    }

    /// A key's text as set by some layer. YAML turns unquoted digits into
    /// numbers, and a number silently loses leading zeros, so numbers are
    /// refused with a hint, except as a duration (a number of seconds).
    fn raw(&self, path: &str) -> anyhow::Result<Option<String>> {
        match (self.get(path), key(path).kind) {
            (None | Some(Value::Null), _) => Ok(None),
            (Some(Value::String(s)), _) => Ok(Some(s.clone())),
            (Some(Value::Number(n)), Dur) => match n.as_u64() {
                Some(secs) => Ok(Some(secs.to_string())),
                None => bail!(
                    "{}: `{path}` must be a whole number of seconds or a duration like \"90s\"",
                    self.origin(path)
                ),
            },
            (Some(Value::Number(n)), _) => bail!(
                "{}: `{path}` must be a string; quote it: {path}: \"{n}\"",
                self.origin(path)
            ),
            (Some(_), _) => bail!("{}: `{path}` must be a string", self.origin(path)),
        }
    }

    /// The error for a required key no layer set: where to set it.
    fn missing(&self, path: &str) -> anyhow::Error {
        let dir = self.main.parent().unwrap_or(Path::new("."));
        let flag = key(path)
            .flag
            .map(|_| format!(", or pass --{}", key(path).flag_name()))
            .unwrap_or_default();
        anyhow!(
            "missing required key `{path}`: set it in {} or a drop-in in {}/{flag}",
            self.main.display(),
            dir.join("config.d").display()
        )
    }

    /// A key's value (its declared default when unset) through `parse`,
    /// naming key and file on failure.
    fn parsed<T: Show>(
        &self,
        path: &str,
        parse: impl FnOnce(&str) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let value = match (self.raw(path)?, key(path).initial) {
            (Some(v), _) => v,
            (None, Is(default)) => default.to_string(),
            (None, _) => return Err(self.missing(path)),
        };
        let value =
            parse(&value).with_context(|| format!("{}: invalid `{path}`", self.origin(path)))?;
        self.show(path, value.show());
        Ok(value)
    }

    /// A key without a default value: `None` when unset.
    fn optional<T: Show>(
        &self,
        path: &str,
        parse: impl FnOnce(&str) -> anyhow::Result<T>,
    ) -> anyhow::Result<Option<T>> {
        if self.raw(path)?.is_some() {
            return self.parsed(path, parse).map(Some);
        }
        let unset = match key(path).initial {
            Unset("") => "(none)".to_string(),
            Unset(text) => format!("({text})"),
            _ => unreachable!("`{path}` has a default"),
        };
        self.show(path, unset);
        Ok(None)
    }

    /// A retired key: where it was set, if it was. Its value is not checked
    /// beyond its type, so a config that set it keeps loading; unset, it is
    /// not shown at all (every node would read about a key it never had).
    fn ignored(&self, path: &str) -> anyhow::Result<Option<String>> {
        debug_assert!(key(path).retired, "`{path}` is not declared retired");
        let Some(value) = self.raw(path)? else {
            return Ok(None);
        };
        self.show(path, format!("{value} (ignored: no longer used)"));
        Ok(Some(self.origin(path).to_string()))
    }

    fn build(&self) -> anyhow::Result<Config> {
        let retry = RetryDelays {
            initial: self.parsed("retry.initial_delay", parse_duration)?,
            max: self.parsed("retry.max_delay", parse_duration)?,
            overloaded: self.parsed("retry.overloaded_delay", parse_duration)?,
        };
        if retry.initial.is_zero() || retry.initial > retry.max {
            // The layer that set one of the two (found by the fuzzer: only
            // `retry.max_delay` set, below the default initial delay, named
            // "defaults" as the culprit).
            let origin = match self.origin.get("retry.initial_delay") {
                Some(set) => set.as_str(),
                None => self.origin("retry.max_delay"),
            };
            bail!(
                "{origin}: `retry.initial_delay` must be above zero and not above `retry.max_delay`"
            );
        }
        let deployment_id = self.parsed("deployment_id", parse_deployment_id)?;
        let catalyst_api_url = self.parsed("catalyst_api_url", parse_api_url)?;
        let public_address = match self.raw("public_address")?.as_deref() {
            Some("hetzner-metadata") => {
                self.show("public_address", "hetzner-metadata".into());
                AddressSource::HetznerMetadata(self.parsed("metadata_url", |s| {
                    reqwest::Url::parse(s).with_context(|| format!("{s:?} is not a URL"))
                })?)
            }
            _ => {
                let unused = self.raw("metadata_url")?;
                let unused = unused.as_deref().unwrap_or(default_text("metadata_url"));
                self.show(
                    "metadata_url",
                    format!("{unused} (not used: public_address is not hetzner-metadata)"),
                );
                AddressSource::Literal(self.parsed("public_address", parse_public_address)?)
            }
        };
        let node_name = match self.optional("node_name", dns_subdomain)? {
            Some(name) => name,
            None => {
                let name = hostname()?;
                self.show("node_name", name.clone());
                name
            }
        };
        let sovereign_fqdn = self.optional("sovereign_fqdn", dns_name)?;
        let preflight = self.parsed("preflight", |s| match s {
            "enforce" => Ok(Preflight::Enforce),
            "warn" => Ok(Preflight::Warn),
            other => bail!("{other:?} is neither \"enforce\" nor \"warn\""),
        })?;
        let config = Config {
            deployment_id,
            catalyst_api_url,
            public_address,
            sovereign_fqdn,
            preflight,
            node_name,
            lease_duration_set: self.ignored("lease_duration")?,
            kubeconfig: self.parsed("kubeconfig", absolute)?,
            token_file: self.optional("token_file", |s| Ok(PathBuf::from(s)))?,
            region: self.optional("region", parse_region)?,
            ca_bundle: self.optional("ca_bundle", |s| Ok(PathBuf::from(s)))?,
            deadline: self.parsed("deadline", parse_duration)?,
            state_dir: self.parsed("state_dir", absolute)?,
            secrets_dir: self.parsed("secrets_dir", absolute)?,
            manifests_dir: self.parsed("manifests.dir", absolute)?,
            optional_wait: self.parsed("manifests.optional_wait", parse_duration)?,
            done_marker: self.optional("done_marker", absolute)?,
            connect_timeout: self.parsed("connect_timeout", parse_duration)?,
            read_timeout: self.parsed("read_timeout", parse_duration)?,
            seed: SeedTarget {
                namespace: self.parsed("seed.namespace", dns_label)?,
                name: self.parsed("seed.name", dns_subdomain)?,
                key: self.parsed("seed.key", secret_key)?,
                marker: self.parsed("seed.marker", dns_subdomain)?,
                helm_release: self.helm_release()?,
            },
            retry,
            shown: self.shown.take(),
            files: self.files.clone(),
            origins: self.origin.clone(),
        };
        Ok(config)
    }

    fn helm_release(&self) -> anyhow::Result<Option<HelmRelease>> {
        let release = match self.get("seed.helm_release") {
            // Today's kit: bootstrap-kit slot 08 installs bp-openbao
            // as release `openbao` into namespace `openbao`.
            None => Some(HelmRelease {
                name: "openbao".into(),
                namespace: "openbao".into(),
            }),
            Some(Value::String(s)) if s == "none" => None,
            Some(Value::Object(_)) => Some(HelmRelease {
                name: self.parsed("seed.helm_release.name", helm_release_name)?,
                namespace: self.parsed("seed.helm_release.namespace", dns_label)?,
            }),
            Some(other) => bail!(
                "{}: invalid `seed.helm_release`: {other} is neither `none` (no Helm \
                 ownership metadata on the seed Secret) nor a mapping with `name` and \
                 `namespace` (the release that renders it; leave the key out for \
                 release openbao in namespace openbao)",
                self.origin("seed.helm_release")
            ),
        };
        let (shown, name, namespace) = match &release {
            Some(r) => (
                format!(
                    "{} in namespace {} (the seed Secret carries Helm ownership metadata for it)",
                    r.name, r.namespace
                ),
                r.name.clone(),
                r.namespace.clone(),
            ),
            None => (
                "none (no Helm ownership metadata)".into(),
                "(none)".into(),
                "(none)".into(),
            ),
        };
        self.show("seed.helm_release", shown);
        self.show("seed.helm_release.name", name);
        self.show("seed.helm_release.namespace", namespace);
        Ok(release)
    }
}

impl Config {
    /// Logs one warning for each key still accepted but no longer used.
    pub(crate) fn warn_ignored(&self) {
        if let Some(origin) = &self.lease_duration_set {
            tracing::warn!(
                "{origin}: `lease_duration` is no longer used (HA coordination was removed in \
                 0.2: every control-plane node does the whole job); ignoring it, remove it"
            );
        }
    }

    /// Which files were read and which layer set which keys, for `doctor`:
    /// `a.yaml, b.yaml; set by b.yaml: x, y; by --region: region; the rest are defaults`.
    pub(crate) fn layers(&self) -> String {
        let mut by: Vec<(&str, Vec<&str>)> = Vec::new();
        for (key, origin) in &self.origins {
            match by.iter_mut().find(|(o, _)| *o == origin.as_str()) {
                Some((_, keys)) => keys.push(key),
                None => by.push((origin, vec![key])),
            }
        }
        // In the order the layers apply: files as read, then flags.
        by.sort_by_key(|(origin, _)| {
            self.files
                .iter()
                .position(|f| f == origin)
                .unwrap_or(usize::MAX)
        });
        let mut out = format!("read {}", self.files.join(", "));
        for (origin, keys) in by {
            let _ = write!(out, "; {origin} set {}", keys.join(", "));
        }
        out.push_str("; the rest are defaults");
        out
    }
}

/// The effective configuration as check-config prints it: every declared
/// key and its value, then where the bearer token comes from.
pub(crate) fn render(config: &Config, token_source: &Path) -> String {
    let mut out = String::new();
    for key in KEYS.iter().filter(|k| k.kind != Table) {
        let value = match config.shown.get(key.name) {
            _ if key.secret => "<redacted>",
            Some(value) => value.as_str(),
            None if key.retired => continue,
            None => "(not used)",
        };
        let _ = writeln!(out, "{}: {value}", key.name);
    }
    let _ = writeln!(
        out,
        "bearer_token: <redacted> (from {})",
        token_source.display()
    );
    out
}

#[cfg(test)]
mod tests;
