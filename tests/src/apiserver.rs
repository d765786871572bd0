//! A fake Kubernetes API server with the behaviour the agent depends on:
//! TLS with client-certificate auth, `/readyz` and `/healthz`, namespaces
//! and Secrets (create, get, JSON merge patch, delete), server-side apply
//! of Secrets and Namespaces (create or update, field ownership in
//! `managedFields`, conflicts and `force`, removal of fields an applier
//! dropped), Terminating namespaces, immutable Secrets, and
//! `metav1.Status` errors with the real reasons, messages and codes;
//! `events.k8s.io/v1` Events (create with the real validation, list, get);
//! discovery (`/api`, `/apis`, `APIResourceList`s) of the built-in
//! resources and of custom resources whose CRDs become Established when a
//! test says, and server-side apply of any served kind, namespaced or
//! cluster-scoped.
//! Faults are scripted per request; requests are recorded with their
//! query and content type.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{Method, Request};
use serde_json::{Value, json};

use crate::http::{Answer, ClientCertified, Handler, Server, respond};
use crate::pki::Pki;

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

/// A CustomResourceDefinition, reduced to what discovery and the REST
/// handler of its resource need: one served version, which is also the
/// storage version, and a `status` subresource (as the Flux and Crossplane
/// CRDs have).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crd {
    /// `source.toolkit.fluxcd.io`
    pub group: &'static str,
    /// `v1`
    pub version: &'static str,
    /// `GitRepository`
    pub kind: &'static str,
    /// `gitrepositories`
    pub plural: &'static str,
    pub namespaced: bool,
}

/// Flux's `GitRepository` (namespaced), what `flux-bootstrap.yaml` starts with.
pub const GIT_REPOSITORY: Crd = Crd {
    group: "source.toolkit.fluxcd.io",
    version: "v1",
    kind: "GitRepository",
    plural: "gitrepositories",
    namespaced: true,
};

/// Flux's `Kustomization` (namespaced).
pub const KUSTOMIZATION: Crd = Crd {
    group: "kustomize.toolkit.fluxcd.io",
    version: "v1",
    kind: "Kustomization",
    plural: "kustomizations",
    namespaced: true,
};

/// Crossplane's package `Provider` (cluster-scoped), installed by Flux.
pub const PROVIDER: Crd = Crd {
    group: "pkg.crossplane.io",
    version: "v1",
    kind: "Provider",
    plural: "providers",
    namespaced: false,
};

