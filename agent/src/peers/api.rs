//! catalyst-api: the kubeconfig PUT and the classification of every answer
//! the contract allows (see shared/contract.md §3).

use std::time::Duration;

use anyhow::Context;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER};

use crate::config::Config;
use crate::config::token::BearerToken;
use crate::exit::Exit;
use crate::memory::kubeconfig::Rewritten;
use crate::memory::untrusted::Untrusted;
use crate::peers::client;
use crate::peers::retry::{Classify, Retry, Verdict, innermost};

/// Error bodies are short JSON; more than this is not read.
const MAX_ERROR_BODY: usize = 4096;
/// A CA bundle the size of a distribution's whole trust store fits.
const MAX_CA_BUNDLE: usize = 4 << 20;

pub(crate) struct CatalystApi {
    http: reqwest::Client,
    url: reqwest::Url,
    token: BearerToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// 204: stored now.
    Captured,
    /// 403 `already-set` after the token matched: an earlier attempt whose
    /// answer was lost, or another control-plane node, delivered it.
    AlreadyCaptured,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PutError {
    // Not a #[source]: the display already names the innermost cause.
    #[error("cannot reach catalyst-api: {}", innermost(.0))]
    Transport(reqwest::Error),
    #[error("catalyst-api answered {status} {}: {}", code.shown(), detail.shown())]
    Status {
        status: u16,
        code: Untrusted,
        detail: Untrusted,
        retry_after: Option<Duration>,
    },
    #[error(
        "catalyst-api redirected to {} ({status}); not following, so the bearer token stays put",
        location.shown()
    )]
    Redirect { status: u16, location: Untrusted },
}

impl Classify for PutError {
    fn verdict(&self) -> Verdict {
        match self {
            PutError::Transport(e) => Verdict::transport(e),
            PutError::Redirect { .. } => Verdict::Permanent(Exit::Protocol),
            PutError::Status {
                status,
                retry_after,
                ..
            } => match *status {
                401 | 403 => Verdict::Permanent(Exit::Rejected),
                422 => Verdict::Permanent(Exit::Data),
                // A misrouted ingress heals; `alarm` says it loudly.
                404 => Verdict::Retry(Retry::default()),
                408 | 425 | 429 | 500..=599 => Verdict::Retry(Retry {
                    after: *retry_after,
                    refused: false,
                    overloaded: true,
                }),
                _ => Verdict::Permanent(Exit::Protocol),
            },
        }
    }

    fn alarm(&self) -> Option<String> {
        matches!(self, PutError::Status { status: 404, .. }).then(|| {
            "catalyst-api does not know deployment (404 for the kubeconfig URL): check \
             deployment_id and catalyst_api_url, or the ingress route; retrying in case the \
             route is still being set up"
                .to_string()
        })
    }
}

impl CatalystApi {
    pub(crate) fn new(config: &Config, token: BearerToken) -> anyhow::Result<CatalystApi> {
        Ok(CatalystApi {
            http: client(config)?,
            url: kubeconfig_url(config)?,
            token,
        })
    }

    pub(crate) fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// One PUT of the kubeconfig, classified.
    pub(crate) async fn put_kubeconfig(
        &self,
        kubeconfig: &Rewritten,
    ) -> Result<Delivery, PutError> {
        let mut res = self
            .http
            .put(self.url.clone())
            .header(AUTHORIZATION, self.token.header_value())
            .header(CONTENT_TYPE, "application/x-yaml")
            .body(kubeconfig.body.clone())
            .send()
            .await
            .map_err(PutError::Transport)?;
        let status = res.status();
        let headers = res.headers().clone();
        let text = client::read_capped(&mut res, MAX_ERROR_BODY)
            .await
            .map_err(PutError::Transport)?;
        classify(status, &headers, &String::from_utf8_lossy(&text))
    }
}

/// The client every request to catalyst-api goes through: the configured
/// trust (`ca_bundle`, else the system's), the proxy [`client::https_proxy`]
/// chooses, no redirects. `doctor` uses the same one.
pub(crate) fn client(config: &Config) -> anyhow::Result<reqwest::Client> {
    let mut builder = client::builder(config.connect_timeout, config.read_timeout);
    if let Some(path) = &config.ca_bundle {
        let (pem, _) = crate::config::file::read(path, MAX_CA_BUNDLE)
            .with_context(|| format!("ca_bundle {}", path.display()))
            .context(Exit::Config)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|c| !c.is_empty())
            .with_context(|| format!("ca_bundle {} holds no PEM certificate", path.display()))
            .context(Exit::Config)?;
        builder = builder.tls_certs_only(certs);
    }
    if let Some(proxy) = client::https_proxy(&config.catalyst_api_url).context(Exit::Config)? {
        builder = builder.proxy(proxy);
    }
    builder
        .build()
        .context("building the HTTPS client for catalyst-api")
}

