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
    // The value may carry the proxy's credentials: never quoted.
    let proxy = reqwest::Proxy::https(value.trim())
        .map_err(|_| anyhow::anyhow!("{name} is not a proxy URL (http://host:port)"))?;
    Ok(Some(proxy.no_proxy(reqwest::NoProxy::from_env())))
}