/// The Hetzner provider's `ProviderConfig` (cluster-scoped, as every
/// Crossplane provider's `ProviderConfig` is), whose CRD exists only once
/// that Provider is installed.
pub const PROVIDER_CONFIG: Crd = Crd {
    group: "hcloud.crossplane.io",
    version: "v1beta1",
    kind: "ProviderConfig",
    plural: "providerconfigs",
    namespaced: false,
};

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

    /// Serves on `ip` too, same port: what a node reaching its own public
    /// address sees.
    pub fn serve_on(&self, ip: std::net::IpAddr) {
        let addr = SocketAddr::new(ip, self.addr().port());
        let server = Server::start_on(
            addr,
            Some(self.pki.server_config(true)),
            self.handler.clone(),
            true,
        );
        self.also.lock().unwrap().push(server);
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

    /// The same API server (the same objects, as etcd shares them) on a
    /// loopback port of its own, refusing connections until `up`: one
    /// control-plane node's API server in an HA cluster, which may start
    /// later than its peers'. Its `kubeconfig_for(port)` is that node's
    /// k3s.yaml.
    pub fn node_endpoint(&self, up: bool) -> Server {
        Server::start_on(
            "127.0.0.1:0".parse().unwrap(),
            Some(self.pki.server_config(true)),
            self.handler.clone(),
            up,
        )
    }

    /// The kubeconfig k3s writes to /etc/rancher/k3s/k3s.yaml.
    pub fn kubeconfig(&self) -> String {
        self.kubeconfig_for(self.addr().port())
    }

    /// The same, on a node whose API server listens on `port`.
    pub fn kubeconfig_for(&self, port: u16) -> String {
        let b64 = |s: &str| STANDARD.encode(s);
        format!(
            "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: https://127.0.0.1:{port}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
            ca = b64(&self.pki.ca_pem),
            cert = b64(&self.pki.client.cert_pem),
            key = b64(&self.pki.client.key_pem),
        )
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

    /// An Opaque Secret with `data` (values already base64), and its
    /// namespace, as if a peer or an earlier run had created them.
    pub fn insert_secret(&self, namespace: &str, name: &str, data: Value) {
        self.insert_namespace(namespace);
        self.insert(
            &format!("/api/v1/namespaces/{namespace}/secrets/{name}"),
            opaque_secret(namespace, name, data),
        );
    }

    /// As `insert_secret`, with every field owned by `manager` through an
    /// `Update` entry in `managedFields`, as after a `kubectl create` or
    /// `kubectl edit`: a server-side apply that changes one of those
    /// fields conflicts with `manager` unless forced.
    pub fn insert_secret_managed_by(
        &self,
        namespace: &str,
        name: &str,
        data: Value,
        manager: &str,
    ) {
        self.insert_namespace(namespace);
        self.insert(
            &format!("/api/v1/namespaces/{namespace}/secrets/{name}"),
            managed_by(opaque_secret(namespace, name, data), manager),
        );
    }

    /// An Active namespace, as if someone had created it earlier.
    pub fn insert_namespace(&self, name: &str) {
        self.insert(
            &format!("/api/v1/namespaces/{name}"),
            active_namespace(name),
        );
    }

    /// `GET path` over HTTPS with the admin client certificate, as any
    /// client of the API server sends it: the status code and the body
    /// exactly as it came over the wire.
    pub async fn fetch(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = tokio::net::TcpStream::connect(self.addr()).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(self.pki.client_config());
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: application/json\r\n\
             User-Agent: curl/8.5.0\r\nConnection: close\r\n\r\n",
            self.addr().port()
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        // A server may close without close_notify; what arrived is the answer.
        let _ = tls.read_to_end(&mut response).await;
        let response = String::from_utf8(response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        let code = head.split(' ').nth(1).unwrap().parse().unwrap();
        (code, body.to_string())
    }

    /// The CRD exists from now on; it is Established, so served in
    /// discovery and for requests, once `after` has passed
    /// (`Duration::ZERO`: at once). Adding a CRD again replaces it.
    pub fn add_crd(&self, crd: Crd, after: Duration) {
        let mut c = self.lock();
        c.crds.retain(|(known, _)| {
            (known.group, known.version, known.plural) != (crd.group, crd.version, crd.plural)
        });
        c.crds.push((crd, Instant::now() + after));
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

    /// The `events.k8s.io/v1` Events stored in `namespace`, in the order
    /// they were created.
    pub fn events(&self, namespace: &str) -> Vec<Value> {
        let c = self.lock();
        match EVENTS.list(&c, Some(namespace))["items"].take() {
            Value::Array(items) => items,
            _ => Vec::new(),
        }
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

    /// Puts a namespace into `Terminating`, as `kubectl delete namespace` does
    /// while finalizers run.
    pub fn terminate_namespace(&self, ns: &str) {
        if let Some(obj) = self
            .lock()
            .objects
            .get_mut(&format!("/api/v1/namespaces/{ns}"))
        {
            obj["status"]["phase"] = "Terminating".into();
            obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        }
    }

    /// Finishes a termination: the namespace and everything in it, of
    /// any kind, are gone.
    pub fn finish_termination(&self, ns: &str) {
        let namespace = format!("/api/v1/namespaces/{ns}");
        self.lock().objects.retain(|k, _| {
            let parts: Vec<&str> = k.trim_start_matches('/').split('/').collect();
            k != &namespace && locate(&parts).and_then(|at| at.namespace) != Some(ns)
        });
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

    /// The resource a request is for, if it is served at the request's
    /// scope: a custom resource only once its CRD is Established, a
    /// namespaced one only in a namespace (or listed across them), a
    /// cluster-scoped one never in a namespace.
    fn served(&self, at: &Location) -> Option<Resource> {
        let resource = self
            .resources()
            .into_iter()
            .find(|r| (r.group, r.version, r.resource) == (at.group, at.version, at.resource))?;
        let scoped = match (resource.namespaced, at.namespace) {
            (true, None) => at.name.is_none(),
            (false, Some(_)) => false,
            _ => true,
        };
        scoped.then_some(resource)
    }

    /// Every resource served now: the built-in ones, then those of the
    /// Established CRDs.
    fn resources(&self) -> Vec<Resource> {
        let now = Instant::now();
        let established = self
            .crds
            .iter()
            .filter(|(_, from)| *from <= now)
            .map(|(crd, _)| Resource::custom(*crd));
        BUILT_IN.iter().copied().chain(established).collect()
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

/// The API server's answer to a Secret whose `data` is not all base64.
fn invalid_secret_data(secret: &Value) -> Option<(u16, Value)> {
    let valid = secret["data"].as_object().is_none_or(|d| {
        d.values()
            .all(|v| v.as_str().is_some_and(|s| STANDARD.decode(s).is_ok()))
    });
    (!valid).then(|| {
        (
            400,
            status(
                400,
                "BadRequest",
                "illegal base64 data in Secret data",
                json!({}),
            ),
        )
    })
}

fn not_found(kind: &str, name: &str) -> (u16, Value) {
    (
        404,
        status(
            404,
            "NotFound",
            &format!("{kind} \"{name}\" not found"),
            json!({"name": name, "kind": kind}),
        ),
    )
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
        ("GET", ["openapi", "v3"]) => (
            200,
            json!({"paths": {
            "api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=0"}}}),
        ),
        ("GET", ["openapi", "v3", "api", "v1"]) => (200, openapi_v1()),
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

/// A request on a served resource: get, list, create, server-side apply
/// (and merge patch of Secrets), delete.
fn serve(
    c: &mut Cluster,
    method: &Method,
    resource: Resource,
    at: Location,
    raw: &[u8],
    body: Option<Value>,
    req: &Req,
) -> (u16, Value) {
    let ns = at.namespace;
    match (method.as_str(), at.name, at.subresource) {
        ("GET", None, None) => (200, resource.list(c, ns)),
        ("GET", Some(name), None | Some("status")) => {
            get(c, &resource.key(ns, name), &resource.qualified(), name)
        }
        // A namespaced resource is listed across namespaces, never
        // created outside one.
        ("POST", None, None) if ns.is_some() || !resource.namespaced => {
            create_posted(c, resource, ns, raw, body, req)
        }
        ("PATCH", Some(name), None) => {
            let key = resource.key(ns, name);
            let at = Target {
                key: &key,
                kind: &resource,
                ns,
                name,
            };
            patch(c, at, raw, req)
        }
        ("DELETE", Some(name), None) => match c.objects.remove(&resource.key(ns, name)) {
            Some(obj) => (200, obj),
            None => not_found(&resource.qualified(), name),
        },
        _ => (
            405,
            status(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
                json!({}),
            ),
        ),
    }
}

/// The answer to a path the server does not serve (no such group,
/// version, resource, or a CRD not Established yet).
fn no_such_path() -> (u16, Value) {
    (
        404,
        status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            json!({}),
        ),
    )
}

/// Where a path points in the REST API, as the API server's
/// `RequestInfoFactory` reads it.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Location<'a> {
    /// `""` for the core group (`/api/v1`).
    group: &'a str,
    version: &'a str,
    namespace: Option<&'a str>,
    /// The resource's plural, as in the path.
    resource: &'a str,
    name: Option<&'a str>,
    subresource: Option<&'a str>,
}

/// A path's `Location`: `/api/{v}/…` or `/apis/{g}/{v}/…`, then
/// `namespaces/{ns}/` for a namespaced resource, then the resource, a name
/// and a subresource. `/api/v1/namespaces/{ns}` (and its `status` and
/// `finalize`) is the Namespace itself.
fn locate<'a>(parts: &[&'a str]) -> Option<Location<'a>> {
    let (group, version, rest) = match parts {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..]
            if !rest.is_empty() && !matches!(rest, ["status" | "finalize"]) =>
        {
            (Some(*ns), rest)
        }
        _ => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return None,
    };
    [version, resource]
        .iter()
        .chain(name.iter())
        .chain(namespace.iter())
        .all(|p| !p.is_empty())
        .then_some(Location {
            group,
            version,
            namespace,
            resource,
            name,
            subresource,
        })
}

/// The objects whose path `keep` accepts, oldest first.
fn objects_where(c: &Cluster, keep: impl Fn(&Location) -> bool) -> Vec<Value> {
    let mut items: Vec<Value> = c
        .objects
        .iter()
        .filter(|(k, _)| {
            let parts: Vec<&str> = k.trim_start_matches('/').split('/').collect();
            locate(&parts).is_some_and(|at| keep(&at))
        })
        .map(|(_, v)| v.clone())
        .collect();
    items.sort_by_key(|o| {
        o["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
    });
    items
}

/// Creates an `events.k8s.io/v1` Event, validated as the API server does
/// (`ValidateEventCreate`): 422 Invalid naming every field at fault.
fn create_event(
    c: &mut Cluster,
    path: &str,
    ns: &str,
    raw: &[u8],
    body: Option<Value>,
) -> (u16, Value) {
    let Some(mut obj) = body.filter(|_| !raw.is_empty()) else {
        return bad_request();
    };
    if obj["kind"] != "Event" || obj["apiVersion"] != "events.k8s.io/v1" {
        return bad_request();
    }
    let name = match (
        obj["metadata"]["name"].as_str(),
        obj["metadata"]["generateName"].as_str(),
    ) {
        (Some(name), _) => name.to_string(),
        (None, Some(prefix)) => format!("{prefix}{:05x}", c.resource_version + 1),
        (None, None) => String::new(),
    };
    let text = |field: &str| obj[field].as_str().unwrap_or("").to_string();
    let mut causes = Vec::new();
    let mut require = |ok: bool, field: &str, why: &str| {
        if !ok {
            causes.push(format!("{field}: {why}"));
        }
    };
    require(!name.is_empty(), "metadata.name", "Required value");
    require(name.len() <= 253, "metadata.name", "Too long");
    require(
        obj["metadata"]["namespace"]
            .as_str()
            .is_none_or(|n| n == ns),
        "metadata.namespace",
        "does not match the namespace of the request",
    );
    require(
        obj["eventTime"]
            .as_str()
            .is_some_and(|t| t.len() == 27 && t.ends_with('Z')),
        "eventTime",
        "Required value (MicroTime, RFC 3339 with microseconds)",
    );
    let controller = text("reportingController");
    require(
        !controller.is_empty(),
        "reportingController",
        "Required value",
    );
    require(
        controller
            .split_once('/')
            .is_some_and(|(d, n)| d.contains('.') && !n.is_empty() && !n.contains('/')),
        "reportingController",
        "must be a qualified name (domain/name)",
    );
    let instance = text("reportingInstance");
    require(!instance.is_empty(), "reportingInstance", "Required value");
    require(
        instance.len() <= 128,
        "reportingInstance",
        "Too long: may not be more than 128 bytes",
    );
    for field in ["action", "reason"] {
        let value = text(field);
        require(!value.is_empty(), field, "Required value");
        require(
            value.len() <= 128,
            field,
            "Too long: may not be more than 128 bytes",
        );
    }
    require(
        ["Normal", "Warning"].contains(&text("type").as_str()),
        "type",
        "Unsupported value: supported values: \"Normal\", \"Warning\"",
    );
    require(
        text("note").len() <= 1024,
        "note",
        "Too long: may not be more than 1024 bytes",
    );
    let regarding = &obj["regarding"];
    require(
        regarding["kind"].is_string() && regarding["name"].is_string(),
        "regarding",
        "Required value",
    );
    if !causes.is_empty() {
        let msg = format!(
            "Event.events.k8s.io \"{name}\" is invalid: [{}]",
            causes.join(", ")
        );
        return (
            422,
            status(422, "Invalid", &msg, json!({"name": name, "kind": "Event"})),
        );
    }
    obj["metadata"]["name"] = name.clone().into();
    obj["metadata"]["namespace"] = ns.into();
    create(
        c,
        &format!("{path}/{name}"),
        "events.events.k8s.io",
        &name,
        obj,
        |_| {},
    )
}

/// An `apiVersion`: `v1` for the core group, else `{group}/{version}`.
fn group_version(group: &str, version: &str) -> String {
    match group {
        "" => version.to_string(),
        group => format!("{group}/{version}"),
    }
}

/// The groups served now (`metav1.APIGroupList` at `/apis`): the
/// built-in ones, then those with an Established CRD by name (the
/// aggregator's order for CRD groups, which all have the same priority).
fn group_list(c: &Cluster) -> Value {
    let mut names: Vec<&str> = Vec::new();
    let mut custom: Vec<&str> = Vec::new();
    for r in c.resources().iter().filter(|r| !r.group.is_empty()) {
        let known = names.contains(&r.group) || custom.contains(&r.group);
        match BUILT_IN.iter().any(|b| b.group == r.group) {
            _ if known => {}
            true => names.push(r.group),
            false => custom.push(r.group),
        }
    }
    custom.sort_unstable();
    names.extend(custom);
    let groups: Vec<Value> = names.iter().filter_map(|g| api_group(c, g)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// A served group (`metav1.APIGroup` at `/apis/{group}`): its versions,
/// the preferred first, in Kubernetes' version order.
fn api_group(c: &Cluster, group: &str) -> Option<Value> {
    let mut versions: Vec<&str> = Vec::new();
    for r in c.resources().iter().filter(|r| r.group == group) {
        if !versions.contains(&r.version) {
            versions.push(r.version);
        }
    }
    versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
    let entry = |v: &&str| json!({"groupVersion": group_version(group, v), "version": v});
    let preferred = entry(versions.first()?);
    Some(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": group,
                "versions": versions.iter().map(entry).collect::<Vec<_>>(),
                "preferredVersion": preferred}),
    )
}

/// How Kubernetes orders versions (`version.CompareKubeAwareVersionStrings`):
/// GA before beta before alpha, a higher major first, then a higher minor;
/// anything else last.
fn version_priority(version: &str) -> (u8, u64, u64) {
    let number = |s: &str| s.parse::<u64>().ok();
    let Some(rest) = version.strip_prefix('v') else {
        return (0, 0, 0);
    };
    let digits = rest
        .find(|ch: char| !ch.is_ascii_digit())
        .unwrap_or(rest.len());
    let Some(major) = number(&rest[..digits]) else {
        return (0, 0, 0);
    };
    let (stage, minor) = match &rest[digits..] {
        "" => (3, Some(0)),
        tail => match (tail.strip_prefix("beta"), tail.strip_prefix("alpha")) {
            (Some(minor), _) => (2, number(minor)),
            (_, Some(minor)) => (1, number(minor)),
            _ => (0, None),
        },
    };
    match minor {
        Some(minor) => (stage, major, minor),
        None => (0, 0, 0),
    }
}

/// Discovery of one group version (`metav1.APIResourceList` at
/// `/api/v1` or `/apis/{group}/{version}`): what kubectl and the agent
/// read to map a kind to its resource. A version with nothing served (a
/// CRD not Established yet) is a path like any unknown one: 404.
fn resource_list(c: &Cluster, group: &str, version: &str) -> (u16, Value) {
    let mut resources = Vec::new();
    for r in c.resources() {
        if (r.group, r.version) != (group, version) {
            continue;
        }
        let mut entry = json!({"name": r.resource, "singularName": r.kind.to_lowercase(),
                               "namespaced": r.namespaced, "kind": r.kind, "verbs": r.verbs});
        if !r.short_names.is_empty() {
            entry["shortNames"] = r.short_names.into();
        }
        resources.push(entry);
        if r.status {
            // A subresource has the main kind too: a client mapping kinds
            // to resources must skip names with a '/'.
            resources.push(
                json!({"name": format!("{}/status", r.resource), "singularName": "",
                                  "namespaced": r.namespaced, "kind": r.kind,
                                  "verbs": ["get", "patch", "update"]}),
            );
        }
    }
    if resources.is_empty() {
        return no_such_path();
    }
    (
        200,
        json!({"kind": "APIResourceList", "apiVersion": "v1",
               "groupVersion": group_version(group, version), "resources": resources}),
    )
}

/// The OpenAPI v3 document of `api/v1`, reduced to what `kubectl apply`
/// looks for: the paths it writes to, which accept `fieldValidation` (so
/// kubectl leaves validation to the server), and the two kinds' schemas.
fn openapi_v1() -> Value {
    let params = json!([{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                        {"name": "fieldManager", "in": "query", "schema": {"type": "string"}}]);
    let op = |kind: &str| {
        json!({"parameters": params, "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": kind},
               "responses": {"200": {"description": "OK"}}})
    };
    let schema = |kind: &str| {
        json!({"type": "object", "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": kind}],
               "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                              "metadata": {"type": "object"}, "data": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
                              "type": {"type": "string"}, "spec": {"type": "object"}, "status": {"type": "object"}}})
    };
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.31.4+k3s1"},
        "paths": {
            "/api/v1/namespaces": {"post": op("Namespace")},
            "/api/v1/namespaces/{name}": {"get": op("Namespace"), "put": op("Namespace"), "patch": op("Namespace")},
            "/api/v1/namespaces/{namespace}/secrets": {"post": op("Secret")},
            "/api/v1/namespaces/{namespace}/secrets/{name}": {"get": op("Secret"), "put": op("Secret"), "patch": op("Secret")},
        },
        "components": {"schemas": {"io.k8s.api.core.v1.Namespace": schema("Namespace"),
                                    "io.k8s.api.core.v1.Secret": schema("Secret")}},
    })
}

