//! The one HTTP client stack: reqwest over rustls (ring), for catalyst-api
//! and the local API server alike.

use std::time::Duration;

/// A client builder with what every request of the agent needs: no
/// redirects (a bearer token or client certificate must not travel
/// elsewhere), no proxy from the environment (see [`https_proxy`] for the one
/// that may be used), connect and per-read timeouts, and our user agent.
/// The whole of each request is bounded by the retry step's deadline.
pub(crate) fn builder(connect_timeout: Duration, read_timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(connect_timeout)
        .read_timeout(read_timeout)
        .user_agent(concat!("catalyst-bootstrap/", env!("CARGO_PKG_VERSION")))
}

/// Reads at most `cap` bytes of a response body; the rest is not read.
pub(crate) async fn read_capped(
    res: &mut reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while body.len() < cap {
        match res.chunk().await? {
            Some(chunk) => body.extend_from_slice(&chunk[..chunk.len().min(cap - body.len())]),
            None => break,
        }
    }
    Ok(body)
}

/// The proxy catalyst-api is reached through: only for an `https` URL (the
/// proxy then sees a CONNECT and TLS, never the token), only from
/// `HTTPS_PROXY` or `https_proxy`, and not for hosts `NO_PROXY` names.
/// `HTTP_PROXY` and `ALL_PROXY` are ignored: through them a plain-http
/// loopback URL would hand the bearer token and the kubeconfig to the proxy.
pub(crate) fn https_proxy(url: &reqwest::Url) -> anyhow::Result<Option<reqwest::Proxy>> {
    let Some(setting) = https_proxy_setting(url)? else {
        return Ok(None);
    };
    // NO_PROXY is already applied: this URL goes through it.
    let proxy = reqwest::Proxy::https(setting.value.trim())
        .map_err(|_| anyhow::anyhow!("{} is not a proxy URL (http://host:port)", setting.name))?;
    Ok(Some(proxy))
}

/// The environment variable that sets the proxy.
pub(crate) struct ProxySetting {
    pub(crate) name: &'static str,
    /// May carry the proxy's credentials: never quoted.
    pub(crate) value: String,
}

/// Whether `url` goes through a proxy, and which: the one decision the
/// job's client ([`https_proxy`]) and `doctor` share. `NO_PROXY` (else
/// `no_proxy`) is matched as reqwest matches it, by its own matcher
/// (hyper-util's): names and their subdomains, addresses, CIDR ranges, `*`.
pub(crate) fn https_proxy_setting(url: &reqwest::Url) -> anyhow::Result<Option<ProxySetting>> {
    if url.scheme() != "https" {
        return Ok(None);
    }
    let Some((name, value)) = ["HTTPS_PROXY", "https_proxy"].into_iter().find_map(|name| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (name, v))
    }) else {
        return Ok(None);
    };
    if reqwest::Proxy::https(value.trim()).is_err() {
        anyhow::bail!("{name} is not a proxy URL (http://host:port)");
    }
    let no_proxy = std::env::var("NO_PROXY")
        .or_else(|_| std::env::var("no_proxy"))
        .unwrap_or_default();
    let matcher = hyper_util::client::proxy::matcher::Matcher::builder()
        .https(value.trim().to_string())
        .no(no_proxy)
        .build();
    let uri: http::Uri = url.as_str().parse()?;
    Ok(matcher
        .intercept(&uri)
        .is_some()
        .then_some(ProxySetting { name, value }))
}
