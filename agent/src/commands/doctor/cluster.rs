//! doctor's checks of the API server side: the public address, the
//! rewrite, `/readyz`, the clock, the certificate (preflight) and the seed.

use std::net::SocketAddr;

use kube::config::Kubeconfig;

use super::{CONNECT, Line, SKEW_OK, TOTAL, Verdict, fail, handoff, ms, ok, timed, warn};
use crate::config::{AddressSource, Config, Preflight, PublicAddress};
use crate::job::kubeconfig;
use crate::job::preflight::{self, Check, Passed, PreflightError};
use crate::job::seed::{self, Ownership, Plan};
use crate::memory::untrusted::Untrusted;
use crate::peers::cluster::Cluster;
use crate::peers::metadata::Metadata;

/// The address a run would write into the kubeconfig.
pub(super) async fn address(config: &Config) -> (Result<PublicAddress, String>, Line) {
    match &config.public_address {
        AddressSource::Literal(a) => (
            Ok(a.clone()),
            ok("address", format!("{} (configured)", a.url_host())),
        ),
        AddressSource::HetznerMetadata(base) => {
            let metadata = match Metadata::new(base, CONNECT) {
                Ok(m) => m,
                Err(e) => {
                    let text = format!("{e:#}");
                    return (Err(text.clone()), fail("address", text, "a bug; report it"));
                }
            };
            let (got, took) = timed(metadata.public_ipv4()).await;
            match got {
                Ok(a) => (
                    Ok(a.clone()),
                    ok(
                        "address",
                        format!(
                            "{} from GET {} in {}",
                            a.url_host(),
                            metadata.url(),
                            ms(took)
                        ),
                    ),
                ),
                Err(e) => (
                    Err(e.clone()),
                    fail(
                        "address",
                        format!("GET {}: {e}", metadata.url()),
                        "the metadata service must answer (a run retries it); or set \
                         `public_address` to the address",
                    ),
                ),
            }
        }
    }
}

/// rewrite, api-server, clock, address, preflight, seed.
pub(super) async fn server_side(config: &Config, kc: Option<&Kubeconfig>) -> [Line; 7] {
    let no_cluster = |check| {
        fail(
            check,
            "not checked: the API server cannot be reached",
            "see `api-server`",
        )
    };
    let connect = async {
        let kc = kc?;
        Some(tokio::time::timeout(TOTAL, Cluster::from_kubeconfig(kc, CONNECT)).await)
    };
    let ((address, address_line), cluster) = tokio::join!(self::address(config), connect);
    let rewrite = match (kc, &address) {
        (None, _) => fail("rewrite", "not checked: no kubeconfig", "see `kubeconfig`"),
        (_, Err(_)) => fail("rewrite", "not checked: no address", "see `address`"),
        (Some(kc), Ok(a)) => rewrite_line(kc, a),
    };
    let cluster = match cluster {
        None => {
            return [
                rewrite,
                fail(
                    "api-server",
                    "not checked: no kubeconfig",
                    "see `kubeconfig`",
                ),
                no_cluster("clock"),
                address_line,
                no_cluster("preflight"),
                no_cluster("seed"),
                handoff::manifests(config, None).await,
            ];
        }
        Some(Err(_)) => Err(format!("no client within {}s", TOTAL.as_secs())),
        Some(Ok(Err(e))) => Err(format!("{e:#}")),
        Some(Ok(Ok(c))) => Ok(c),
    };
    let cluster = match cluster {
        Ok(c) => c,
        Err(e) => {
            return [
                rewrite,
                fail(
                    "api-server",
                    e,
                    "the kubeconfig's credentials do not load; restart k3s to rewrite it",
                ),
                no_cluster("clock"),
                address_line,
                no_cluster("preflight"),
                no_cluster("seed"),
                handoff::manifests(config, None).await,
            ];
        }
    };
    let cluster = &cluster;
    let probe = async {
        let (ready, took) = timed(cluster.ready()).await;
        let version = match ready {
            Ok(()) => Some(timed(cluster.get_dated("/version")).await.0),
            Err(_) => None,
        };
        (ready, took, version)
    };
    let preflight = async {
        match &address {
            Ok(a) => Some(preflight_check(config, cluster, a).await),
            Err(_) => None,
        }
    };
    let ((ready, took, version), preflight, seed, manifests) = tokio::join!(
        probe,
        preflight,
        timed(seed::plan(cluster, &config.seed)),
        handoff::manifests(config, Some(cluster))
    );
    let server = cluster.server();
    let (api_line, date) = match (ready, version) {
        (Err(e), _) => (
            fail(
                "api-server",
                format!("{server}: {e}"),
                "is k3s running? `systemctl status k3s`, `journalctl -u k3s`; a run waits for it",
            ),
            None,
        ),
        (Ok(()), Some(Ok((body, date)))) => {
            let version = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("gitVersion")?.as_str().map(str::to_string))
                .unwrap_or_else(|| "unknown".to_string());
            (
                ok(
                    "api-server",
                    format!(
                        "{server}: /readyz ok in {}; version {}",
                        ms(took),
                        Untrusted::new(version).shown()
                    ),
                ),
                date,
            )
        }
        (Ok(()), Some(Err(e))) => (
            warn(
                "api-server",
                format!("{server}: /readyz ok in {}; GET /version: {e}", ms(took)),
                "none needed for the job; the version is for the record",
            ),
            None,
        ),
        (Ok(()), None) => unreachable!("the version is asked once ready"),
    };
    let preflight_clock = matches!(&preflight, Some((Err(PreflightError::Clock { .. }), _)));
    let clock = clock_line(date.as_deref(), preflight_clock, api_line.result);
    let preflight = match (&address, preflight) {
        (Err(_), _) | (_, None) => fail("preflight", "not checked: no address", "see `address`"),
        (Ok(a), Some((result, names))) => preflight_line(config, a, result, names),
    };
    [
        rewrite,
        api_line,
        clock,
        address_line,
        preflight,
        seed_line(config, seed.0),
        manifests,
    ]
}

