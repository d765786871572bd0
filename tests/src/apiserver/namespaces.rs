//! Namespaces: their strategy (Active, with the `kubernetes` finalizer), the
//! NamespaceLifecycle admission of what is created in one, and Terminating
//! namespaces.

use serde_json::{Value, json};

use super::store::{CORE, Resource, locate, not_found};
use super::{Cluster, FakeApiServer, status};

pub(super) const NAMESPACES: Resource = Resource {
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

impl FakeApiServer {
    /// An Active namespace, as if someone had created it earlier.
    pub fn insert_namespace(&self, name: &str) {
        self.insert(
            &format!("/api/v1/namespaces/{name}"),
            active_namespace(name),
        );
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
}

/// The NamespaceLifecycle admission of a create in `ns`: the namespace
/// must exist and must not be terminating.
pub(super) fn namespace_refusal(
    c: &Cluster,
    ns: &str,
    resource: &str,
    name: &str,
) -> Option<(u16, Value)> {
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

pub(super) fn active_namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
           "status": {"phase": "Active"}})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::testing::*;
    use crate::apiserver::{GIT_REPOSITORY, MERGE};
    use std::time::Instant;

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
}
