//! The node's own Kubernetes API server, reached with k3s's admin kubeconfig
//! (client-certificate TLS). Requests are built by hand so a Secret body can
//! come straight from locked memory; errors are `metav1.Status` objects,
//! classified here.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::exit::Exit;
use crate::memory::untrusted::Untrusted;
use crate::peers::client;
use crate::peers::retry::{Classify, Retry, Verdict, innermost};

/// Responses are capped; nothing the agent reads is near this size.
const MAX_RESPONSE: usize = 1 << 20;
/// A certificate or key file a kubeconfig names.
const MAX_PEM: usize = 64 * 1024;

#[derive(Clone)]
pub(crate) struct Cluster {
    /// For objects: a fresh connection per request (see `build`).
    http: reqwest::Client,
    /// For `/readyz`, polled every few tens of milliseconds: one kept-alive
    /// connection. Health answers hold nothing secret.
    probe: reqwest::Client,
    base: String,
    /// The kubeconfig's CA, which the preflight checks the certificate with.
    ca: Vec<rustls::pki_types::CertificateDer<'static>>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum KubeError {
    // `error` is not a #[source]: the display already names the innermost cause.
    #[error("{method} {path}: cannot reach the API server: {}", innermost(error))]
    Transport {
        method: Method,
        path: String,
        error: reqwest::Error,
    },
    #[error("{method} {path}: {code} {}: {}", reason.shown(), message.shown())]
    Status {
        method: Method,
        path: String,
        code: u16,
        reason: Untrusted,
        message: Untrusted,
    },
}

impl KubeError {
    pub(crate) fn code(&self) -> Option<u16> {
        match self {
            KubeError::Status { code, .. } => Some(*code),
            KubeError::Transport { .. } => None,
        }
    }
}

impl Classify for KubeError {
    fn verdict(&self) -> Verdict {
        let (code, reason, message) = match self {
            KubeError::Transport { error, .. } => {
                return Verdict::transport(error);
            }
            KubeError::Status {
                code,
                reason,
                message,
                ..
            } => (*code, reason.matches(), message.matches()),
        };
        let transient = match code {
            429 | 500 | 502 | 503 | 504 => true,
            // The namespace vanished between our create and the Secret's.
            404 => true,
            // Conflict other than AlreadyExists: someone else is changing it.
            409 => reason != "AlreadyExists",
            // Creating in a namespace that is being deleted: wait for it to go.
            403 => message.contains("being terminated"),
            _ => false,
        };
        if transient {
            Verdict::Retry(Retry::default())
        } else {
            Verdict::Permanent(Exit::Internal)
        }
    }
}

/// The subset of `metav1.Status` the agent reads.
#[derive(Deserialize, Default)]
struct StatusBody {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Created {
    New,
    AlreadyExists,
}

impl Cluster {
    /// A client for the API server the kubeconfig's current context names.
    pub(crate) async fn from_kubeconfig(
        kubeconfig: &Kubeconfig,
        timeout: Duration,
    ) -> anyhow::Result<Cluster> {
        Self::build(kubeconfig, timeout)
            .await
            .context("using the k3s kubeconfig to reach the local API server")
            .context(Exit::Data)
    }

    async fn build(kubeconfig: &Kubeconfig, timeout: Duration) -> anyhow::Result<Cluster> {
        let config = kube::Config::from_custom_kubeconfig(
            inline_files(kubeconfig.clone())?,
            &KubeConfigOptions::default(),
        )
        .await?;
        let mut roots = Vec::new();
        let mut ca = Vec::new();
        for der in config.root_cert.iter().flatten() {
            roots.push(reqwest::Certificate::from_der(der).context("certificate-authority-data")?);
            ca.push(der.clone().into());
        }
        anyhow::ensure!(
            !roots.is_empty(),
            "the cluster has no certificate-authority data"
        );
        let identity = reqwest::Identity::from_pem(&identity_pem(&config.auth_info)?)
            .context("client-certificate-data and client-key-data do not form a usable identity")?;
        let builder = || {
            client::builder(timeout, timeout)
                .tls_certs_only(roots.clone())
                .identity(identity.clone())
        };
        let http = builder()
            // A pooled connection keeps its read buffer, which held the last
            // answer (the created Secret, seed included), for as long as it
            // idles; a fresh loopback handshake per request costs ~1 ms.
            .pool_max_idle_per_host(0)
            .build()
            .context("building the HTTPS client for the API server")?;
        let probe = builder()
            .build()
            .context("building the HTTPS client for the API server")?;
        let base = config
            .cluster_url
            .to_string()
            .trim_end_matches('/')
            .to_string();
        Ok(Cluster {
            http,
            probe,
            base,
            ca,
        })
    }

