//! What each phase, and each step within one, ended with, and how it reads:
//! its journal lines and, for a phase, its detail in state.json and STATUS=.
//! Outside text reaches these texts only through `Untrusted::shown`.

use std::net::SocketAddr;

use crate::config::{PublicAddress, SeedTarget};
use crate::job::seed::{Ownership, SeedOutcome};
use crate::memory::kubeconfig::Rewritten;
use crate::memory::untrusted::Untrusted;
use crate::peers::api::Delivery;
use crate::peers::cluster::Cluster;
use crate::report::journal::Event;
use crate::report::{Ended, Line, Told};

/// The wait phase: the kubeconfig is there and its API server is ready.
pub(crate) struct Ready {
    pub(crate) kubeconfig: kube::config::Kubeconfig,
    pub(crate) cluster: Cluster,
    pub(crate) server: String,
}

impl Told for Ready {
    fn lines(&self) -> Vec<Line> {
        Vec::new()
    }
}

impl Ended for Ready {
    fn detail(&self) -> String {
        format!("API server at {} is ready", self.server)
    }
}

/// Where the kubeconfig will point.
pub(crate) enum Address {
    Configured(PublicAddress),
    /// Asked of the metadata service.
    Discovered(PublicAddress),
}

impl Address {
    pub(crate) fn get(&self) -> &PublicAddress {
        match self {
            Address::Configured(a) | Address::Discovered(a) => a,
        }
    }
}

impl Told for Address {
    fn lines(&self) -> Vec<Line> {
        match self {
            Address::Configured(_) => Vec::new(),
            Address::Discovered(a) => vec![Line::Info(format!(
                "public address from the metadata service: {}",
                a.url_host()
            ))],
        }
    }
}

/// The check that the kubeconfig will verify at the public address.
pub(crate) enum Checked {
    /// The API server is not on a loopback address: the kubeconfig keeps it.
    NotLoopback { server: String },
    /// The certificate is valid for the address.
    Passed { via: SocketAddr, host: String },
    /// Valid only for `name`, which the kubeconfig gets as `tls-server-name`.
    Fallback {
        via: SocketAddr,
        host: String,
        name: String,
    },
    /// Not valid, sent anyway (`preflight: warn`); `error` says why.
    Ignored { error: String },
}

impl Checked {
    /// The name clients verify the certificate against, when not the address.
    pub(crate) fn server_name(&self) -> Option<&str> {
        match self {
            Checked::Fallback { name, .. } => Some(name),
            _ => None,
        }
    }
}

impl Told for Checked {
    fn lines(&self) -> Vec<Line> {
        vec![match self {
            Checked::NotLoopback { server } => Line::Info(format!(
                "the API server {server} is not a loopback address, so the kubeconfig keeps it; \
                 no certificate check"
            )),
            Checked::Passed { via, host } => Line::Event(
                Event::PreflightPassed,
                format!(
                    "preflight: the API server's certificate (checked at {via}) is valid for {host}"
                ),
            ),
            Checked::Fallback { via, host, name } => Line::Event(
                Event::PreflightFallback,
                format!(
                    "preflight: the API server's certificate (checked at {via}) is not valid for \
                     {host} but is for {name}; the kubeconfig gets tls-server-name: {name} \
                     (add --tls-san={host} to k3s to make the address itself verify)"
                ),
            ),
            Checked::Ignored { error } => Line::Event(
                Event::PreflightIgnored,
                format!(
                    "preflight: {error}; sending the kubeconfig anyway because of `preflight: warn`"
                ),
            ),
        }]
    }
}

/// The kubeconfig about to be sent, and where to.
pub(crate) struct Sending<'a> {
    pub(crate) rewritten: &'a Rewritten,
    pub(crate) to: &'a reqwest::Url,
}

impl Told for Sending<'_> {
    fn lines(&self) -> Vec<Line> {
        let mut lines: Vec<Line> = self
            .rewritten
            .rewrites
            .iter()
            .map(|r| {
                // Names and addresses from k3s's file, shown like outside text.
                Line::Event(
                    Event::KubeconfigRewritten,
                    format!(
                        "cluster \"{}\": server {} rewritten to {}",
                        Untrusted::new(r.cluster.as_str()).shown(),
                        Untrusted::new(r.from.as_str()).shown(),
                        Untrusted::new(r.to.as_str()).shown()
                    ),
                )
            })
            .collect();
        if lines.is_empty() {
            lines.push(Line::Warn(
                "no cluster in the kubeconfig points at a loopback address; sending it unchanged"
                    .into(),
            ));
        }
        lines.push(Line::Event(
            Event::KubeconfigSending,
            format!("sending the kubeconfig to {}", self.to),
        ));
        lines
    }
}

