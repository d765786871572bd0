//! Secrets: their registry strategy (`stringData` stored as `data`, base64
//! checked, the type and an immutable Secret's data kept), JSON merge patch
//! of a Secret, and Secrets a test stores as if a peer had.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::apply::{fields_v1, managed_by, managed_entry, merge_patch};
use super::store::{CORE, Resource, bad_request, bad_request_because, not_found};
use super::{Cluster, FakeApiServer, Req, status};

pub(super) const SECRETS: Resource = Resource {
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

impl FakeApiServer {
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
}

/// The API server's answer to a Secret whose `data` is not all base64.
pub(super) fn invalid_secret_data(secret: &Value) -> Option<(u16, Value)> {
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

/// The API server stores `stringData` as `data` (base64), each key of
/// `stringData` winning over the same key of `data`, and never stores
/// `stringData` itself.
pub(super) fn string_data_into_data(secret: &mut Value) {
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
pub(super) fn secret_update_refusal(old: &Value, new: &Value, name: &str) -> Option<(u16, Value)> {
    pub(super) const IMMUTABLE: &str = "Forbidden: field is immutable when `immutable` is set";
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

/// JSON merge patch (RFC 7386) of a Secret: the patch is merged into the
/// stored object, a `metadata.resourceVersion` in it is a precondition
/// (stale: 409 Conflict), and the version only moves when something
/// changed.
pub(super) fn merge_patch_secret(
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

pub(super) fn conflict(kind: &str, name: &str) -> (u16, Value) {
    let msg = format!(
        "Operation cannot be fulfilled on {kind} \"{name}\": the object has been modified; \
         please apply your changes to the latest version and try again"
    );
    (
        409,
        status(409, "Conflict", &msg, json!({"name": name, "kind": kind})),
    )
}

/// An Opaque Secret with `data` (values already base64).
pub(super) fn opaque_secret(namespace: &str, name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
           "metadata": {"name": name, "namespace": namespace}, "data": data})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::testing::*;
    use crate::apiserver::{APPLY, MERGE};

    fn patch(c: &mut Cluster, content_type: &str, body: &str) -> (u16, Value) {
        patch_at(c, SECRET, content_type, body)
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
}
