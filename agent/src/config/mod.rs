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
pub(crate) mod token;

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

/// How a key's value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A string (YAML numbers are refused: they lose leading zeros).
    Text,
    /// `500ms`, `90s`, `30m`, `1h` or a whole number of seconds.
    Duration,
    /// A mapping of further keys (`seed`, `retry`).
    Table,
    /// A mapping, or a scalar instead of it (`seed.helm_release: none`); a
    /// later layer's scalar replaces an earlier table and the other way round.
    TextOrTable,
}

/// What a key is when no layer sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Initial {
    Required,
    /// Unset; the text says what that means (the reference's default column).
    Unset(&'static str),
    /// This value, parsed like one from a file.
    Value(&'static str),
}

/// One configuration key.
#[derive(Debug)]
pub(crate) struct Key {
    /// The dotted path (`retry.max_delay`).
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    pub(crate) initial: Initial,
    /// One line for docs/configuration.md's table and the flag's `--help`.
    pub(crate) doc: &'static str,
    /// The value name when the key is also a command-line flag
    /// (`--deployment-id HEX16`).
    pub(crate) flag: Option<&'static str>,
    /// Shown as `<redacted>` by `check-config`; never a flag.
    pub(crate) secret: bool,
    /// No longer used: accepted (so a configuration that sets it keeps
    /// loading), warned about, and shown by `check-config` only when set.
    pub(crate) retired: bool,
}

impl Key {
    const fn new(name: &'static str, kind: Kind, initial: Initial, doc: &'static str) -> Key {
        Key {
            name,
            kind,
            initial,
            doc,
            flag: None,
            secret: false,
            retired: false,
        }
    }

    const fn flag(self, value_name: &'static str) -> Key {
        Key {
            flag: Some(value_name),
            ..self
        }
    }

    const fn retired(self) -> Key {
        Key {
            retired: true,
            ..self
        }
    }

    /// `--deployment-id` for `deployment_id`, `--manifests-dir` for `manifests.dir`.
    pub(crate) fn flag_name(&self) -> String {
        self.name.replace(['_', '.'], "-")
    }
}

use Initial::{Required, Unset, Value as Is};
use Kind::{Duration as Dur, Table, Text, TextOrTable};

/// Every key the agent knows, in docs/configuration.md's order.
#[rustfmt::skip]
pub(crate) const KEYS: &[Key] = &[
    Key::new("deployment_id", Text, Required, "16 lowercase hex characters (quote it: YAML reads all-digit values as numbers)").flag("HEX16"),
    Key::new("catalyst_api_url", Text, Required, "e.g. `https://console.openova.io/sovereign`; `https` only (plain `http` only to a loopback address); no credentials, query or fragment").flag("URL"),
    Key::new("public_address", Text, Required, "the node's public IPv4/IPv6 address or DNS name, written into the kubeconfig; or `hetzner-metadata` to ask the metadata service (retried until it answers; an answer that is not an IPv4 address is exit 65)").flag("ADDRESS"),
    Key::new("metadata_url", Text, Is("http://169.254.169.254"), "base URL of the metadata service (`/hetzner/v1/metadata/public-ipv4` is appended); never through a proxy"),
    Key::new("sovereign_fqdn", Text, Unset(""), "the Sovereign's API name, which k3s has in `--tls-san`: when the certificate does not name the public address but names this, the kubeconfig gets `tls-server-name: <sovereign_fqdn>`"),
    Key::new("preflight", Text, Is("enforce"), "`enforce`: a kubeconfig whose certificate check fails is not sent (exit 68); `warn`: it is sent with a warning"),
    Key::new("node_name", Text, Unset("the hostname"), "this node's name in the Kubernetes Events it posts (the Node they regard, and their reporting instance); a DNS subdomain name, like a Kubernetes node name").flag("NAME"),
    Key::new("lease_duration", Dur, Unset(""), "no longer used (HA coordination was removed in 0.2); accepted and ignored, with a warning").retired(),
    Key::new("kubeconfig", Text, Is("/etc/rancher/k3s/k3s.yaml"), "the kubeconfig k3s writes").flag("FILE"),
    Key::new("token_file", Text, Unset(""), "bearer token file (64 lowercase hex), used when no systemd credential is passed; should be `0600` (a warning otherwise)"),
    Key::new("region", Text, Unset(""), "appended as `?region=` for secondary regions; a lowercase DNS label").flag("NAME"),
    Key::new("ca_bundle", Text, Unset("system trust store"), "PEM bundle that alone verifies catalyst-api (air-gapped sites); no option to disable verification exists"),
    Key::new("deadline", Dur, Is("30m"), "overall deadline of one run").flag("DURATION"),
    Key::new("state_dir", Text, Is("/var/lib/catalyst-bootstrap"), "state file, `done` stamp, lock").flag("DIR"),
    Key::new("secrets_dir", Text, Is("/etc/catalyst-bootstrap/secrets.d"), "bootstrap Secrets: each `*.yaml` file holds one Secret manifest (root-owned, mode `0600`), applied with server-side apply once the API server is ready, then overwritten with zeros and removed; missing or empty means none (see \"bootstrap Secrets\")").flag("DIR"),
    Key::new("manifests", Table, Unset(""), ""),
    Key::new("manifests.dir", Text, Is("/etc/catalyst-bootstrap/manifests.d"), "the hand-off: each `*.yaml` file holds Kubernetes objects (several documents allowed; no Secrets: those go in `secrets_dir`), applied with server-side apply in file-name order once the bootstrap Secrets are, each waiting until its kind is served; a file named `*.optional.yaml` is best-effort (see \"the hand-off\"); missing or empty means none").flag("DIR"),
    Key::new("manifests.optional_wait", Dur, Is("30m"), "how long the optional files' kinds are waited for after the required files are applied (never past `deadline`); then they are skipped with a warning"),
    Key::new("done_marker", Text, Unset(""), "an empty file written once the required manifests are applied (the provisioner's signal, e.g. `/var/lib/catalyst/cloud-init-complete`); its directory must exist and be writable in the unit's sandbox (the unit grants `/var/lib/catalyst`)").flag("FILE"),
    Key::new("connect_timeout", Dur, Is("10s"), "per request"),
    Key::new("read_timeout", Dur, Is("30s"), "per read, so a stalled response cannot hang a try"),
    Key::new("retry", Table, Unset(""), ""),
    Key::new("retry.initial_delay", Dur, Is("1s"), "first backoff step"),
    Key::new("retry.max_delay", Dur, Is("60s"), "backoff ceiling"),
    Key::new("retry.overloaded_delay", Dur, Is("10s"), "delay between tries while catalyst-api answers that it is overloaded (`429`, `5xx`) without `Retry-After`: a fixed cadence, like the shell's"),
    Key::new("seed", Table, Unset(""), ""),
    Key::new("seed.namespace", Text, Is("openbao"), "namespace of the seed Secret"),
    Key::new("seed.name", Text, Is("openbao-recovery-seed"), "name of the seed Secret"),
    Key::new("seed.key", Text, Is("recovery-seed"), "its data key"),
    Key::new("seed.marker", Text, Is("openbao-init-marker"), "if this Secret exists, OpenBao is initialised and no seed is written"),
    Key::new("seed.helm_release", TextOrTable, Unset("`{name: openbao, namespace: openbao}`"), "the Helm release whose ownership metadata the seed Secret carries (`app.kubernetes.io/managed-by: Helm`, `meta.helm.sh/release-name`, `meta.helm.sh/release-namespace`), so that release adopts it, keeping its value, instead of refusing to install; the default is bp-openbao as bootstrap-kit slot 08 installs it. A mapping with both `name` (a Helm release name) and `namespace` names another release; `none` turns the metadata off (for charts that do not render the Secret); any other value is exit 78. An existing Secret without the metadata gets it added (docs/design.md, \"Helm adoption\")"),
    Key::new("seed.helm_release.name", Text, Unset(""), "with `seed.helm_release` a mapping: the release's name (required there)"),
    Key::new("seed.helm_release.namespace", Text, Unset(""), "with `seed.helm_release` a mapping: the release's namespace (required there)"),
];

/// The declaration of `name`; every key the code reads is declared.
pub(crate) fn key(name: &str) -> &'static Key {
    KEYS.iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("configuration key `{name}` is not declared in KEYS"))
}