/// The kubeconfig phase.
pub(crate) struct Delivered(pub(crate) Delivery);

impl Told for Delivered {
    fn lines(&self) -> Vec<Line> {
        vec![match self.0 {
            Delivery::Captured => Line::Event(
                Event::KubeconfigDelivered,
                "kubeconfig delivered to catalyst-api (204)".into(),
            ),
            Delivery::AlreadyCaptured => Line::Event(
                Event::KubeconfigAlreadyCaptured,
                "catalyst-api already has this deployment's kubeconfig (403 already-set): an \
                 earlier attempt or another control-plane node delivered it; counting it as \
                 delivered"
                    .into(),
            ),
        }]
    }
}

impl Ended for Delivered {
    fn detail(&self) -> String {
        match self.0 {
            Delivery::Captured => "delivered",
            Delivery::AlreadyCaptured => {
                "already captured by an earlier attempt or another control-plane node"
            }
        }
        .to_string()
    }
}

/// The seed phase.
pub(crate) struct Seeded<'a> {
    pub(crate) outcome: SeedOutcome,
    pub(crate) target: &'a SeedTarget,
}

impl Seeded<'_> {
    fn release(&self) -> String {
        self.target
            .helm_release
            .as_ref()
            .map(|r| format!("{}/{}", r.name, r.namespace))
            .unwrap_or_default()
    }
}

impl Told for Seeded<'_> {
    fn lines(&self) -> Vec<Line> {
        let t = self.target;
        let mut lines = Vec::new();
        if let SeedOutcome::Kept(Ownership::Foreign(owner)) = &self.outcome {
            lines.push(Line::Warn(format!(
                "Secret {}/{} names {owner} as its owner: Helm will refuse to install release \
                 {} over it until someone decides which release owns it (or sets \
                 `seed.helm_release`); not taking it over",
                t.namespace,
                t.name,
                self.release()
            )));
        }
        let event = match self.outcome {
            SeedOutcome::Written => Event::SeedWritten,
            SeedOutcome::Kept(_) => Event::SeedKept,
            SeedOutcome::Skipped => Event::SeedSkipped,
        };
        lines.push(Line::Event(event, self.detail()));
        lines
    }
}

impl Ended for Seeded<'_> {
    fn detail(&self) -> String {
        let t = self.target;
        match &self.outcome {
            SeedOutcome::Written => {
                format!("recovery seed written to Secret {}/{}", t.namespace, t.name)
            }
            SeedOutcome::Kept(ownership) => {
                let kept = format!(
                    "Secret {}/{} already holds a seed; kept it unchanged",
                    t.namespace, t.name
                );
                let release = self.release();
                match ownership {
                    Ownership::Unchanged => kept,
                    Ownership::Added => {
                        format!("{kept}; added Helm ownership metadata for release {release}")
                    }
                    Ownership::Foreign(owner) => format!(
                        "{kept}; left its ownership alone (it belongs to {owner}, not {release})"
                    ),
                }
            }
            SeedOutcome::Skipped => format!(
                "Secret {}/{} exists, so OpenBao is already initialised; no seed written",
                t.namespace, t.marker
            ),
        }
    }
}

/// One bootstrap Secret, applied from its file (`removed`: and the file
/// overwritten and removed).
pub(crate) struct SecretStep<'a> {
    pub(crate) secret: &'a str,
    pub(crate) file: &'a std::path::Path,
    pub(crate) removed: bool,
}

impl Told for SecretStep<'_> {
    fn lines(&self) -> Vec<Line> {
        let (event, text) = if self.removed {
            (
                Event::SecretFileRemoved,
                format!(
                    "{} overwritten with zeros and removed (Secret {})",
                    self.file.display(),
                    self.secret
                ),
            )
        } else {
            (
                Event::SecretApplied,
                format!(
                    "Secret {} applied from {}",
                    self.secret,
                    self.file.display()
                ),
            )
        };
        vec![Line::Event(event, text)]
    }
}

