//! A fake catalyst-api implementing the kubeconfig handler of the contract
//! (docs/contract.md §3), in its order of checks, over TLS. Requests can be
//! scripted one by one: an answer, a delay, or a connection dropped after
//! the kubeconfig was stored.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;

use crate::http::{Answer, Handler, Server, respond, respond_dripping, respond_stalling};
use crate::pki::CertSwitch;
use crate::pki::Pki;

pub const MAX_BODY: usize = 1 << 20;

#[derive(Debug, Clone)]
pub enum Step {
    /// Answer this instead of handling the request.
    Respond {
        status: u16,
        body: String,
        retry_after: Option<String>,
    },
    /// Handle the request normally after a delay.
    Delay(Duration),
    /// Handle (and store) normally, then close the connection unanswered.
    StoreThenDrop,
    /// Handle (and store) normally, then wait before answering.
    StoreThenDelay(Duration),
    /// Answer `status` with a JSON error body that stalls halfway for a while.
    SlowBody { status: u16, stall: Duration },
    /// A redirect to `location`.
    Redirect { status: u16, location: String },
    /// Answer `status` with an error whose detail repeats the request (its
    /// Authorization header and body), `spacer` put in after every ten
    /// characters: an echo server behind a line-wrapping or "sanitising"
    /// proxy.
    Echo { status: u16, spacer: &'static str },
    /// Answer `status` with an error body that comes one byte every `every`.
    Drip { status: u16, every: Duration },
}

impl Step {
    pub fn error(status: u16, code: &str) -> Step {
        Step::Respond {
            status,
            body: format!(r#"{{"error":"{code}","detail":"scripted"}}"#),
            retry_after: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Put {
    /// Every request is recorded, whatever its method (`doctor` sends OPTIONS).
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub authorization: Option<String>,
    pub body: Bytes,
    pub at: Instant,
    /// `None` when the connection was dropped unanswered.
    pub status: Option<u16>,
}

#[derive(Default)]
struct Deployment {
    token_sha256: Option<String>,
    stored: Option<Bytes>,
    stores: usize,
}

#[derive(Default)]
struct State {
    deployments: BTreeMap<String, Deployment>,
    script: VecDeque<Step>,
    requests: Vec<Put>,
    /// Each request's body as it arrived, before any scripted delay.
    arrivals: Vec<Bytes>,
}

pub struct FakeCatalystApi {
    server: Server,
    state: Arc<Mutex<State>>,
    /// `None` over plain HTTP.
    certificate: Option<Arc<CertSwitch>>,
}

pub fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl FakeCatalystApi {
    /// Knows `deployment_id` with the hash of `token` on record.
    pub fn start(pki: &Pki, deployment_id: &str, token: &str) -> FakeCatalystApi {
        Self::start_with(Some(pki), deployment_id, token)
    }

    /// The same over plain HTTP, as a catalyst-api reached on loopback.
    pub fn start_plain(deployment_id: &str, token: &str) -> FakeCatalystApi {
        Self::start_with(None, deployment_id, token)
    }

    fn start_with(pki: Option<&Pki>, deployment_id: &str, token: &str) -> FakeCatalystApi {
        let state = Arc::new(Mutex::new(State::default()));
        state.lock().unwrap().deployments.insert(
            deployment_id.to_string(),
            Deployment {
                token_sha256: Some(sha256_hex(token.as_bytes())),
                ..Deployment::default()
            },
        );
        let shared = state.clone();
        let handler: Handler = Arc::new(move |req| {
            let state = shared.clone();
            Box::pin(async move { handle(&state, req).await })
        });
        let (server, certificate) = match pki {
            Some(pki) => {
                let (config, certificate) = pki.switchable_server_config();
                (Server::start(config, handler, true), Some(certificate))
            }
            None => (Server::start_plain(handler, true), None),
        };
        FakeCatalystApi {
            server,
            state,
            certificate,
        }
    }

    /// Serves `identity` from the next handshake on.
    pub fn present(&self, identity: &crate::pki::Identity) {
        self.certificate
            .as_ref()
            .expect("a plain-HTTP fake has no certificate")
            .set(identity);
    }

    pub fn url(&self) -> String {
        let scheme = if self.certificate.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.server.addr())
    }

    pub fn set_up(&self, up: bool) {
        self.server.set_up(up);
    }

    /// Queues steps for the next requests, in order.
    pub fn script(&self, steps: impl IntoIterator<Item = Step>) {
        self.state.lock().unwrap().script.extend(steps);
    }

    pub fn clear_script(&self) {
        self.state.lock().unwrap().script.clear();
    }

    /// Forgets the token hash, as a server that never had one issued.
    pub fn forget_token(&self, deployment_id: &str) {
        if let Some(d) = self
            .state
            .lock()
            .unwrap()
            .deployments
            .get_mut(deployment_id)
        {
            d.token_sha256 = None;
        }
    }

    pub fn stored(&self, deployment_id: &str) -> Option<Bytes> {
        self.state
            .lock()
            .unwrap()
            .deployments
            .get(deployment_id)?
            .stored
            .clone()
    }

    pub fn store_count(&self, deployment_id: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .deployments
            .get(deployment_id)
            .map_or(0, |d| d.stores)
    }

    pub fn requests(&self) -> Vec<Put> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The bodies of the requests that have arrived, answered or not: whose
    /// PUT a delayed answer is holding (`requests` records it only once
    /// answered).
    pub fn arrivals(&self) -> Vec<Bytes> {
        self.state.lock().unwrap().arrivals.clone()
    }
}

async fn handle(state: &Mutex<State>, req: Request<Bytes>) -> Answer {
    let step = {
        let mut state = state.lock().unwrap();
        state.arrivals.push(req.body().clone());
        state.script.pop_front()
    };
    let mut put = Put {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().map(str::to_string),
        authorization: req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: req.body().clone(),
        at: Instant::now(),
        status: None,
    };
    let answer = match step {
        Some(Step::Respond {
            status,
            body,
            retry_after,
        }) => {
            let mut answer = respond(status, "application/json", body);
            if let (Some(a), Some(r)) = (answer.as_mut(), retry_after) {
                a.headers_mut().insert("retry-after", r.parse().unwrap());
            }
            answer
        }
        Some(Step::Redirect { status, location }) => {
            let mut answer = respond(status, "text/plain", "moved");
            answer
                .as_mut()
                .unwrap()
                .headers_mut()
                .insert("location", location.parse().unwrap());
            answer
        }
        Some(Step::Delay(d)) => {
            tokio::time::sleep(d).await;
            contract(state, &req)
        }
        Some(Step::StoreThenDrop) => {
            contract(state, &req);
            None
        }
        Some(Step::StoreThenDelay(d)) => {
            let answer = contract(state, &req);
            tokio::time::sleep(d).await;
            answer
        }
        Some(Step::Echo { status, spacer }) => {
            let request = format!(
                "Authorization: {}\n{}",
                put.authorization.as_deref().unwrap_or(""),
                String::from_utf8_lossy(&put.body)
            );
            let mut detail = String::new();
            for (i, c) in request.chars().enumerate() {
                if i > 0 && i % 10 == 0 {
                    detail.push_str(spacer);
                }
                detail.push(c);
            }
            error(status, "write-failed", &detail)
        }
        Some(Step::Drip { status, every }) => respond_dripping(
            status,
            "application/json",
            &format!(
                r#"{{"error":"write-failed","detail":"{}"}}"#,
                "slow ".repeat(800)
            ),
            every,
        ),
        Some(Step::SlowBody { status, stall }) => respond_stalling(
            status,
            "application/json",
            r#"{"error":"write-failed","detail":"the disk is slow today"}"#,
            stall,
        ),
        None => contract(state, &req),
    };
    put.status = answer.as_ref().map(|a| a.status().as_u16());
    state.lock().unwrap().requests.push(put);
    answer
}

fn error(status: u16, code: &str, detail: &str) -> Answer {
    let body = serde_json::json!({"error": code, "detail": detail}).to_string();
    respond(status, "application/json", body)
}

/// handler/kubeconfig.go, in the order it checks.
fn contract(state: &Mutex<State>, req: &Request<Bytes>) -> Answer {
    let mut state = state.lock().unwrap();
    let parts: Vec<&str> = req
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .collect();
    let id = match (req.method().as_str(), parts.as_slice()) {
        ("PUT", ["api", "v1", "deployments", id, "kubeconfig"]) => id.to_string(),
        // chi: the path is registered (for PUT), the method is not.
        (_, ["api", "v1", "deployments", _, "kubeconfig"]) => {
            let mut answer = respond(405, "text/plain; charset=utf-8", "");
            if let Some(a) = answer.as_mut() {
                a.headers_mut().insert("allow", "PUT".parse().unwrap());
            }
            return answer;
        }
        _ => return respond(404, "text/plain; charset=utf-8", "404 page not found\n"),
    };
    let Some(dep) = state.deployments.get_mut(&id) else {
        return respond(404, "text/plain; charset=utf-8", "deployment not found\n");
    };
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty());
    let Some(bearer) = bearer else {
        return error(
            401,
            "missing-bearer",
            "Authorization: Bearer <token> required",
        );
    };
    let Some(expected) = &dep.token_sha256 else {
        return error(
            403,
            "no-bearer-hash",
            "no kubeconfig bearer token on record for this deployment",
        );
    };
    if sha256_hex(bearer.as_bytes()) != *expected {
        return error(403, "invalid-bearer", "bearer token does not match");
    }
    if dep.stored.is_some() {
        return error(
            403,
            "already-set",
            "kubeconfig already captured for this deployment",
        );
    }
    if req.body().len() > MAX_BODY {
        return error(422, "body-too-large", "kubeconfig body exceeds 1 MiB");
    }
    if req.body().is_empty() {
        return error(422, "empty-body", "kubeconfig body is empty");
    }
    dep.stored = Some(req.body().clone());
    dep.stores += 1;
    respond(204, "text/plain", "")
}