fn bad_request() -> (u16, Value) {
    bad_request_because("the body of the request was in an unknown format")
}

fn bad_request_because(message: &str) -> (u16, Value) {
    (400, status(400, "BadRequest", message, json!({})))
}

/// The NamespaceLifecycle admission of a create in `ns`: the namespace
/// must exist and must not be terminating.
fn namespace_refusal(c: &Cluster, ns: &str, resource: &str, name: &str) -> Option<(u16, Value)> {
    match c.objects.get(&format!("/api/v1/namespaces/{ns}")) {
        None => Some(not_found("namespaces", ns)),
        Some(n) if n["status"]["phase"] == "Terminating" => {
            let msg = format!(
                "{resource} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated"
            );
            Some((
                403,
                status(
                    403,
                    "Forbidden",
                    &msg,
                    json!({"name": name, "kind": resource}),
                ),
            ))
        }
        Some(_) => None,
    }
}

/// The body parsed, of `kind`, and in the request's namespace if it names one.
fn checked_body(raw: &[u8], body: Option<Value>, kind: &str, ns: Option<&str>) -> Option<Value> {
    let obj = body.filter(|_| !raw.is_empty())?;
    let ns_ok = match (ns, obj["metadata"]["namespace"].as_str()) {
        (Some(url_ns), Some(body_ns)) => url_ns == body_ns,
        _ => true,
    };
    (obj["kind"] == kind && obj["metadata"]["name"].is_string() && ns_ok).then_some(obj)
}

/// `POST` to a collection: the body must be of the resource's kind and
/// name the object; it is created in the request's namespace, its fields
/// owned by the request's manager through an `Update` entry.
fn create_posted(
    c: &mut Cluster,
    resource: Resource,
    ns: Option<&str>,
    raw: &[u8],
    body: Option<Value>,
    req: &Req,
) -> (u16, Value) {
    let Some(mut obj) = checked_body(raw, body, resource.kind, ns) else {
        return bad_request();
    };
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    if let Some(refused) = ns.and_then(|ns| namespace_refusal(c, ns, &resource.qualified(), &name))
    {
        return refused;
    }
    if let Some(refused) = (resource.normalize)(&mut obj) {
        return refused;
    }
    let entry = managed_entry(
        req.manager,
        "Update",
        &resource.api_version(),
        fields_v1(&obj),
    );
    create_new(c, &resource, ns, &name, obj, entry)
}

/// Creates an object as the registry does: in the request's namespace (a
/// cluster-scoped object in none, whatever its body said), defaulted and
/// prepared, with `entry` as its one `managedFields` entry.
fn create_new(
    c: &mut Cluster,
    resource: &Resource,
    ns: Option<&str>,
    name: &str,
    obj: Value,
    entry: Value,
) -> (u16, Value) {
    let key = resource.key(ns, name);
    create(c, &key, &resource.qualified(), name, obj, |o| {
        match ns {
            Some(ns) => o["metadata"]["namespace"] = ns.into(),
            None => {
                if let Some(meta) = o["metadata"].as_object_mut() {
                    meta.remove("namespace");
                }
            }
        }
        (resource.defaults)(o);
        (resource.prepare_for_create)(o);
        o["metadata"]["managedFields"] = json!([entry]);
    })
}

fn create(
    c: &mut Cluster,
    key: &str,
    kind: &str,
    name: &str,
    obj: Value,
    defaults: impl FnOnce(&mut Value),
) -> (u16, Value) {
    if c.objects.contains_key(key) {
        let msg = format!("{kind} \"{name}\" already exists");
        return (
            409,
            status(
                409,
                "AlreadyExists",
                &msg,
                json!({"name": name, "kind": kind}),
            ),
        );
    }
    let mut obj = c.stamp(obj);
    defaults(&mut obj);
    c.objects.insert(key.to_string(), obj.clone());
    *c.creations.entry(key.to_string()).or_default() += 1;
    (201, obj)
}

fn get(c: &Cluster, key: &str, kind: &str, name: &str) -> (u16, Value) {
    match c.objects.get(key) {
        Some(obj) => (200, obj.clone()),
        None => not_found(kind, name),
    }
}

fn conflict(kind: &str, name: &str) -> (u16, Value) {
    let msg = format!(
        "Operation cannot be fulfilled on {kind} \"{name}\": the object has been modified; \
         please apply your changes to the latest version and try again"
    );
    (
        409,
        status(409, "Conflict", &msg, json!({"name": name, "kind": kind})),
    )
}

/// `PATCH` of a Secret or a Namespace. The media type picks the mechanism:
/// server-side apply for both kinds (`apply`), JSON merge patch for
/// Secrets (`merge_patch_secret`); strategic merge and JSON patch are not
/// implemented (415, as for any media type the server does not accept).
/// As in the API server the media type is checked first, then the
/// `PatchOptions` (`ValidatePatchOptions`).
fn patch(c: &mut Cluster, at: Target, raw: &[u8], req: &Req) -> (u16, Value) {
    let Target {
        key, kind, name, ..
    } = at;
    let media_type = req.media_type();
    let merge = media_type == MERGE && kind.kind == "Secret";
    if media_type != APPLY && !merge {
        return (
            415,
            status(
                415,
                "UnsupportedMediaType",
                &format!(
                    "the body of the request was in an unknown format - accepted media types include: \
                     application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml \
                     (this fake: apply, and merge patch of Secrets; got {media_type:?})"
                ),
                json!({}),
            ),
        );
    }
    if let Some(refused) = invalid_patch_options(req) {
        return refused;
    }
    if merge {
        merge_patch_secret(c, key, name, raw, req)
    } else {
        apply(c, at, raw, req)
    }
}

/// `ValidatePatchOptions`: an apply must name its field manager (the API
/// server has no default for it, unlike for other writes), and `force`
/// is only for apply. 422 Invalid on `PatchOptions.meta.k8s.io ""`.
fn invalid_patch_options(req: &Req) -> Option<(u16, Value)> {
    let (field, reason, why) = if req.media_type() == APPLY {
        if req.param("fieldManager").is_some_and(|m| !m.is_empty()) {
            return None;
        }
        (
            "fieldManager",
            "FieldValueRequired",
            "Required value: is required for apply patch",
        )
    } else {
        req.param("force")?;
        (
            "force",
            "FieldValueForbidden",
            "Forbidden: may not be specified for non-apply patch",
        )
    };
    let msg = format!("PatchOptions.meta.k8s.io \"\" is invalid: {field}: {why}");
    let details = json!({"group": "meta.k8s.io", "kind": "PatchOptions",
                         "causes": [{"reason": reason, "message": why, "field": field}]});
    Some((422, status(422, "Invalid", &msg, details)))
}

/// JSON merge patch (RFC 7386) of a Secret: the patch is merged into the
/// stored object, a `metadata.resourceVersion` in it is a precondition
/// (stale: 409 Conflict), and the version only moves when something
/// changed.
fn merge_patch_secret(
    c: &mut Cluster,
    key: &str,
    name: &str,
    raw: &[u8],
    req: &Req,
) -> (u16, Value) {
    let Some(stored) = c.objects.get(key) else {
        return not_found("secrets", name);
    };
    let Ok(patch) = serde_json::from_slice::<Value>(raw) else {
        return bad_request();
    };
    if !patch.is_object() {
        return bad_request();
    }
    let given = &patch["metadata"]["resourceVersion"];
    if !given.is_null() && *given != stored["metadata"]["resourceVersion"] {
        return conflict("secrets", name);
    }
    let mut merged = stored.clone();
    merge_patch(&mut merged, &patch);
    for field in ["name", "namespace", "uid"] {
        if merged["metadata"][field] != stored["metadata"][field] {
            return bad_request_because(&format!("metadata.{field} cannot be changed by a patch"));
        }
    }
    string_data_into_data(&mut merged);
    if let Some(refused) = invalid_secret_data(&merged) {
        return refused;
    }
    if let Some(refused) = secret_update_refusal(stored, &merged, name) {
        return refused;
    }
    if merged == *stored {
        return (200, merged);
    }
    // The patch's fields now belong to the patching manager.
    let mut fields = patch.clone();
    if let Some(meta) = fields["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
    let entry = managed_entry(req.manager, "Update", "v1", fields_v1(&fields));
    match merged["metadata"]["managedFields"].as_array_mut() {
        Some(entries) => entries.push(entry),
        None => merged["metadata"]["managedFields"] = json!([entry]),
    }
    (200, c.store(key, merged))
}

/// The object a `PATCH` is about.
#[derive(Clone, Copy)]
struct Target<'a> {
    /// Its path, the key in `Cluster::objects`.
    key: &'a str,
    kind: &'a Resource,
    /// Its namespace; `None` for a cluster-scoped kind.
    ns: Option<&'a str>,
    name: &'a str,
}

