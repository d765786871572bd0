//! A fake Kubernetes API server with the behaviour the agent depends on:
//! TLS with client-certificate auth, `/readyz` and `/healthz`, and
//! `metav1.Status` errors with the real reasons, messages and codes.
//! Faults are scripted per request; requests are recorded with their
//! query and content type.
//!
//! By what it serves:
//! - here: the server, its faults and its routing;
//! - `endpoints`: where clients reach it (kubeconfig, more addresses, a
//!   plain `GET` as any client sends it);
//! - `store`: the served resources and their strategies, where a path
//!   points, and get, list, create and delete of any kind;
//! - `apply`: `PATCH`, server-side apply of any served kind (field
//!   ownership in `managedFields`, conflicts and `force`, removal of fields
//!   an applier dropped), and JSON merge patch;
//! - `secrets`: Secrets (`stringData`, base64, immutable Secrets);
//! - `namespaces`: Namespaces, the NamespaceLifecycle admission, Terminating;
//! - `events`: `events.k8s.io/v1` Events, with the real validation;
//! - `discovery`: `/api`, `/apis` and their `APIResourceList`s, and the
//!   CRDs, served once Established, which a test says when;
//! - `openapi`: the OpenAPI v3 documents kubectl reads before an apply.

mod apply;
mod discovery;
mod endpoints;
mod events;
mod namespaces;
mod openapi;
mod secrets;
mod store;
#[cfg(test)]
mod testing;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use serde_json::{Value, json};

use crate::http::{Answer, ClientCertified, Handler, Server, respond};
use crate::pki::Pki;

pub use apply::merge_patch;
pub use discovery::{Crd, GIT_REPOSITORY, KUSTOMIZATION, PROVIDER, PROVIDER_CONFIG};
use discovery::{api_group, group_list, resource_list};
use events::create_event;
use namespaces::active_namespace;
use openapi::{openapi, openapi_index};
use store::{locate, no_such_path, not_found, serve};

#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this `Status` instead of doing the request.
    Status {
        code: u16,
        reason: &'static str,
        message: String,
    },
    /// Do the request, then close the connection without answering.
    CommitThenDrop,
    /// Do the request, then wait before answering.
    CommitThenDelay(Duration),
    /// Wait, then do the request normally.
    Delay(Duration),
    /// Refuse with a `Status` whose message quotes the request body, as an
    /// admission webhook or an auditing proxy may.
    EchoInStatus { code: u16, reason: &'static str },
    /// Answer `code` with a plain-text body that repeats the request, as a
    /// proxy's error page may.
    EchoRaw(u16),
    /// Answer `code` with a `Status` that comes one byte every `every`.
    Drip { code: u16, every: Duration },
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    /// The raw query string, `""` when there is none.
    pub query: String,
    pub content_type: String,
    pub body: Option<Value>,
    pub at: std::time::Instant,
}

struct ScriptedFault {
    method: Method,
    path: String,
    times: usize,
    fault: Fault,
}

#[derive(Default)]
struct Cluster {
    ready: bool,
    objects: BTreeMap<String, Value>,
    /// The CRDs, each with the moment it is Established from.
    crds: Vec<(Crd, Instant)>,
    faults: Vec<ScriptedFault>,
    requests: Vec<Recorded>,
    resource_version: u64,
    /// Successful creates per object path.
    creations: BTreeMap<String, usize>,
}

pub struct FakeApiServer {
    server: Server,
    /// The same API server on other addresses (a node's public address).
    also: Mutex<Vec<Server>>,
    handler: Handler,
    pki: Arc<Pki>,
    cluster: Arc<Mutex<Cluster>>,
}

pub fn status(code: u16, reason: &str, message: &str, details: Value) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": details, "code": code,
    })
}