pub(super) fn rewrite_line(kc: &Kubeconfig, address: &PublicAddress) -> Line {
    match kubeconfig::rewrite(kc, address, None) {
        Ok(r) if r.rewrites.is_empty() => warn(
            "rewrite",
            "no cluster's server is a loopback address: the kubeconfig would be sent unchanged",
            "none if the server in it is already reachable from outside",
        ),
        Ok(r) => ok(
            "rewrite",
            r.rewrites
                .iter()
                .map(|w| {
                    Untrusted::new(format!(
                        "cluster {}: server {} -> {}",
                        w.cluster, w.from, w.to
                    ))
                    .shown()
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Err(e) => fail(
            "rewrite",
            format!("{e:#}"),
            "k3s wrote an unusable kubeconfig: restart k3s to rewrite it",
        ),
    }
}

pub(super) async fn preflight_check(
    config: &Config,
    cluster: &Cluster,
    address: &PublicAddress,
) -> (Result<Passed, PreflightError>, Option<String>) {
    let Some(local) = reqwest::Url::parse(cluster.server())
        .ok()
        .as_ref()
        .and_then(preflight::endpoint)
    else {
        return (Ok(Passed::Address { via: no_check() }), None);
    };
    let check = || Check {
        roots: cluster.ca().to_vec(),
        address: address.clone(),
        port: local.port(),
        local,
        fallback: config.sovereign_fqdn.clone(),
        timeout: CONNECT,
    };
    let bounded = |r: Result<Result<Passed, PreflightError>, _>| {
        r.unwrap_or_else(|_| {
            Err(PreflightError::Handshake {
                via: local,
                error: std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time"),
            })
        })
    };
    let (result, names) = tokio::join!(
        tokio::time::timeout(TOTAL, check().run()),
        tokio::time::timeout(TOTAL, check().presented_names())
    );
    (bounded(result), names.ok().and_then(Result::ok))
}

/// Marks "the server is not on loopback: no check" (port 0 is never real).
pub(super) fn no_check() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

pub(super) fn preflight_line(
    config: &Config,
    address: &PublicAddress,
    result: Result<Passed, PreflightError>,
    names: Option<String>,
) -> Line {
    let host = address.url_host();
    let names = names
        .map(|n| format!("; the certificate names {n}"))
        .unwrap_or_default();
    match result {
        Ok(Passed::Address { via }) if via == no_check() => ok(
            "preflight",
            "the kubeconfig's server is not a loopback address, so it is kept and not checked",
        ),
        Ok(Passed::Address { via }) => ok(
            "preflight",
            format!("the certificate (at {via}) is valid for {host}{names}"),
        ),
        Ok(Passed::Fallback { name, via }) => ok(
            "preflight",
            format!(
                "the certificate (at {via}) is not valid for {host} but is for {name}: the \
                 kubeconfig would get tls-server-name: {name}{names}"
            ),
        ),
        Err(e @ (PreflightError::NotCovered { .. } | PreflightError::Untrusted { .. }))
            if config.preflight == Preflight::Warn =>
        {
            warn(
                "preflight",
                format!("{e}{names}"),
                "`preflight: warn` sends the kubeconfig anyway; add the address to k3s's --tls-san",
            )
        }
        Err(e @ PreflightError::NotCovered { .. }) => fail(
            "preflight",
            format!("{e}{names}"),
            format!("add --tls-san={host} to k3s (or set `sovereign_fqdn` to a name it has)"),
        ),
        Err(e @ PreflightError::Unreachable { .. }) => {
            fail("preflight", e.to_string(), "see `api-server`")
        }
        Err(e @ PreflightError::Clock { .. }) => fail(
            "preflight",
            e.to_string(),
            "see `clock`; a run waits for the clock",
        ),
        Err(e) => fail(
            "preflight",
            e.to_string(),
            "the API server's certificate must verify with the kubeconfig's CA; restart k3s",
        ),
    }
}

pub(super) fn clock_line(date: Option<&str>, cert_not_valid_now: bool, api: Verdict) -> Line {
    let skew = date
        .and_then(|d| jiff::fmt::rfc2822::parse(d).ok())
        .map(|z| jiff::Timestamp::now().as_second() - z.timestamp().as_second());
    let seen = match skew {
        Some(s) if s.abs() < SKEW_OK => {
            "this node's clock agrees with the API server's Date".into()
        }
        Some(s) if s > 0 => format!("this node's clock is {s}s ahead of the API server's Date"),
        Some(s) => format!("this node's clock is {}s behind the API server's Date", -s),
        None if api == Verdict::Fail => "not checked: the API server cannot be reached".into(),
        None => "the API server's answer carries no usable Date".into(),
    };
    if cert_not_valid_now {
        return fail(
            "clock",
            format!("{seen}; the API server's certificate is not valid at this node's time"),
            "wait for NTP (`timedatectl timesync-status`); a run waits for the clock",
        );
    }
    match skew {
        Some(s) if s.abs() >= SKEW_OK => warn(
            "clock",
            format!("{seen}; the certificates are valid at this node's time"),
            "check time sync (`timedatectl timesync-status`): first-boot skew heals once NTP runs",
        ),
        Some(_) => ok(
            "clock",
            format!("{seen}; the certificates are valid at this node's time"),
        ),
        None if api == Verdict::Fail => fail("clock", seen, "see `api-server`"),
        None => warn(
            "clock",
            seen,
            "none needed; the certificate check still ran",
        ),
    }
}

pub(super) fn seed_line(config: &Config, plan: Result<Plan, String>) -> Line {
    let t = &config.seed;
    let secret = format!("Secret {}/{}", t.namespace, t.name);
    let release = t
        .helm_release
        .as_ref()
        .map(|r| format!("{}/{}", r.name, r.namespace))
        .unwrap_or_default();
    match plan {
        Ok(Plan::Skip) => ok(
            "seed",
            format!(
                "marker Secret {}/{} exists: OpenBao is initialised; a run writes no seed",
                t.namespace, t.marker
            ),
        ),
        Ok(Plan::Create) => ok(
            "seed",
            format!(
                "no marker, no {secret}: a run would create it (and namespace {} if absent)",
                t.namespace
            ),
        ),
        Ok(Plan::Keep(Ownership::Unchanged)) => ok(
            "seed",
            format!("{secret} holds a seed (value not shown): a run keeps it unchanged"),
        ),
        Ok(Plan::Keep(Ownership::Added)) => ok(
            "seed",
            format!(
                "{secret} holds a seed (value not shown): a run keeps it and adds Helm ownership \
                 metadata for release {release}"
            ),
        ),
        Ok(Plan::Keep(Ownership::Foreign(owner))) => warn(
            "seed",
            format!(
                "{secret} holds a seed (value not shown) but belongs to {owner}: a run keeps it \
                 and leaves its ownership alone"
            ),
            format!(
                "Helm will refuse to install release {release} over it: decide which release \
                 owns it (or set `seed.helm_release`)"
            ),
        ),
        Ok(Plan::ExistsWithoutKey) => fail(
            "seed",
            format!("{secret} exists without a non-empty `{}` key", t.key),
            "inspect it; delete it to let catalyst-bootstrap write a fresh seed",
        ),
        Err(e) => fail(
            "seed",
            e,
            "the API server must answer GETs of Secrets with k3s's admin credentials",
        ),
    }
}