/// A resource the fake serves: what discovery says of it, and what its
/// registry strategy does to an object written to it.
#[derive(Clone, Copy)]
struct Resource {
    /// `""` for the core group.
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    /// The plural: the resource's name in paths and discovery.
    resource: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    verbs: &'static [&'static str],
    /// Whether discovery lists a `{resource}/status` subresource.
    status: bool,
    /// What the registry makes of a written object before it is stored,
    /// or why it refuses it (a Secret's `stringData` and base64).
    normalize: fn(&mut Value) -> Option<(u16, Value)>,
    /// Defaulting, on every write.
    defaults: fn(&mut Value),
    /// The strategy's `PrepareForCreate`.
    prepare_for_create: fn(&mut Value),
    /// The strategy's `PrepareForUpdate`, given the stored and the new object.
    prepare_for_update: fn(&Value, &mut Value),
    /// The strategy's `ValidateUpdate`, given the stored and the new object.
    validate_update: fn(&Value, &Value, &str) -> Option<(u16, Value)>,
}

/// The verbs discovery lists for most built-in resources.
const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// A core (`v1`) namespaced resource with no strategy of its own.
const CORE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "",
    resource: "",
    namespaced: true,
    short_names: &[],
    verbs: VERBS,
    status: false,
    normalize: |_| None,
    defaults: |_| {},
    prepare_for_create: |_| {},
    prepare_for_update: |_, _| {},
    validate_update: |_, _, _| None,
};

const SECRETS: Resource = Resource {
    kind: "Secret",
    resource: "secrets",
    normalize: |o| {
        string_data_into_data(o);
        invalid_secret_data(o)
    },
    defaults: |o| {
        if o.get("type").is_none() {
            o["type"] = "Opaque".into();
        }
    },
    validate_update: secret_update_refusal,
    ..CORE
};

const NAMESPACES: Resource = Resource {
    kind: "Namespace",
    resource: "namespaces",
    namespaced: false,
    short_names: &["ns"],
    verbs: &[
        "create", "delete", "get", "list", "patch", "update", "watch",
    ],
    status: true,
    prepare_for_create: |o| {
        o["spec"] = json!({"finalizers": ["kubernetes"]});
        o["status"] = json!({"phase": "Active"});
    },
    ..CORE
};

/// What the fake serves besides custom resources, in discovery's order.
const BUILT_IN: &[Resource] = &[
    Resource {
        kind: "ConfigMap",
        resource: "configmaps",
        short_names: &["cm"],
        ..CORE
    },
    NAMESPACES,
    SECRETS,
    Resource {
        kind: "ServiceAccount",
        resource: "serviceaccounts",
        short_names: &["sa"],
        ..CORE
    },
    EVENTS,
];

const EVENTS: Resource = Resource {
    group: "events.k8s.io",
    kind: "Event",
    resource: "events",
    short_names: &["ev"],
    ..CORE
};

impl Resource {
    /// A custom resource, as the CRD handler serves it: a create sets
    /// `generation` to 1 and drops `status`; an update that changes more
    /// than `metadata` bumps `generation`.
    fn custom(crd: Crd) -> Resource {
        Resource {
            group: crd.group,
            version: crd.version,
            kind: crd.kind,
            resource: crd.plural,
            namespaced: crd.namespaced,
            verbs: &[
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "create",
                "update",
                "watch",
            ],
            status: true,
            prepare_for_create: |o| {
                if let Some(o) = o.as_object_mut() {
                    o.remove("status");
                }
                o["metadata"]["generation"] = 1.into();
            },
            prepare_for_update: |old, new| {
                let content = |o: &Value| {
                    let mut o = o.clone();
                    if let Some(o) = o.as_object_mut() {
                        o.remove("metadata");
                    }
                    o
                };
                if content(old) != content(new) {
                    let generation = old["metadata"]["generation"].as_i64().unwrap_or(0);
                    new["metadata"]["generation"] = (generation + 1).into();
                }
            },
            ..CORE
        }
    }

    /// `v1`, `events.k8s.io/v1`.
    fn api_version(&self) -> String {
        group_version(self.group, self.version)
    }

    /// The group-qualified resource that error messages name:
    /// `secrets`, `gitrepositories.source.toolkit.fluxcd.io`.
    fn qualified(&self) -> String {
        match self.group {
            "" => self.resource.to_string(),
            group => format!("{}.{group}", self.resource),
        }
    }

    /// The path of the collection, in `ns` for a namespaced resource.
    fn collection(&self, ns: Option<&str>) -> String {
        let root = match self.group {
            "" => format!("/api/{}", self.version),
            group => format!("/apis/{group}/{}", self.version),
        };
        match ns {
            Some(ns) => format!("{root}/namespaces/{ns}/{}", self.resource),
            None => format!("{root}/{}", self.resource),
        }
    }

    /// The canonical path of an object, its key in `Cluster::objects`.
    fn key(&self, ns: Option<&str>, name: &str) -> String {
        format!("{}/{name}", self.collection(ns))
    }

    /// The `{Kind}List` of the objects in `ns`, or in every namespace.
    fn list(&self, c: &Cluster, ns: Option<&str>) -> Value {
        let items = objects_where(c, |at| {
            (at.group, at.version, at.resource) == (self.group, self.version, self.resource)
                && at.name.is_some()
                && at.subresource.is_none()
                && (ns.is_none() || at.namespace == ns)
        });
        json!({"kind": format!("{}List", self.kind), "apiVersion": self.api_version(),
               "metadata": {"resourceVersion": c.resource_version.to_string()},
               "items": items})
    }
}

/// A field as a path of keys from the object's root (`["data", "token"]`).
type FieldPath = Vec<String>;

/// Server-side apply (`application/apply-patch+yaml`), as the API server's
/// field manager does it (see kubernetes.io, "Server-Side Apply"):
/// - absent object: created (201) from the applied configuration, the
///   applier owning its fields through an `Apply` entry in `managedFields`;
/// - a field of the configuration owned by another manager (any other
///   entry, `Update` or `Apply`) whose value the apply would change is a
///   conflict: 409 without `force`, with `force` the field changes owner;
/// - fields the applier applied before and now omits are removed, unless
///   another manager owns them too;
/// - nothing changed: the stored object as it is, same `resourceVersion`.
///
/// No `last-applied-configuration` annotation: that is client-side apply.
fn apply(c: &mut Cluster, at: Target, raw: &[u8], req: &Req) -> (u16, Value) {
    let Target {
        key,
        kind,
        ns,
        name,
    } = at;
    let manager = req.param("fieldManager").unwrap_or_default();
    // Convert_Slice_string_To_Pointer_bool: only "0" and "false" are false.
    let force = req
        .param("force")
        .is_some_and(|f| f != "0" && !f.eq_ignore_ascii_case("false"));
    let config = if raw.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_saphyr::from_slice::<Value>(raw) {
            Ok(config @ Value::Object(_)) => config,
            Ok(_) => return bad_request_because("error decoding YAML: not a mapping"),
            Err(e) => return bad_request_because(&format!("error decoding YAML: {e}")),
        }
    };
    // versionCheckManager: the configuration's group, version and kind
    // must be the endpoint's.
    let api_version = config["apiVersion"].as_str().unwrap_or("");
    let config_kind = config["kind"].as_str().unwrap_or("");
    if api_version != kind.api_version() || config_kind != kind.kind {
        let group_version = match api_version.split_once('/') {
            Some(_) => api_version.to_string(),
            None => format!("/{api_version}"),
        };
        return bad_request_because(&format!(
            "invalid object type: {group_version}, Kind={config_kind}"
        ));
    }
    if !config["metadata"]["managedFields"].is_null() {
        return bad_request_because("metadata.managedFields must be nil");
    }
    // checkName, on the object the apply produces.
    let given = config["metadata"]["name"].as_str().unwrap_or("");
    if given != name {
        return bad_request_because(&format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        ));
    }
    if let (Some(ns), Some(given)) = (ns, config["metadata"]["namespace"].as_str())
        && !given.is_empty()
        && given != ns
    {
        return bad_request_because(&format!(
            "the namespace of the object ({given}) does not match the namespace on the request ({ns})"
        ));
    }
    // Ownership is of the configuration as applied: `stringData` stays in
    // the applier's fields though it is never stored (the known snag of
    // stringData with server-side apply, kubernetes/kubernetes#118519).
    let applied = fields_v1(&config);
    let mut desired = config.clone();
    if let Some(refused) = (kind.normalize)(&mut desired) {
        return refused;
    }
    let api_version = kind.api_version();
    let Some(live) = c.objects.get(key).cloned() else {
        if let Some(refused) = ns.and_then(|ns| namespace_refusal(c, ns, &kind.qualified(), name)) {
            return refused;
        }
        let entry = managed_entry(&manager, "Apply", &api_version, applied);
        return create_new(c, kind, ns, name, desired, entry);
    };

    let mut entries = live["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mine = |e: &Value| e["manager"] == manager.as_str() && e["operation"] == "Apply";
    let mut conflicts: Vec<(usize, FieldPath)> = Vec::new();
    for path in field_paths(&applied, true) {
        // Setting a field to the value it has is no conflict: the field
        // becomes shared.
        if value_at(&live, &path) == value_at(&config, &path) {
            continue;
        }
        for (i, entry) in entries.iter().enumerate() {
            if !mine(entry) && owns(&entry["fieldsV1"], &path) {
                conflicts.push((i, path.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return apply_conflict(&entries, &conflicts);
    }
    for (i, path) in &conflicts {
        disown(&mut entries[*i]["fieldsV1"], path);
    }

    let previous = entries
        .iter()
        .find(|e| mine(e))
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or_else(|| json!({}));
    let kept = field_paths(&applied, false);
    let mut dropped: Vec<FieldPath> = field_paths(&previous, false)
        .into_iter()
        .filter(|p| !kept.contains(p))
        .filter(|p| !entries.iter().any(|e| !mine(e) && owns(&e["fieldsV1"], p)))
        .collect();
    // Deepest first, so that a map whose last key goes is then empty.
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut merged = live.clone();
    for path in &dropped {
        remove_value(&mut merged, path);
    }
    // Status is not the main resource's to write (PrepareForUpdate), and
    // a cluster-scoped object has no namespace, whatever the body says.
    if let Some(fields) = desired.as_object_mut() {
        fields.remove("status");
    }
    if let (None, Some(meta)) = (ns, desired["metadata"].as_object_mut()) {
        meta.remove("namespace");
    }
    merge_patch(&mut merged, &desired);
    (kind.defaults)(&mut merged);
    (kind.prepare_for_update)(&live, &mut merged);

    let entry = managed_entry(&manager, "Apply", &api_version, applied);
    match entries.iter().position(mine) {
        Some(i) => entries[i] = entry,
        None => entries.push(entry),
    }
    // A manager left owning nothing is no longer listed.
    entries.retain(|e| e["fieldsV1"].as_object().is_some_and(|f| !f.is_empty()));
    merged["metadata"]["managedFields"] = Value::Array(entries);

    if let Some(refused) = (kind.validate_update)(&live, &merged, name) {
        return refused;
    }
    if merged == live {
        return (200, live);
    }
    (200, c.store(key, merged))
}

/// The conflict error of an apply, as `NewConflictError` words it: one
/// conflict on one line, several grouped by manager, and a
/// `FieldManagerConflict` cause per field.
fn apply_conflict(entries: &[Value], conflicts: &[(usize, FieldPath)]) -> (u16, Value) {
    // printManager: an Update entry says which version it wrote, and when.
    let who = |e: &Value| {
        let manager = format!("{:?}", e["manager"].as_str().unwrap_or(""));
        let version = e["apiVersion"].as_str().unwrap_or("");
        match (e["operation"].as_str(), e["time"].as_str()) {
            (Some("Update"), Some(time)) => format!("{manager} using {version} at {time}"),
            (Some("Update"), None) => format!("{manager} using {version}"),
            _ => manager,
        }
    };
    let dotted = |path: &FieldPath| path.iter().map(|k| format!(".{k}")).collect::<String>();
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(i, path)| {
            json!({"type": "FieldManagerConflict", "message": format!("conflict with {}", who(&entries[*i])),
                   "field": dotted(path)})
        })
        .collect();
    let message = if let [(i, path)] = conflicts {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            who(&entries[*i]),
            dotted(path)
        )
    } else {
        // Sorted by the manager's key: an applier's is its name, an
        // updater's a JSON object, which sorts after any name.
        let mut by_manager: BTreeMap<(bool, String), Vec<&FieldPath>> = BTreeMap::new();
        let mut names = BTreeMap::new();
        for (i, path) in conflicts {
            let e = &entries[*i];
            let id = (
                e["operation"] != "Apply",
                e["manager"].as_str().unwrap_or("").to_string(),
            );
            names.insert(id.clone(), who(e));
            by_manager.entry(id).or_default().push(path);
        }
        let mut lines = Vec::new();
        for (id, paths) in &by_manager {
            lines.push(format!("conflicts with {}:", names[id]));
            lines.extend(paths.iter().map(|p| format!("- {}", dotted(p))));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            conflicts.len(),
            lines.join("\n")
        )
    };
    (
        409,
        status(409, "Conflict", &message, json!({"causes": causes})),
    )
}

/// The fields a `fieldsV1` set names: its leaves, and with `leaves_only`
/// false also the maps it owns as such (`"."`).
fn field_paths(set: &Value, leaves_only: bool) -> Vec<FieldPath> {
    fn walk(node: &Value, prefix: &mut FieldPath, leaves_only: bool, out: &mut Vec<FieldPath>) {
        let children: Vec<(&str, &Value)> = node
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.strip_prefix("f:")?, v)))
            .collect();
        let owned_map = !leaves_only && node.get(".").is_some();
        if !prefix.is_empty() && (children.is_empty() || owned_map) {
            out.push(prefix.clone());
        }
        for (k, v) in children {
            prefix.push(k.to_string());
            walk(v, prefix, leaves_only, out);
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    walk(set, &mut Vec::new(), leaves_only, &mut out);
    out
}

/// Whether the `fieldsV1` set names the field at `path`.
fn owns(set: &Value, path: &[String]) -> bool {
    path.iter()
        .try_fold(set, |node, k| node.get(format!("f:{k}")))
        .is_some()
}

/// Takes the field at `path` out of a `fieldsV1` set, and the maps that
/// held nothing else.
fn disown(set: &mut Value, path: &[String]) {
    let (Some((first, rest)), Some(map)) = (path.split_first(), set.as_object_mut()) else {
        return;
    };
    let key = format!("f:{first}");
    if !rest.is_empty()
        && let Some(child) = map.get_mut(&key)
    {
        disown(child, rest);
        if child.as_object().is_none_or(|c| !c.is_empty()) {
            return;
        }
    }
    map.remove(&key);
}

fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(object, |v, k| v.get(k))
}

