//! The one HTTP client stack: reqwest over rustls (ring), for catalyst-api
//! and the local API server alike.

use std::time::Duration;

/// A client builder with what every request of the agent needs: no
/// redirects (a bearer token or client certificate must not travel
/// elsewhere), connect and per-read timeouts, and our user agent.
pub(crate) fn builder(connect_timeout: Duration, read_timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
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
