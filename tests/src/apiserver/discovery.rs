//! Discovery and the CRD machinery: which resources are served now (the
//! built-in ones, and a CRD's once it is Established), and what clients
//! read to map a kind to its resource: `/apis`, `/apis/{group}`,
//! `/api/v1` and `/apis/{group}/{version}`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::store::{BUILT_IN, CORE, Location, Resource, group_version, no_such_path};
use super::{Cluster, FakeApiServer};

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

impl FakeApiServer {
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
}

impl Cluster {
    /// The resource a request is for, if it is served at the request's
    /// scope: a custom resource only once its CRD is Established, a
    /// namespaced one only in a namespace (or listed across them), a
    /// cluster-scoped one never in a namespace.
    pub(super) fn served(&self, at: &Location) -> Option<Resource> {
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
    pub(super) fn resources(&self) -> Vec<Resource> {
        let now = Instant::now();
        let established = self
            .crds
            .iter()
            .filter(|(_, from)| *from <= now)
            .map(|(crd, _)| Resource::custom(*crd));
        BUILT_IN.iter().copied().chain(established).collect()
    }
}

impl Resource {
    /// A custom resource, as the CRD handler serves it: a create sets
    /// `generation` to 1 and drops `status`; an update that changes more
    /// than `metadata` bumps `generation`.
    pub(super) fn custom(crd: Crd) -> Resource {
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
}

/// The groups served now (`metav1.APIGroupList` at `/apis`): the
/// built-in ones, then those with an Established CRD by name (the
/// aggregator's order for CRD groups, which all have the same priority).
pub(super) fn group_list(c: &Cluster) -> Value {
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
pub(super) fn api_group(c: &Cluster, group: &str) -> Option<Value> {
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
pub(super) fn version_priority(version: &str) -> (u8, u64, u64) {
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
pub(super) fn resource_list(c: &Cluster, group: &str, version: &str) -> (u16, Value) {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::apiserver::KUSTOMIZATION;
    use crate::apiserver::testing::*;

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
