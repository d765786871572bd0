//! Scenarios: the seed Secret and Helm: adoption by bp-openbao's release, the consumer's read path.

use super::*;

/// The bp-openbao chart 1.2.x installs as release `openbao` in `openbao`
/// (bootstrap-kit slot 08) and renders the seed Secret itself.
fn helm_install_of_openbao(sb: &Sandbox) -> Result<(), String> {
    helm::install_over(
        &sb.seed_secret().expect("seed Secret"),
        "openbao",
        "openbao",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_seed_is_adoptable_by_todays_openbao_release() {
    let sb = Sandbox::new();
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_eq!(helm_install_of_openbao(&sb), Ok(()));
    let meta = &sb.seed_secret().unwrap()["metadata"];
    assert_eq!(meta["annotations"]["openbao.openova.io/single-use"], "true");
    assert_eq!(
        sb.api.count(&Method::PATCH, SEED),
        0,
        "created with it, not patched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_helm_release_owns_the_seed() {
    let sb = Sandbox::new();
    sb.write_config("seed:\n  helm_release:\n    name: bp-openbao\n    namespace: flux-system\n");
    assert_exit(&sb.run().await, 0);
    let secret = sb.seed_secret().unwrap();
    assert_eq!(
        helm::install_over(&secret, "bp-openbao", "flux-system"),
        Ok(())
    );
    let refused = helm_install_of_openbao(&sb).unwrap_err();
    assert!(
        refused.contains("key \"meta.helm.sh/release-name\" must equal \"openbao\": current value is \"bp-openbao\""),
        "{refused}"
    );
    assert_eq!(
        secret["metadata"]["annotations"]["openbao.openova.io/single-use"],
        "true"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_release_none_leaves_the_seed_unowned() {
    let sb = Sandbox::new();
    sb.write_config("seed:\n  helm_release: none\n");
    assert_exit(&sb.run().await, 0);
    let secret = sb.seed_secret().unwrap();
    assert!(secret["metadata"].get("labels").is_none());
    assert_eq!(
        secret["metadata"]["annotations"],
        json!({"openbao.openova.io/single-use": "true"})
    );
    assert_eq!(
        helm_install_of_openbao(&sb),
        Err(
            "Secret \"openbao-recovery-seed\" in namespace \"openbao\" exists and cannot be imported \
             into the current release: invalid ownership metadata; \
             label validation error: missing key \"app.kubernetes.io/managed-by\": must be set to \"Helm\"; \
             annotation validation error: missing key \"meta.helm.sh/release-name\": must be set to \"openbao\"; \
             annotation validation error: missing key \"meta.helm.sh/release-namespace\": must be set to \"openbao\""
                .to_string()
        )
    );
}

/// The bp-openbao init Job's read path: the Secret as JSON from the API
/// server, `data.recovery-seed`, base64-decoded: the 44-character seed.
/// Its text search for `"recovery-seed":` must find that key and nothing
/// else (labels, annotations, managedFields).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_job_reads_the_seed_from_the_stored_object() {
    let sb = Sandbox::new();
    assert_exit(&sb.run().await, 0);
    let (code, text) = sb.api.fetch(SEED).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(text.matches("\"recovery-seed\":").count(), 1, "{text}");
    assert!(
        text.contains("managedFields"),
        "the object as stored, with managedFields"
    );
    let secret: Value = serde_json::from_str(&text).unwrap();
    let seed = STANDARD
        .decode(secret["data"]["recovery-seed"].as_str().unwrap())
        .unwrap();
    assert_eq!(seed.len(), 44);
    assert!(
        seed.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(c))
    );
    assert_eq!(STANDARD.decode(&seed).unwrap().len(), 32);
    // What the Job takes after the key is the value itself.
    let after = &text[text.find("\"recovery-seed\":").unwrap() + 16..];
    assert!(after.starts_with(&format!(
        "\"{}\"",
        secret["data"]["recovery-seed"].as_str().unwrap()
    )));
    assert_eq!(helm_install_of_openbao(&sb), Ok(()));
}

/// A seed Secret from before the default: `existing` is its metadata.
async fn existing_seed_gets_ownership(existing: Value) -> (Sandbox, Finished, Value) {
    let sb = Sandbox::new();
    sb.api.insert_namespace("openbao");
    let mut meta = json!({"name": "openbao-recovery-seed", "namespace": "openbao"});
    merge(&mut meta, &existing);
    sb.api.insert(
        SEED,
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta,
               "data": {"recovery-seed": STANDARD.encode("a-peer-wrote-this-seed-before-us-0000000000=")}}),
    );
    let before = sb.seed_secret().unwrap();
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_eq!(
        sb.seed_secret().unwrap()["data"],
        before["data"],
        "the seed is never rewritten"
    );
    assert_eq!(sb.api.creations(SEED), 0);
    (sb, out, before)
}

fn merge(target: &mut Value, extra: &Value) {
    for (k, v) in extra.as_object().unwrap() {
        target[k] = v.clone();
    }
}

/// Every PATCH of the seed Secret: metadata only, conditional on the version read.
fn seed_patches(sb: &Sandbox) -> Vec<Value> {
    sb.api
        .requests()
        .into_iter()
        .filter(|r| r.method == Method::PATCH && r.path == SEED)
        .map(|r| r.body.expect("a JSON patch"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_seed_without_metadata_is_given_ownership() {
    let (sb, out, before) = existing_seed_gets_ownership(json!({})).await;
    assert_eq!(helm_install_of_openbao(&sb), Ok(()));
    let patches = seed_patches(&sb);
    assert_eq!(patches.len(), 1);
    assert_eq!(
        patches[0],
        json!({"metadata": {
            "resourceVersion": before["metadata"]["resourceVersion"],
            "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {"meta.helm.sh/release-name": "openbao", "meta.helm.sh/release-namespace": "openbao"},
        }})
    );
    assert_stderr(
        &out,
        "kept it unchanged; added Helm ownership metadata for release openbao/openbao",
    );
    sb.assert_no_leaks(&[&out.stderr, &out.stdout]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_seed_with_other_metadata_keeps_it_and_gains_ownership() {
    let (sb, out, _) = existing_seed_gets_ownership(json!({
        "labels": {"app.kubernetes.io/name": "openbao"},
        "annotations": {"openbao.openova.io/single-use": "true", "meta.helm.sh/release-name": "openbao"},
    }))
    .await;
    assert_eq!(helm_install_of_openbao(&sb), Ok(()));
    let meta = &sb.seed_secret().unwrap()["metadata"];
    assert_eq!(meta["labels"]["app.kubernetes.io/name"], "openbao", "kept");
    assert_eq!(
        meta["annotations"]["openbao.openova.io/single-use"], "true",
        "kept"
    );
    assert_eq!(seed_patches(&sb).len(), 1);
    assert_stderr(&out, "added Helm ownership metadata");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_seed_already_owned_is_not_patched() {
    let (sb, out, before) = existing_seed_gets_ownership(json!({
        "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"meta.helm.sh/release-name": "openbao", "meta.helm.sh/release-namespace": "openbao"},
    }))
    .await;
    assert_eq!(seed_patches(&sb).len(), 0);
    assert_eq!(sb.seed_secret().unwrap(), before, "byte for byte");
    assert_stderr(&out, "already holds a seed; kept it unchanged");
    assert!(
        !out.stderr.contains("added Helm ownership"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_seed_of_another_release_is_not_taken() {
    let (sb, out, before) = existing_seed_gets_ownership(json!({
        "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"meta.helm.sh/release-name": "bp-openbao", "meta.helm.sh/release-namespace": "openbao"},
    }))
    .await;
    assert_eq!(seed_patches(&sb).len(), 0);
    assert_eq!(sb.seed_secret().unwrap(), before, "byte for byte");
    assert!(helm_install_of_openbao(&sb).is_err());
    assert_stderr(
        &out,
        "belongs to Helm release bp-openbao/openbao, not openbao/openbao",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_seed_patch_conflict_is_read_again_and_retried() {
    let sb = Sandbox::new();
    sb.api.insert_secret(
        "openbao",
        "openbao-recovery-seed",
        json!({"recovery-seed": STANDARD.encode("a-peer-wrote-this-seed-before-us-0000000000=")}),
    );
    let before = sb.seed_secret().unwrap();
    sb.api.fault(
        Method::PATCH,
        SEED,
        1,
        Fault::Status {
            code: 409,
            reason: "Conflict",
            message: "Operation cannot be fulfilled on secrets \"openbao-recovery-seed\": the object has been modified; please apply your changes to the latest version and try again".into(),
        },
    );
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_eq!(seed_patches(&sb).len(), 2);
    assert_eq!(sb.seed_secret().unwrap()["data"], before["data"]);
    assert_eq!(helm_install_of_openbao(&sb), Ok(()));
}
