//! `catalyst-bootstrap doctor`: every dependency of the job, checked without
//! side effects. It never reads the bearer token into a request, never
//! writes to the API server (GETs only), never sends the kubeconfig, never
//! creates or locks the state directory: it is safe while the service runs.
//! Every network step has a short timeout, and the independent ones run
//! concurrently, so it answers within seconds even when everything is down.

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use kube::config::Kubeconfig;
use serde::Serialize;

use crate::config::token::{self, BearerToken};
use crate::config::{self, AddressSource, Config, Overrides, Preflight, PublicAddress};
use crate::job::kubeconfig;
use crate::job::preflight::{self, Check, Passed, PreflightError};
use crate::job::seed::{self, Ownership, Plan};
use crate::memory::untrusted::Untrusted;
use crate::peers::cluster::Cluster;
use crate::peers::metadata::Metadata;
use crate::peers::retry::innermost;
use crate::peers::{api, client};
use crate::report::state::{self, Outcome, Phase, State};

/// Per connection attempt.
const CONNECT: Duration = Duration::from_secs(2);
/// Per check (a request and its answer).
const TOTAL: Duration = Duration::from_secs(5);
/// The `Date` header has whole seconds: less than this apart is no skew.
const SKEW_OK: i64 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Verdict {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Line {
    check: &'static str,
    result: Verdict,
    seen: String,
    fix: Option<String>,
}

fn ok(check: &'static str, seen: impl Into<String>) -> Line {
    Line {
        check,
        result: Verdict::Ok,
        seen: seen.into(),
        fix: None,
    }
}

fn warn(check: &'static str, seen: impl Into<String>, fix: impl Into<String>) -> Line {
    Line {
        check,
        result: Verdict::Warn,
        seen: seen.into(),
        fix: Some(fix.into()),
    }
}

fn fail(check: &'static str, seen: impl Into<String>, fix: impl Into<String>) -> Line {
    Line {
        check,
        result: Verdict::Fail,
        seen: seen.into(),
        fix: Some(fix.into()),
    }
}

/// `fut` within [`TOTAL`], its time taken, or why not.
async fn timed<T, E: std::fmt::Display>(
    fut: impl Future<Output = Result<T, E>>,
) -> (Result<T, String>, Duration) {
    let start = Instant::now();
    let out = match tokio::time::timeout(TOTAL, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {}s", TOTAL.as_secs())),
    };
    (out, start.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// Runs every check and prints them; the exit code: 0 when none failed.
pub(crate) async fn run(explicit: Option<&Path>, overrides: &Overrides, json: bool) -> u8 {
    let lines = checks(explicit, overrides).await;
    print!("{}", render(&lines, json));
    u8::from(lines.iter().any(|l| l.result == Verdict::Fail))
}

fn render(lines: &[Line], json: bool) -> String {
    if json {
        let mut text = serde_json::to_string_pretty(lines).expect("lines serialize");
        text.push('\n');
        return text;
    }
    let mut out = String::new();
    for l in lines {
        let word = match l.result {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        };
        let _ = write!(out, "{word:<4}  {}: {}", l.check, l.seen);
        if let Some(fix) = &l.fix {
            let _ = write!(out, "; fix: {fix}");
        }
        out.push('\n');
    }
    let count = |v| lines.iter().filter(|l| l.result == v).count();
    let _ = writeln!(
        out,
        "{} ok, {} warn, {} fail: {}",
        count(Verdict::Ok),
        count(Verdict::Warn),
        count(Verdict::Fail),
        if count(Verdict::Fail) == 0 {
            "nothing stands in the job's way"
        } else {
            "a run would not succeed as things are"
        }
    );
    out
}

async fn checks(explicit: Option<&Path>, overrides: &Overrides) -> Vec<Line> {
    let mut config = match config::load(explicit, overrides) {
        Ok(config) => config,
        Err(e) => {
            return vec![fail(
                "config",
                format!("{e:#}"),
                "correct the file or flag named; the other checks need the configuration \
                 (`catalyst-bootstrap check-config` prints it once it loads)",
            )];
        }
    };
    let mut lines = vec![ok("config", config.layers())];
    config.connect_timeout = config.connect_timeout.min(CONNECT);
    config.read_timeout = config.read_timeout.min(TOTAL);
    let config = config;
    let done = state::is_done(&config.state_dir);

    lines.push(credential(&config, done));

    let kc = kubeconfig::read(&config.kubeconfig);
    lines.push(match &kc {
        Ok(kc) => ok(
            "kubeconfig",
            format!(
                "{}: {} cluster(s), current context {}",
                config.kubeconfig.display(),
                kc.clusters.len(),
                Untrusted::new(kc.current_context.clone().unwrap_or_default()).shown()
            ),
        ),
        Err(kubeconfig::ReadError::Missing(_)) => fail(
            "kubeconfig",
            format!("{} does not exist", config.kubeconfig.display()),
            "k3s writes it when it starts: `systemctl status k3s`; a run waits for it",
        ),
        Err(e) => fail(
            "kubeconfig",
            e.to_string(),
            "k3s wrote something unusable: restart k3s to rewrite it",
        ),
    });
    let kc = kc.ok();

    // The API server side and catalyst-api side run concurrently.
    let (server_lines, catalyst_lines) =
        tokio::join!(server_side(&config, kc.as_ref()), catalyst_side(&config));
    let [rewrite, api_server, clock, address, preflight, seed] = server_lines;
    lines.extend([rewrite, api_server, clock, address, preflight]);
    lines.extend(catalyst_lines);
    lines.push(seed);
    lines.push(state_line(&config, done));
    lines
}

fn credential(config: &Config, done: bool) -> Line {
    match BearerToken::load_as_the_unit_would(
        config.token_file.as_deref(),
        Path::new(token::CREDSTORE),
        done,
    ) {
        Ok(token) => ok(
            "credential",
            format!(
                "bearer token in {} is present and well-formed (64 lowercase hex; not shown)",
                token.source().display()
            ),
        ),
        Err(_) if done => ok(
            "credential",
            "no bearer token, and none needed: the job is done and the unit deletes the \
             single-use token after use",
        ),
        Err(e) => fail(
            "credential",
            format!("{e:#}"),
            "provide the 64-hex token where the message says (the systemd credential \
             `kubeconfig-bearer`, or `token_file`)",
        ),
    }
}

/// The address a run would write into the kubeconfig.
async fn address(config: &Config) -> (Result<PublicAddress, String>, Line) {
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
async fn server_side(config: &Config, kc: Option<&Kubeconfig>) -> [Line; 6] {
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
    let ((ready, took, version), preflight, seed) =
        tokio::join!(probe, preflight, timed(seed::plan(cluster, &config.seed)));
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
    ]
}

fn rewrite_line(kc: &Kubeconfig, address: &PublicAddress) -> Line {
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

async fn preflight_check(
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
fn no_check() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

fn preflight_line(
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

fn clock_line(date: Option<&str>, cert_not_valid_now: bool, api: Verdict) -> Line {
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

fn seed_line(config: &Config, plan: Result<Plan, String>) -> Line {
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

fn state_line(config: &Config, done: bool) -> Line {
    let dir = &config.state_dir;
    if done {
        return ok(
            "state",
            format!(
                "{} exists: the job is done; a run exits at once",
                dir.join(state::DONE_STAMP).display()
            ),
        );
    }
    // Checked with access(2): nothing is created.
    let existing = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or(Path::new("/"));
    if nix::unistd::access(existing, nix::unistd::AccessFlags::W_OK).is_err() {
        return fail(
            "state",
            format!(
                "{} is not writable by this user, so a run could not record progress",
                existing.display()
            ),
            "run as root (the unit does), or fix the directory's owner and mode",
        );
    }
    let state = match State::read(dir) {
        Ok(s) => s,
        Err(e) => {
            return fail(
                "state",
                format!("{e:#}"),
                "a run sets a damaged file aside (state.json.corrupt) and starts over",
            );
        }
    };
    let Some(state) = state else {
        return ok(
            "state",
            format!(
                "no {} yet, no done stamp: a run starts from the beginning",
                dir.join(state::STATE_FILE).display()
            ),
        );
    };
    if state.deployment_id != config.deployment_id {
        return fail(
            "state",
            format!(
                "{} belongs to deployment {}, not {}",
                dir.join(state::STATE_FILE).display(),
                Untrusted::new(state.deployment_id.clone()).shown(),
                config.deployment_id
            ),
            "a reused node: move the state directory aside",
        );
    }
    let phases = Phase::ALL
        .iter()
        .map(|p| {
            let word = match state.phase(*p).outcome {
                Outcome::Pending => "pending",
                Outcome::Running => "running",
                Outcome::Done => "done",
                Outcome::Failed => "failed",
                Outcome::Interrupted => "interrupted",
            };
            format!("{} {word}", p.name())
        })
        .collect::<Vec<_>>()
        .join(", ");
    let failed = Phase::ALL
        .iter()
        .find(|p| state.phase(**p).outcome == Outcome::Failed);
    match failed {
        Some(p) => warn(
            "state",
            format!(
                "{phases}; no done stamp; {} failed: {}",
                p.name(),
                Untrusted::new(state.phase(*p).detail.clone().unwrap_or_default()).shown()
            ),
            "`catalyst-bootstrap status` shows every phase; a run retries what heals",
        ),
        None => ok(
            "state",
            format!("{phases}; no done stamp: a run resumes where the last one stopped"),
        ),
    }
}

/// dns, tcp, proxy, tls, route.
async fn catalyst_side(config: &Config) -> Vec<Line> {
    let url = &config.catalyst_api_url;
    let host = url.host_str().unwrap_or_default().to_string();
    let port = url.port_or_known_default().unwrap_or(443);
    let (proxy_line, proxy_at) = proxy(url);
    let dns_tcp = async {
        if let Some(proxy) = &proxy_at {
            let (tcp, took) = timed(tcp(proxy.clone())).await;
            let dns = ok(
                "catalyst-api dns",
                format!("{host} is resolved by the proxy {proxy}, not here"),
            );
            let tcp = match tcp {
                Ok(addr) => ok(
                    "catalyst-api tcp",
                    format!("connected to the proxy {proxy} ({addr}) in {}", ms(took)),
                ),
                Err(e) => fail(
                    "catalyst-api tcp",
                    format!("the proxy {proxy}: {e}"),
                    "check HTTPS_PROXY and that the proxy runs",
                ),
            };
            return [dns, tcp];
        }
        let (addrs, took) = timed(tokio::net::lookup_host((host.clone(), port))).await;
        let addrs: Vec<SocketAddr> = match addrs {
            Ok(a) => a.collect(),
            Err(e) => {
                return [
                    fail(
                        "catalyst-api dns",
                        format!("{host}: {}", Untrusted::new(e).shown()),
                        "check the node's resolver (`resolvectl status`); at first boot DNS may \
                         take a few seconds",
                    ),
                    fail(
                        "catalyst-api tcp",
                        "not checked: no address",
                        "see `catalyst-api dns`",
                    ),
                ];
            }
        };
        let list = addrs
            .iter()
            .map(|a| a.ip().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let dns = if url
            .host()
            .is_some_and(|h| !matches!(h, url::Host::Domain(_)))
        {
            ok(
                "catalyst-api dns",
                format!("{host} is an address: no lookup"),
            )
        } else {
            ok(
                "catalyst-api dns",
                format!("{host} -> {list} in {}", ms(took)),
            )
        };
        let (tcp, took) = timed(first_connect(addrs)).await;
        let tcp = match tcp {
            Ok(addr) => ok(
                "catalyst-api tcp",
                format!("connected to {addr} in {}", ms(took)),
            ),
            Err(e) => fail(
                "catalyst-api tcp",
                format!("{host}:{port}: {e}"),
                "a firewall, or catalyst-api's ingress is down; an air-gapped site needs \
                 HTTPS_PROXY in the unit's environment",
            ),
        };
        [dns, tcp]
    };
    let (dns_tcp, [tls, route]) = tokio::join!(dns_tcp, route(config));
    let [dns, tcp] = dns_tcp;
    vec![dns, tcp, proxy_line, tls, route]
}

async fn tcp(target: String) -> std::io::Result<SocketAddr> {
    let stream = tokio::time::timeout(CONNECT, tokio::net::TcpStream::connect(target))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {}s", CONNECT.as_secs()),
            )
        })??;
    stream.peer_addr()
}

async fn first_connect(addrs: Vec<SocketAddr>) -> std::io::Result<SocketAddr> {
    let mut last = std::io::Error::other("no address");
    for addr in addrs.into_iter().take(2) {
        match tcp(addr.to_string()).await {
            Ok(a) => return Ok(a),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The proxy line, and the proxy's `host:port` when one would be used.
fn proxy(url: &reqwest::Url) -> (Line, Option<String>) {
    if url.scheme() != "https" {
        return (
            ok(
                "catalyst-api proxy",
                "none: a plain-http (loopback) URL never goes through a proxy",
            ),
            None,
        );
    }
    // The job's own decision, NO_PROXY included.
    let setting = match client::https_proxy_setting(url) {
        Ok(setting) => setting,
        Err(e) => {
            return (
                fail(
                    "catalyst-api proxy",
                    format!("{e:#}"),
                    "set HTTPS_PROXY to http://host:port",
                ),
                None,
            );
        }
    };
    let Some(client::ProxySetting { name, value }) = setting else {
        let set = ["HTTPS_PROXY", "https_proxy"]
            .into_iter()
            .any(|n| std::env::var(n).is_ok_and(|v| !v.trim().is_empty()));
        let why = if set {
            "none: NO_PROXY names the host, so the job connects directly"
        } else {
            "none (HTTPS_PROXY is unset; HTTP_PROXY and ALL_PROXY are never used)"
        };
        return (ok("catalyst-api proxy", why), None);
    };
    // Credentials in the value are never shown: only host and port.
    let at = reqwest::Url::parse(value.trim())
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)));
    let no_proxy = ["NO_PROXY", "no_proxy"]
        .into_iter()
        .find_map(|n| std::env::var(n).ok().map(|v| format!("; {n}={v}")))
        .unwrap_or_default();
    let shown = at.clone().unwrap_or_else(|| "(unparsable)".into());
    (
        ok(
            "catalyst-api proxy",
            Untrusted::new(format!(
                "{shown} from {name} (CONNECT, so it sees TLS only{no_proxy})"
            ))
            .shown(),
        ),
        at,
    )
}

/// The routing check: `OPTIONS` of the kubeconfig URL, no Authorization,
/// no body. Not GET: catalyst-api serves the stored kubeconfig on GET of
/// the same path (session-gated); not PUT, the only request that stores.
/// An answer other than 404 or a gateway error means the ingress routes
/// the path to a server that knows it (catalyst-api's router answers 405:
/// the path is registered, for PUT).
async fn route(config: &Config) -> [Line; 2] {
    let trust = match &config.ca_bundle {
        Some(p) => format!("ca_bundle {}", p.display()),
        None => "the system trust store".to_string(),
    };
    let client = match api::client(config) {
        Ok(c) => c,
        Err(e) => {
            return [
                fail("catalyst-api tls", format!("{e:#}"), "fix `ca_bundle`"),
                fail(
                    "catalyst-api route",
                    "not checked",
                    "see `catalyst-api tls`",
                ),
            ];
        }
    };
    let url = match api::kubeconfig_url(config) {
        Ok(u) => u,
        Err(e) => {
            return [
                fail(
                    "catalyst-api tls",
                    format!("{e:#}"),
                    "fix `catalyst_api_url`",
                ),
                fail(
                    "catalyst-api route",
                    "not checked",
                    "see `catalyst-api tls`",
                ),
            ];
        }
    };
    let send = async {
        client
            .request(reqwest::Method::OPTIONS, url.clone())
            .send()
            .await
            // The library's text, which may quote the peer: shown via Untrusted.
            .map_err(|e| innermost(&e))
    };
    let (answer, took) = timed(send).await;
    let tls =
        |res: &Result<reqwest::Response, String>| match (config.catalyst_api_url.scheme(), res) {
            ("http", Ok(_)) => ok("catalyst-api tls", "none: plain http on loopback"),
            (_, Ok(_)) => ok("catalyst-api tls", format!("verified with {trust}")),
            (_, Err(e)) => fail(
                "catalyst-api tls",
                e.clone(),
                format!(
                    "the connection or handshake failed: catalyst-api's certificate must verify \
                 with {trust} for {}",
                    config.catalyst_api_url.host_str().unwrap_or_default()
                ),
            ),
        };
    let tls = tls(&answer);
    let request = format!("OPTIONS {} (no Authorization, no body)", url.path());
    let route = match answer {
        Err(_) => fail(
            "catalyst-api route",
            "not checked",
            "see `catalyst-api tls`",
        ),
        Ok(res) => {
            let status = res.status();
            let code = status.as_u16();
            let seen = format!(
                "{request} answered {code} {} in {}",
                status.canonical_reason().unwrap_or(""),
                ms(took)
            );
            match code {
                404 => fail(
                    "catalyst-api route",
                    format!("{seen}: the path does not reach catalyst-api's kubeconfig handler"),
                    "check `catalyst_api_url` (its path prefix, e.g. /sovereign) and the ingress \
                     route to catalyst-api",
                ),
                502..=504 => fail(
                    "catalyst-api route",
                    format!("{seen}: the ingress answers, the service behind it does not"),
                    "catalyst-api is down or restarting; a run retries",
                ),
                300..=399 => fail(
                    "catalyst-api route",
                    format!(
                        "{seen}: a redirect to {}; the PUT never follows one (exit 76)",
                        Untrusted::from_bytes(
                            res.headers()
                                .get(reqwest::header::LOCATION)
                                .map(|v| v.as_bytes())
                                .unwrap_or_default()
                        )
                        .shown()
                    ),
                    "set `catalyst_api_url` to where it redirects",
                ),
                200..=299 | 401 | 403 | 405 => ok(
                    "catalyst-api route",
                    format!("{seen}: the path is routed to a server that knows it"),
                ),
                _ => warn(
                    "catalyst-api route",
                    format!("{seen}: not what catalyst-api's router answers"),
                    "check the ingress in front of catalyst-api",
                ),
            }
        }
    };
    [tls, route]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_documented() {
        let lines = [
            ok("config", "read a.yaml"),
            fail("kubeconfig", "/x does not exist", "start k3s"),
        ];
        assert_eq!(
            render(&lines, false),
            "ok    config: read a.yaml\nfail  kubeconfig: /x does not exist; fix: start k3s\n\
             1 ok, 0 warn, 1 fail: a run would not succeed as things are\n"
        );
        let json: serde_json::Value = serde_json::from_str(&render(&lines, true)).unwrap();
        assert_eq!(json[0]["result"], "ok");
        assert_eq!(json[0]["fix"], serde_json::Value::Null);
        assert_eq!(json[1]["check"], "kubeconfig");
        assert_eq!(json[1]["fix"], "start k3s");
    }

    #[test]
    fn skew_is_judged_from_the_date_header() {
        let now = jiff::Timestamp::now();
        let date = |secs: i64| {
            jiff::fmt::rfc2822::DateTimePrinter::new()
                .timestamp_to_rfc9110_string(&(now - jiff::SignedDuration::from_secs(secs)))
                .unwrap()
        };
        assert_eq!(
            clock_line(Some(&date(0)), false, Verdict::Ok).result,
            Verdict::Ok
        );
        let ahead = clock_line(Some(&date(120)), false, Verdict::Ok);
        assert_eq!(ahead.result, Verdict::Warn);
        assert!(ahead.seen.contains("ahead"), "{}", ahead.seen);
        assert_eq!(
            clock_line(Some(&date(0)), true, Verdict::Ok).result,
            Verdict::Fail
        );
        assert_eq!(clock_line(None, false, Verdict::Fail).result, Verdict::Fail);
    }
}
