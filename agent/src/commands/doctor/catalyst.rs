//! doctor's checks of the way to catalyst-api: DNS, TCP, the proxy, TLS
//! and the route (an OPTIONS without credentials).

use std::net::SocketAddr;

use super::{CONNECT, Line, TOTAL, fail, ms, ok, timed, warn};
use crate::config::Config;
use crate::memory::untrusted::Untrusted;
use crate::peers::retry::innermost;
use crate::peers::{api, client};

/// dns, tcp, proxy, tls, route.
pub(super) async fn catalyst_side(config: &Config) -> Vec<Line> {
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

pub(super) async fn tcp(target: String) -> std::io::Result<SocketAddr> {
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

pub(super) async fn first_connect(addrs: Vec<SocketAddr>) -> std::io::Result<SocketAddr> {
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
pub(super) fn proxy(url: &reqwest::Url) -> (Line, Option<String>) {
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
pub(super) async fn route(config: &Config) -> [Line; 2] {
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
    let started = std::time::Instant::now();
    let send = client.request(reqwest::Method::OPTIONS, url.clone()).send();
    // The library's text may quote the peer: shown via Untrusted.
    let answer = match tokio::time::timeout(TOTAL, send).await {
        Ok(Ok(res)) => Ok(res),
        Ok(Err(e)) if nobody_answered(&e) => Err((true, innermost(&e))),
        Ok(Err(e)) => Err((false, innermost(&e))),
        Err(_) => Err((true, format!("no answer within {}s", TOTAL.as_secs()))),
    };
    let took = started.elapsed();
    let tls = |res: &Result<reqwest::Response, (bool, String)>| match (
        config.catalyst_api_url.scheme(),
        res,
    ) {
        ("http", Ok(_)) => ok("catalyst-api tls", "none: plain http on loopback"),
        (_, Ok(_)) => ok("catalyst-api tls", format!("verified with {trust}")),
        // No handshake took place: the certificate is not to blame.
        (_, Err((true, e))) => fail(
            "catalyst-api tls",
            format!("not checked, nothing answered: {e}"),
            "see `catalyst-api tcp` and `catalyst-api proxy`",
        ),
        (_, Err((false, e))) => fail(
            "catalyst-api tls",
            e.clone(),
            format!(
                "the handshake failed: catalyst-api's certificate must verify with {trust} for {}",
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

/// A refused, reset or timed-out connection, as opposed to a handshake
/// that failed: no TLS was spoken, so no certificate is to blame.
fn nobody_answered(e: &reqwest::Error) -> bool {
    use std::io::ErrorKind::{
        ConnectionAborted, ConnectionRefused, ConnectionReset, HostUnreachable, NetworkUnreachable,
        TimedOut,
    };
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | TimedOut
                    | HostUnreachable
                    | NetworkUnreachable
            )
        {
            return true;
        }
        cur = err.source();
    }
    e.is_timeout()
}
