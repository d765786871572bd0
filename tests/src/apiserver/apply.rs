//! `PATCH` of any served kind: server-side apply as the API server's field
//! manager does it, JSON merge patch (RFC 7386), and the `managedFields`
//! bookkeeping they share.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::namespaces::namespace_refusal;
use super::secrets::merge_patch_secret;
use super::store::{Resource, bad_request_because, create_new};
use super::{APPLY, Cluster, MERGE, Req, status};

/// The object a `PATCH` is about.
#[derive(Clone, Copy)]
pub(super) struct Target<'a> {
    /// Its path, the key in `Cluster::objects`.
    pub(super) key: &'a str,
    pub(super) kind: &'a Resource,
    /// Its namespace; `None` for a cluster-scoped kind.
    pub(super) ns: Option<&'a str>,
    pub(super) name: &'a str,
}

/// `PATCH` of a Secret or a Namespace. The media type picks the mechanism:
/// server-side apply for both kinds (`apply`), JSON merge patch for
/// Secrets (`merge_patch_secret`); strategic merge and JSON patch are not
/// implemented (415, as for any media type the server does not accept).
/// As in the API server the media type is checked first, then the
/// `PatchOptions` (`ValidatePatchOptions`).
pub(super) fn patch(c: &mut Cluster, at: Target, raw: &[u8], req: &Req) -> (u16, Value) {
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
pub(super) fn invalid_patch_options(req: &Req) -> Option<(u16, Value)> {
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

/// A field as a path of keys from the object's root (`["data", "token"]`).
pub(super) type FieldPath = Vec<String>;

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
pub(super) fn apply(c: &mut Cluster, at: Target, raw: &[u8], req: &Req) -> (u16, Value) {
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
pub(super) fn apply_conflict(entries: &[Value], conflicts: &[(usize, FieldPath)]) -> (u16, Value) {
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
pub(super) fn field_paths(set: &Value, leaves_only: bool) -> Vec<FieldPath> {
    pub(super) fn walk(
        node: &Value,
        prefix: &mut FieldPath,
        leaves_only: bool,
        out: &mut Vec<FieldPath>,
    ) {
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
pub(super) fn owns(set: &Value, path: &[String]) -> bool {
    path.iter()
        .try_fold(set, |node, k| node.get(format!("f:{k}")))
        .is_some()
}

/// Takes the field at `path` out of a `fieldsV1` set, and the maps that
/// held nothing else.
pub(super) fn disown(set: &mut Value, path: &[String]) {
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

pub(super) fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(object, |v, k| v.get(k))
}

/// Removes the field at `path` from the object: a map only once empty,
/// since keys in it may be someone else's.
pub(super) fn remove_value(object: &mut Value, path: &[String]) {
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
pub(super) fn managed_entry(
    manager: &str,
    operation: &str,
    api_version: &str,
    fields: Value,
) -> Value {
    json!({"manager": manager, "operation": operation, "apiVersion": api_version,
           "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": fields})
}

/// `object` with all its fields owned by `manager` through an `Update`.
pub(super) fn managed_by(mut object: Value, manager: &str) -> Value {
    let fields = fields_v1(&object);
    object["metadata"]["managedFields"] = json!([managed_entry(manager, "Update", "v1", fields)]);
    object
}

/// The `fieldsV1` set of an object: `f:<key>` for every field set, `"."`
/// for a map that is itself a field; identity fields are not tracked.
pub(super) fn fields_v1(obj: &Value) -> Value {
    pub(super) fn walk(value: &Value, top: bool) -> Value {
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
mod tests;
