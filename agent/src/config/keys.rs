//! Every configuration key, declared once: its kind, default, doc line and
//! flag. Loading, validation, `check-config`, the command-line flags, the
//! man page and docs/configuration.md's table all follow from [`KEYS`].

#[cfg(test)]
use std::fmt::Write as _;
use std::time::Duration;

use super::parse_duration;

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
pub(super) fn docs_table() -> String {
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
