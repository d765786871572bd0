//! Configuration: image defaults under `/usr/lib`, the node's file under
//! `/etc`, drop-ins in `config.d/*.yaml` (lexical order, later wins), then
//! command-line flags. Every error names the key and the file it came from.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::{Map, Value};

use crate::exit::Exit;
use crate::retry::RetryPolicy;

pub(crate) const ETC_DIR: &str = "/etc/catalyst-bootstrap";
const USR_DIR: &str = "/usr/lib/catalyst-bootstrap";
const MAX_CONFIG_BYTES: usize = 64 * 1024;

/// Every key the agent knows, as dotted paths; `seed` and `retry` are tables.
const KEYS: &[&str] = &[
    "deployment_id",
    "catalyst_api_url",
    "public_address",
    "metadata_url",
    "sovereign_fqdn",
    "preflight",
    "node_name",
    "lease_duration",
    "kubeconfig",
    "token_file",
    "region",
    "ca_bundle",
    "deadline",
    "state_dir",
    "connect_timeout",
    "read_timeout",
    "seed",
    "seed.namespace",
    "seed.name",
    "seed.key",
    "seed.marker",
    "seed.helm_release",
    "seed.helm_release.name",
    "seed.helm_release.namespace",
    "retry",
    "retry.initial_delay",
    "retry.max_delay",
    "retry.overloaded_delay",
];

/// Tables that may also be set to a scalar (`seed.helm_release: none`); a
/// later layer's scalar replaces an earlier table and the other way round.
const SCALAR_OR_TABLE: &[&str] = &["seed.helm_release"];

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
    /// This node's identity as holder of the coordination Lease.
    pub(crate) node_name: String,
    pub(crate) lease_duration: Duration,
    pub(crate) kubeconfig: PathBuf,
    pub(crate) token_file: Option<PathBuf>,
    pub(crate) region: Option<String>,
    pub(crate) ca_bundle: Option<PathBuf>,
    pub(crate) deadline: Duration,
    pub(crate) state_dir: PathBuf,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) seed: SeedTarget,
    pub(crate) retry: RetryPolicy,
}

