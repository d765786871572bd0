//! API discovery: which resource serves a kind, and whether it is served
//! at all yet. A CRD's kind appears in its group version's resource list
//! once the CRD is Established; until then that list lacks it, or the group
//! version answers 404. Lists are fetched one group version at a time, and
//! again only when a kind is missing from what was fetched.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use serde::Deserialize;

use crate::exit::Exit;
use crate::peers::cluster::{Cluster, KubeError};
use crate::peers::retry::{Classify, Retry, Verdict};

/// The resource that serves a kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resource {
    pub(crate) plural: String,
    pub(crate) namespaced: bool,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApplyError {
    /// The step that waits names the kind; this says why it waits.
    #[error("not served yet: no CRD for it is Established")]
    NotServed,
    #[error(transparent)]
    Kube(#[from] KubeError),
}

impl Classify for ApplyError {
    fn verdict(&self) -> Verdict {
        match self {
            ApplyError::NotServed => Verdict::Retry(Retry::default()),
            // The object itself is wrong: no retry makes it right.
            ApplyError::Kube(e) if matches!(e.code(), Some(400 | 422)) => {
                Verdict::Permanent(Exit::Invalid)
            }
            ApplyError::Kube(e) => e.verdict(),
        }
    }
}

/// Which object: its type and its name.
pub(crate) struct ObjectRef<'a> {
    pub(crate) api_version: &'a str,
    pub(crate) kind: &'a str,
    pub(crate) namespace: Option<&'a str>,
    pub(crate) name: &'a str,
}

/// The subset of `metav1.APIResourceList` the agent reads.
#[derive(Deserialize)]
struct ResourceList {
    #[serde(default)]
    resources: Vec<ResourceEntry>,
}

#[derive(Deserialize)]
struct ResourceEntry {
    name: String,
    kind: String,
    #[serde(default)]
    namespaced: bool,
}

/// What discovery said, per group version (`v1`, `group/version`): kind →
/// resource.
#[derive(Default)]
struct Known(Mutex<HashMap<String, HashMap<String, Resource>>>);

impl Known {
    fn get(&self, api_version: &str, kind: &str) -> Option<Resource> {
        let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        known.get(api_version)?.get(kind).cloned()
    }

    fn set(&self, api_version: &str, listed: HashMap<String, Resource>) {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        known.insert(api_version.to_string(), listed);
    }

    /// After a failed apply: a 404 may mean the kind is gone from the
    /// server (its CRD deleted), so the next try asks discovery again; any
    /// other failure says nothing about discovery.
    fn after_failure(&self, api_version: &str, code: Option<u16>) {
        if code == Some(404) {
            let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
            known.remove(api_version);
        }
    }
}

/// One API server, and what its discovery said.
pub(crate) struct Discovery {
    cluster: Cluster,
    known: Known,
}

impl Discovery {
    pub(crate) fn new(cluster: &Cluster) -> Discovery {
        Discovery {
            cluster: cluster.clone(),
            known: Known::default(),
        }
    }

    /// The resource serving `kind`, asking the API server only when the last
    /// answer for its group version lacked it.
    pub(crate) async fn resolve(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<Resource, ApplyError> {
        if let Some(found) = self.known.get(api_version, kind) {
            return Ok(found);
        }
        let path = match api_version {
            "v1" => "/api/v1".to_string(),
            gv => format!("/apis/{gv}"),
        };
        let listed = match self.cluster.get(&path).await? {
            Some(bytes) => parse(&bytes),
            None => HashMap::new(),
        };
        let found = listed.get(kind).cloned();
        self.known.set(api_version, listed);
        found.ok_or(ApplyError::NotServed)
    }

    /// Server-side apply of one object; a 404 (its kind gone from the
    /// server, or its namespace not there yet) makes the next try ask
    /// discovery again.
    pub(crate) async fn apply(
        &self,
        manager: &str,
        object: &ObjectRef<'_>,
        body: Bytes,
    ) -> Result<(), ApplyError> {
        let api_version = object.api_version;
        let resource = self.resolve(api_version, object.kind).await?;
        let path = path(api_version, &resource, object.namespace, object.name);
        match self.cluster.apply(&path, manager, body).await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.known.after_failure(api_version, e.code());
                Err(e.into())
            }
        }
    }
}

