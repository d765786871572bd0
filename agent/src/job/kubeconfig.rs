//! The k3s kubeconfig: read and parsed as a kubeconfig (never by text
//! substitution), loopback servers pointed at the node's public address,
//! and the result held only in memory that is zeroized when dropped.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use kube::config::Kubeconfig;
use zeroize::Zeroizing;

use crate::config::PublicAddress;
use crate::config::file::FileError;
use crate::exit::Exit;
use crate::memory::kubeconfig::{Rewrite, Rewritten};
use crate::memory::untrusted::{self, Alphabet, Untrusted};
use crate::peers::retry::{Classify, Retry, Verdict};

/// catalyst-api refuses bodies over 1 MiB (`422 body-too-large`).
pub(crate) const MAX_BYTES: usize = 1 << 20;
/// k3s writes the file in place; a parse failure this soon after a write may
/// be a half-written file rather than a broken one.
const SETTLE: Duration = Duration::from_secs(2);

/// Why the file cannot be used: worth waiting for, or not.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("{0} does not exist yet")]
    Missing(String),
    #[error("{path} was just written and does not parse yet: {}", reason.shown())]
    Settling { path: String, reason: Untrusted },
    #[error("{path} is not a usable kubeconfig: {}", reason.shown())]
    Unusable { path: String, reason: Untrusted },
}

impl Classify for ReadError {
    fn verdict(&self) -> Verdict {
        match self {
            ReadError::Missing(_) | ReadError::Settling { .. } => Verdict::Retry(Retry::default()),
            ReadError::Unusable { .. } => Verdict::Permanent(Exit::Data),
        }
    }
}

/// Reads and parses the kubeconfig k3s wrote.
pub(crate) fn read(path: &Path) -> Result<Kubeconfig, ReadError> {
    let shown = path.display().to_string();
    // The reason may be derived from the file's text.
    let unusable = |reason: String| ReadError::Unusable {
        path: shown.clone(),
        reason: Untrusted::new(reason),
    };
    let (bytes, meta) = match crate::config::file::read(path, MAX_BYTES) {
        Ok(read) => read,
        Err(FileError::Missing) => return Err(ReadError::Missing(shown)),
        Err(FileError::TooLarge(_)) => {
            return Err(unusable(format!(
                "it is larger than {MAX_BYTES} bytes; a k3s kubeconfig is a few KiB"
            )));
        }
        Err(e) => return Err(unusable(format!("it {e}"))),
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return Err(unusable("it is not UTF-8 text".to_string()));
    };
    let reason = match parse(text) {
        Ok(kc) => {
            register_keys(&kc);
            return Ok(kc);
        }
        Err(reason) => reason,
    };
    let age = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok());
    if age.is_some_and(|a| a < SETTLE) {
        return Err(ReadError::Settling {
            path: shown,
            reason: Untrusted::new(reason),
        });
    }
    Err(unusable(reason))
}

/// The client keys, in every form that travels (`client-key-data` as
/// written, the PEM body inside it), so no outside text repeating them is
/// shown. Keys in files the kubeconfig names are registered where they are
/// read (`cluster::identity_pem`).
fn register_keys(kc: &Kubeconfig) {
    for auth in kc.auth_infos.iter().filter_map(|n| n.auth_info.as_ref()) {
        if let Some(data) = &auth.client_key_data {
            let data = secrecy::ExposeSecret::expose_secret(data);
            untrusted::register(Alphabet::Base64, data.as_bytes());
            if let Ok(pem) = STANDARD.decode(data.trim()).map(Zeroizing::new) {
                untrusted::register_pem(&pem);
            }
        }
    }
}

/// Parses the text as a kubeconfig clients can load, or says why not in
/// words that never quote the text.
pub(crate) fn parse(text: &str) -> Result<Kubeconfig, String> {
    let kc = Kubeconfig::from_yaml(text).map_err(|e| without_content(&e.to_string()))?;
    if kc.clusters.is_empty() {
        return Err("it has no clusters".to_string());
    }
    // client-go (kubectl, catalyst-api's clients) refuses a file in which a
    // name repeats, and which entry is meant cannot be known either.
    let lists = [
        (
            "cluster",
            kc.clusters.iter().map(|c| &c.name).collect::<Vec<_>>(),
        ),
        ("user", kc.auth_infos.iter().map(|u| &u.name).collect()),
        ("context", kc.contexts.iter().map(|c| &c.name).collect()),
    ];
    for (kind, names) in lists {
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = names.into_iter().find(|name| !seen.insert(*name)) {
            return Err(format!(
                "the {kind} name {twice:?} appears more than once; kubectl refuses such a file"
            ));
        }
    }
    Ok(kc)
}