/// Values given on the command line; they win over every file.
#[derive(Debug, Default, Clone)]
pub(crate) struct Overrides(pub(crate) Vec<(&'static str, String)>);

/// Loads the layered configuration. `explicit` replaces the `/usr/lib` and
/// `/etc` files with one file (plus the `config.d` beside it).
pub(crate) fn load(explicit: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
    load_layers(explicit, overrides).context(Exit::Config)
}

fn load_layers(explicit: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
    let files = match explicit {
        Some(file) => {
            if !file.exists() {
                bail!("configuration file {} does not exist", file.display());
            }
            let dir = file.parent().unwrap_or(Path::new("."));
            let mut files = vec![file.to_path_buf()];
            files.extend(drop_ins(&dir.join("config.d"))?);
            files
        }
        None => {
            let mut files = Vec::new();
            for dir in [USR_DIR, ETC_DIR] {
                let main = Path::new(dir).join("config.yaml");
                if main.exists() {
                    files.push(main);
                }
                files.extend(drop_ins(&Path::new(dir).join("config.d"))?);
            }
            if files.is_empty() {
                bail!(
                    "no configuration: {ETC_DIR}/config.yaml does not exist (nor does any drop-in in \
                     {ETC_DIR}/config.d/)"
                );
            }
            files
        }
    };
    let mut layers = Layers::default();
    for file in &files {
        layers.add_file(file)?;
    }
    for (key, value) in &overrides.0 {
        layers.set(
            key,
            Value::String(value.clone()),
            &format!("--{}", key.replace('_', "-")),
        );
    }
    layers.build()
}

/// One configuration document on its own, as the fuzz target feeds it.
#[cfg(fuzzing)]
pub(crate) fn from_text(text: &str) -> anyhow::Result<Config> {
    let mut layers = Layers::default();
    layers.add_text(text, "config.yaml")?;
    layers.build()
}

/// `*.yaml` files of a drop-in directory in lexical order; none if it is absent.
fn drop_ins(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(e).with_context(|| format!("reading drop-in directory {}", dir.display()));
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading drop-in directory {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The merged key/value tree plus, for every leaf, the file or flag that set it.
#[derive(Default)]
struct Layers {
    values: Map<String, Value>,
    origin: BTreeMap<String, String>,
}

impl Layers {
    fn add_file(&mut self, file: &Path) -> anyhow::Result<()> {
        let (bytes, _) = crate::file::read(file, MAX_CONFIG_BYTES)
            .with_context(|| format!("configuration file {}", file.display()))?;
        let text = std::str::from_utf8(&bytes)
            .with_context(|| format!("configuration file {} is not UTF-8 text", file.display()))?;
        self.add_text(text, &file.display().to_string())
    }

    fn add_text(&mut self, text: &str, origin: &str) -> anyhow::Result<()> {
        let doc: Value =
            serde_saphyr::from_str(text).map_err(|e| anyhow!("{origin}: not valid YAML: {e}"))?;
        match doc {
            Value::Null => Ok(()),
            Value::Object(map) => self.merge("", map, origin),
            _ => bail!("{origin}: expected a mapping of keys to values at the top level"),
        }
    }

    fn merge(&mut self, prefix: &str, map: Map<String, Value>, origin: &str) -> anyhow::Result<()> {
        for (key, value) in map {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            if !KEYS.contains(&path.as_str()) {
                let hint = nearest_key(&path)
                    .map(|k| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default();
                bail!("{origin}: unknown key `{path}`{hint}");
            }
            match value {
                Value::Object(inner) if is_table(&path) => self.merge(&path, inner, origin)?,
                _ if is_table(&path) && !SCALAR_OR_TABLE.contains(&path.as_str()) => {
                    bail!("{origin}: `{path}` must be a mapping")
                }
                value => self.set(&path, value, origin),
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
                // A scalar from an earlier layer (see SCALAR_OR_TABLE) gives way.
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

    /// A string value. YAML turns unquoted digits into numbers, and a number
    /// silently loses leading zeros, so numbers are refused with a hint.
    fn string(&self, path: &str) -> anyhow::Result<Option<String>> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => bail!(
                "{}: `{path}` must be a string; quote it: {path}: \"{n}\"",
                self.origin(path)
            ),
            Some(_) => bail!("{}: `{path}` must be a string", self.origin(path)),
        }
    }

    fn required(&self, path: &str) -> anyhow::Result<String> {
        self.string(path)?.ok_or_else(|| {
            anyhow!("missing required key `{path}`: set it in {ETC_DIR}/config.yaml or a drop-in")
        })
    }

    /// Applies `parse` to a key's value, naming key and file on failure.
    fn parsed<T>(
        &self,
        path: &str,
        default: Option<&str>,
        parse: impl FnOnce(&str) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let value = match (self.string(path)?, default) {
            (Some(v), _) => v,
            (None, Some(d)) => d.to_string(),
            (None, None) => self.required(path)?,
        };
        parse(&value).with_context(|| format!("{}: invalid `{path}`", self.origin(path)))
    }

    fn duration(&self, path: &str, default: &str) -> anyhow::Result<Duration> {
        if let Some(Value::Number(n)) = self.get(path) {
            let secs = n.as_u64().ok_or_else(|| {
                anyhow!(
                    "{}: `{path}` must be a whole number of seconds or a duration like \"90s\"",
                    self.origin(path)
                )
            })?;
            return Ok(Duration::from_secs(secs));
        }
        self.parsed(path, Some(default), parse_duration)
    }

    fn build(&self) -> anyhow::Result<Config> {
        let retry = RetryPolicy {
            initial: self.duration("retry.initial_delay", "1s")?,
            max: self.duration("retry.max_delay", "60s")?,
            overloaded_min: self.duration("retry.overloaded_delay", "10s")?,
            ..RetryPolicy::default()
        };
        if retry.initial.is_zero() || retry.initial > retry.max {
            bail!(
                "{}: `retry.initial_delay` must be above zero and not above `retry.max_delay`",
                self.origin("retry.initial_delay")
            );
        }
        Ok(Config {
            deployment_id: self.parsed("deployment_id", None, parse_deployment_id)?,
            catalyst_api_url: self.parsed("catalyst_api_url", None, parse_api_url)?,
            public_address: match self.required("public_address")?.as_str() {
                "hetzner-metadata" => AddressSource::HetznerMetadata(self.parsed(
                    "metadata_url",
                    Some("http://169.254.169.254"),
                    |s| reqwest::Url::parse(s).with_context(|| format!("{s:?} is not a URL")),
                )?),
                _ => AddressSource::Literal(self.parsed(
                    "public_address",
                    None,
                    parse_public_address,
                )?),
            },
            sovereign_fqdn: match self.string("sovereign_fqdn")? {
                Some(_) => Some(self.parsed("sovereign_fqdn", None, dns_name)?),
                None => None,
            },
            preflight: self.parsed("preflight", Some("enforce"), |s| match s {
                "enforce" => Ok(Preflight::Enforce),
                "warn" => Ok(Preflight::Warn),
                other => bail!("{other:?} is neither \"enforce\" nor \"warn\""),
            })?,
            node_name: match self.string("node_name")? {
                Some(_) => self.parsed("node_name", None, dns_subdomain)?,
                None => hostname()?,
            },
            lease_duration: self.duration("lease_duration", "30s")?,
            kubeconfig: PathBuf::from(self.parsed(
                "kubeconfig",
                Some("/etc/rancher/k3s/k3s.yaml"),
                absolute,
            )?),
            token_file: self.string("token_file")?.map(PathBuf::from),
            region: match self.string("region")? {
                Some(_) => Some(self.parsed("region", None, parse_region)?),
                None => None,
            },
            ca_bundle: self.string("ca_bundle")?.map(PathBuf::from),
            deadline: self.duration("deadline", "30m")?,
            state_dir: PathBuf::from(self.parsed(
                "state_dir",
                Some("/var/lib/catalyst-bootstrap"),
                absolute,
            )?),
            connect_timeout: self.duration("connect_timeout", "10s")?,
            read_timeout: self.duration("read_timeout", "30s")?,
            seed: SeedTarget {
                namespace: self.parsed("seed.namespace", Some("openbao"), dns_label)?,
                name: self.parsed("seed.name", Some("openbao-recovery-seed"), dns_subdomain)?,
                key: self.parsed("seed.key", Some("recovery-seed"), secret_key)?,
                marker: self.parsed("seed.marker", Some("openbao-init-marker"), dns_subdomain)?,
                helm_release: match self.get("seed.helm_release") {
                    // Today's kit: bootstrap-kit slot 08 installs bp-openbao
                    // as release `openbao` into namespace `openbao`.
                    None => Some(HelmRelease {
                        name: "openbao".into(),
                        namespace: "openbao".into(),
                    }),
                    Some(Value::String(s)) if s == "none" => None,
                    Some(Value::Object(_)) => Some(HelmRelease {
                        name: self.parsed("seed.helm_release.name", None, helm_release_name)?,
                        namespace: self.parsed("seed.helm_release.namespace", None, dns_label)?,
                    }),
                    Some(other) => bail!(
                        "{}: invalid `seed.helm_release`: {other} is neither `none` (no Helm \
                         ownership metadata on the seed Secret) nor a mapping with `name` and \
                         `namespace` (the release that renders it; leave the key out for \
                         release openbao in namespace openbao)",
                        self.origin("seed.helm_release")
                    ),
                },
            },
            retry,
        })
    }
}

fn is_table(path: &str) -> bool {
    KEYS.iter().any(|k| {
        k.strip_prefix(path)
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// The known key closest to a misspelt one, if any is close enough to help.
fn nearest_key(unknown: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|k| (edit_distance(unknown, k), *k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 3))
        .min()
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
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

fn dns_label(s: &str) -> anyhow::Result<String> {
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

fn dns_subdomain(s: &str) -> anyhow::Result<String> {
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

fn secret_key(s: &str) -> anyhow::Result<String> {
    let ok = (1..=253).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !ok {
        bail!("{s:?} is not a valid Secret data key");
    }
    Ok(s.to_string())
}

fn absolute(s: &str) -> anyhow::Result<String> {
    if !Path::new(s).is_absolute() {
        bail!("{s:?} must be an absolute path");
    }
    Ok(s.to_string())
}

/// `"500ms"`, `"90s"`, `"30m"`, `"1h"`; a bare number means seconds.
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

/// The effective configuration as check-config prints it: every key, its
/// value and where it came from. Nothing secret is in `Config`.
pub(crate) fn render(config: &Config, token_source: &Path) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{k}: {v}");
    };
    line("deployment_id", &config.deployment_id);
    line("catalyst_api_url", &config.catalyst_api_url);
    match &config.public_address {
        AddressSource::Literal(address) => line("public_address", &address.url_host()),
        AddressSource::HetznerMetadata(url) => {
            line("public_address", &format_args!("hetzner-metadata ({url})"))
        }
    }
    line(
        "sovereign_fqdn",
        &config.sovereign_fqdn.as_deref().unwrap_or("(none)"),
    );
    line(
        "preflight",
        &match config.preflight {
            Preflight::Enforce => "enforce",
            Preflight::Warn => "warn",
        },
    );
    line("node_name", &config.node_name);
    line(
        "lease_duration",
        &format_args!("{}s", config.lease_duration.as_secs()),
    );
    line("kubeconfig", &config.kubeconfig.display());
    line("region", &config.region.as_deref().unwrap_or("(none)"));
    line(
        "ca_bundle",
        &config
            .ca_bundle
            .as_ref()
            .map_or("(system trust store)".into(), |p| p.display().to_string()),
    );
    line("deadline", &format_args!("{}s", config.deadline.as_secs()));
    line("state_dir", &config.state_dir.display());
    line(
        "connect_timeout",
        &format_args!("{}ms", config.connect_timeout.as_millis()),
    );
    line(
        "read_timeout",
        &format_args!("{}ms", config.read_timeout.as_millis()),
    );
    line("seed.namespace", &config.seed.namespace);
    line("seed.name", &config.seed.name);
    line("seed.key", &config.seed.key);
    line("seed.marker", &config.seed.marker);
    match &config.seed.helm_release {
        Some(r) => line(
            "seed.helm_release",
            &format_args!(
                "{} in namespace {} (the seed Secret carries Helm ownership metadata for it)",
                r.name, r.namespace
            ),
        ),
        None => line("seed.helm_release", &"none (no Helm ownership metadata)"),
    }
    line(
        "retry.initial_delay",
        &format_args!("{}ms", config.retry.initial.as_millis()),
    );
    line(
        "retry.max_delay",
        &format_args!("{}ms", config.retry.max.as_millis()),
    );
    line(
        "retry.overloaded_delay",
        &format_args!("{}ms", config.retry.overloaded_min.as_millis()),
    );
    line(
        "bearer_token",
        &format_args!("<redacted> (from {})", token_source.display()),
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
    fn render_shows_no_secret_and_every_key() {
        let (_dir, file) = setup(MINIMAL, &[]);
        let c = load(Some(&file), &Overrides::default()).unwrap();
        let text = render(&c, Path::new("/run/credentials/x/kubeconfig-bearer"));
        // token_file, metadata_url and the Helm release's fields only show when they apply.
        for key in KEYS.iter().filter(|k| {
            !is_table(k)
                && !["token_file", "metadata_url"].contains(k)
                && !k.starts_with("seed.helm_release.")
        }) {
            assert!(
                text.contains(&format!("{key}: ")),
                "{key} missing from\n{text}"
            );
        }
        assert!(
            text.contains("bearer_token: <redacted> (from /run/credentials/x/kubeconfig-bearer)")
        );
    }
}