/// A declared default, parsed (`RetryDelays::default` and `status` use them).
pub(crate) fn default_duration(name: &str) -> Duration {
    match key(name).initial {
        Is(text) => parse_duration(text).expect("declared defaults parse"),
        other => panic!("`{name}` has no default duration: {other:?}"),
    }
}

/// The retry delays a configuration sets (`retry.*`): values only; the
/// algorithm that spends them is `peers::retry`'s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RetryDelays {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
    /// Between tries while a server says it is overloaded.
    pub(crate) overloaded: Duration,
}

impl Default for RetryDelays {
    fn default() -> Self {
        RetryDelays {
            initial: default_duration("retry.initial_delay"),
            max: default_duration("retry.max_delay"),
            overloaded: default_duration("retry.overloaded_delay"),
        }
    }
}

pub(crate) fn default_text(name: &str) -> &'static str {
    match key(name).initial {
        Is(text) => text,
        other => panic!("`{name}` has no default: {other:?}"),
    }
}

/// docs/configuration.md's key table, generated from [`KEYS`].
#[cfg(test)]
fn docs_table() -> String {
    let mut out = String::from("| key | required | default | meaning |\n|---|---|---|---|\n");
    let cell = |s: &str| {
        if s.is_empty() {
            " ".to_string()
        } else {
            format!(" {s} ")
        }
    };
    for k in KEYS.iter().filter(|k| k.kind != Table) {
        let (required, default) = match k.initial {
            Required => ("yes".to_string(), String::new()),
            Unset(text) => (String::new(), text.to_string()),
            Is(value) => (String::new(), format!("`{value}`")),
        };
        let _ = writeln!(
            out,
            "| `{}` |{}|{}| {} |",
            k.name,
            cell(&required),
            cell(&default),
            k.doc
        );
    }
    out
}

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
    let nothing_configured = explicit.is_none()
        && config_dirs.iter().all(|dir| {
            let dir = Path::new(dir);
            !dir.join("config.yaml").exists()
                && drop_ins(&[&dir.join("config.d")]).is_ok_and(|d| d.is_empty())
        });
    if nothing_configured {
        return Ok(PathBuf::from(default_text("state_dir")));
    }
    load(explicit, overrides)
        .map(|c| c.state_dir)
        .context("finding the state directory (pass --state-dir DIR to read one directly)")
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
            bail!(
                "{}: `retry.initial_delay` must be above zero and not above `retry.max_delay`",
                self.origin("retry.initial_delay")
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

/// The known key closest to a misspelt one, if any is close enough to help.
fn nearest_key(unknown: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|k| (strsim::levenshtein(unknown, k.name), k.name))
        .filter(|(d, k)| *d <= 3.max(k.len() / 3))
        .min()
        .map(|(_, k)| k)
}