/// A parse error reduced to where and what: the YAML parser quotes the
/// lines around the error and serde quotes the offending value, and either
/// may be the client key.
fn without_content(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    let mut out = String::with_capacity(first.len());
    let mut quoted = false;
    for c in first.chars() {
        match (c, quoted) {
            ('"', false) => {
                quoted = true;
                out.push_str("\"…");
            }
            ('"', true) => {
                quoted = false;
                out.push('"');
            }
            (c, false) => out.push(c),
            (_, true) => {}
        }
    }
    out
}

/// Points every loopback server at `public`, keeping scheme, port and path,
/// and gives those clusters `tls_server_name` when the certificate names
/// only that; everything else in the kubeconfig is kept as it was.
pub(crate) fn rewrite(
    kc: &Kubeconfig,
    public: &PublicAddress,
    tls_server_name: Option<&str>,
) -> anyhow::Result<Rewritten> {
    let mut kc = kc.clone();
    let mut rewrites = Vec::new();
    for named in &mut kc.clusters {
        let Some(cluster) = named.cluster.as_mut() else {
            continue;
        };
        let Some(server) = cluster.server.as_mut() else {
            continue;
        };
        if let Some(new) = rewrite_server(server, public)
            .with_context(|| format!("cluster {:?} has an invalid server {server:?}", named.name))
            .context(Exit::Data)?
        {
            rewrites.push(Rewrite {
                cluster: named.name.clone(),
                from: server.clone(),
                to: new.clone(),
            });
            *server = new;
            if let Some(name) = tls_server_name {
                cluster.tls_server_name = Some(name.to_string());
            }
        }
    }
    let mut yaml = Zeroizing::new(
        serde_saphyr::to_string(&kc)
            .context("serializing the rewritten kubeconfig")
            .context(Exit::Internal)?,
    );
    if yaml.len() > MAX_BYTES {
        return Err(anyhow!(
            "the rewritten kubeconfig is {} bytes; catalyst-api accepts at most {MAX_BYTES}",
            yaml.len()
        ))
        .context(Exit::Data);
    }
    let bytes = Zeroizing::new(std::mem::take(&mut *yaml).into_bytes());
    Ok(Rewritten {
        body: Bytes::from_owner(bytes),
        rewrites,
    })
}

