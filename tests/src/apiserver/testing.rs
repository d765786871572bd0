//! What the unit tests of the fake share: requests as `handle` routes
//! them, and clusters and objects to send them to.

use std::time::Instant;

use http::Method;
use serde_json::{Value, json};

use super::namespaces::active_namespace;
use super::{APPLY, Cluster, Crd, Req, route};

pub(super) const SECRET: &str = "/api/v1/namespaces/openbao/secrets/s";

/// `PATCH target` (a path, and a query after `?`), as `handle` routes it.
pub(super) fn patch_at(
    c: &mut Cluster,
    target: &str,
    content_type: &str,
    body: &str,
) -> (u16, Value) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let req = Req {
        content_type,
        manager: "catalyst-bootstrap",
        query,
    };
    let parsed = serde_json::from_str(body).ok();
    route(c, &Method::PATCH, path, body.as_bytes(), parsed, &req)
}

pub(super) const APPLIER: &str = "?fieldManager=catalyst-bootstrap&force=true";

/// A server-side apply of `config` to `target` (path and query).
pub(super) fn ssa(c: &mut Cluster, target: &str, config: &Value) -> (u16, Value) {
    patch_at(c, target, APPLY, &config.to_string())
}

/// The Secret the agent applies: `s` in `openbao`, with `data`.
pub(super) fn secret_config(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "s", "namespace": "openbao", "labels": {"app": "openbao"}},
           "data": data})
}

pub(super) fn cluster_with_namespace() -> Cluster {
    let mut c = Cluster::default();
    let ns = c.stamp(active_namespace("openbao"));
    c.objects.insert("/api/v1/namespaces/openbao".into(), ns);
    c
}

pub(super) fn target(query: &str) -> String {
    format!("{SECRET}{query}")
}

/// `GET path`, as `handle` routes it.
pub(super) fn get_at(c: &mut Cluster, path: &str) -> (u16, Value) {
    let req = Req {
        content_type: "",
        manager: "kubectl",
        query: "",
    };
    route(c, &Method::GET, path, b"", None, &req)
}

pub(super) const GIT_REPOSITORIES: &str = "/apis/source.toolkit.fluxcd.io/v1";

pub(super) const OPENOVA: &str =
    "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories/openova";
pub(super) const PROVIDER_HCLOUD: &str = "/apis/pkg.crossplane.io/v1/providers/provider-hcloud";

pub(super) fn git_repository(url: &str) -> Value {
    json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
           "metadata": {"name": "openova", "namespace": "flux-system"},
           "spec": {"interval": "1m", "url": url, "ref": {"branch": "main"}}})
}

pub(super) fn provider() -> Value {
    json!({"apiVersion": "pkg.crossplane.io/v1", "kind": "Provider",
           "metadata": {"name": "provider-hcloud"},
           "spec": {"package": "xpkg.upbound.io/crossplane-contrib/provider-hcloud:v0.1.0"}})
}

/// A cluster with `flux-system` and the given CRDs, Established from `at`.
pub(super) fn cluster_with_crds(crds: &[Crd], at: Instant) -> Cluster {
    let mut c = Cluster::default();
    let ns = c.stamp(active_namespace("flux-system"));
    c.objects
        .insert("/api/v1/namespaces/flux-system".into(), ns);
    c.crds = crds.iter().map(|crd| (*crd, at)).collect();
    c
}
