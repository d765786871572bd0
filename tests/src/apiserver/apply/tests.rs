use std::time::Instant;

use serde_json::{Value, json};

use super::*;
use crate::apiserver::secrets::opaque_secret;
use crate::apiserver::testing::*;
use crate::apiserver::{GIT_REPOSITORY, KUSTOMIZATION, PROVIDER};

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

#[test]
fn apply_creates_a_secret_owned_by_the_applier() {
    let mut c = cluster_with_namespace();
    let config = secret_config(json!({"token": "QUFB"}));
    let (code, obj) = ssa(&mut c, &target(APPLIER), &config);
    assert_eq!(code, 201, "{obj}");
    assert_eq!(obj["type"], "Opaque");
    assert_eq!(obj["data"], json!({"token": "QUFB"}));
    assert_eq!(obj["metadata"]["labels"], json!({"app": "openbao"}));
    for field in ["uid", "creationTimestamp", "resourceVersion"] {
        assert!(obj["metadata"][field].is_string(), "{field}: {obj}");
    }
    assert_eq!(
        obj["metadata"]["managedFields"],
        json!([{"manager": "catalyst-bootstrap", "operation": "Apply", "apiVersion": "v1",
                "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {".": {}, "f:token": {}},
                             "f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}])
    );
    assert!(obj["metadata"].get("annotations").is_none(), "{obj}");
    assert_eq!(c.objects[SECRET], obj);
    assert_eq!(c.creations[SECRET], 1);
}

#[test]
fn apply_again_updates_what_changed_and_drops_what_was_omitted() {
    let mut c = cluster_with_namespace();
    let first = secret_config(json!({"token": "QUFB", "old": "QUFB"}));
    let (_, created) = ssa(&mut c, &target(APPLIER), &first);
    let uid = created["metadata"]["uid"].clone();
    let version = |o: &Value| {
        o["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };

    // The same configuration again changes nothing, not even the version.
    let (code, same) = ssa(&mut c, &target(APPLIER), &first);
    assert_eq!((code, &same), (200, &created));

    let second = secret_config(json!({"token": "QkJC"}));
    let (code, updated) = ssa(&mut c, &target(APPLIER), &second);
    assert_eq!(code, 200, "{updated}");
    assert_eq!(
        updated["data"],
        json!({"token": "QkJC"}),
        "old was applied, then omitted"
    );
    assert_eq!(version(&updated), version(&created) + 1);
    assert_eq!(updated["metadata"]["uid"], uid);
    assert_eq!(
        updated["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        updated["metadata"]["managedFields"][0]["fieldsV1"]["f:data"],
        json!({".": {}, "f:token": {}})
    );
    assert!(
        updated["metadata"].get("annotations").is_none(),
        "{updated}"
    );
    assert_eq!(c.creations[SECRET], 1);
}

#[test]
fn an_omitted_field_another_manager_owns_stays() {
    let mut c = cluster_with_namespace();
    ssa(
        &mut c,
        &target(APPLIER),
        &secret_config(json!({"token": "QUFB", "shared": "QUFB"})),
    );
    let other = "?fieldManager=other&force=true";
    let (code, _) = ssa(
        &mut c,
        &target(other),
        &secret_config(json!({"shared": "QUFB"})),
    );
    assert_eq!(code, 200);
    let (_, obj) = ssa(
        &mut c,
        &target(APPLIER),
        &secret_config(json!({"token": "QUFB"})),
    );
    assert_eq!(obj["data"], json!({"token": "QUFB", "shared": "QUFB"}));
}

#[test]
fn apply_conflicts_with_another_manager_unless_forced() {
    let mut c = cluster_with_namespace();
    let stored = c.stamp(managed_by(
        opaque_secret("openbao", "s", json!({"token": "QUFB"})),
        "kubectl",
    ));
    c.objects.insert(SECRET.into(), stored.clone());
    let config = secret_config(json!({"token": "QkJC"}));

    let (code, refused) = ssa(&mut c, &target("?fieldManager=catalyst-bootstrap"), &config);
    assert_eq!((code, refused["reason"].as_str()), (409, Some("Conflict")));
    let by = r#"conflict with "kubectl" using v1 at 2026-01-01T00:00:00Z"#;
    assert_eq!(
        refused["message"],
        format!("Apply failed with 1 conflict: {by}: .data.token")
    );
    assert_eq!(
        refused["details"]["causes"],
        json!([{"type": "FieldManagerConflict", "message": by, "field": ".data.token"}])
    );
    assert_eq!(c.objects[SECRET], stored, "unchanged");
    let (code, _) = ssa(
        &mut c,
        &target("?fieldManager=catalyst-bootstrap&force=false"),
        &config,
    );
    assert_eq!(code, 409);

    // The same value is no conflict: the field is shared.
    let (code, shared) = ssa(
        &mut c,
        &target("?fieldManager=catalyst-bootstrap"),
        &secret_config(json!({"token": "QUFB"})),
    );
    assert_eq!(code, 200, "{shared}");

    let (code, forced) = ssa(&mut c, &target(APPLIER), &config);
    assert_eq!(code, 200, "{forced}");
    assert_eq!(forced["data"], json!({"token": "QkJC"}));
    let entries = forced["metadata"]["managedFields"].as_array().unwrap();
    let kubectl = entries.iter().find(|e| e["manager"] == "kubectl").unwrap();
    assert_eq!(
        kubectl["fieldsV1"],
        json!({"f:data": {".": {}}, "f:type": {}}),
        "token taken over"
    );
    let mine = entries
        .iter()
        .find(|e| e["manager"] == "catalyst-bootstrap")
        .unwrap();
    assert_eq!(mine["operation"], "Apply");
}

#[test]
fn conflicts_with_several_managers_are_listed_by_manager() {
    let entries = vec![
        managed_entry("kubectl", "Update", "v1", json!({})),
        managed_entry("helm", "Apply", "v1", json!({})),
    ];
    let path = |k: &str| vec!["data".to_string(), k.to_string()];
    let (_, refused) = apply_conflict(&entries, &[(0, path("a")), (1, path("b")), (0, path("c"))]);
    assert_eq!(
        refused["message"],
        "Apply failed with 3 conflicts: conflicts with \"helm\":\n- .data.b\n\
         conflicts with \"kubectl\" using v1 at 2026-01-01T00:00:00Z:\n- .data.a\n- .data.c"
    );
}

#[test]
fn apply_refusals() {
    let mut c = cluster_with_namespace();
    let config = secret_config(json!({"token": "QUFB"}));
    let (code, obj) = ssa(&mut c, SECRET, &config);
    assert_eq!((code, obj["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(
        obj["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    let (code, obj) = patch_at(&mut c, &target("?force=true"), MERGE, "{}");
    assert_eq!(code, 422);
    assert_eq!(
        obj["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
    );
    let mut wrong_kind = config.clone();
    wrong_kind["kind"] = "ConfigMap".into();
    let (code, obj) = ssa(&mut c, &target(APPLIER), &wrong_kind);
    assert_eq!(
        (code, obj["message"].as_str()),
        (400, Some("invalid object type: /v1, Kind=ConfigMap"))
    );
    let mut wrong_name = config.clone();
    wrong_name["metadata"]["name"] = "t".into();
    let (code, obj) = ssa(&mut c, &target(APPLIER), &wrong_name);
    assert_eq!(
        (code, obj["message"].as_str()),
        (
            400,
            Some("the name of the object (t) does not match the name on the URL (s)")
        )
    );
    let mut wrong_ns = config.clone();
    wrong_ns["metadata"]["namespace"] = "other".into();
    let (code, _) = ssa(&mut c, &target(APPLIER), &wrong_ns);
    assert_eq!(code, 400);
    let (code, obj) = patch_at(&mut c, &target(APPLIER), APPLY, "data: [unclosed");
    assert_eq!(code, 400, "{obj}");
    assert!(
        obj["message"]
            .as_str()
            .unwrap()
            .starts_with("error decoding YAML: ")
    );
    let (code, _) = ssa(
        &mut c,
        &target(APPLIER),
        &secret_config(json!({"token": "not base64!"})),
    );
    assert_eq!(code, 400);
    assert!(!c.objects.contains_key(SECRET));

    c.objects.clear();
    let (code, obj) = ssa(&mut c, &target(APPLIER), &config);
    assert_eq!(
        (code, obj["message"].as_str()),
        (404, Some("namespaces \"openbao\" not found"))
    );
    let mut c = cluster_with_namespace();
    c.objects.get_mut("/api/v1/namespaces/openbao").unwrap()["status"]["phase"] =
        "Terminating".into();
    let (code, obj) = ssa(&mut c, &target(APPLIER), &config);
    assert_eq!(
        (code, obj["message"].as_str()),
        (
            403,
            Some(
                "secrets \"s\" is forbidden: unable to create new content in namespace openbao because it is being terminated"
            )
        )
    );
    assert!(!c.objects.contains_key(SECRET));
}

#[test]
fn apply_of_a_namespaced_custom_object() {
    let mut c = cluster_with_crds(&[GIT_REPOSITORY], Instant::now());
    let config = git_repository("https://github.com/openova-io/openova");
    let (code, created) = ssa(&mut c, &format!("{OPENOVA}{APPLIER}"), &config);
    assert_eq!(code, 201, "{created}");
    assert_eq!(c.objects[OPENOVA], created);
    assert_eq!(created["spec"], config["spec"]);
    assert_eq!(created["metadata"]["namespace"], "flux-system");
    assert_eq!(created["metadata"]["generation"], 1);
    for field in ["uid", "creationTimestamp", "resourceVersion"] {
        assert!(created["metadata"][field].is_string(), "{field}: {created}");
    }
    assert_eq!(
        created["metadata"]["managedFields"],
        json!([{"manager": "catalyst-bootstrap", "operation": "Apply",
                "apiVersion": "source.toolkit.fluxcd.io/v1",
                "time": "2026-01-01T00:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {".": {}, "f:interval": {}, "f:ref": {".": {}, "f:branch": {}},
                                        "f:url": {}}}}])
    );
    let (code, same) = ssa(&mut c, &format!("{OPENOVA}{APPLIER}"), &config);
    assert_eq!((code, &same), (200, &created));

    let mut moved = git_repository("https://example.org/openova");
    moved["status"] = json!({"ready": true});
    let (code, updated) = ssa(&mut c, &format!("{OPENOVA}{APPLIER}"), &moved);
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["metadata"]["generation"], 2);
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    assert!(
        updated.get("status").is_none(),
        "status is the subresource's"
    );
    let version = |o: &Value| {
        o["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
    };
    assert!(version(&updated).unwrap() > version(&created).unwrap());
    assert_eq!(c.creations[OPENOVA], 1);

    let (code, list) = get_at(
        &mut c,
        "/apis/source.toolkit.fluxcd.io/v1/namespaces/flux-system/gitrepositories",
    );
    assert_eq!((code, &list["kind"]), (200, &json!("GitRepositoryList")));
    assert_eq!(list["items"], json!([updated]));
    let (code, all) = get_at(&mut c, "/apis/source.toolkit.fluxcd.io/v1/gitrepositories");
    assert_eq!((code, &all["items"]), (200, &list["items"]));
}

#[test]
fn apply_of_a_cluster_scoped_custom_object() {
    let mut c = cluster_with_crds(&[PROVIDER], Instant::now());
    let mut config = provider();
    // A namespace in the body of a cluster-scoped object is dropped.
    config["metadata"]["namespace"] = "flux-system".into();
    let (code, created) = ssa(&mut c, &format!("{PROVIDER_HCLOUD}{APPLIER}"), &config);
    assert_eq!(code, 201, "{created}");
    assert!(created["metadata"].get("namespace").is_none(), "{created}");
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(c.objects[PROVIDER_HCLOUD], created);
    let (code, got) = get_at(&mut c, PROVIDER_HCLOUD);
    assert_eq!((code, &got), (200, &created));
    // The scope is the CRD's: no providers in a namespace.
    let in_namespace =
        "/apis/pkg.crossplane.io/v1/namespaces/flux-system/providers/provider-hcloud";
    let (code, obj) = ssa(&mut c, &format!("{in_namespace}{APPLIER}"), &provider());
    assert_eq!(
        (code, obj["message"].as_str()),
        (
            404,
            Some("the server could not find the requested resource")
        )
    );
    let (code, obj) = get_at(&mut c, "/apis/pkg.crossplane.io/v1/providers/other");
    assert_eq!(
        (code, obj["message"].as_str()),
        (404, Some("providers.pkg.crossplane.io \"other\" not found"))
    );
}

#[test]
fn apply_with_another_kind_or_identity_is_a_bad_request() {
    let mut c = cluster_with_crds(&[GIT_REPOSITORY, KUSTOMIZATION], Instant::now());
    let at = format!("{OPENOVA}{APPLIER}");
    let bad = |c: &mut Cluster, config: &Value| {
        let (code, obj) = ssa(c, &at, config);
        assert_eq!(
            (code, obj["reason"].as_str()),
            (400, Some("BadRequest")),
            "{obj}"
        );
        obj["message"].as_str().unwrap().to_string()
    };
    for (field, value, message) in [
        (
            "/kind",
            "Kustomization",
            "invalid object type: source.toolkit.fluxcd.io/v1, Kind=Kustomization",
        ),
        (
            "/apiVersion",
            "source.toolkit.fluxcd.io/v1beta2",
            "invalid object type: source.toolkit.fluxcd.io/v1beta2, Kind=GitRepository",
        ),
        (
            "/apiVersion",
            "v1",
            "invalid object type: /v1, Kind=GitRepository",
        ),
        (
            "/metadata/name",
            "other",
            "the name of the object (other) does not match the name on the URL (openova)",
        ),
        (
            "/metadata/namespace",
            "default",
            "the namespace of the object (default) does not match the namespace on the request (flux-system)",
        ),
    ] {
        let mut config = git_repository("u");
        *config.pointer_mut(field).unwrap() = value.into();
        assert_eq!(bad(&mut c, &config), message, "{field}");
    }
    let (code, _) = patch_at(&mut c, &at, APPLY, "spec: [unclosed");
    assert_eq!(code, 400);
    assert!(!c.objects.contains_key(OPENOVA));
}
