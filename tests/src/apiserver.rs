//! A fake Kubernetes API server with the behaviour the agent depends on:
//! TLS with client-certificate auth, `/readyz` and `/healthz`, namespaces
//! and Secrets (create, get, JSON merge patch, delete), Terminating
//! namespaces, `managedFields` on Secrets, and `metav1.Status` errors with
//! the real reasons, messages and codes; `events.k8s.io/v1` Events
//! (create with the real validation, list, get).
//! Faults are scripted per request.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
            let mut c = cluster.lock().unwrap();
            let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}, "status": {"phase": "Active"}});
            let ns = c.stamp(ns);
            c.objects
                .insert("/api/v1/namespaces/kube-system".into(), ns);
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
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace}, "data": data});
        self.insert(
            &format!("/api/v1/namespaces/{namespace}/secrets/{name}"),
            secret,
        );
    }

    /// An Active namespace, as if someone had created it earlier.
    pub fn insert_namespace(&self, name: &str) {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "status": {"phase": "Active"}});
        self.insert(&format!("/api/v1/namespaces/{name}"), ns);
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
        list(
            &c,
            &format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events"),
        )
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

    /// Finishes a termination: the namespace and everything in it are gone.
    pub fn finish_termination(&self, ns: &str) {
        let prefix = format!("/api/v1/namespaces/{ns}");
        self.lock()
            .objects
            .retain(|k, _| k != &prefix && !k.starts_with(&format!("{prefix}/")));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap()
    }
}