fn parse_deployment_id(s: &str) -> anyhow::Result<String> {
    if s.len() != 16 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        bail!("must be 16 lowercase hex characters, got {s:?}");
    }
    Ok(s.to_string())
}

fn is_loopback_host(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

fn parse_api_url(s: &str) -> anyhow::Result<reqwest::Url> {
    let url = reqwest::Url::parse(s).with_context(|| format!("{s:?} is not a URL"))?;
    let host = url.host().ok_or_else(|| anyhow!("{s:?} has no host"))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&host) => {}
        "http" => bail!("{s:?} must use https (plain http is allowed only to a loopback address)"),
        other => bail!("{s:?} has scheme {other:?}; use https"),
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("the URL must not carry credentials; the bearer token is the credential");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!("{s:?} must not have a query or fragment");
    }
    Ok(url)
}

fn parse_public_address(s: &str) -> anyhow::Result<PublicAddress> {
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        if ip.is_unspecified() || ip.is_multicast() {
            bail!("{s:?} is not a usable unicast address");
        }
        return Ok(PublicAddress::Ip(ip));
    }
    dns_name(s).map(PublicAddress::Name)
}

/// A DNS name, lowercased, without a trailing dot.
fn dns_name(s: &str) -> anyhow::Result<String> {
    let name = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| dns_label(label).is_ok())
        && !name
            .rsplit('.')
            .next()
            .unwrap_or("")
            .bytes()
            .all(|c| c.is_ascii_digit());
    if !valid {
        bail!("{s:?} is neither an IP address nor a DNS name");
    }
    Ok(name)
}