    pub(crate) fn ca(&self) -> &[rustls::pki_types::CertificateDer<'static>] {
        &self.ca
    }

    /// The API server's URL as the kubeconfig names it.
    pub(crate) fn server(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, KubeError> {
        self.send_with(
            &self.http,
            method,
            path,
            body.map(|b| ("application/json", b)),
        )
        .await
    }

    /// `body` goes with its content type.
    async fn send_with(
        &self,
        client: &reqwest::Client,
        method: Method,
        path: &str,
        body: Option<(&str, Bytes)>,
    ) -> Result<Bytes, KubeError> {
        self.exchange(client, method, path, body)
            .await
            .map(|(bytes, _)| bytes)
    }

    /// The answer's body and its `Date` header, for `doctor`'s clock check.
    pub(crate) async fn get_dated(&self, path: &str) -> Result<(Bytes, Option<String>), KubeError> {
        self.exchange(&self.probe, Method::GET, path, None).await
    }

    /// One request: the answer's body and `Date` header, or its error.
    async fn exchange(
        &self,
        client: &reqwest::Client,
        method: Method,
        path: &str,
        body: Option<(&str, Bytes)>,
    ) -> Result<(Bytes, Option<String>), KubeError> {
        let transport = |error: reqwest::Error| KubeError::Transport {
            method: method.clone(),
            path: path.to_string(),
            error,
        };
        let mut req = client
            .request(method.clone(), format!("{}{path}", self.base))
            .header("Accept", "application/json");
        if let Some((content_type, body)) = body {
            req = req.header("Content-Type", content_type).body(body);
        }
        let mut res = req.send().await.map_err(transport)?;
        let status = res.status();
        let date = res
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = client::read_capped(&mut res, MAX_RESPONSE)
            .await
            .map_err(transport)?;
        if status.is_success() {
            return Ok((Bytes::from(bytes), date));
        }
        let body: StatusBody = serde_json::from_slice(&bytes).unwrap_or_default();
        Err(KubeError::Status {
            method,
            path: path.to_string(),
            code: status.as_u16(),
            reason: Untrusted::new(if body.reason.is_empty() {
                reason_phrase(status)
            } else {
                body.reason
            }),
            // A proxy's own error page, or anything else that is not a Status.
            message: if body.message.is_empty() {
                Untrusted::from_bytes(&bytes)
            } else {
                Untrusted::new(body.message)
            },
        })
    }

    /// `/readyz`, or `/healthz` on servers that predate it.
    pub(crate) async fn ready(&self) -> Result<(), KubeError> {
        let probe = |path| self.send_with(&self.probe, Method::GET, path, None);
        match probe("/readyz").await {
            Err(e) if e.code() == Some(404) => probe("/healthz").await.map(drop),
            other => other.map(drop),
        }
    }

    /// The object at `path`, or `None` when it does not exist.
    pub(crate) async fn get(&self, path: &str) -> Result<Option<Bytes>, KubeError> {
        match self.send(Method::GET, path, None).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(KubeError::Status { code: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// POSTs `body` to the collection at `path`: the object as created.
    pub(crate) async fn post(&self, path: &str, body: Bytes) -> Result<Bytes, KubeError> {
        self.send(Method::POST, path, Some(body)).await
    }

    /// A JSON merge patch (RFC 7386) of the object at `path`: only the fields
    /// `body` names change; a `metadata.resourceVersion` in it makes the
    /// patch conditional (409 Conflict when that is stale).
    pub(crate) async fn merge_patch(&self, path: &str, body: Bytes) -> Result<Bytes, KubeError> {
        self.send_with(
            &self.http,
            Method::PATCH,
            path,
            Some(("application/merge-patch+json", body)),
        )
        .await
    }

    /// Server-side apply of `body` (JSON is YAML) to the object at `path`:
    /// creates it, or brings the fields `manager` owns to `body`'s values,
    /// taking over any another manager set (`force`).
    pub(crate) async fn apply(
        &self,
        path: &str,
        manager: &str,
        body: Bytes,
    ) -> Result<Bytes, KubeError> {
        self.send_with(
            &self.http,
            Method::PATCH,
            &format!("{path}?fieldManager={manager}&force=true"),
            Some(("application/apply-patch+yaml", body)),
        )
        .await
    }

    /// Creates the namespace unless it exists.
    pub(crate) async fn ensure_namespace(&self, name: &str) -> Result<(), KubeError> {
        let namespace = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        self.create("/api/v1/namespaces", Bytes::from(namespace.to_string()))
            .await
            .map(drop)
    }

    /// POSTs `body` to the collection at `path`; never updates an existing object.
    pub(crate) async fn create(&self, path: &str, body: Bytes) -> Result<Created, KubeError> {
        match self.post(path, body).await {
            Ok(_) => Ok(Created::New),
            Err(KubeError::Status {
                code: 409, reason, ..
            }) if reason.matches() == "AlreadyExists" => Ok(Created::AlreadyExists),
            Err(e) => Err(e),
        }
    }
}

/// The kubeconfig with every file it names (`certificate-authority`,
/// `client-certificate`, `client-key`) read the one safe way and put in the
/// matching `*-data` field: kube would read them with a plain
/// `std::fs::read`, which a FIFO blocks and `/dev/zero` never ends. A key
/// read from a file is registered as a secret like `client-key-data` is.
fn inline_files(mut kc: Kubeconfig) -> anyhow::Result<Kubeconfig> {
    let read = |what: &str, file: &str| {
        crate::config::file::read(Path::new(file), MAX_PEM)
            .map(|(bytes, _)| bytes)
            .with_context(|| format!("{what} {}", Untrusted::new(file).shown()))
    };
    for cluster in kc.clusters.iter_mut().filter_map(|n| n.cluster.as_mut()) {
        if cluster.certificate_authority_data.is_none()
            && let Some(file) = cluster.certificate_authority.take()
        {
            cluster.certificate_authority_data =
                Some(STANDARD.encode(read("certificate-authority", &file)?));
        }
    }
    for auth in kc
        .auth_infos
        .iter_mut()
        .filter_map(|n| n.auth_info.as_mut())
    {
        if auth.client_certificate_data.is_none()
            && let Some(file) = auth.client_certificate.take()
        {
            auth.client_certificate_data =
                Some(STANDARD.encode(read("client-certificate", &file)?));
        }
        if auth.client_key_data.is_none()
            && let Some(file) = auth.client_key.take()
        {
            let key = read("client-key", &file)?;
            crate::memory::untrusted::register_pem(&key);
            let data = Zeroizing::new(STANDARD.encode(&key));
            auth.client_key_data = Some(secrecy::SecretString::from(data.as_str()));
        }
    }
    Ok(kc)
}

/// Client certificate and key as one PEM document, from the kubeconfig's
/// `*-data` fields (files were inlined by [`inline_files`]).
fn identity_pem(auth: &AuthInfo) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    use secrecy::ExposeSecret;
    let cert = STANDARD
        .decode(
            auth.client_certificate_data
                .as_deref()
                .context("the user has no client certificate")?
                .trim(),
        )
        .context("client-certificate-data is not base64")?;
    let key = Zeroizing::new(
        STANDARD
            .decode(
                auth.client_key_data
                    .as_ref()
                    .context("the user has no client key")?
                    .expose_secret()
                    .trim(),
            )
            .context("client-key-data is not base64")?,
    );
    let mut pem = Zeroizing::new(Vec::with_capacity(cert.len() + key.len() + 1));
    pem.extend_from_slice(&cert);
    pem.push(b'\n');
    pem.extend_from_slice(&key);
    Ok(pem)
}

fn reason_phrase(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("Unknown")
        .replace(' ', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, reason: &str, message: &str) -> KubeError {
        KubeError::Status {
            method: Method::POST,
            path: "/api/v1/namespaces/openbao/secrets".into(),
            code,
            reason: Untrusted::new(reason),
            message: Untrusted::new(message),
        }
    }

    #[test]
    fn classification_of_status_errors() {
        let retry = Verdict::Retry(Retry::default());
        let fatal = Verdict::Permanent(Exit::Internal);
        assert_eq!(status(503, "ServiceUnavailable", "").verdict(), retry);
        assert_eq!(status(429, "TooManyRequests", "").verdict(), retry);
        assert_eq!(status(500, "InternalError", "etcd").verdict(), retry);
        assert_eq!(
            status(404, "NotFound", "namespaces \"openbao\" not found").verdict(),
            retry
        );
        assert_eq!(
            status(409, "Conflict", "the object has been modified").verdict(),
            retry
        );
        assert_eq!(
            status(
                403,
                "Forbidden",
                "unable to create new content in namespace openbao because it is being terminated"
            )
            .verdict(),
            retry
        );
        assert_eq!(
            status(403, "Forbidden", "User \"x\" cannot create resource").verdict(),
            fatal
        );
        assert_eq!(status(401, "Unauthorized", "").verdict(), fatal);
        assert_eq!(status(422, "Invalid", "").verdict(), fatal);
        assert_eq!(status(400, "BadRequest", "").verdict(), fatal);
    }

    #[test]
    fn status_error_reads_well() {
        let text = status(503, "ServiceUnavailable", "etcd is down").to_string();
        assert_eq!(
            text,
            "POST /api/v1/namespaces/openbao/secrets: 503 ServiceUnavailable: etcd is down"
        );
    }
}