impl Cluster {
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
    // The API server's default field manager: the user agent up to its first '/'.
    let manager = match header(http::header::USER_AGENT).split('/').next() {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => "unknown".to_string(),
    };
    let body: Option<Value> = serde_json::from_slice(req.body()).ok();
    let fault = {
        let mut c = state.lock().unwrap();
        c.requests.push(Recorded {
            method: method.clone(),
            path: path.clone(),
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

/// What `route` needs from the request's headers.
struct Req<'a> {
    content_type: &'a str,
    /// The field manager `managedFields` records.
    manager: &'a str,
}

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
        ("GET", ["apis"]) => (
            200,
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
            "name": "coordination.k8s.io",
            "versions": [{"groupVersion": "coordination.k8s.io/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "coordination.k8s.io/v1", "version": "v1"}}, {
            "name": "events.k8s.io",
            "versions": [{"groupVersion": "events.k8s.io/v1", "version": "v1"}],
            "preferredVersion": {"groupVersion": "events.k8s.io/v1", "version": "v1"}}]}),
        ),
        ("GET", ["apis", "events.k8s.io", "v1"]) => (
            200,
            resource_list("events.k8s.io/v1", &[("events", "Event", true, "ev")]),
        ),
        ("POST", ["apis", "events.k8s.io", "v1", "namespaces", ns, "events"]) => {
            create_event(c, path, ns, raw, body)
        }
        ("GET", ["apis", "events.k8s.io", "v1", "namespaces", _, "events"]) => (
            200,
            json!({"kind": "EventList", "apiVersion": "events.k8s.io/v1",
                   "metadata": {"resourceVersion": c.resource_version.to_string()},
                   "items": list(c, path)}),
        ),
        (
            "GET",
            [
                "apis",
                "events.k8s.io",
                "v1",
                "namespaces",
                _,
                "events",
                name,
            ],
        ) => get(c, path, "events.events.k8s.io", name),
        ("GET", ["api", "v1"]) => (
            200,
            resource_list(
                "v1",
                &[
                    ("namespaces", "Namespace", false, "ns"),
                    ("secrets", "Secret", true, ""),
                ],
            ),
        ),
        ("GET", ["apis", "coordination.k8s.io", "v1"]) => (
            200,
            resource_list("coordination.k8s.io/v1", &[("leases", "Lease", true, "")]),
        ),
        ("GET", ["openapi", "v3"]) => (
            200,
            json!({"paths": {
            "api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=0"}}}),
        ),
        ("GET", ["openapi", "v3", "api", "v1"]) => (200, openapi_v1()),
        ("POST", ["api", "v1", "namespaces"]) => {
            let Some(obj) = checked_body(raw, body, "Namespace", None) else {
                return bad_request();
            };
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            create(
                c,
                &format!("/api/v1/namespaces/{name}"),
                "namespaces",
                &name,
                obj,
                |o| {
                    o["spec"] = json!({"finalizers": ["kubernetes"]});
                    o["status"] = json!({"phase": "Active"});
                },
            )
        }
        ("GET", ["api", "v1", "namespaces", ns]) => get(c, path, "namespaces", ns),
        ("DELETE", ["api", "v1", "namespaces", ns]) => match c.objects.get_mut(path) {
            Some(obj) => {
                obj["status"]["phase"] = "Terminating".into();
                (200, obj.clone())
            }
            None => not_found("namespaces", ns),
        },
        ("POST", ["api", "v1", "namespaces", ns, "secrets"]) => {
            let Some(obj) = checked_body(raw, body, "Secret", Some(ns)) else {
                return bad_request();
            };
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            match c.objects.get(&format!("/api/v1/namespaces/{ns}")) {
                None => return not_found("namespaces", ns),
                Some(n) if n["status"]["phase"] == "Terminating" => {
                    let msg = format!(
                        "secrets \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated"
                    );
                    return (
                        403,
                        status(
                            403,
                            "Forbidden",
                            &msg,
                            json!({"name": name, "kind": "secrets"}),
                        ),
                    );
                }
                Some(_) => {}
            }
            if let Some(refused) = invalid_secret_data(&obj) {
                return refused;
            }
            let fields = fields_v1(&obj);
            create(
                c,
                &format!("/api/v1/namespaces/{ns}/secrets/{name}"),
                "secrets",
                &name,
                obj,
                |o| {
                    if o.get("type").is_none() {
                        o["type"] = "Opaque".into();
                    }
                    o["metadata"]["managedFields"] = json!([managed_entry(req.manager, fields)]);
                },
            )
        }
        ("GET", ["api", "v1", "namespaces", _, "secrets", name]) => get(c, path, "secrets", name),
        ("PATCH", ["api", "v1", "namespaces", _, "secrets", name]) => {
            patch_secret(c, path, name, raw, req)
        }
        (
            "POST",
            [
                "apis",
                "coordination.k8s.io",
                "v1",
                "namespaces",
                ns,
                "leases",
            ],
        ) => {
            let Some(obj) = checked_body(raw, body, "Lease", Some(ns)) else {
                return bad_request();
            };
            if !c.objects.contains_key(&format!("/api/v1/namespaces/{ns}")) {
                return not_found("namespaces", ns);
            }
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            create(
                c,
                &format!("{path}/{name}"),
                "leases.coordination.k8s.io",
                &name,
                obj,
                |_| {},
            )
        }
        (
            "GET",
            [
                "apis",
                "coordination.k8s.io",
                "v1",
                "namespaces",
                _,
                "leases",
                name,
            ],
        ) => get(c, path, "leases.coordination.k8s.io", name),
        (
            "PUT",
            [
                "apis",
                "coordination.k8s.io",
                "v1",
                "namespaces",
                ns,
                "leases",
                name,
            ],
        ) => {
            let Some(obj) = checked_body(raw, body, "Lease", Some(ns)) else {
                return bad_request();
            };
            update(c, path, "leases.coordination.k8s.io", name, obj)
        }
        ("DELETE", ["api", "v1", "namespaces", _, "secrets", name]) => match c.objects.remove(path)
        {
            Some(obj) => (200, obj),
            None => not_found("secrets", name),
        },
        _ => (
            404,
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
                json!({}),
            ),
        ),
    }
}