/// The node name Kubernetes uses by default: the kernel's hostname.
fn hostname() -> anyhow::Result<String> {
    let raw = nix::unistd::gethostname().context("reading the hostname for `node_name`")?;
    let name = raw.to_string_lossy().to_ascii_lowercase();
    dns_subdomain(&name).context("the hostname cannot serve as `node_name`; set `node_name`")
}

fn parse_region(s: &str) -> anyhow::Result<String> {
    dns_label(s).context("a region is a lowercase DNS label such as \"fsn1\"")
}

pub(crate) fn dns_label(s: &str) -> anyhow::Result<String> {
    let ok = (1..=63).contains(&s.len())
        && s.bytes()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        && !s.starts_with('-')
        && !s.ends_with('-');
    if !ok {
        bail!("{s:?} is not a lowercase DNS label (a-z, 0-9, '-', at most 63 characters)");
    }
    Ok(s.to_string())
}

pub(crate) fn dns_subdomain(s: &str) -> anyhow::Result<String> {
    if s.len() > 253 || s.split('.').any(|l| dns_label(l).is_err()) {
        bail!("{s:?} is not a valid Kubernetes object name");
    }
    Ok(s.to_string())
}

/// Helm release names: a DNS label of at most 53 characters.
fn helm_release_name(s: &str) -> anyhow::Result<String> {
    let name = dns_label(s)?;
    if name.len() > 53 {
        bail!("{s:?} is longer than the 53 characters Helm allows for a release name");
    }
    Ok(name)
}

pub(crate) fn secret_key(s: &str) -> anyhow::Result<String> {
    let ok = (1..=253).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !ok {
        bail!("{s:?} is not a valid Secret data key");
    }
    Ok(s.to_string())
}

fn absolute(s: &str) -> anyhow::Result<PathBuf> {
    if !Path::new(s).is_absolute() {
        bail!("{s:?} must be an absolute path");
    }
    Ok(PathBuf::from(s))
}

/// `"500ms"`, `"90s"`, `"30m"`, `"1h"`; a bare number means seconds. (jiff's
/// friendly format accepts far more: `1.5h`, `5 days`, `-1s`, `P1D`.)
pub(crate) fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        anyhow!("{s:?} is not a duration; write it like \"90s\", \"30m\" or \"500ms\"")
    })?;
    let unit_ms = match unit.trim() {
        "" | "s" => 1000,
        "ms" => 1,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        other => bail!("{s:?} has unknown unit {other:?}; use ms, s, m or h"),
    };
    Ok(Duration::from_millis(n.saturating_mul(unit_ms)))
}

/// A duration as the documentation writes it, in the largest unit that
/// keeps it whole (`30m`, `10s`, `90s`, `500ms`); `parse_duration` reads it back.
pub(crate) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    for (unit, per) in [("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms % per == 0 {
            return format!("{}{unit}", ms / per);
        }
    }
    format!("{ms}ms")
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
mod tests {
    use super::*;

    const MINIMAL: &str = "deployment_id: \"0123456789abcdef\"\n\
        catalyst_api_url: https://console.openova.io/sovereign\n\
        public_address: 203.0.113.10\n";

