//! Scenarios: bootstrap Secrets: applied with server-side apply, their
//! files gone, rotated, refused when malformed, waited for a namespace.

use catalyst_bootstrap_tests::sandbox::{GHCR_TOKEN, HCLOUD_TOKEN, S3_SECRET};

use super::*;

fn secret_path(name: &str) -> String {
    format!("/api/v1/namespaces/flux-system/secrets/{name}")
}

fn value(sb: &Sandbox, name: &str, key: &str) -> String {
    sb.bootstrap_value(name, key)
        .unwrap_or_else(|| panic!("Secret {name} has no {key}"))
}

async fn wait_until(what: &str, timeout: Duration, cond: impl Fn() -> bool) {
    let end = std::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_secrets_are_applied_and_their_files_removed() {
    let sb = Sandbox::new();
    sb.write_upstream_secrets();
    // check-config reads them as the run will, and shows no value.
    let checked = sb.command(&["check-config"]).output().await.unwrap();
    let checked = String::from_utf8_lossy(&checked.stdout).into_owned();
    assert!(
        checked.contains("bootstrap_secret: flux-system/ghcr-pull (from ghcr-pull.yaml, valid)"),
        "{checked}"
    );
    assert_eq!(sb.manifests_left().len(), 3, "check-config removed a file");
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert!(value(&sb, "ghcr-pull", ".dockerconfigjson").contains(GHCR_TOKEN));
    assert_eq!(value(&sb, "object-storage", "secret-key"), S3_SECRET);
    assert_eq!(value(&sb, "object-storage", "bucket"), "sovereign-0f1e");
    assert_eq!(
        value(&sb, "cloud-credentials", "hcloud-token"),
        HCLOUD_TOKEN
    );
    for name in ["ghcr-pull", "object-storage", "cloud-credentials"] {
        let secret = sb.api.object(&secret_path(name)).unwrap();
        let annotations = &secret["metadata"]["annotations"];
        assert!(
            annotations
                .get("kubectl.kubernetes.io/last-applied-configuration")
                .is_none(),
            "{name} keeps a second copy: {annotations}"
        );
        let managers: Vec<&Value> = secret["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["manager"])
            .collect();
        assert_eq!(managers, [&json!("catalyst-bootstrap")], "{name}");
        assert_eq!(secret["metadata"]["managedFields"][0]["operation"], "Apply");
        assert!(secret.get("stringData").is_none());
        assert_eq!(
            sb.api.count(&Method::PATCH, &secret_path(name)),
            1,
            "{name}"
        );
    }
    assert_eq!(
        sb.api.object(&secret_path("ghcr-pull")).unwrap()["type"],
        "kubernetes.io/dockerconfigjson"
    );
    assert!(
        sb.manifests_left().is_empty(),
        "left: {:?}",
        sb.manifests_left()
    );

    let state = sb.state();
    assert_eq!(state["secrets"]["outcome"], "done");
    let applied: Vec<(String, bool)> = state["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["secret"].as_str().unwrap().to_string(),
                a["removed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        applied,
        [
            ("flux-system/cloud-credentials".to_string(), true),
            ("flux-system/ghcr-pull".to_string(), true),
            ("flux-system/object-storage".to_string(), true),
        ]
    );
    let status = sb.command(&["status"]).output().await.unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.contains("flux-system/ghcr-pull") && status.contains("applied, file removed"),
        "{status}"
    );
    assert_stderr(&out, "Secret flux-system/ghcr-pull applied from");
    sb.assert_no_leaks(&[&out.stderr, &status, &checked]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_updates_the_secret() {
    let sb = Sandbox::new();
    sb.write_manifest(
        "cloud-credentials.yaml",
        &format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: cloud-credentials, namespace: flux-system}}\nstringData: {{hcloud-token: {HCLOUD_TOKEN}}}\n"),
        &[HCLOUD_TOKEN],
    );
    assert_exit(&sb.run().await, 0);
    // Re-provisioned: a fresh state directory and the rotated token.
    std::fs::remove_dir_all(sb.state_dir()).unwrap();
    let rotated = "hcloudRotatedToken9876543210zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQPO";
    sb.write_manifest(
        "cloud-credentials.yaml",
        &format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: cloud-credentials, namespace: flux-system}}\nstringData: {{hcloud-token: {rotated}}}\n"),
        &[rotated],
    );
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_eq!(value(&sb, "cloud-credentials", "hcloud-token"), rotated);
    assert!(sb.manifests_left().is_empty());
    sb.assert_no_leaks(&[&out.stderr]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_are_refused_before_anything_is_sent() {
    let secret = "hunter2hunter2hunter2hunter2";
    let cases: &[(&str, u32, i32, &str)] = &[
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: b}\n",
            0o600,
            65,
            "field `kind`",
        ),
        (
            "apiVersion: v1\nkind: Secret\nmetadata: {name: a}\nstringData: {k: hunter2hunter2hunter2hunter2}\n",
            0o600,
            65,
            "`metadata.namespace` is missing",
        ),
        (
            "apiVersion: v1\nkind: Secret\nmetadata: {name: UPPER, namespace: b}\n",
            0o600,
            65,
            "`metadata.name`",
        ),
        (
            "apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\nstringdata: {k: hunter2hunter2hunter2hunter2}\n",
            0o600,
            65,
            "unknown field `stringdata`",
        ),
        (
            "apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\nstringData: {k: hunter2hunter2hunter2hunter2}\n",
            0o644,
            78,
            "mode 0644",
        ),
    ];
    for (manifest, mode, code, says) in cases {
        let sb = Sandbox::new();
        sb.write_manifest("bad.yaml", manifest, &[secret]);
        std::fs::set_permissions(
            sb.secrets_dir().join("bad.yaml"),
            std::os::unix::fs::PermissionsExt::from_mode(*mode),
        )
        .unwrap();
        let out = sb.run().await;
        assert_exit(&out, *code);
        assert_stderr(&out, says);
        assert_stderr(&out, "bad.yaml");
        assert!(
            !out.stderr.contains("hunter2"),
            "a value in:\n{}",
            out.stderr
        );
        assert!(sb.catalyst.requests().is_empty(), "the token was used");
        assert!(sb.api.requests().is_empty(), "a request before the refusal");
        assert_eq!(
            sb.manifests_left(),
            ["bad.yaml"],
            "the file is the operator's to fix"
        );
        sb.assert_no_leaks(&[&out.stderr]);
    }
    // A file root did not write, and one that is not a regular file.
    let valid = "apiVersion: v1\nkind: Secret\nmetadata: {name: a, namespace: b}\n";
    let sb = Sandbox::new();
    sb.write_manifest("theirs.yaml", valid, &[]);
    std::os::unix::fs::chown(sb.secrets_dir().join("theirs.yaml"), Some(65534), None).unwrap();
    refused_unsent(&sb, 78, "theirs.yaml: is owned by uid 65534, not by root").await;
    let sb = Sandbox::new();
    sb.write_manifest("pipe.yaml", valid, &[]);
    sb.put_fifo(&sb.secrets_dir().join("pipe.yaml"));
    refused_unsent(
        &sb,
        78,
        "pipe.yaml: is a FIFO (named pipe), not a regular file",
    )
    .await;

    // The same Secret from two files.
    let sb = Sandbox::new();
    sb.write_upstream_secrets();
    let copy = std::fs::read_to_string(sb.secrets_dir().join("ghcr-pull.yaml")).unwrap();
    sb.write_manifest("zz-copy.yaml", &copy, &[]);
    refused_unsent(&sb, 65, "both define Secret flux-system/ghcr-pull").await;
}