/// `{catalyst_api_url}/api/v1/deployments/{id}/kubeconfig[?region=]`.
pub(crate) fn kubeconfig_url(config: &Config) -> anyhow::Result<reqwest::Url> {
    let mut url = config.catalyst_api_url.clone();
    url.path_segments_mut()
        .map_err(|()| anyhow::anyhow!("catalyst_api_url cannot be a base URL"))
        .context(Exit::Config)?
        .pop_if_empty()
        .extend([
            "api",
            "v1",
            "deployments",
            &config.deployment_id,
            "kubeconfig",
        ]);
    if let Some(region) = &config.region {
        url.query_pairs_mut().append_pair("region", region);
    }
    Ok(url)
}

/// The contract's response table, in one place.
pub(crate) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
) -> Result<Delivery, PutError> {
    if status == StatusCode::NO_CONTENT {
        return Ok(Delivery::Captured);
    }
    if status.is_redirection() {
        let location = Untrusted::from_bytes(
            headers
                .get(LOCATION)
                .map(|v| v.as_bytes())
                .unwrap_or_default(),
        );
        return Err(PutError::Redirect {
            status: status.as_u16(),
            location,
        });
    }
    #[derive(serde::Deserialize, Default)]
    struct ErrorBody {
        #[serde(default)]
        error: String,
        #[serde(default)]
        detail: serde_json::Value,
    }
    let parsed: ErrorBody = serde_json::from_str(body).unwrap_or_default();
    if status == StatusCode::FORBIDDEN && parsed.error == "already-set" {
        return Ok(Delivery::AlreadyCaptured);
    }
    let detail = match parsed.detail {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null if parsed.error.is_empty() => body.to_string(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    Err(PutError::Status {
        status: status.as_u16(),
        code: Untrusted::new(if parsed.error.is_empty() {
            status.canonical_reason().unwrap_or("").to_string()
        } else {
            parsed.error
        }),
        detail: Untrusted::new(detail),
        retry_after: headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after),
    })
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let secs = when.as_second() - jiff::Timestamp::now().as_second();
    Some(Duration::from_secs(secs.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classified(status: u16, body: &str) -> Result<Delivery, PutError> {
        classify(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            body,
        )
    }

    fn verdict(status: u16, body: &str) -> Verdict {
        classified(status, body).unwrap_err().verdict()
    }

    #[test]
    fn the_contract_table() {
        assert_eq!(classified(204, "").unwrap(), Delivery::Captured);
        assert_eq!(
            classified(
                403,
                r#"{"error":"already-set","detail":"kubeconfig already captured"}"#
            )
            .unwrap(),
            Delivery::AlreadyCaptured
        );
        let rejected = Verdict::Permanent(Exit::Rejected);
        assert_eq!(
            verdict(
                401,
                r#"{"error":"missing-bearer","detail":"no Authorization"}"#
            ),
            rejected
        );
        assert_eq!(
            verdict(403, r#"{"error":"invalid-bearer","detail":"mismatch"}"#),
            rejected
        );
        assert_eq!(
            verdict(403, r#"{"error":"no-bearer-hash","detail":"none"}"#),
            rejected
        );
        assert_eq!(
            verdict(422, r#"{"error":"body-too-large"}"#),
            Verdict::Permanent(Exit::Data)
        );
        assert_eq!(
            verdict(422, r#"{"error":"empty-body"}"#),
            Verdict::Permanent(Exit::Data)
        );
        assert_eq!(
            verdict(404, "deployment not found"),
            Verdict::Retry(Retry::default())
        );
        let alarm = classified(404, "").unwrap_err().alarm().unwrap();
        assert!(alarm.contains("does not know deployment"), "{alarm}");
        assert_eq!(classified(503, "").unwrap_err().alarm(), None);
        for code in [
            "kubeconfigs-dir-unconfigured",
            "kubeconfigs-dir-unwritable",
            "write-failed",
        ] {
            assert_eq!(
                verdict(503, &format!(r#"{{"error":"{code}"}}"#)),
                Verdict::Retry(Retry {
                    overloaded: true,
                    ..Retry::default()
                })
            );
        }
        for status in [408, 425, 429, 500, 502, 504] {
            assert!(matches!(verdict(status, ""), Verdict::Retry(_)), "{status}");
        }
        for status in [200, 201, 400, 405, 410] {
            assert_eq!(
                verdict(status, ""),
                Verdict::Permanent(Exit::Protocol),
                "{status}"
            );
        }
    }

    #[test]
    fn redirects_are_refused_and_named() {
        let mut headers = HeaderMap::new();
        headers.insert(LOCATION, "https://elsewhere.example/x".parse().unwrap());
        let err = classify(StatusCode::TEMPORARY_REDIRECT, &headers, "").unwrap_err();
        assert_eq!(err.verdict(), Verdict::Permanent(Exit::Protocol));
        assert!(err.to_string().contains("elsewhere.example"));
    }

    #[test]
    fn errors_read_well() {
        let err = classified(
            403,
            r#"{"error":"invalid-bearer","detail":"token does not match"}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "catalyst-api answered 403 invalid-bearer: token does not match"
        );
        let err = classified(404, "deployment not found\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "catalyst-api answered 404 Not Found: deployment not found"
        );
    }

    #[test]
    fn the_body_is_the_detail_only_when_it_names_no_error() {
        let err = classified(503, r#"{"error":"write-failed"}"#).unwrap_err();
        assert_eq!(err.to_string(), "catalyst-api answered 503 write-failed: ");
        let err =
            classified(503, r#"{"error":"write-failed","detail":{"disk":"full"}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"catalyst-api answered 503 write-failed: {"disk":"full"}"#
        );
        let err = classified(503, "upstream down").unwrap_err();
        assert_eq!(
            err.to_string(),
            "catalyst-api answered 503 Service Unavailable: upstream down"
        );
    }

    #[test]
    fn a_redirect_to_the_token_is_withheld_from_the_log() {
        let token = "ab".repeat(32);
        crate::memory::untrusted::register(
            crate::memory::untrusted::Alphabet::Hex,
            token.as_bytes(),
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            LOCATION,
            format!("https://echo.example/?t={token}").parse().unwrap(),
        );
        let err = classify(StatusCode::FOUND, &headers, "").unwrap_err();
        let text = err.to_string();
        assert!(
            !text.contains(&token) && text.contains("withheld"),
            "{text}"
        );
        assert_eq!(err.verdict(), Verdict::Permanent(Exit::Protocol));
    }

    #[test]
    fn a_distribution_sized_ca_bundle_is_read_whole() {
        // Debian's ca-certificates.crt is about 220 KB; leave room to grow.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, vec![b'A'; 1 << 20]).unwrap();
        let (pem, _) = crate::config::file::read(&path, MAX_CA_BUNDLE).unwrap();
        assert_eq!(pem.len(), 1 << 20);
    }

    #[test]
    fn retry_after_forms() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        match classify(StatusCode::SERVICE_UNAVAILABLE, &headers, "")
            .unwrap_err()
            .verdict()
        {
            Verdict::Retry(r) => assert_eq!(r.after, Some(Duration::from_secs(7))),
            v => panic!("{v:?}"),
        }
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(120);
        let date = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&later)
            .unwrap();
        let d = parse_retry_after(&date).unwrap();
        assert!(
            d >= Duration::from_secs(118) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    /// The client trusts only `ca_bundle` when it is set: a file with no
    /// certificate in it is refused as configuration (a default client
    /// would trust the system store instead, silently).
    #[test]
    fn a_ca_bundle_must_hold_a_certificate() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let config = |bundle: &str| {
            let path = dir.path().join("ca.pem");
            std::fs::write(&path, bundle).unwrap();
            let file = dir.path().join("config.yaml");
            std::fs::write(
                &file,
                format!(
                    "deployment_id: \"0123456789abcdef\"\ncatalyst_api_url: https://console.openova.io/sovereign\n\
                     public_address: 203.0.113.10\nca_bundle: {}\n",
                    path.display()
                ),
            )
            .unwrap();
            crate::config::load(Some(&file), &crate::config::Overrides::default()).unwrap()
        };
        let err = client(&config("no certificate in here\n")).unwrap_err();
        assert_eq!(Exit::of(&err), Exit::Config);
        assert!(
            format!("{err:#}").contains("holds no PEM certificate"),
            "{err:#}"
        );
        assert!(client(&config(include_str!("testdata/ca.pem"))).is_ok());
    }
}
