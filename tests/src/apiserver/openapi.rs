//! The OpenAPI v3 documents of the served group versions, reduced to what
//! `kubectl apply` reads before it writes: whether the server validates
//! fields itself, and each kind's schema.

use serde_json::{Value, json};

use super::Cluster;
use super::store::no_such_path;

/// The OpenAPI v3 index (`/openapi/v3`): a document per group version
/// served now, its hash changing with what the version serves (kubectl
/// caches documents by hash).
pub(super) fn openapi_index(c: &Cluster) -> Value {
    let mut paths = serde_json::Map::new();
    for r in c.resources() {
        let root = match r.group {
            "" => format!("api/{}", r.version),
            group => format!("apis/{group}/{}", r.version),
        };
        if !paths.contains_key(&root) {
            let hash = openapi_hash(c, r.group, r.version);
            let url = format!("/openapi/v3/{root}?hash={hash:016X}");
            paths.insert(root, json!({"serverRelativeURL": url}));
        }
    }
    json!({"paths": paths})
}

fn openapi_hash(c: &Cluster, group: &str, version: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::hash::DefaultHasher::new();
    for r in c.resources() {
        if (r.group, r.version) == (group, version) {
            (r.kind, r.resource, r.namespaced).hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// The OpenAPI v3 document of a served group version, reduced to what
/// `kubectl apply` looks for: the paths it writes to, which accept
/// `fieldValidation` (so kubectl leaves validation to the server), and
/// each kind's schema. 404 for a version with nothing served.
pub(super) fn openapi(c: &Cluster, group: &str, version: &str) -> (u16, Value) {
    let params = json!([{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                        {"name": "fieldManager", "in": "query", "schema": {"type": "string"}}]);
    let gvk = |kind: &str| json!({"group": group, "version": version, "kind": kind});
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for r in c.resources() {
        if (r.group, r.version) != (group, version) {
            continue;
        }
        let op = json!({"parameters": params, "x-kubernetes-group-version-kind": gvk(r.kind),
                        "responses": {"200": {"description": "OK"}}});
        let collection = r.collection(r.namespaced.then_some("{namespace}"));
        paths.insert(collection.clone(), json!({"post": op}));
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({"get": op, "put": op, "patch": op}),
        );
        // The API server names a schema by its Go package, reversed
        // group first for a custom resource.
        let package = match group {
            "" => "io.k8s.api.core".to_string(),
            "events.k8s.io" => "io.k8s.api.events".to_string(),
            group => group.split('.').rev().collect::<Vec<_>>().join("."),
        };
        schemas.insert(
            format!("{package}.{version}.{}", r.kind),
            json!({"type": "object", "x-kubernetes-group-version-kind": [gvk(r.kind)],
                   "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                  "metadata": {"type": "object"}, "data": {"type": "object", "additionalProperties": {"type": "string", "format": "byte"}},
                                  "type": {"type": "string"}, "spec": {"type": "object"}, "status": {"type": "object"}}}),
        );
    }
    if paths.is_empty() {
        return no_such_path();
    }
    (
        200,
        json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": "v1.31.4+k3s1"},
            "paths": paths,
            "components": {"schemas": schemas},
        }),
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::apiserver::PROVIDER;
    use crate::apiserver::testing::*;

    /// What kubectl reads before an apply: for a served kind, paths that
    /// accept `fieldValidation`, so it leaves validation to the server.
    #[test]
    fn openapi_documents_every_served_group_version() {
        let mut c = cluster_with_crds(&[PROVIDER], Instant::now() + Duration::from_secs(3600));
        let (_, index) = get_at(&mut c, "/openapi/v3");
        assert!(
            index["paths"].get("apis/pkg.crossplane.io/v1").is_none(),
            "{index}"
        );
        assert_eq!(
            get_at(&mut c, "/openapi/v3/apis/pkg.crossplane.io/v1").0,
            404
        );
        c.crds[0].1 = Instant::now();
        let (_, index) = get_at(&mut c, "/openapi/v3");
        let url = index["paths"]["apis/pkg.crossplane.io/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        let (code, doc) = get_at(&mut c, url.split('?').next().unwrap());
        assert_eq!(code, 200, "{doc}");
        let patch = &doc["paths"]["/apis/pkg.crossplane.io/v1/providers/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Provider");
        assert_eq!(patch["parameters"][0]["name"], "fieldValidation");
        let (_, core) = get_at(&mut c, "/openapi/v3/api/v1");
        assert!(
            core["paths"]
                .get("/api/v1/namespaces/{namespace}/configmaps/{name}")
                .is_some()
        );
    }
}