/// The new server URL when `server`'s host is a loopback address.
fn rewrite_server(server: &str, public: &PublicAddress) -> anyhow::Result<Option<String>> {
    let uri: http::Uri = server.parse().context("not a URL")?;
    let host = uri.host().ok_or_else(|| anyhow!("no host"))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Ok(None);
    }
    let scheme_end = server
        .find("://")
        .map(|i| i + 3)
        .ok_or_else(|| anyhow!("no scheme"))?;
    let rest = &server[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    if rest[..authority_end].contains('@') {
        bail!("user information in the server URL is not supported");
    }
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    Ok(Some(format!(
        "{}{}{port}{}",
        &server[..scheme_end],
        public.url_host(),
        &rest[authority_end..]
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const K3S: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EK
    server: https://127.0.0.1:6443
  name: default
- cluster:
    server: https://other.example:6443
  name: remote
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: Q0VSVAo=
    client-key-data: S0VZCg==
";

    fn ip(s: &str) -> PublicAddress {
        PublicAddress::Ip(s.parse().unwrap())
    }

    #[test]
    fn rewrites_loopback_hosts_keeping_port_and_path() {
        let cases = [
            ("https://127.0.0.1:6443", "https://203.0.113.10:6443"),
            (
                "https://localhost:6443/k8s",
                "https://203.0.113.10:6443/k8s",
            ),
            ("https://[::1]:6443", "https://203.0.113.10:6443"),
            ("https://127.0.0.2", "https://203.0.113.10"),
        ];
        for (from, to) in cases {
            assert_eq!(
                rewrite_server(from, &ip("203.0.113.10"))
                    .unwrap()
                    .as_deref(),
                Some(to),
                "{from}"
            );
        }
        assert_eq!(
            rewrite_server("https://10.0.0.1:6443", &ip("203.0.113.10")).unwrap(),
            None
        );
        assert_eq!(
            rewrite_server("https://127.0.0.1:6443", &ip("2001:db8::1"))
                .unwrap()
                .as_deref(),
            Some("https://[2001:db8::1]:6443")
        );
    }

    #[test]
    fn everything_but_the_loopback_server_is_preserved() {
        let kc = Kubeconfig::from_yaml(K3S).unwrap();
        let out = rewrite(
            &kc,
            &PublicAddress::Name("api.sovereign.example".into()),
            None,
        )
        .unwrap();
        assert_eq!(
            out.rewrites,
            vec![Rewrite {
                cluster: "default".into(),
                from: "https://127.0.0.1:6443".into(),
                to: "https://api.sovereign.example:6443".into()
            }]
        );
        let back: serde_json::Value = serde_saphyr::from_slice(&out.body).unwrap();
        let mut want: serde_json::Value = serde_saphyr::from_str(K3S).unwrap();
        want["clusters"][0]["cluster"]["server"] = "https://api.sovereign.example:6443".into();
        assert_eq!(back, want);
    }

    #[test]
    fn tls_server_name_goes_only_to_rewritten_clusters() {
        let kc = Kubeconfig::from_yaml(K3S).unwrap();
        let out = rewrite(&kc, &ip("203.0.113.10"), Some("api.sovereign.example")).unwrap();
        let back: serde_json::Value = serde_saphyr::from_slice(&out.body).unwrap();
        assert_eq!(
            back["clusters"][0]["cluster"]["tls-server-name"],
            "api.sovereign.example"
        );
        assert!(
            back["clusters"][1]["cluster"]
                .get("tls-server-name")
                .is_none()
        );
        let plain = rewrite(&kc, &ip("203.0.113.10"), None).unwrap();
        let back: serde_json::Value = serde_saphyr::from_slice(&plain.body).unwrap();
        assert!(
            back["clusters"][0]["cluster"]
                .get("tls-server-name")
                .is_none()
        );
    }

    #[test]
    fn unusable_files_are_data_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k3s.yaml");
        assert!(matches!(read(&path), Err(ReadError::Missing(_))));

        let old = SystemTime::now() - Duration::from_secs(60);
        for (content, expect) in [
            ("{ not: [yaml", "is not a usable kubeconfig"),
            (
                "apiVersion: v1\nkind: Config\nclusters: []\n",
                "no clusters",
            ),
        ] {
            std::fs::write(&path, content).unwrap();
            // A file just written gets time to settle.
            assert!(matches!(read(&path), Err(ReadError::Settling { .. })));
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(old)
                .unwrap();
            let err = read(&path).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(expect) && msg.contains("k3s.yaml"), "{msg}");
            assert_eq!(err.verdict(), Verdict::Permanent(Exit::Data));
        }

        std::fs::write(&path, vec![b'#'; MAX_BYTES + 1]).unwrap();
        let msg = read(&path).unwrap_err().to_string();
        assert!(msg.contains("bytes; a k3s kubeconfig"), "{msg}");
    }

    #[test]
    fn parse_errors_never_quote_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k3s.yaml");
        let key = "S0VZLU1BVEVSSUFMLU5FVkVSLUlOLUEtTE9H";
        for broken in [
            format!(
                "users:\n- name: default\n  user:\n    client-key-data: {key}\n    client-certificate-data: [oops\n"
            ),
            format!(
                "users:\n- name: default\n  user:\n    client-key-data: {key}\n  bad indent: x\n"
            ),
            format!("clusters: 5\nusers:\n- user:\n    client-key-data: {key}\n"),
            format!("clusters: {key}\n"),
        ] {
            std::fs::write(&path, broken).unwrap();
            let old = SystemTime::now() - Duration::from_secs(60);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(old)
                .unwrap();
            let msg = read(&path).unwrap_err().to_string();
            assert!(!msg.contains(key), "the error quotes the file: {msg}");
            assert!(msg.contains("is not a usable kubeconfig"), "{msg}");
        }
    }

    /// Found by `cargo fuzz` (kubeconfig target): with a repeated cluster
    /// name, the rewritten entry and the one a client picks can differ.
    #[test]
    fn repeated_names_are_refused_naming_them() {
        let crash = "apiVers-on: v1
kind: Config
clusters:
- name: a
  cluster: {server: \"https://[::1]:6443/prefix\", insecuretsk-lip-s-verify: false}
- name: b
  cluster: {server: \"hrefix\", insecuretsk-lip-s-verify: false}
- name: b
  cluster: {server: \"https://localhost\"}
- name: c
  cluster: {server: \"https://10.0.0.1:6443\", tls-server-name: other}
- name: d
  clust: []
contexts: []
";
        let err = parse(crash).unwrap_err();
        assert!(
            err.contains("cluster name \"b\" appears more than once"),
            "{err}"
        );
        assert!(parse(K3S).is_ok());
        for (kind, repeated) in [
            (
                "user",
                K3S.replace(
                    "- name: default\n  user:",
                    "- name: default\n  user: {}\n- name: default\n  user:",
                ),
            ),
            (
                "context",
                K3S.replace(
                    "current-context",
                    "- name: default\n  context: {cluster: default}\ncurrent-context",
                ),
            ),
        ] {
            let err = parse(&repeated).unwrap_err();
            assert!(
                err.contains(&format!("{kind} name \"default\" appears")),
                "{kind}: {err}"
            );
        }
    }

    #[test]
    fn oversized_result_is_refused() {
        let mut kc = Kubeconfig::from_yaml(K3S).unwrap();
        kc.other
            .insert("padding".into(), "x".repeat(MAX_BYTES).into());
        let err = rewrite(&kc, &ip("203.0.113.10"), None).err().unwrap();
        assert!(format!("{err:#}").contains("at most 1048576"));
        assert_eq!(Exit::of(&err), Exit::Data);
    }
}