    fn setup(main: &str, drop_ins: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, main).unwrap();
        if !drop_ins.is_empty() {
            std::fs::create_dir(dir.path().join("config.d")).unwrap();
        }
        for (name, text) in drop_ins {
            std::fs::write(dir.path().join("config.d").join(name), text).unwrap();
        }
        (dir, file)
    }

    fn load_err(main: &str) -> String {
        let (_dir, file) = setup(main, &[]);
        let err = load(Some(&file), &Overrides::default()).unwrap_err();
        assert_eq!(Exit::of(&err), Exit::Config);
        format!("{err:#}")
    }

    #[test]
    fn minimal_file_gets_contract_defaults() {
        let (_dir, file) = setup(MINIMAL, &[]);
        let c = load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(c.deployment_id, "0123456789abcdef");
        assert_eq!(
            c.public_address,
            AddressSource::Literal(PublicAddress::Ip("203.0.113.10".parse().unwrap()))
        );
        assert_eq!(c.kubeconfig, Path::new("/etc/rancher/k3s/k3s.yaml"));
        assert_eq!(c.state_dir, Path::new("/var/lib/catalyst-bootstrap"));
        assert_eq!(c.deadline, Duration::from_secs(1800));
        assert_eq!(c.seed.namespace, "openbao");
        assert_eq!(c.seed.name, "openbao-recovery-seed");
        assert_eq!(c.seed.key, "recovery-seed");
        assert_eq!(c.seed.marker, "openbao-init-marker");
    }

    #[test]
    fn drop_ins_apply_in_lexical_order_and_flags_win() {
        let (_dir, file) = setup(
            MINIMAL,
            &[
                ("20-late.yaml", "region: nbg1\nseed:\n  name: late\n"),
                (
                    "10-early.yaml",
                    "region: fsn1\ndeadline: 5m\nseed:\n  namespace: vault\n",
                ),
                ("30-ignored.conf", "not: yaml: at: all"),
            ],
        );
        let flags = Overrides(vec![("deadline", "90s".into())]);
        let c = load(Some(&file), &flags).unwrap();
        assert_eq!(c.region.as_deref(), Some("nbg1"));
        assert_eq!(c.seed.namespace, "vault", "nested keys merge, not replace");
        assert_eq!(c.seed.name, "late");
        assert_eq!(c.deadline, Duration::from_secs(90));
    }

    #[test]
    fn missing_file_and_missing_key_are_named() {
        let err = load(
            Some(Path::new("/nonexistent/config.yaml")),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/config.yaml does not exist"));
        assert!(
            load_err("catalyst_api_url: https://x.example\npublic_address: 1.2.3.4\n")
                .contains("missing required key `deployment_id`")
        );
    }

    #[test]
    fn malformed_yaml_names_the_file() {
        let msg = load_err("deployment_id: [unclosed\n");
        assert!(msg.contains("config.yaml: not valid YAML"), "{msg}");
    }

    #[test]
    fn unknown_key_suggests_the_nearest() {
        let msg = load_err(&format!("{MINIMAL}deplyoment_id: x\n"));
        assert!(
            msg.contains("unknown key `deplyoment_id` (did you mean `deployment_id`?)"),
            "{msg}"
        );
        let msg = load_err(&format!("{MINIMAL}seed:\n  namepsace: x\n"));
        assert!(msg.contains("did you mean `seed.namespace`?"), "{msg}");
        let msg = load_err(&format!("{MINIMAL}colour: blue\n"));
        assert!(
            msg.contains("unknown key `colour`") && !msg.contains("did you mean"),
            "{msg}"
        );
    }

    #[test]
    fn bad_values_name_key_and_file() {
        let msg = load_err(&MINIMAL.replace("0123456789abcdef", "0123456789ABCDEF"));
        assert!(
            msg.contains("invalid `deployment_id`") && msg.contains("16 lowercase hex"),
            "{msg}"
        );
        assert!(msg.contains("config.yaml"), "{msg}");
        let msg = load_err(
            "deployment_id: 1234567890123456\ncatalyst_api_url: https://a.example\npublic_address: 1.2.3.4\n",
        );
        assert!(msg.contains("quote it"), "{msg}");
        let msg = load_err(&MINIMAL.replace("https://console", "http://console"));
        assert!(msg.contains("must use https"), "{msg}");
        let msg = load_err(&MINIMAL.replace("203.0.113.10", "not_a host!"));
        assert!(msg.contains("invalid `public_address`"), "{msg}");
        let msg = load_err(&format!("{MINIMAL}region: Fsn1\n"));
        assert!(msg.contains("invalid `region`"), "{msg}");
        let msg = load_err(&format!("{MINIMAL}deadline: soon\n"));
        assert!(msg.contains("invalid `deadline`"), "{msg}");
    }

    #[test]
    fn helm_release_defaults_to_todays_openbao_release() {
        let (_dir, file) = setup(MINIMAL, &[]);
        assert_eq!(
            load(Some(&file), &Overrides::default())
                .unwrap()
                .seed
                .helm_release,
            Some(HelmRelease {
                name: "openbao".into(),
                namespace: "openbao".into()
            })
        );
        let (_dir, file) = setup(
            &format!(
                "{MINIMAL}seed:\n  helm_release:\n    name: bp-openbao\n    namespace: flux-system\n"
            ),
            &[],
        );
        let c = load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(
            c.seed.helm_release,
            Some(HelmRelease {
                name: "bp-openbao".into(),
                namespace: "flux-system".into()
            })
        );
        let msg = load_err(&format!(
            "{MINIMAL}seed:\n  helm_release:\n    name: bp-openbao\n"
        ));
        assert!(
            msg.contains("missing required key `seed.helm_release.namespace`"),
            "{msg}"
        );
    }

    #[test]
    fn helm_release_none_turns_the_metadata_off() {
        let (_dir, file) = setup(&format!("{MINIMAL}seed:\n  helm_release: none\n"), &[]);
        let c = load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(c.seed.helm_release, None);
        let text = render(&c, Path::new("/t"));
        assert!(
            text.contains("seed.helm_release: none (no Helm ownership metadata)"),
            "{text}"
        );
        // Layers: a drop-in's table replaces an earlier `none`, and back.
        let table = "seed:\n  helm_release:\n    name: x\n    namespace: kit\n";
        let (_dir, file) = setup(
            &format!("{MINIMAL}seed:\n  helm_release: none\n"),
            &[("10-table.yaml", table)],
        );
        let c = load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(c.seed.helm_release.unwrap().name, "x");
        let (_dir, file) = setup(
            &format!("{MINIMAL}{table}"),
            &[("10-none.yaml", "seed:\n  helm_release: none\n")],
        );
        let c = load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(c.seed.helm_release, None);
    }

    #[test]
    fn helm_release_refuses_other_scalars() {
        for bad in ["bp-openbao", "false", "\"\"", "~", "None"] {
            let msg = load_err(&format!("{MINIMAL}seed:\n  helm_release: {bad}\n"));
            assert!(
                msg.contains("config.yaml: invalid `seed.helm_release`")
                    && msg.contains("is neither `none`"),
                "{bad}: {msg}"
            );
        }
    }

    #[test]
    fn http_is_allowed_only_to_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://[::1]:80/x",
            "http://localhost/",
        ] {
            assert!(parse_api_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1",
            "ftp://x.example",
            "https://user:pw@x.example",
            "https://x.example/?a=b",
        ] {
            assert!(parse_api_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn public_address_forms() {
        assert_eq!(
            parse_public_address("2001:db8::1").unwrap().url_host(),
            "[2001:db8::1]"
        );
        assert_eq!(
            parse_public_address("[2001:db8::1]").unwrap().url_host(),
            "[2001:db8::1]"
        );
        assert_eq!(
            parse_public_address("API.Example.com.").unwrap().url_host(),
            "api.example.com"
        );
        for bad in [
            "",
            "0.0.0.0",
            "a..b",
            "-a.example",
            "1.2.3",
            "host_name.example",
        ] {
            assert!(parse_public_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hetzner_metadata_source() {
        let (_dir, file) = setup(&MINIMAL.replace("203.0.113.10", "hetzner-metadata"), &[]);
        let c = load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(
            c.public_address,
            AddressSource::HetznerMetadata("http://169.254.169.254".parse().unwrap())
        );
        let (_dir, file) = setup(
            &format!(
                "{}metadata_url: http://127.0.0.1:8080\n",
                MINIMAL.replace("203.0.113.10", "hetzner-metadata")
            ),
            &[],
        );
        let c = load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(
            c.public_address,
            AddressSource::HetznerMetadata("http://127.0.0.1:8080".parse().unwrap())
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("5 days").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn lease_duration_is_accepted_and_ignored() {
        let (_dir, file) = setup(MINIMAL, &[]);
        let c = load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(c.lease_duration_set, None);
        let text = render(&c, Path::new("/t"));
        assert!(
            !text.contains("lease_duration"),
            "unset, it is not shown:\n{text}"
        );
        for value in ["30s", "90", "\"2m\""] {
            let (_dir, file) = setup(&format!("{MINIMAL}lease_duration: {value}\n"), &[]);
            let c = load(Some(&file), &Overrides::default()).unwrap();
            let origin = c.lease_duration_set.as_deref().unwrap();
            assert!(origin.ends_with("config.yaml"), "{origin}");
            let text = render(&c, Path::new("/t"));
            let shown = value.trim_matches('"');
            assert!(
                text.contains(&format!(
                    "\nlease_duration: {shown} (ignored: no longer used)\n"
                )),
                "{text}"
            );
        }
        // Still a known key: a typo near it is still caught.
        assert!(load_err(&format!("{MINIMAL}lease_duraton: 30s\n")).contains("lease_duration"));
    }

    /// With no configuration at all `status` reads the default state
    /// directory; a configuration that does not load is exit 78, never the
    /// default; `--state-dir` wins over both.
    #[test]
    fn status_falls_back_to_the_default_state_dir_only_with_no_configuration() {
        let root = tempfile::tempdir().unwrap();
        let (usr, etc) = (root.path().join("usr"), root.path().join("etc"));
        let dirs = [usr.to_str().unwrap(), etc.to_str().unwrap()];
        let none = Overrides::default();
        let default = PathBuf::from(default_text("state_dir"));
        assert_eq!(
            state_dir_for_status_in(None, &none, &dirs).unwrap(),
            default
        );
        // A config.d with no `*.yaml` in it configures nothing either.
        std::fs::create_dir_all(etc.join("config.d")).unwrap();
        std::fs::write(etc.join("config.d").join("notes.txt"), "").unwrap();
        assert_eq!(
            state_dir_for_status_in(None, &none, &dirs).unwrap(),
            default
        );

        let flag = Overrides(vec![("state_dir", "/srv/flag".into())]);
        assert_eq!(
            state_dir_for_status_in(None, &flag, &dirs).unwrap(),
            PathBuf::from("/srv/flag")
        );

        let (_dir, broken) = setup("deployment_id: [\n", &[]);
        let err = state_dir_for_status_in(Some(&broken), &none, &dirs).unwrap_err();
        assert_eq!(Exit::of(&err), Exit::Config, "{err:#}");
        assert!(format!("{err:#}").contains("--state-dir DIR"), "{err:#}");

        let (_dir, file) = setup(&format!("{MINIMAL}state_dir: /srv/state\n"), &[]);
        assert_eq!(
            state_dir_for_status_in(Some(&file), &none, &dirs).unwrap(),
            PathBuf::from("/srv/state")
        );
    }

    #[test]
    fn render_shows_no_secret_and_every_key() {
        let (_dir, file) = setup(MINIMAL, &[]);
        let c = load(Some(&file), &Overrides::default()).unwrap();
        let text = render(&c, Path::new("/run/credentials/x/kubeconfig-bearer"));
        for key in KEYS.iter().filter(|k| k.kind != Table && !k.retired) {
            assert!(
                text.contains(&format!("\n{}: ", key.name)) || text.starts_with(key.name),
                "{} missing from\n{text}",
                key.name
            );
        }
        assert!(!text.contains("(not used)\n"), "{text}");
        assert!(
            text.contains("bearer_token: <redacted> (from /run/credentials/x/kubeconfig-bearer)")
        );
        // Durations in the units the documentation uses.
        for line in [
            "deadline: 30m\n",
            "connect_timeout: 10s\n",
            "retry.max_delay: 1m\n",
            "metadata_url: http://169.254.169.254 (not used",
            "sovereign_fqdn: (none)\n",
            "ca_bundle: (system trust store)\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
    }

    #[test]
    fn durations_render_in_the_documented_units_and_read_back() {
        for (ms, text) in [
            (0, "0s"),
            (500, "500ms"),
            (1500, "1500ms"),
            (10_000, "10s"),
            (90_000, "90s"),
            (300_000, "5m"),
            (1_800_000, "30m"),
            (3_600_000, "1h"),
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text).unwrap(), d);
        }
    }

    #[test]
    fn declarations_are_consistent() {
        for k in KEYS {
            if let Initial::Value(v) = k.initial
                && k.kind == Kind::Duration
            {
                parse_duration(v).unwrap();
            }
            assert!(
                !(k.secret && k.flag.is_some()),
                "{}: argv is public",
                k.name
            );
            assert_eq!(k.doc.is_empty(), k.kind == Table, "{}", k.name);
            if let Some((parent, _)) = k.name.rsplit_once('.') {
                assert!(
                    matches!(key(parent).kind, Table | TextOrTable),
                    "{}",
                    k.name
                );
            }
        }
        let retry = RetryDelays::default();
        assert_eq!(retry.initial, Duration::from_secs(1));
        assert_eq!(retry.max, Duration::from_secs(60));
        assert_eq!(retry.overloaded, Duration::from_secs(10));
    }

    #[test]
    fn the_configuration_reference_lists_every_key() {
        let doc = include_str!("../../../docs/configuration.md");
        let table = docs_table();
        assert!(
            doc.contains(&table),
            "docs/configuration.md's key table is out of date; it should read:\n\n{table}"
        );
    }

    #[test]
    fn the_configuration_reference_names_every_flag() {
        let doc = include_str!("../../../docs/configuration.md");
        for k in KEYS.iter().filter(|k| k.flag.is_some()) {
            let flag = format!("`--{}`", k.flag_name());
            assert!(
                doc.contains(&flag),
                "docs/configuration.md does not name {flag}"
            );
        }
    }

    #[test]
    fn etc_drop_ins_mask_usr_lib_ones_of_the_same_name() {
        let root = tempfile::tempdir().unwrap();
        let usr = root.path().join("usr");
        let etc = root.path().join("etc");
        std::fs::create_dir_all(&usr).unwrap();
        std::fs::create_dir_all(&etc).unwrap();
        for (dir, name) in [
            (&usr, "10-a.yaml"),
            (&usr, "20-b.yaml"),
            (&etc, "20-b.yaml"),
            (&etc, "05-c.yaml"),
            (&usr, "30-d.yaml"),
            (&etc, "40-e.conf"),
        ] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        let found = drop_ins(&[&usr, &etc, &root.path().join("absent")]).unwrap();
        assert_eq!(
            found,
            [
                etc.join("05-c.yaml"),
                usr.join("10-a.yaml"),
                etc.join("20-b.yaml"),
                usr.join("30-d.yaml"),
            ]
        );
    }

    #[test]
    fn missing_key_names_the_file_in_use_and_the_flag() {
        let msg = load_err("catalyst_api_url: https://x.example\npublic_address: 1.2.3.4\n");
        assert!(
            msg.contains("config.yaml or a drop-in in")
                && msg.contains("config.d/, or pass --deployment-id")
                && !msg.contains(ETC_DIR),
            "{msg}"
        );
    }

    #[test]
    fn duplicate_key_names_file_key_and_line() {
        let msg = load_err(&format!("{MINIMAL}region: fsn1\nregion: nbg1\n"));
        assert!(
            msg.contains("config.yaml: duplicate key `region` on line 5")
                && !msg.contains("DuplicateKeyPolicy"),
            "{msg}"
        );
    }
}