/// Removes the field at `path` from the object: a map only once empty,
/// since keys in it may be someone else's.
fn remove_value(object: &mut Value, path: &[String]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let Some(map) = parent
        .iter()
        .try_fold(object, |v, k| v.get_mut(k))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    if map
        .get(last)
        .is_some_and(|v| v.as_object().is_none_or(|m| m.is_empty()))
    {
        map.remove(last);
    }
}

/// The API server stores `stringData` as `data` (base64), each key of
/// `stringData` winning over the same key of `data`, and never stores
/// `stringData` itself.
fn string_data_into_data(secret: &mut Value) {
    let Some(Value::Object(strings)) = secret.as_object_mut().and_then(|s| s.remove("stringData"))
    else {
        return;
    };
    for (k, v) in strings {
        secret["data"][k] = STANDARD.encode(v.as_str().unwrap_or("")).into();
    }
}

/// `ValidateSecretUpdate`: the type never changes, and an immutable
/// Secret keeps its data and stays immutable. 422 Invalid naming each
/// field at fault.
fn secret_update_refusal(old: &Value, new: &Value, name: &str) -> Option<(u16, Value)> {
    const IMMUTABLE: &str = "Forbidden: field is immutable when `immutable` is set";
    let mut errors: Vec<(&str, &str, String)> = Vec::new();
    if new["type"] != old["type"] {
        let message = format!("Invalid value: {}: field is immutable", new["type"]);
        errors.push(("type", "FieldValueInvalid", message));
    }
    if old["immutable"] == true {
        if new["immutable"] != true {
            errors.push(("immutable", "FieldValueForbidden", IMMUTABLE.into()));
        }
        if new["data"] != old["data"] {
            errors.push(("data", "FieldValueForbidden", IMMUTABLE.into()));
        }
    }
    let listed: Vec<String> = errors.iter().map(|(f, _, m)| format!("{f}: {m}")).collect();
    let summary = match listed.as_slice() {
        [] => return None,
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    let causes: Vec<Value> = errors
        .iter()
        .map(|(field, reason, message)| json!({"reason": reason, "message": message, "field": field}))
        .collect();
    let msg = format!("Secret \"{name}\" is invalid: {summary}");
    Some((
        422,
        status(
            422,
            "Invalid",
            &msg,
            json!({"name": name, "kind": "Secret", "causes": causes}),
        ),
    ))
}

/// RFC 7386 MergePatch: objects merge key by key, `null` removes a key,
/// anything else replaces the target.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// A `managedFields` entry as the API server writes it: `operation` is
/// `Apply` for a server-side apply, `Update` for any other write (a create,
/// an update, a patch of another type).
fn managed_entry(manager: &str, operation: &str, api_version: &str, fields: Value) -> Value {
    json!({"manager": manager, "operation": operation, "apiVersion": api_version,
           "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields})
}

/// `object` with all its fields owned by `manager` through an `Update`.
fn managed_by(mut object: Value, manager: &str) -> Value {
    let fields = fields_v1(&object);
    object["metadata"]["managedFields"] = json!([managed_entry(manager, "Update", "v1", fields)]);
    object
}

/// An Opaque Secret with `data` (values already base64).
fn opaque_secret(namespace: &str, name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": name, "namespace": namespace}, "data": data})
}

fn active_namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
           "status": {"phase": "Active"}})
}