impl FakeApiServer {
    /// `up`: listening from the start; `ready`: `/readyz` answers ok.
    pub fn start(pki: Arc<Pki>, up: bool, ready: bool) -> FakeApiServer {
        let cluster = Arc::new(Mutex::new(Cluster {
            ready,
            ..Cluster::default()
        }));
        {
            // The namespaces every k3s cluster starts with.
            let mut c = cluster.lock().unwrap();
            for name in ["default", "kube-node-lease", "kube-public", "kube-system"] {
                let ns = c.stamp(active_namespace(name));
                c.objects.insert(format!("/api/v1/namespaces/{name}"), ns);
            }
        }
        let state = cluster.clone();
        let handler: Handler = Arc::new(move |req| {
            let state = state.clone();
            Box::pin(async move { handle(&state, req).await })
        });
        let server = Server::start(pki.server_config(true), handler.clone(), up);
        FakeApiServer {
            server,
            also: Mutex::default(),
            handler,
            pki,
            cluster,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn set_up(&self, up: bool) {
        self.server.set_up(up);
    }

    pub fn set_ready(&self, ready: bool) {
        self.lock().ready = ready;
    }

    /// Scripts `fault` for the next `times` requests of `method` on `path`.
    pub fn fault(&self, method: Method, path: &str, times: usize, fault: Fault) {
        self.lock().faults.push(ScriptedFault {
            method,
            path: path.to_string(),
            times,
            fault,
        });
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Stores an object directly, as if a peer had created it.
    pub fn insert(&self, path: &str, object: Value) {
        let mut c = self.lock();
        let object = c.stamp(object);
        c.objects.insert(path.to_string(), object);
    }

    /// The object stored at its canonical path, such as
    /// `/api/v1/namespaces/default/configmaps/x`,
    /// `/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/openova`
    /// or `/apis/pkg.crossplane.io/v1/providers/provider-hcloud`.
    pub fn object(&self, path: &str) -> Option<Value> {
        self.lock().objects.get(path).cloned()
    }

    /// How many times the object at `path` was created.
    pub fn creations(&self, path: &str) -> usize {
        self.lock().creations.get(path).copied().unwrap_or(0)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn count(&self, method: &Method, path: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap()
    }
}

impl Cluster {
    /// Stores a changed object under a new `resourceVersion`.
    fn store(&mut self, key: &str, mut object: Value) -> Value {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = self.resource_version.to_string().into();
        self.objects.insert(key.to_string(), object.clone());
        object
    }

    fn stamp(&mut self, mut object: Value) -> Value {
        self.resource_version += 1;
        let meta = &mut object["metadata"];
        meta["resourceVersion"] = self.resource_version.to_string().into();
        meta["uid"] = format!("00000000-0000-4000-8000-{:012}", self.resource_version).into();
        meta["creationTimestamp"] = "2026-01-01T00:00:00Z".into();
        object
    }

    fn take_fault(&mut self, method: &Method, path: &str) -> Option<Fault> {
        let i = self
            .faults
            .iter()
            .position(|f| f.method == method && f.path == path)?;
        let fault = self.faults[i].fault.clone();
        self.faults[i].times -= 1;
        if self.faults[i].times == 0 {
            self.faults.remove(i);
        }
        Some(fault)
    }
}

async fn handle(state: &Mutex<Cluster>, req: Request<Bytes>) -> Answer {
    // k3s runs with --anonymous-auth=false: no client certificate, no answer.
    if req.extensions().get::<ClientCertified>() != Some(&ClientCertified(true)) {
        return json_answer(401, &status(401, "Unauthorized", "Unauthorized", json!({})));
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let content_type = header(http::header::CONTENT_TYPE);
    let query = req.uri().query().unwrap_or("").to_string();
    // The manager of a write is the `fieldManager` parameter, else the user
    // agent up to its first '/' (the API server's `managerOrUserAgent`).
    let manager = match query_param(&query, "fieldManager") {
        Some(m) if !m.is_empty() => m,
        _ => match header(http::header::USER_AGENT).split('/').next() {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => "unknown".to_string(),
        },
    };
    // An apply body is YAML, of which JSON is a subset.
    let body: Option<Value> = serde_json::from_slice(req.body()).ok().or_else(|| {
        (media_type(&content_type) == APPLY)
            .then(|| serde_saphyr::from_slice(req.body()).ok())
            .flatten()
    });
    let fault = {
        let mut c = state.lock().unwrap();
        c.requests.push(Recorded {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: body.clone(),
            at: std::time::Instant::now(),
        });
        c.take_fault(&method, &path)
    };
    let mut delay_after = None;
    let drop_after = match fault {
        Some(Fault::Status {
            code,
            reason,
            message,
        }) => return json_answer(code, &status(code, reason, &message, json!({}))),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            false
        }
        Some(Fault::EchoInStatus { code, reason }) => {
            let message = format!(
                "admission webhook \"audit.example\" denied the request: {}",
                String::from_utf8_lossy(req.body())
            );
            return json_answer(code, &status(code, reason, &message, json!({})));
        }
        Some(Fault::EchoRaw(code)) => {
            let page = format!(
                "{code} Bad Gateway\nupstream reset; request was:\n{}\n",
                String::from_utf8_lossy(req.body())
            );
            return respond(code, "text/plain; charset=utf-8", page);
        }
        Some(Fault::Drip { code, every }) => {
            let slow = "the server is slow today; ".repeat(160);
            let body = status(code, "InternalError", &slow, json!({}));
            return crate::http::respond_dripping(
                code,
                "application/json",
                &body.to_string(),
                every,
            );
        }
        Some(Fault::CommitThenDrop) => true,
        Some(Fault::CommitThenDelay(d)) => {
            delay_after = Some(d);
            false
        }
        None => false,
    };
    let (code, value) = {
        let mut c = state.lock().unwrap();
        let req_info = Req {
            content_type: &content_type,
            manager: &manager,
            query: &query,
        };
        route(&mut c, &method, &path, req.body(), body, &req_info)
    };
    if drop_after {
        return None;
    }
    if let Some(d) = delay_after {
        tokio::time::sleep(d).await;
    }
    match value {
        Value::String(text) => respond(code, "text/plain; charset=utf-8", text),
        value => json_answer(code, &value),
    }
}

fn json_answer(code: u16, value: &Value) -> Answer {
    respond(code, "application/json", value.to_string())
}

/// What `route` needs from the request's headers and query.
struct Req<'a> {
    content_type: &'a str,
    /// The field manager `managedFields` records for a create or update.
    manager: &'a str,
    /// The raw query string.
    query: &'a str,
}

impl Req<'_> {
    fn param(&self, name: &str) -> Option<String> {
        query_param(self.query, name)
    }

    fn media_type(&self) -> &str {
        media_type(self.content_type)
    }
}

fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The media type of a `Content-Type`, without its parameters.
fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

const APPLY: &str = "application/apply-patch+yaml";

const MERGE: &str = "application/merge-patch+json";

fn route(
    c: &mut Cluster,
    method: &Method,
    path: &str,
    raw: &[u8],
    body: Option<Value>,
    req: &Req,
) -> (u16, Value) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["readyz" | "healthz" | "livez"]) => {
            if c.ready {
                (200, Value::String("ok".into()))
            } else {
                (500, Value::String("[-]poststarthook/rbac/bootstrap-roles failed: not finished\nreadyz check failed\n".into()))
            }
        }
        ("GET", ["version"]) => (
            200,
            json!({"major": "1", "minor": "31", "gitVersion": "v1.31.4+k3s1", "platform": "linux/amd64"}),
        ),
        ("GET", ["api"]) => (
            200,
            json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]}),
        ),
        ("GET", ["apis"]) => (200, group_list(c)),
        ("GET", ["apis", group]) => api_group(c, group).map_or_else(no_such_path, |g| (200, g)),
        ("GET", ["api", version]) => resource_list(c, "", version),
        ("GET", ["apis", group, version]) => resource_list(c, group, version),
        ("GET", ["openapi", "v3"]) => (200, openapi_index(c)),
        ("GET", ["openapi", "v3", "api", version]) => openapi(c, "", version),
        ("GET", ["openapi", "v3", "apis", group, version]) => openapi(c, group, version),
        ("POST", ["apis", "events.k8s.io", "v1", "namespaces", ns, "events"]) => {
            create_event(c, path, ns, raw, body)
        }
        ("DELETE", ["api", "v1", "namespaces", ns]) => match c.objects.get_mut(path) {
            Some(obj) => {
                obj["status"]["phase"] = "Terminating".into();
                (200, obj.clone())
            }
            None => not_found("namespaces", ns),
        },
        _ => match locate(&parts).and_then(|at| Some((c.served(&at)?, at))) {
            Some((resource, at)) => serve(c, method, resource, at, raw, body, req),
            None => no_such_path(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_manager_comes_from_the_query() {
        assert_eq!(
            query_param(
                "fieldManager=catalyst%2Dbootstrap&force=true",
                "fieldManager"
            )
            .as_deref(),
            Some("catalyst-bootstrap")
        );
        assert_eq!(query_param("force=true", "fieldManager"), None);
    }
}