/// The run ends with `code`, says `says`, and sent nothing anywhere (the
/// token is not used up).
async fn refused_unsent(sb: &Sandbox, code: i32, says: &str) -> Finished {
    let out = sb.run().await;
    assert_exit(&out, code);
    assert_stderr(&out, says);
    assert!(sb.catalyst.requests().is_empty(), "the token was used");
    assert!(sb.api.requests().is_empty(), "a request before the refusal");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_being_terminated_is_waited_out() {
    let sb = Sandbox::new();
    sb.write_upstream_secrets();
    sb.api.insert_namespace("flux-system");
    sb.api.terminate_namespace("flux-system");
    let agent = sb.spawn(&["run"]);
    // The PUT does not wait for the namespace.
    wait_until(
        "a refused apply, and the PUT",
        Duration::from_secs(20),
        || {
            sb.api
                .count(&Method::PATCH, &secret_path("cloud-credentials"))
                >= 2
                && sb.catalyst.store_count(DEPLOYMENT_ID) == 1
        },
    )
    .await;
    assert!(sb.api.object(&secret_path("cloud-credentials")).is_none());
    sb.api.finish_termination("flux-system");
    let out = agent.finish().await;
    assert_exit(&out, 0);
    assert_eq!(
        value(&sb, "cloud-credentials", "hcloud-token"),
        HCLOUD_TOKEN
    );
    assert!(sb.manifests_left().is_empty());
    assert_stderr(&out, "being terminated");
}

/// A stop after state.json recorded a Secret but before its file went (here:
/// the file could not be overwritten): the next run removes the file unread
/// and does not apply that Secret again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_secret_is_not_applied_again() {
    use catalyst_bootstrap_tests::faults::{Unmount, secrets_read_only, secrets_writable};
    let sb = Sandbox::new();
    sb.write_upstream_secrets();
    let _unmount = Unmount(&sb);
    secrets_read_only(&sb);
    let out = sb.run().await;
    assert_exit(&out, 78);
    assert_stderr(&out, "cloud-credentials.yaml");
    assert_eq!(sb.state()["applied"][0]["removed"], false);
    secrets_writable(&sb);
    // What an interrupted overwrite leaves: no longer a manifest.
    std::fs::write(sb.secrets_dir().join("cloud-credentials.yaml"), [0u8; 64]).unwrap();
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_eq!(
        sb.api
            .count(&Method::PATCH, &secret_path("cloud-credentials")),
        1,
        "applied again"
    );
    assert_stderr(
        &out,
        "was left by an earlier run after its Secret was applied; removed it",
    );
    sb.assert_upstream_secrets();
    sb.assert_no_leaks(&[&out.stderr]);
}

/// Every control-plane node applies its own files and keeps none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_control_plane_node_applies_its_own_files() {
    let sb = Sandbox::new();
    let nodes = ["cp-1", "cp-2", "cp-3"];
    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: cloud-credentials, namespace: flux-system}}\n\
         stringData: {{hcloud-token: {HCLOUD_TOKEN}}}\n"
    );
    for node in nodes {
        let dir = sb.node_secrets_dir(node);
        sb.write_manifest_in(&dir, "cloud-credentials.yaml", &manifest, &[HCLOUD_TOKEN]);
    }
    let agents: Vec<_> = nodes.iter().map(|n| sb.spawn_node(n)).collect();
    for agent in agents {
        assert_exit(&agent.finish().await, 0);
    }
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 1, "one kubeconfig");
    assert_eq!(
        sb.api
            .count(&Method::PATCH, &secret_path("cloud-credentials")),
        3
    );
    assert_eq!(
        value(&sb, "cloud-credentials", "hcloud-token"),
        HCLOUD_TOKEN
    );
    for node in nodes {
        let left = std::fs::read_dir(sb.path(&format!("secrets-{node}")))
            .unwrap()
            .count();
        assert_eq!(left, 0, "{node} kept its file");
    }
}
