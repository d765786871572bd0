//! Public address discovery from the Hetzner metadata service
//! (`GET {metadata_url}/hetzner/v1/metadata/public-ipv4`). The base URL is
//! configurable so tests never reach the link-local address.

use std::net::IpAddr;
use std::time::Duration;

use crate::config::PublicAddress;
use crate::exit::Exit;
use crate::memory::untrusted::Untrusted;
use crate::peers::client;
use crate::peers::retry::{Classify, Retry, Verdict, innermost};

#[derive(Debug, thiserror::Error)]
pub(crate) enum MetadataError {
    #[error("cannot reach the metadata service: {}", innermost(.0))]
    Transport(reqwest::Error),
    #[error("the metadata service answered {0}")]
    Status(u16),
    #[error("the metadata service's public-ipv4 is \"{}\", not an IPv4 address", .0.shown())]
    NotAnAddress(Untrusted),
}

impl Classify for MetadataError {
    fn verdict(&self) -> Verdict {
        match self {
            MetadataError::Transport(e) => Verdict::transport(e),
            // The service may not be up in the first seconds of a boot.
            MetadataError::Status(_) => Verdict::Retry(Retry::default()),
            MetadataError::NotAnAddress(_) => Verdict::Permanent(Exit::Data),
        }
    }
}

pub(crate) struct Metadata {
    http: reqwest::Client,
    url: String,
}

impl Metadata {
    pub(crate) fn new(base: &reqwest::Url, timeout: Duration) -> anyhow::Result<Metadata> {
        // Link-local: never through a proxy (`client::builder` uses none).
        let http = client::builder(timeout, timeout).build()?;
        let url = format!(
            "{}/hetzner/v1/metadata/public-ipv4",
            base.as_str().trim_end_matches('/')
        );
        Ok(Metadata { http, url })
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    pub(crate) async fn public_ipv4(&self) -> Result<PublicAddress, MetadataError> {
        let mut res = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(MetadataError::Transport)?;
        if !res.status().is_success() {
            return Err(MetadataError::Status(res.status().as_u16()));
        }
        let body = client::read_capped(&mut res, 64)
            .await
            .map_err(MetadataError::Transport)?;
        parse(&String::from_utf8_lossy(&body))
    }
}

fn parse(body: &str) -> Result<PublicAddress, MetadataError> {
    match body.trim().parse::<IpAddr>() {
        Ok(ip @ IpAddr::V4(v4)) if !v4.is_unspecified() && !v4.is_loopback() => {
            Ok(PublicAddress::Ip(ip))
        }
        _ => Err(MetadataError::NotAnAddress(Untrusted::new(body))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_answer() {
        assert_eq!(
            parse("203.0.113.7\n").unwrap(),
            PublicAddress::Ip("203.0.113.7".parse().unwrap())
        );
        for bad in [
            "",
            "0.0.0.0",
            "127.0.0.1",
            "2001:db8::1",
            "<html>",
            "203.0.113",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.verdict(), Verdict::Permanent(Exit::Data), "{bad:?}");
        }
        assert_eq!(
            MetadataError::Status(503).verdict(),
            Verdict::Retry(Retry::default())
        );
    }
}