/// The secrets phase: the Secrets applied by this run, and the files of
/// earlier runs' Secrets removed.
pub(crate) struct SecretsApplied {
    pub(crate) dir: std::path::PathBuf,
    pub(crate) applied: Vec<String>,
    pub(crate) leftovers: usize,
}

impl Told for SecretsApplied {
    fn lines(&self) -> Vec<Line> {
        Vec::new()
    }
}

impl Ended for SecretsApplied {
    fn detail(&self) -> String {
        let mut parts = Vec::new();
        match self.applied.len() {
            0 => {}
            1 => parts.push(format!("Secret {} applied", self.applied[0])),
            n => parts.push(format!("{n} Secrets applied ({})", self.applied.join(", "))),
        }
        if self.leftovers > 0 {
            parts.push(format!(
                "{} file(s) of Secrets applied by an earlier run removed",
                self.leftovers
            ));
        }
        if parts.is_empty() {
            return format!("no bootstrap Secrets in {}", self.dir.display());
        }
        format!(
            "{}; no file left in {}",
            parts.join("; "),
            self.dir.display()
        )
    }
}

/// One object of the hand-off applied.
pub(crate) struct ObjectApplied<'a> {
    pub(crate) object: &'a str,
    pub(crate) file: &'a std::path::Path,
}

impl Told for ObjectApplied<'_> {
    fn lines(&self) -> Vec<Line> {
        vec![Line::Event(
            Event::ObjectApplied,
            format!("{} applied from {}", self.object, self.file.display()),
        )]
    }
}

/// The next object's kind is not served yet: a wait begins.
pub(crate) struct KindAwaited<'a> {
    pub(crate) kind: &'a str,
    pub(crate) api_version: &'a str,
    pub(crate) object: &'a str,
    pub(crate) optional: bool,
}

impl Told for KindAwaited<'_> {
    fn lines(&self) -> Vec<Line> {
        let until = if self.optional {
            "until `manifests.optional_wait` has passed"
        } else {
            "until the deadline"
        };
        vec![Line::Event(
            Event::KindAwaited,
            format!(
                "{} ({}) is not served yet (its CRD is absent or not Established); \
                 {} waits for it, {until}",
                self.kind, self.api_version, self.object
            ),
        )]
    }
}

/// An optional file of the hand-off that was not applied.
pub(crate) struct Skipped<'a> {
    pub(crate) file: &'a std::path::Path,
    pub(crate) why: String,
}

impl Told for Skipped<'_> {
    fn lines(&self) -> Vec<Line> {
        vec![Line::Event(
            Event::ManifestSkipped,
            format!(
                "optional {} skipped (the job goes on): {}",
                self.file.display(),
                self.why
            ),
        )]
    }
}

/// Every required object is applied; `done_marker` written if set.
pub(crate) struct HandedToFlux<'a> {
    pub(crate) marker: Option<&'a std::path::Path>,
    pub(crate) optional: usize,
}

impl Told for HandedToFlux<'_> {
    fn lines(&self) -> Vec<Line> {
        let marker = match self.marker {
            Some(path) => format!("; {} written", path.display()),
            None => String::new(),
        };
        let rest = match self.optional {
            0 => String::new(),
            n => format!("; {n} optional file(s) still to apply"),
        };
        vec![Line::Event(
            Event::MarkerWritten,
            format!("the required objects of the hand-off are applied{marker}{rest}"),
        )]
    }
}

/// The manifests phase: what was applied, kept from an earlier run, skipped.
pub(crate) struct HandedOff {
    pub(crate) dir: std::path::PathBuf,
    pub(crate) applied: usize,
    pub(crate) earlier: usize,
    pub(crate) skipped: Vec<String>,
}

impl Told for HandedOff {
    fn lines(&self) -> Vec<Line> {
        Vec::new()
    }
}

impl Ended for HandedOff {
    fn detail(&self) -> String {
        if self.applied + self.earlier == 0 && self.skipped.is_empty() {
            return format!("no manifests in {}", self.dir.display());
        }
        let mut parts = vec![format!("{} object(s) applied", self.applied)];
        if self.earlier > 0 {
            parts.push(format!("{} applied by an earlier run", self.earlier));
        }
        if !self.skipped.is_empty() {
            parts.push(format!("skipped {}", self.skipped.join(", ")));
        }
        parts.join("; ")
    }
}