/// The objects under the collection at `path`, oldest first.
fn list(c: &Cluster, path: &str) -> Vec<Value> {
    let prefix = format!("{path}/");
    let mut items: Vec<Value> = c
        .objects
        .iter()
        .filter(|(k, _)| k.starts_with(&prefix) && !k[prefix.len()..].contains('/'))
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

/// Legacy discovery (`metav1.APIResourceList`): what kubectl reads to map
/// kinds to resources.
fn resource_list(group_version: &str, resources: &[(&str, &str, bool, &str)]) -> Value {
    let resources: Vec<Value> = resources
        .iter()
        .map(|(name, kind, namespaced, short)| {
            json!({"name": name, "singularName": kind.to_lowercase(), "namespaced": namespaced,
                   "kind": kind, "shortNames": if short.is_empty() { vec![] } else { vec![*short] },
                   "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
        })
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources})
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
    (
        400,
        status(
            400,
            "BadRequest",
            "the body of the request was in an unknown format",
            json!({}),
        ),
    )
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

/// A replace, conditional on `metadata.resourceVersion` when the body has
/// one, as the API server does it: a stale version is `409 Conflict`.
fn update(c: &mut Cluster, key: &str, kind: &str, name: &str, mut obj: Value) -> (u16, Value) {
    let Some(stored) = c.objects.get(key) else {
        return not_found(kind, name);
    };
    if obj["metadata"]["name"] != name {
        return bad_request();
    }
    let current = stored["metadata"]["resourceVersion"].clone();
    let given = &obj["metadata"]["resourceVersion"];
    if !given.is_null() && *given != current {
        let msg = format!(
            "Operation cannot be fulfilled on {kind} \"{name}\": the object has been modified; \
             please apply your changes to the latest version and try again"
        );
        return (
            409,
            status(409, "Conflict", &msg, json!({"name": name, "kind": kind})),
        );
    }
    for field in ["uid", "creationTimestamp"] {
        obj["metadata"][field] = stored["metadata"][field].clone();
    }
    c.resource_version += 1;
    obj["metadata"]["resourceVersion"] = c.resource_version.to_string().into();
    c.objects.insert(key.to_string(), obj.clone());
    (200, obj)
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

/// `PATCH` of a Secret as the API server does it for
/// `application/merge-patch+json` (RFC 7386): the patch is merged into the
/// stored object, a `metadata.resourceVersion` in it is a precondition
/// (stale: 409 Conflict), and the version only moves when something
/// changed. Strategic merge and JSON patch are not implemented (415, as for
/// any media type the server does not accept).
fn patch_secret(c: &mut Cluster, key: &str, name: &str, raw: &[u8], req: &Req) -> (u16, Value) {
    let media_type = req.content_type.split(';').next().unwrap_or("").trim();
    if media_type != "application/merge-patch+json" {
        return (
            415,
            status(
                415,
                "UnsupportedMediaType",
                &format!(
                    "the body of the request was in an unknown format - accepted media types include: \
                     application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml \
                     (this fake: application/merge-patch+json only; got {media_type:?})"
                ),
                json!({}),
            ),
        );
    }
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
            return (
                400,
                status(
                    400,
                    "BadRequest",
                    &format!("metadata.{field} cannot be changed by a patch"),
                    json!({}),
                ),
            );
        }
    }
    if let Some(refused) = invalid_secret_data(&merged) {
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
    let entry = managed_entry(req.manager, fields_v1(&fields));
    match merged["metadata"]["managedFields"].as_array_mut() {
        Some(entries) => entries.push(entry),
        None => merged["metadata"]["managedFields"] = json!([entry]),
    }
    c.resource_version += 1;
    merged["metadata"]["resourceVersion"] = c.resource_version.to_string().into();
    c.objects.insert(key.to_string(), merged.clone());
    (200, merged)
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

/// A `managedFields` entry as the API server writes it for a create or an
/// update (patches are updates).
fn managed_entry(manager: &str, fields: Value) -> Value {
    json!({"manager": manager, "operation": "Update", "apiVersion": "v1",
           "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields})
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
        let req = Req {
            content_type,
            manager: "catalyst-bootstrap",
        };
        let parsed = serde_json::from_str(body).ok();
        route(c, &Method::PATCH, SECRET, body.as_bytes(), parsed, &req)
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
}