/// The `fieldsV1` set of an object: `f:<key>` for every field set, `"."`
/// for a map that is itself a field; identity fields are not tracked.
fn fields_v1(obj: &Value) -> Value {
    fn walk(value: &Value, top: bool) -> Value {
        let mut set = serde_json::Map::new();
        if let Some(map) = value.as_object() {
            if !top {
                set.insert(".".into(), json!({}));
            }
            for (k, v) in map {
                set.insert(format!("f:{k}"), walk(v, false));
            }
        }
        Value::Object(set)
    }
    let mut set = serde_json::Map::new();
    for (k, v) in obj.as_object().into_iter().flatten() {
        match k.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                let mut meta = serde_json::Map::new();
                for (mk, mv) in v.as_object().into_iter().flatten() {
                    if ["labels", "annotations", "finalizers", "ownerReferences"]
                        .contains(&mk.as_str())
                    {
                        meta.insert(format!("f:{mk}"), walk(mv, false));
                    }
                }
                if !meta.is_empty() {
                    set.insert("f:metadata".into(), Value::Object(meta));
                }
            }
            _ => {
                set.insert(format!("f:{k}"), walk(v, false));
            }
        }
    }
    Value::Object(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        // The RFC's example (section 3).
        let mut target = json!({"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"},
                                "tags": ["example", "sample"], "content": "This will be unchanged"});
        let patch = json!({"title": "Hello!", "phoneNumber": "+01-123-456-7890",
                           "author": {"familyName": null}, "tags": ["example"]});
        merge_patch(&mut target, &patch);
        assert_eq!(
            target,
            json!({"title": "Hello!", "author": {"givenName": "John"}, "tags": ["example"],
                   "content": "This will be unchanged", "phoneNumber": "+01-123-456-7890"})
        );
        let mut target = json!({"a": "b"});
        merge_patch(&mut target, &json!({"a": {"b": "c"}}));
        assert_eq!(target, json!({"a": {"b": "c"}}));
    }

    const SECRET: &str = "/api/v1/namespaces/openbao/secrets/s";

    fn patch(c: &mut Cluster, content_type: &str, body: &str) -> (u16, Value) {
        patch_at(c, SECRET, content_type, body)
    }

    /// `PATCH target` (a path, and a query after `?`), as `handle` routes it.
    fn patch_at(c: &mut Cluster, target: &str, content_type: &str, body: &str) -> (u16, Value) {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let req = Req {
            content_type,
            manager: "catalyst-bootstrap",
            query,
        };
        let parsed = serde_json::from_str(body).ok();
        route(c, &Method::PATCH, path, body.as_bytes(), parsed, &req)
    }

    fn cluster_with_secret() -> Cluster {
        let mut c = Cluster::default();
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "s", "namespace": "openbao", "labels": {"keep": "me"}},
            "data": {"recovery-seed": "QUFB"}});
        let secret = c.stamp(secret);
        c.objects.insert(SECRET.into(), secret);
        c
    }

    const MERGE: &str = "application/merge-patch+json";

    #[test]
    fn merge_patch_of_a_secret() {
        let mut c = cluster_with_secret();
        let (code, obj) = patch(
            &mut c,
            MERGE,
            r#"{"metadata":{"resourceVersion":"1","labels":{"app.kubernetes.io/managed-by":"Helm"}}}"#,
        );
        assert_eq!(code, 200, "{obj}");
        assert_eq!(obj["metadata"]["resourceVersion"], "2");
        assert_eq!(
            obj["metadata"]["labels"],
            json!({"keep": "me", "app.kubernetes.io/managed-by": "Helm"})
        );
        assert_eq!(obj["data"], json!({"recovery-seed": "QUFB"}));
        assert_eq!(obj["metadata"]["uid"], c.objects[SECRET]["metadata"]["uid"]);
        assert_eq!(
            obj["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {".": {}, "f:app.kubernetes.io/managed-by": {}}}})
        );
        // The same patch again changes nothing, so the version stays.
        let (code, obj) = patch(
            &mut c,
            MERGE,
            r#"{"metadata":{"labels":{"app.kubernetes.io/managed-by":"Helm"}}}"#,
        );
        assert_eq!(
            (code, &obj["metadata"]["resourceVersion"]),
            (200, &json!("2"))
        );
    }

    #[test]
    fn merge_patch_refusals() {
        let mut c = cluster_with_secret();
        let stale = r#"{"metadata":{"resourceVersion":"0","labels":{"a":"b"}}}"#;
        let (code, obj) = patch(&mut c, MERGE, stale);
        assert_eq!((code, obj["reason"].as_str()), (409, Some("Conflict")));
        let (code, obj) = patch(&mut c, "application/strategic-merge-patch+json", "{}");
        assert_eq!(
            (code, obj["reason"].as_str()),
            (415, Some("UnsupportedMediaType"))
        );
        let (code, _) = patch(&mut c, "application/json", "{}");
        assert_eq!(code, 415);
        let (code, _) = patch(&mut c, MERGE, r#"{"data":{"recovery-seed":"not base64!"}}"#);
        assert_eq!(code, 400);
        let (code, _) = patch(&mut c, MERGE, r#"{"metadata":{"name":"other"}}"#);
        assert_eq!(code, 400);
        assert_eq!(
            c.objects[SECRET]["metadata"]["resourceVersion"], "1",
            "unchanged"
        );
        c.objects.clear();
        let (code, obj) = patch(&mut c, MERGE, "{}");
        assert_eq!((code, obj["reason"].as_str()), (404, Some("NotFound")));
    }

    #[test]
    fn fields_v1_of_a_secret() {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "s", "namespace": "n", "annotations": {"a": "1"}},
            "data": {"recovery-seed": "QUFB"}});
        assert_eq!(
            fields_v1(&secret),
            json!({"f:data": {".": {}, "f:recovery-seed": {}},
                   "f:metadata": {"f:annotations": {".": {}, "f:a": {}}}, "f:type": {}})
        );
    }

    const APPLIER: &str = "?fieldManager=catalyst-bootstrap&force=true";

    /// A server-side apply of `config` to `target` (path and query).
    fn ssa(c: &mut Cluster, target: &str, config: &Value) -> (u16, Value) {
        patch_at(c, target, APPLY, &config.to_string())
    }

    /// The Secret the agent applies: `s` in `openbao`, with `data`.
    fn secret_config(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": "s", "namespace": "openbao", "labels": {"app": "openbao"}},
               "data": data})
    }

    fn cluster_with_namespace() -> Cluster {
        let mut c = Cluster::default();
        let ns = c.stamp(active_namespace("openbao"));
        c.objects.insert("/api/v1/namespaces/openbao".into(), ns);
        c
    }

    fn target(query: &str) -> String {
        format!("{SECRET}{query}")
    }

    #[test]
    fn apply_creates_a_secret_owned_by_the_applier() {
        let mut c = cluster_with_namespace();
        let config = secret_config(json!({"token": "QUFB"}));
        let (code, obj) = ssa(&mut c, &target(APPLIER), &config);
        assert_eq!(code, 201, "{obj}");
        assert_eq!(obj["type"], "Opaque");
        assert_eq!(obj["data"], json!({"token": "QUFB"}));
        assert_eq!(obj["metadata"]["labels"], json!({"app": "openbao"}));
        for field in ["uid", "creationTimestamp", "resourceVersion"] {
            assert!(obj["metadata"][field].is_string(), "{field}: {obj}");
        }
        assert_eq!(
            obj["metadata"]["managedFields"],
            json!([{"manager": "catalyst-bootstrap", "operation": "Apply", "apiVersion": "v1",
                    "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:data": {".": {}, "f:token": {}},
                                 "f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}])
        );
        assert!(obj["metadata"].get("annotations").is_none(), "{obj}");
        assert_eq!(c.objects[SECRET], obj);
        assert_eq!(c.creations[SECRET], 1);
    }

    #[test]
    fn apply_again_updates_what_changed_and_drops_what_was_omitted() {
        let mut c = cluster_with_namespace();
        let first = secret_config(json!({"token": "QUFB", "old": "QUFB"}));
        let (_, created) = ssa(&mut c, &target(APPLIER), &first);
        let uid = created["metadata"]["uid"].clone();
        let version = |o: &Value| {
            o["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };

        // The same configuration again changes nothing, not even the version.
        let (code, same) = ssa(&mut c, &target(APPLIER), &first);
        assert_eq!((code, &same), (200, &created));

        let second = secret_config(json!({"token": "QkJC"}));
        let (code, updated) = ssa(&mut c, &target(APPLIER), &second);
        assert_eq!(code, 200, "{updated}");
        assert_eq!(
            updated["data"],
            json!({"token": "QkJC"}),
            "old was applied, then omitted"
        );
        assert_eq!(version(&updated), version(&created) + 1);
        assert_eq!(updated["metadata"]["uid"], uid);
        assert_eq!(
            updated["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            updated["metadata"]["managedFields"][0]["fieldsV1"]["f:data"],
            json!({".": {}, "f:token": {}})
        );
        assert!(
            updated["metadata"].get("annotations").is_none(),
            "{updated}"
        );
        assert_eq!(c.creations[SECRET], 1);
    }

    #[test]
    fn an_omitted_field_another_manager_owns_stays() {
        let mut c = cluster_with_namespace();
        ssa(
            &mut c,
            &target(APPLIER),
            &secret_config(json!({"token": "QUFB", "shared": "QUFB"})),
        );
        let other = "?fieldManager=other&force=true";
        let (code, _) = ssa(
            &mut c,
            &target(other),
            &secret_config(json!({"shared": "QUFB"})),
        );
        assert_eq!(code, 200);
        let (_, obj) = ssa(
            &mut c,
            &target(APPLIER),
            &secret_config(json!({"token": "QUFB"})),
        );
        assert_eq!(obj["data"], json!({"token": "QUFB", "shared": "QUFB"}));
    }

    #[test]
    fn apply_conflicts_with_another_manager_unless_forced() {
        let mut c = cluster_with_namespace();
        let stored = c.stamp(managed_by(
            opaque_secret("openbao", "s", json!({"token": "QUFB"})),
            "kubectl",
        ));
        c.objects.insert(SECRET.into(), stored.clone());
        let config = secret_config(json!({"token": "QkJC"}));

        let (code, refused) = ssa(&mut c, &target("?fieldManager=catalyst-bootstrap"), &config);
        assert_eq!((code, refused["reason"].as_str()), (409, Some("Conflict")));
        let by = r#"conflict with "kubectl" using v1 at 2026-01-01T00:00:00Z"#;
        assert_eq!(
            refused["message"],
            format!("Apply failed with 1 conflict: {by}: .data.token")
        );
        assert_eq!(
            refused["details"]["causes"],
            json!([{"type": "FieldManagerConflict", "message": by, "field": ".data.token"}])
        );
        assert_eq!(c.objects[SECRET], stored, "unchanged");
        let (code, _) = ssa(
            &mut c,
            &target("?fieldManager=catalyst-bootstrap&force=false"),
            &config,
        );
        assert_eq!(code, 409);

        // The same value is no conflict: the field is shared.
        let (code, shared) = ssa(
            &mut c,
            &target("?fieldManager=catalyst-bootstrap"),
            &secret_config(json!({"token": "QUFB"})),
        );
        assert_eq!(code, 200, "{shared}");

        let (code, forced) = ssa(&mut c, &target(APPLIER), &config);
        assert_eq!(code, 200, "{forced}");
        assert_eq!(forced["data"], json!({"token": "QkJC"}));
        let entries = forced["metadata"]["managedFields"].as_array().unwrap();
        let kubectl = entries.iter().find(|e| e["manager"] == "kubectl").unwrap();
        assert_eq!(
            kubectl["fieldsV1"],
            json!({"f:data": {".": {}}, "f:type": {}}),
            "token taken over"
        );
        let mine = entries
            .iter()
            .find(|e| e["manager"] == "catalyst-bootstrap")
            .unwrap();
        assert_eq!(mine["operation"], "Apply");
    }

    #[test]
    fn conflicts_with_several_managers_are_listed_by_manager() {
        let entries = vec![
            managed_entry("kubectl", "Update", "v1", json!({})),
            managed_entry("helm", "Apply", "v1", json!({})),
        ];
        let path = |k: &str| vec!["data".to_string(), k.to_string()];
        let (_, refused) =
            apply_conflict(&entries, &[(0, path("a")), (1, path("b")), (0, path("c"))]);
        assert_eq!(
            refused["message"],
            "Apply failed with 3 conflicts: conflicts with \"helm\":\n- .data.b\n\
             conflicts with \"kubectl\" using v1 at 2026-01-01T00:00:00Z:\n- .data.a\n- .data.c"
        );
    }

    #[test]
    fn apply_refusals() {
        let mut c = cluster_with_namespace();
        let config = secret_config(json!({"token": "QUFB"}));
        let (code, obj) = ssa(&mut c, SECRET, &config);
        assert_eq!((code, obj["reason"].as_str()), (422, Some("Invalid")));
        assert_eq!(
            obj["message"],
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
        );
        let (code, obj) = patch_at(&mut c, &target("?force=true"), MERGE, "{}");
        assert_eq!(code, 422);
        assert_eq!(
            obj["message"],
            "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
        );
        let mut wrong_kind = config.clone();
        wrong_kind["kind"] = "ConfigMap".into();
        let (code, obj) = ssa(&mut c, &target(APPLIER), &wrong_kind);
        assert_eq!(
            (code, obj["message"].as_str()),
            (400, Some("invalid object type: /v1, Kind=ConfigMap"))
        );
        let mut wrong_name = config.clone();
        wrong_name["metadata"]["name"] = "t".into();
        let (code, obj) = ssa(&mut c, &target(APPLIER), &wrong_name);
        assert_eq!(
            (code, obj["message"].as_str()),
            (
                400,
                Some("the name of the object (t) does not match the name on the URL (s)")
            )
        );
        let mut wrong_ns = config.clone();
        wrong_ns["metadata"]["namespace"] = "other".into();
        let (code, _) = ssa(&mut c, &target(APPLIER), &wrong_ns);
        assert_eq!(code, 400);
        let (code, obj) = patch_at(&mut c, &target(APPLIER), APPLY, "data: [unclosed");
        assert_eq!(code, 400, "{obj}");
        assert!(
            obj["message"]
                .as_str()
                .unwrap()
                .starts_with("error decoding YAML: ")
        );
        let (code, _) = ssa(
            &mut c,
            &target(APPLIER),
            &secret_config(json!({"token": "not base64!"})),
        );
        assert_eq!(code, 400);
        assert!(!c.objects.contains_key(SECRET));

        c.objects.clear();
        let (code, obj) = ssa(&mut c, &target(APPLIER), &config);
        assert_eq!(
            (code, obj["message"].as_str()),
            (404, Some("namespaces \"openbao\" not found"))
        );
        let mut c = cluster_with_namespace();
        c.objects.get_mut("/api/v1/namespaces/openbao").unwrap()["status"]["phase"] =
            "Terminating".into();
        let (code, obj) = ssa(&mut c, &target(APPLIER), &config);
        assert_eq!(
            (code, obj["message"].as_str()),
            (
                403,
                Some(
                    "secrets \"s\" is forbidden: unable to create new content in namespace openbao because it is being terminated"
                )
            )
        );
        assert!(!c.objects.contains_key(SECRET));
    }

    #[test]
    fn apply_parses_yaml_and_stores_string_data_as_data() {
        let mut c = cluster_with_namespace();
        let yaml =
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  token: AAA\n";
        let (code, obj) = patch_at(&mut c, &target(APPLIER), APPLY, yaml);
        assert_eq!(code, 201, "{obj}");
        assert_eq!(obj["data"], json!({"token": "QUFB"}));
        assert!(obj.get("stringData").is_none());
        assert_eq!(obj["metadata"]["namespace"], "openbao");
    }

    #[test]
    fn an_immutable_secret_keeps_its_data() {
        let mut c = cluster_with_namespace();
        let mut config = secret_config(json!({"token": "QUFB"}));
        config["immutable"] = true.into();
        let (code, _) = ssa(&mut c, &target(APPLIER), &config);
        assert_eq!(code, 201);
        let (code, _) = ssa(&mut c, &target(APPLIER), &config);
        assert_eq!(code, 200, "applying the same data again is fine");
        config["data"]["token"] = "QkJC".into();
        let (code, obj) = ssa(&mut c, &target(APPLIER), &config);
        assert_eq!((code, obj["reason"].as_str()), (422, Some("Invalid")));
        assert_eq!(
            obj["message"],
            "Secret \"s\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
        );
        assert_eq!(c.objects[SECRET]["data"], json!({"token": "QUFB"}));
        let (code, _) = patch(&mut c, MERGE, r#"{"data":{"token":"QkJC"}}"#);
        assert_eq!(code, 422, "a merge patch neither");
    }

    #[test]
    fn apply_creates_and_keeps_a_namespace() {
        let mut c = Cluster::default();
        let path = "/api/v1/namespaces/openbao";
        let config = json!({"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": "openbao", "labels": {"team": "platform"}}});
        let (code, created) = ssa(&mut c, &format!("{path}{APPLIER}"), &config);
        assert_eq!(code, 201, "{created}");
        assert_eq!(created["status"], json!({"phase": "Active"}));
        assert_eq!(created["spec"], json!({"finalizers": ["kubernetes"]}));
        assert_eq!(
            created["metadata"]["managedFields"][0]["operation"],
            "Apply"
        );
        let (code, kept) = ssa(&mut c, &format!("{path}{APPLIER}"), &config);
        assert_eq!((code, &kept), (200, &created));
        let (code, _) = patch_at(&mut c, path, MERGE, "{}");
        assert_eq!(code, 415, "only apply for namespaces");
    }

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

    /// `GET path`, as `handle` routes it.
    fn get_at(c: &mut Cluster, path: &str) -> (u16, Value) {
        let req = Req {
            content_type: "",
            manager: "kubectl",
            query: "",
        };
        route(c, &Method::GET, path, b"", None, &req)
    }

    const GIT_REPOSITORIES: &str = "/apis/source.toolkit.fluxcd.io/v1";
    const OPENOVA: &str =
        "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/openova";
    const PROVIDER_HCLOUD: &str = "/apis/pkg.crossplane.io/v1/providers/provider-hcloud";

    fn git_repository(url: &str) -> Value {
        json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
               "metadata": {"name": "openova", "namespace": "flux-system"},
               "spec": {"interval": "1m", "url": url, "ref": {"branch": "main"}}})
    }

    fn provider() -> Value {
        json!({"apiVersion": "pkg.crossplane.io/v1", "kind": "Provider",
               "metadata": {"name": "provider-hcloud"},
               "spec": {"package": "xpkg.upbound.io/crossplane-contrib/provider-hcloud:v0.1.0"}})
    }

    /// A cluster with `flux-system` and the given CRDs, Established from `at`.
    fn cluster_with_crds(crds: &[Crd], at: Instant) -> Cluster {
        let mut c = Cluster::default();
        let ns = c.stamp(active_namespace("flux-system"));
        c.objects
            .insert("/api/v1/namespaces/flux-system".into(), ns);
        c.crds = crds.iter().map(|crd| (*crd, at)).collect();
        c
    }

    fn names(list: &Value) -> Vec<&str> {
        list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn a_crd_is_served_once_established() {
        let later = Instant::now() + Duration::from_secs(3600);
        let mut c = cluster_with_crds(&[GIT_REPOSITORY, PROVIDER], later);
        let unknown = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "the server could not find the requested resource",
            "reason": "NotFound", "details": {}, "code": 404});
        assert_eq!(get_at(&mut c, GIT_REPOSITORIES), (404, unknown.clone()));
        assert_eq!(
            get_at(&mut c, "/apis/source.toolkit.fluxcd.io"),
            (404, unknown.clone())
        );
        let (code, groups) = get_at(&mut c, "/apis");
        assert_eq!(code, 200);
        assert_eq!(groups["groups"].as_array().unwrap().len(), 1, "{groups}");
        assert_eq!(groups["groups"][0]["name"], "events.k8s.io");
        // Requests under the group are unknown paths too.
        let (code, obj) = ssa(&mut c, &format!("{OPENOVA}{APPLIER}"), &git_repository("u"));
        assert_eq!((code, &obj), (404, &unknown));
        assert_eq!(get_at(&mut c, OPENOVA), (404, unknown));

        for (_, at) in &mut c.crds {
            *at = Instant::now();
        }
        let (code, list) = get_at(&mut c, GIT_REPOSITORIES);
        assert_eq!(code, 200, "{list}");
        assert_eq!(list["kind"], "APIResourceList");
        assert_eq!(list["groupVersion"], "source.toolkit.fluxcd.io/v1");
        assert_eq!(
            list["resources"][0],
            json!({"name": "gitrepositories", "singularName": "gitrepository", "namespaced": true,
                   "kind": "GitRepository",
                   "verbs": ["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"]})
        );
        assert_eq!(names(&list), ["gitrepositories", "gitrepositories/status"]);
        let (_, list) = get_at(&mut c, "/apis/pkg.crossplane.io/v1");
        assert_eq!(list["resources"][0]["namespaced"], false);
        let (_, groups) = get_at(&mut c, "/apis");
        let groups: Vec<&Value> = groups["groups"].as_array().unwrap().iter().collect();
        let group_names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
        assert_eq!(
            group_names,
            [
                "events.k8s.io",
                "pkg.crossplane.io",
                "source.toolkit.fluxcd.io"
            ]
        );
        assert_eq!(
            groups[2]["preferredVersion"],
            json!({"groupVersion": "source.toolkit.fluxcd.io/v1", "version": "v1"})
        );
        let (code, obj) = ssa(&mut c, &format!("{OPENOVA}{APPLIER}"), &git_repository("u"));
        assert_eq!(code, 201, "{obj}");
    }

    #[test]
    fn core_discovery_lists_what_the_agent_applies() {
        let mut c = Cluster::default();
        let (code, list) = get_at(&mut c, "/api/v1");
        assert_eq!((code, &list["groupVersion"]), (200, &json!("v1")));
        let resource = |name: &str| {
            list["resources"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("{name} in {list}"))
        };
        assert_eq!(resource("namespaces")["namespaced"], false);
        assert_eq!(resource("namespaces")["kind"], "Namespace");
        for (name, kind) in [
            ("configmaps", "ConfigMap"),
            ("secrets", "Secret"),
            ("serviceaccounts", "ServiceAccount"),
        ] {
            let r = resource(name);
            assert_eq!((&r["kind"], &r["namespaced"]), (&json!(kind), &json!(true)));
            assert!(
                r["verbs"].as_array().unwrap().contains(&json!("patch")),
                "{r}"
            );
        }
        assert_eq!(resource("namespaces/status")["kind"], "Namespace");
        let (code, _) = get_at(&mut c, "/apis/source.toolkit.fluxcd.io/v1");
        assert_eq!(code, 404);
    }

    #[test]
    fn apply_of_a_namespaced_custom_object() {
        let mut c = cluster_with_crds(&[GIT_REPOSITORY], Instant::now());
        let config = git_repository("https://github.com/openova-io/openova");
        let (code, created) = ssa(&mut c, &format!("{OPENOVA}{APPLIER}"), &config);
        assert_eq!(code, 201, "{created}");
        assert_eq!(c.objects[OPENOVA], created);
        assert_eq!(created["spec"], config["spec"]);
        assert_eq!(created["metadata"]["namespace"], "flux-system");
        assert_eq!(created["metadata"]["generation"], 1);
        for field in ["uid", "creationTimestamp", "resourceVersion"] {
            assert!(created["metadata"][field].is_string(), "{field}: {created}");
        }
        assert_eq!(
            created["metadata"]["managedFields"],
            json!([{"manager": "catalyst-bootstrap", "operation": "Apply",
                    "apiVersion": "source.toolkit.fluxcd.io/v1",
                    "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:spec": {".": {}, "f:interval": {}, "f:ref": {".": {}, "f:branch": {}},
                                            "f:url": {}}}}])
        );
        let (code, same) = ssa(&mut c, &format!("{OPENOVA}{APPLIER}"), &config);
        assert_eq!((code, &same), (200, &created));

        let mut moved = git_repository("https://example.org/openova");
        moved["status"] = json!({"ready": true});
        let (code, updated) = ssa(&mut c, &format!("{OPENOVA}{APPLIER}"), &moved);
        assert_eq!(code, 200, "{updated}");
        assert_eq!(updated["metadata"]["generation"], 2);
        assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
        assert!(
            updated.get("status").is_none(),
            "status is the subresource's"
        );
        let version = |o: &Value| {
            o["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse::<u64>()
        };
        assert!(version(&updated).unwrap() > version(&created).unwrap());
        assert_eq!(c.creations[OPENOVA], 1);

        let (code, list) = get_at(
            &mut c,
            "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories",
        );
        assert_eq!((code, &list["kind"]), (200, &json!("GitRepositoryList")));
        assert_eq!(list["items"], json!([updated]));
        let (code, all) = get_at(&mut c, "/apis/source.toolkit.fluxcd.io/v1/gitrepositories");
        assert_eq!((code, &all["items"]), (200, &list["items"]));
    }

    #[test]
    fn apply_of_a_cluster_scoped_custom_object() {
        let mut c = cluster_with_crds(&[PROVIDER], Instant::now());
        let mut config = provider();
        // A namespace in the body of a cluster-scoped object is dropped.
        config["metadata"]["namespace"] = "flux-system".into();
        let (code, created) = ssa(&mut c, &format!("{PROVIDER_HCLOUD}{APPLIER}"), &config);
        assert_eq!(code, 201, "{created}");
        assert!(created["metadata"].get("namespace").is_none(), "{created}");
        assert_eq!(created["metadata"]["generation"], 1);
        assert_eq!(c.objects[PROVIDER_HCLOUD], created);
        let (code, got) = get_at(&mut c, PROVIDER_HCLOUD);
        assert_eq!((code, &got), (200, &created));
        // The scope is the CRD's: no providers in a namespace.
        let in_namespace =
            "/apis/pkg.crossplane.io/v1/namespaces/flux-system/providers/provider-hcloud";
        let (code, obj) = ssa(&mut c, &format!("{in_namespace}{APPLIER}"), &provider());
        assert_eq!(
            (code, obj["message"].as_str()),
            (
                404,
                Some("the server could not find the requested resource")
            )
        );
        let (code, obj) = get_at(&mut c, "/apis/pkg.crossplane.io/v1/providers/other");
        assert_eq!(
            (code, obj["message"].as_str()),
            (404, Some("providers.pkg.crossplane.io \"other\" not found"))
        );
    }

    #[test]
    fn apply_in_a_missing_namespace_is_not_found() {
        let mut c = cluster_with_crds(&[GIT_REPOSITORY], Instant::now());
        c.objects.clear();
        let (code, obj) = ssa(&mut c, &format!("{OPENOVA}{APPLIER}"), &git_repository("u"));
        assert_eq!((code, obj["reason"].as_str()), (404, Some("NotFound")));
        assert_eq!(obj["message"], "namespaces \"flux-system\" not found");
        assert!(c.objects.is_empty());
        let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": "x"}, "data": {"a": "b"}});
        let (code, obj) = ssa(
            &mut c,
            &format!("/api/v1/namespaces/default/configmaps/x{APPLIER}"),
            &configmap,
        );
        assert_eq!(
            (code, &obj["message"]),
            (404, &json!("namespaces \"default\" not found"))
        );
    }

    #[test]
    fn apply_with_another_kind_or_identity_is_a_bad_request() {
        let mut c = cluster_with_crds(&[GIT_REPOSITORY, KUSTOMIZATION], Instant::now());
        let at = format!("{OPENOVA}{APPLIER}");
        let bad = |c: &mut Cluster, config: &Value| {
            let (code, obj) = ssa(c, &at, config);
            assert_eq!(
                (code, obj["reason"].as_str()),
                (400, Some("BadRequest")),
                "{obj}"
            );
            obj["message"].as_str().unwrap().to_string()
        };
        for (field, value, message) in [
            (
                "/kind",
                "Kustomization",
                "invalid object type: source.toolkit.fluxcd.io/v1, Kind=Kustomization",
            ),
            (
                "/apiVersion",
                "source.toolkit.fluxcd.io/v1beta2",
                "invalid object type: source.toolkit.fluxcd.io/v1beta2, Kind=GitRepository",
            ),
            (
                "/apiVersion",
                "v1",
                "invalid object type: /v1, Kind=GitRepository",
            ),
            (
                "/metadata/name",
                "other",
                "the name of the object (other) does not match the name on the URL (openova)",
            ),
            (
                "/metadata/namespace",
                "default",
                "the namespace of the object (default) does not match the namespace on the request (flux-system)",
            ),
        ] {
            let mut config = git_repository("u");
            *config.pointer_mut(field).unwrap() = value.into();
            assert_eq!(bad(&mut c, &config), message, "{field}");
        }
        let (code, _) = patch_at(&mut c, &at, APPLY, "spec: [unclosed");
        assert_eq!(code, 400);
        assert!(!c.objects.contains_key(OPENOVA));
    }

    #[test]
    fn apply_and_create_of_core_kinds() {
        let mut c = cluster_with_namespace();
        let path = "/api/v1/namespaces/openbao/configmaps/settings";
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
                            "metadata": {"name": "settings"}, "data": {"stringData": "kept"}});
        let (code, created) = ssa(&mut c, &format!("{path}{APPLIER}"), &config);
        assert_eq!(code, 201, "{created}");
        assert_eq!(
            created["data"],
            json!({"stringData": "kept"}),
            "no Secret rules"
        );
        assert!(created["metadata"].get("generation").is_none(), "{created}");
        let account =
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "agent"}});
        let (code, created) = route(
            &mut c,
            &Method::POST,
            "/api/v1/namespaces/openbao/serviceaccounts",
            account.to_string().as_bytes(),
            Some(account.clone()),
            &Req {
                content_type: "application/json",
                manager: "kubectl",
                query: "",
            },
        );
        assert_eq!(code, 201, "{created}");
        assert_eq!(created["metadata"]["namespace"], "openbao");
        assert_eq!(
            created["metadata"]["managedFields"][0]["operation"],
            "Update"
        );
        assert_eq!(
            get_at(&mut c, "/api/v1/namespaces/openbao/serviceaccounts/agent"),
            (200, created)
        );
        let (code, _) = get_at(&mut c, "/api/v1/configmaps/settings");
        assert_eq!(code, 404, "a namespaced object outside a namespace");
    }

    #[test]
    fn versions_in_kubernetes_order() {
        let mut versions = [
            "v1alpha1", "v2beta1", "v1", "v1beta2", "v2", "foo", "v1beta1",
        ];
        versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(
            versions,
            [
                "v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "foo"
            ]
        );
    }

    #[test]
    fn paths_are_located_as_the_api_server_reads_them() {
        type Parts<'a> = (
            &'a str,
            Option<&'a str>,
            &'a str,
            Option<&'a str>,
            Option<&'a str>,
        );
        fn at(path: &str) -> Option<Parts<'_>> {
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            locate(&parts).map(|l| (l.group, l.namespace, l.resource, l.name, l.subresource))
        }
        assert_eq!(
            at("/api/v1/namespaces/x"),
            Some(("", None, "namespaces", Some("x"), None))
        );
        assert_eq!(
            at("/api/v1/namespaces/x/status"),
            Some(("", None, "namespaces", Some("x"), Some("status")))
        );
        assert_eq!(
            at("/api/v1/namespaces/x/secrets"),
            Some(("", Some("x"), "secrets", None, None))
        );
        assert_eq!(
            at(PROVIDER_HCLOUD),
            Some((
                "pkg.crossplane.io",
                None,
                "providers",
                Some("provider-hcloud"),
                None
            ))
        );
        assert_eq!(at("/apis/pkg.crossplane.io/v1"), None);
        assert_eq!(at("/api/v1/namespaces/x/secrets/s/a/b"), None);
        assert_eq!(at("/api/v1/namespaces//secrets"), None);
    }

    /// Over the wire, with the time the CRD takes to become Established.
    #[tokio::test]
    async fn add_crd_serves_it_after_the_delay() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pki = Arc::new(crate::pki::Pki::new(&["127.0.0.1"]));
        let api = FakeApiServer::start(pki, true, true);
        api.add_crd(KUSTOMIZATION, Duration::from_millis(300));
        let path = "/apis/kustomize.toolkit.fluxcd.io/v1";
        let (code, body) = api.fetch(path).await;
        assert_eq!(code, 404, "{body}");
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (code, body) = api.fetch(path).await;
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(r#""name":"kustomizations""#), "{body}");
        api.add_crd(PROVIDER_CONFIG, Duration::ZERO);
        let (code, body) = api.fetch("/apis/hcloud.crossplane.io/v1beta1").await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(api.object(PROVIDER_HCLOUD), None);
    }
}
