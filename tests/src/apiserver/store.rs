//! The objects, whatever their kind: the resources served and what their
//! registry strategies do (`Resource`), where a path points (`locate`), and
//! get, list, create and delete as the API server's generic store does them.

use http::Method;
use serde_json::{Value, json};

use super::apply::{Target, fields_v1, managed_entry, patch};
use super::events::EVENTS;
use super::namespaces::{NAMESPACES, namespace_refusal};
use super::secrets::SECRETS;
use super::{Cluster, Req, status};

/// A resource the fake serves: what discovery says of it, and what its
/// registry strategy does to an object written to it.
#[derive(Clone, Copy)]
pub(super) struct Resource {
    /// `""` for the core group.
    pub(super) group: &'static str,
    pub(super) version: &'static str,
    pub(super) kind: &'static str,
    /// The plural: the resource's name in paths and discovery.
    pub(super) resource: &'static str,
    pub(super) namespaced: bool,
    pub(super) short_names: &'static [&'static str],
    pub(super) verbs: &'static [&'static str],
    /// Whether discovery lists a `{resource}/status` subresource.
    pub(super) status: bool,
    /// What the registry makes of a written object before it is stored,
    /// or why it refuses it (a Secret's `stringData` and base64).
    pub(super) normalize: fn(&mut Value) -> Option<(u16, Value)>,
    /// Defaulting, on every write.
    pub(super) defaults: fn(&mut Value),
    /// The strategy's `PrepareForCreate`.
    pub(super) prepare_for_create: fn(&mut Value),
    /// The strategy's `PrepareForUpdate`, given the stored and the new object.
    pub(super) prepare_for_update: fn(&Value, &mut Value),
    /// The strategy's `ValidateUpdate`, given the stored and the new object.
    pub(super) validate_update: fn(&Value, &Value, &str) -> Option<(u16, Value)>,
}

/// The verbs discovery lists for most built-in resources.
pub(super) const VERBS: &[&str] = &[
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
pub(super) const CORE: Resource = Resource {
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

/// What the fake serves besides custom resources, in discovery's order.
pub(super) const BUILT_IN: &[Resource] = &[
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

impl Resource {
    /// `v1`, `events.k8s.io/v1`.
    pub(super) fn api_version(&self) -> String {
        group_version(self.group, self.version)
    }

    /// The group-qualified resource that error messages name:
    /// `secrets`, `gitrepositories.source.toolkit.fluxcd.io`.
    pub(super) fn qualified(&self) -> String {
        match self.group {
            "" => self.resource.to_string(),
            group => format!("{}.{group}", self.resource),
        }
    }

    /// The path of the collection, in `ns` for a namespaced resource.
    pub(super) fn collection(&self, ns: Option<&str>) -> String {
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
    pub(super) fn key(&self, ns: Option<&str>, name: &str) -> String {
        format!("{}/{name}", self.collection(ns))
    }

    /// The `{Kind}List` of the objects in `ns`, or in every namespace.
    pub(super) fn list(&self, c: &Cluster, ns: Option<&str>) -> Value {
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

/// An `apiVersion`: `v1` for the core group, else `{group}/{version}`.
pub(super) fn group_version(group: &str, version: &str) -> String {
    match group {
        "" => version.to_string(),
        group => format!("{group}/{version}"),
    }
}

/// A request on a served resource: get, list, create, server-side apply
/// (and merge patch of Secrets), delete.
pub(super) fn serve(
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
pub(super) fn no_such_path() -> (u16, Value) {
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
pub(super) struct Location<'a> {
    /// `""` for the core group (`/api/v1`).
    pub(super) group: &'a str,
    pub(super) version: &'a str,
    pub(super) namespace: Option<&'a str>,
    /// The resource's plural, as in the path.
    pub(super) resource: &'a str,
    pub(super) name: Option<&'a str>,
    pub(super) subresource: Option<&'a str>,
}

/// A path's `Location`: `/api/{v}/…` or `/apis/{g}/{v}/…`, then
/// `namespaces/{ns}/` for a namespaced resource, then the resource, a name
/// and a subresource. `/api/v1/namespaces/{ns}` (and its `status` and
/// `finalize`) is the Namespace itself.
pub(super) fn locate<'a>(parts: &[&'a str]) -> Option<Location<'a>> {
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
pub(super) fn objects_where(c: &Cluster, keep: impl Fn(&Location) -> bool) -> Vec<Value> {
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

/// The body parsed, of `kind`, and in the request's namespace if it names one.
pub(super) fn checked_body(
    raw: &[u8],
    body: Option<Value>,
    kind: &str,
    ns: Option<&str>,
) -> Option<Value> {
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
pub(super) fn create_posted(
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
pub(super) fn create_new(
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

pub(super) fn create(
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

pub(super) fn get(c: &Cluster, key: &str, kind: &str, name: &str) -> (u16, Value) {
    match c.objects.get(key) {
        Some(obj) => (200, obj.clone()),
        None => not_found(kind, name),
    }
}

pub(super) fn not_found(kind: &str, name: &str) -> (u16, Value) {
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

pub(super) fn bad_request() -> (u16, Value) {
    bad_request_because("the body of the request was in an unknown format")
}

pub(super) fn bad_request_because(message: &str) -> (u16, Value) {
    (400, status(400, "BadRequest", message, json!({})))
}

#[cfg(test)]
mod tests {
    use http::Method;
    use serde_json::json;

    use super::*;
    use crate::apiserver::route;
    use crate::apiserver::testing::*;

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
}