/// Kind → resource of one group version's list; subresources left out.
fn parse(bytes: &[u8]) -> HashMap<String, Resource> {
    let Ok(list) = serde_json::from_slice::<ResourceList>(bytes) else {
        return HashMap::new();
    };
    list.resources
        .into_iter()
        .filter(|r| !r.name.contains('/'))
        .map(|r| {
            (
                r.kind,
                Resource {
                    plural: r.name,
                    namespaced: r.namespaced,
                },
            )
        })
        .collect()
}

/// The object's URL path. A namespaced object without a namespace goes to
/// `default`, as `kubectl apply` puts it.
pub(crate) fn path(
    api_version: &str,
    resource: &Resource,
    namespace: Option<&str>,
    name: &str,
) -> String {
    let root = match api_version {
        "v1" => "/api/v1".to_string(),
        gv => format!("/apis/{gv}"),
    };
    if resource.namespaced {
        let ns = namespace.unwrap_or("default");
        format!("{root}/namespaces/{ns}/{}/{name}", resource.plural)
    } else {
        format!("{root}/{}/{name}", resource.plural)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::untrusted::Untrusted;

    #[test]
    fn a_resource_list_maps_kinds_to_resources_without_subresources() {
        let list = br#"{"kind":"APIResourceList","groupVersion":"pkg.crossplane.io/v1","resources":[
            {"name":"providers","singularName":"provider","namespaced":false,"kind":"Provider","verbs":["get","patch"]},
            {"name":"providers/status","singularName":"","namespaced":false,"kind":"Provider","verbs":["get"]}]}"#;
        let kinds = parse(list);
        assert_eq!(kinds.len(), 1);
        assert_eq!(
            kinds["Provider"],
            Resource {
                plural: "providers".into(),
                namespaced: false
            }
        );
        assert!(parse(b"not json").is_empty());
    }

    #[test]
    fn paths_of_namespaced_cluster_scoped_and_core_objects() {
        let ks = Resource {
            plural: "kustomizations".into(),
            namespaced: true,
        };
        assert_eq!(
            path(
                "kustomize.toolkit.fluxcd.io/v1",
                &ks,
                Some("flux-system"),
                "kit"
            ),
            "/apis/kustomize.toolkit.fluxcd.io/v1/namespaces/flux-system/kustomizations/kit"
        );
        let provider = Resource {
            plural: "providers".into(),
            namespaced: false,
        };
        assert_eq!(
            path("pkg.crossplane.io/v1", &provider, None, "hcloud"),
            "/apis/pkg.crossplane.io/v1/providers/hcloud"
        );
        let cm = Resource {
            plural: "configmaps".into(),
            namespaced: true,
        };
        assert_eq!(
            path("v1", &cm, None, "x"),
            "/api/v1/namespaces/default/configmaps/x"
        );
    }

    #[test]
    fn what_discovery_said_is_kept_until_a_404_says_it_is_stale() {
        let known = Known::default();
        let providers = Resource {
            plural: "providers".into(),
            namespaced: false,
        };
        let listed = HashMap::from([("Provider".to_string(), providers.clone())]);
        known.set("pkg.crossplane.io/v1", listed);
        assert_eq!(
            known.get("pkg.crossplane.io/v1", "Provider"),
            Some(providers.clone())
        );
        assert_eq!(known.get("pkg.crossplane.io/v1", "ProviderConfig"), None);
        assert_eq!(known.get("v1", "Provider"), None);
        for code in [None, Some(409), Some(422), Some(503)] {
            known.after_failure("pkg.crossplane.io/v1", code);
            assert_eq!(
                known.get("pkg.crossplane.io/v1", "Provider"),
                Some(providers.clone()),
                "{code:?}"
            );
        }
        known.after_failure("pkg.crossplane.io/v1", Some(404));
        assert_eq!(known.get("pkg.crossplane.io/v1", "Provider"), None);
    }

    #[test]
    fn invalid_objects_never_heal_and_the_rest_waits() {
        let status = |code| {
            ApplyError::Kube(KubeError::Status {
                method: reqwest::Method::PATCH,
                path: "/apis/x/v1/xs/y".into(),
                code,
                reason: Untrusted::new(""),
                message: Untrusted::new(""),
            })
        };
        assert_eq!(status(422).verdict(), Verdict::Permanent(Exit::Invalid));
        assert_eq!(status(400).verdict(), Verdict::Permanent(Exit::Invalid));
        for code in [404, 409, 429, 500, 503, 504] {
            assert_eq!(
                status(code).verdict(),
                Verdict::Retry(Retry::default()),
                "{code}"
            );
        }
        let missing = ApplyError::NotServed;
        assert_eq!(missing.verdict(), Verdict::Retry(Retry::default()));
    }
}
