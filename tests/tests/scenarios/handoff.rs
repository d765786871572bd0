//! Scenarios: the hand-off to Flux: objects applied through discovery once
//! their kinds are served, optional files skipped, required ones failing
//! the job, bad files refused before anything is sent, a restart resuming,
//! and no object body on any operator surface.

use catalyst_bootstrap_tests::apiserver::{GIT_REPOSITORY, KUSTOMIZATION, PROVIDER};
use catalyst_bootstrap_tests::handoff::{
    BODY_TEXTS, FLUX, GIT_REPO_PATH, KUSTOMIZATION_PATH, PROVIDER_FILE, PROVIDER_PATH,
};

use super::*;

fn assert_no_body(sb: &Sandbox, outputs: &[&str]) {
    sb.journal.sync();
    let events: Vec<String> = sb
        .api
        .events("default")
        .iter()
        .map(|e| e.to_string())
        .collect();
    let state = std::fs::read_to_string(sb.state_dir().join("state.json")).unwrap_or_default();
    let places = [
        ("outputs", outputs.join("\n")),
        ("sd_notify", sb.notify.messages().join("\n")),
        ("the journal", sb.journal.text(None)),
        ("state.json", state),
        ("Events", events.join("\n")),
    ];
    for (place, text) in places {
        for body in BODY_TEXTS {
            assert!(
                !text.contains(body),
                "{body:?} (an object's body) in {place}:\n{text}"
            );
        }
    }
}

fn handed(sb: &Sandbox) -> Vec<String> {
    sb.state()["handed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["object"].as_str().unwrap().to_string())
        .collect()
}

/// The namespace Flux's install makes, and the sandbox's faster waits.
fn flux_installed(sb: &Sandbox) {
    sb.api.insert_namespace("flux-system");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_served_three_seconds_in_is_waited_for_and_the_put_does_not_wait() {
    let sb = Sandbox::new();
    flux_installed(&sb);
    sb.api.add_crd(GIT_REPOSITORY, Duration::from_secs(3));
    sb.api.add_crd(KUSTOMIZATION, Duration::from_secs(3));
    sb.write_handoff("flux-bootstrap.yaml", FLUX);
    let marker = sb.path("cloud-init-complete");
    sb.write_config(&format!("done_marker: {}\n", marker.display()));
    let checked = sb.command(&["check-config"]).output().await.unwrap();
    let checked = String::from_utf8_lossy(&checked.stdout).into_owned();
    assert!(
        checked.contains(
            "manifest: Kustomization flux-system/bootstrap-kit (kustomize.toolkit.fluxcd.io/v1) from flux-bootstrap.yaml (required, valid)"
        ),
        "{checked}"
    );

    let agent = sb.spawn_journaled(&["run"], &[]);
    // The kubeconfig is delivered, and READY=1 sent, while the hand-off
    // still waits for its kinds.
    agent
        .wait_for_stderr(Duration::from_secs(20), |e| e.contains("not served yet"))
        .await;
    let waited = std::time::Instant::now();
    while sb.catalyst.store_count(DEPLOYMENT_ID) == 0 {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the PUT waited for the hand-off"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        sb.api.object(GIT_REPO_PATH).is_none(),
        "applied before its kind was served"
    );
    assert!(!marker.exists(), "the marker came before the hand-off");
    let out = agent.finish().await;
    assert_exit(&out, 0);
    assert_stderr(&out, "GitRepository flux-system/openova applied from");
    assert_stderr(&out, "Kustomization flux-system/bootstrap-kit applied from");
    assert!(marker.exists(), "no done_marker");

    // Server-side apply by the agent's field manager, no last-applied copy.
    for path in [GIT_REPO_PATH, KUSTOMIZATION_PATH] {
        let object = sb.api.object(path).expect("applied");
        assert_eq!(
            object["metadata"]["managedFields"][0]["manager"],
            "catalyst-bootstrap"
        );
        assert_eq!(object["metadata"]["managedFields"][0]["operation"], "Apply");
        assert!(
            object["metadata"]["annotations"]
                .get("kubectl.kubernetes.io/last-applied-configuration")
                .is_none()
        );
        assert_eq!(sb.api.count(&Method::PATCH, path), 1, "{path}");
    }
    // Discovery was asked again only while a kind was missing: at a
    // bounded rate, not per poll of the sandbox's 50 ms retry.
    let discovery = sb
        .api
        .count(&Method::GET, "/apis/source.toolkit.fluxcd.io/v1");
    assert!((2..=12).contains(&discovery), "{discovery} discovery GETs");
    // READY=1 came before the objects were applied; the last status is Done.
    let lines = sb.notify.lines();
    assert_eq!(
        lines.iter().filter(|l| *l == "READY=1").count(),
        1,
        "{lines:#?}"
    );
    let critical = out
        .stderr
        .find("kubeconfig, seed and bootstrap Secrets done")
        .expect("READY's line");
    let applied = out
        .stderr
        .find("GitRepository flux-system/openova applied")
        .unwrap();
    assert!(
        critical < applied,
        "READY=1 after the hand-off:\n{}",
        out.stderr
    );
    assert!(
        sb.notify
            .statuses()
            .iter()
            .any(|s| s.contains("manifests: waiting for GitRepository")),
        "no STATUS= while waiting for the kind"
    );
    assert!(
        lines.last().unwrap().starts_with("STATUS=Done:"),
        "{lines:#?}"
    );
    assert_eq!(
        handed(&sb),
        [
            "GitRepository flux-system/openova",
            "Kustomization flux-system/bootstrap-kit"
        ]
    );
    let status = sb.command(&["status"]).output().await.unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.contains("Kustomization flux-system/bootstrap-kit"),
        "{status}"
    );
    assert!(status.contains("manifests"), "{status}");
    sb.journal.sync();
    let journal = sb.journal.text(None);
    assert!(
        journal.contains("MESSAGE_ID=8fbb7de726e046d5af1cf57f9b3407e6"),
        "applied"
    );
    assert!(
        journal.contains("MESSAGE_ID=7ef7fd754be54b73a59543f2ad8fcf2b"),
        "kind awaited"
    );
    assert!(
        journal.contains("MESSAGE_ID=5203aad12fc64a7cb6e711392821df7c"),
        "handed to Flux"
    );
    let events = sb.api.events("default");
    assert!(
        events.iter().any(|e| e["action"] == "Manifests"
            && e["note"]
                .as_str()
                .unwrap_or_default()
                .contains("bootstrap-kit applied")),
        "{events:#?}"
    );
    assert_no_body(&sb, &[&out.stdout, &out.stderr, &status]);
    sb.assert_no_leaks(&[&out.stdout, &out.stderr]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_file_whose_kind_never_comes_is_skipped_and_the_job_succeeds() {
    let sb = Sandbox::new();
    flux_installed(&sb);
    sb.api.add_crd(GIT_REPOSITORY, Duration::ZERO);
    sb.api.add_crd(KUSTOMIZATION, Duration::ZERO);
    sb.write_handoff("10-flux-bootstrap.yaml", FLUX);
    sb.write_handoff("20-crossplane-provider.optional.yaml", PROVIDER_FILE);
    let marker = sb.path("cloud-init-complete");
    // The default optional wait (30m) is cut short by the deadline.
    sb.write_config(&format!(
        "done_marker: {}\ndeadline: 4s\n",
        marker.display()
    ));
    let started = std::time::Instant::now();
    let out = sb.spawn_journaled(&["run"], &[]).finish().await;
    assert_exit(&out, 0);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(marker.exists());
    assert_stderr(&out, "20-crossplane-provider.optional.yaml skipped");
    assert!(sb.api.object(PROVIDER_PATH).is_none());
    assert!(sb.api.object(KUSTOMIZATION_PATH).is_some());
    assert!(
        sb.state()["manifests"]["detail"]
            .as_str()
            .unwrap()
            .contains("skipped 20-crossplane-provider.optional.yaml"),
        "{}",
        sb.state()
    );
    sb.journal.sync();
    assert!(
        sb.journal
            .text(None)
            .contains("MESSAGE_ID=665fd3d696e0444e82cd722f49d81072")
    );
    assert_no_body(&sb, &[&out.stdout, &out.stderr]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_kind_that_comes_in_time_is_applied_cluster_scoped() {
    let sb = Sandbox::new();
    sb.api.add_crd(PROVIDER, Duration::from_secs(1));
    sb.write_handoff("crossplane-provider.optional.yaml", PROVIDER_FILE);
    sb.write_config("manifests:\n  optional_wait: 20s\n");
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_stderr(&out, "Provider provider-hcloud applied");
    let provider = sb.api.object(PROVIDER_PATH).expect("the Provider");
    assert!(provider["metadata"].get("namespace").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_file_whose_kind_never_comes_fails_at_the_deadline() {
    let sb = Sandbox::new();
    sb.write_handoff("flux-bootstrap.yaml", FLUX);
    let marker = sb.path("cloud-init-complete");
    sb.write_config(&format!(
        "done_marker: {}\ndeadline: 4s\n",
        marker.display()
    ));
    let out = sb.run().await;
    assert_exit(&out, 69);
    assert_stderr(
        &out,
        "waiting for GitRepository (source.toolkit.fluxcd.io/v1) to be served",
    );
    // The critical work was done; the hand-off and the job were not.
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 1);
    assert_eq!(phase_outcome(&sb, "manifests"), "failed");
    assert!(!marker.exists());
    assert!(!sb.state_dir().join("done").exists());
    assert!(sb.notify.lines().contains(&"READY=1".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_the_manifests_directory_is_refused_before_anything_is_sent() {
    let sb = Sandbox::new();
    sb.write_handoff(
        "flux-bootstrap.yaml",
        &format!(
            "{FLUX}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: ghcr-pull, namespace: flux-system}}\nstringData: {{token: ghp_notShownAnywhere0123456789}}\n"
        ),
    );
    // check-config refuses it as a run would.
    let checked = sb.command(&["check-config"]).output().await.unwrap();
    assert_eq!(checked.status.code(), Some(65));
    assert!(
        String::from_utf8_lossy(&checked.stderr)
            .contains("flux-bootstrap.yaml, document 3: is a Secret"),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let out = sb.run().await;
    assert_exit(&out, 65);
    assert_stderr(
        &out,
        "flux-bootstrap.yaml, document 3: is a Secret: Secrets go in `secrets_dir`",
    );
    assert!(
        !out.stderr.contains("ghp_notShownAnywhere"),
        "{}",
        out.stderr
    );
    assert!(sb.catalyst.requests().is_empty(), "the token was used");
    assert!(sb.api.requests().is_empty(), "the API server was asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_yaml_and_a_nameless_object_are_refused_naming_file_and_document() {
    for (text, says) in [
        (
            "kind: [unclosed\n",
            "flux-bootstrap.yaml: is not valid YAML (line",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: default}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: x-}\n",
            "flux-bootstrap.yaml, document 1: field `metadata.name` is missing",
        ),
    ] {
        let sb = Sandbox::new();
        sb.write_handoff("flux-bootstrap.yaml", text);
        let out = sb.run().await;
        assert_exit(&out, 65);
        assert_stderr(&out, says);
        assert!(sb.catalyst.requests().is_empty());
        assert!(sb.api.requests().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_applies_the_rest_and_records_none_twice() {
    let sb = Sandbox::new();
    flux_installed(&sb);
    sb.api.add_crd(GIT_REPOSITORY, Duration::ZERO);
    sb.write_handoff("flux-bootstrap.yaml", FLUX);
    sb.write_config("deadline: 3s\n");
    let out = sb.run().await;
    assert_exit(&out, 69);
    assert_eq!(handed(&sb), ["GitRepository flux-system/openova"]);

    // Flux's other CRD arrives; systemd restarts the unit.
    sb.api.add_crd(KUSTOMIZATION, Duration::ZERO);
    sb.write_config("");
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert_eq!(
        handed(&sb),
        [
            "GitRepository flux-system/openova",
            "Kustomization flux-system/bootstrap-kit"
        ]
    );
    assert_eq!(
        sb.api.count(&Method::PATCH, GIT_REPO_PATH),
        1,
        "applied twice"
    );
    assert_eq!(sb.api.count(&Method::PATCH, KUSTOMIZATION_PATH), 1);
    // The kubeconfig was not sent again either.
    assert_eq!(sb.catalyst.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoing_api_server_shows_no_body_and_an_invalid_object_is_exit_79() {
    let sb = Sandbox::new();
    flux_installed(&sb);
    sb.api.add_crd(GIT_REPOSITORY, Duration::ZERO);
    sb.api.add_crd(KUSTOMIZATION, Duration::ZERO);
    sb.write_handoff("flux-bootstrap.yaml", FLUX);
    sb.api.fault(
        Method::PATCH,
        KUSTOMIZATION_PATH,
        1,
        Fault::EchoInStatus {
            code: 422,
            reason: "Invalid",
        },
    );
    let out = sb.run().await;
    assert_exit(&out, 79);
    assert_stderr(
        &out,
        "applying Kustomization flux-system/bootstrap-kit from",
    );
    assert_stderr(&out, "422 Invalid");
    assert_eq!(
        sb.api.count(&Method::PATCH, KUSTOMIZATION_PATH),
        1,
        "an invalid object was retried"
    );
    assert_no_body(&sb, &[&out.stdout, &out.stderr]);
    sb.assert_no_leaks(&[&out.stdout, &out.stderr]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_heals_is_waited_out_not_failed() {
    let sb = Sandbox::new();
    sb.api.add_crd(GIT_REPOSITORY, Duration::ZERO);
    sb.api.add_crd(KUSTOMIZATION, Duration::ZERO);
    sb.write_handoff("flux-bootstrap.yaml", FLUX);
    // The namespace comes late (404), then throttling, a conflict, a webhook
    // that timed out, an unavailable server.
    for (code, reason, message) in [
        (429, "TooManyRequests", "too many requests"),
        (409, "Conflict", "the object has been modified"),
        (
            500,
            "InternalError",
            "failed calling webhook: context deadline exceeded",
        ),
        (503, "ServiceUnavailable", "etcd leader changed"),
    ] {
        sb.api.fault(
            Method::PATCH,
            GIT_REPO_PATH,
            1,
            Fault::Status {
                code,
                reason,
                message: message.into(),
            },
        );
    }
    let agent = sb.spawn(&["run"]);
    agent
        .wait_for_stderr(Duration::from_secs(20), |e| e.contains("not found"))
        .await;
    flux_installed(&sb);
    let out = agent.finish().await;
    assert_exit(&out, 0);
    assert!(sb.api.object(KUSTOMIZATION_PATH).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_still_hands_the_cluster_to_flux_and_exits_77() {
    let sb = Sandbox::new();
    flux_installed(&sb);
    sb.api.add_crd(GIT_REPOSITORY, Duration::ZERO);
    sb.api.add_crd(KUSTOMIZATION, Duration::from_secs(1));
    sb.write_handoff("flux-bootstrap.yaml", FLUX);
    sb.catalyst.script([Step::Respond {
        status: 401,
        body: json!({"error": "invalid-bearer"}).to_string(),
        retry_after: None,
    }]);
    let out = sb.run().await;
    assert_exit(&out, 77);
    assert!(
        sb.api.object(KUSTOMIZATION_PATH).is_some(),
        "not handed over"
    );
    assert_eq!(phase_outcome(&sb, "manifests"), "done");
    assert!(!sb.notify.lines().contains(&"READY=1".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_turns_invalid_after_the_start_fails_with_79() {
    let sb = Sandbox::with(Start {
        api_up: false,
        ..Start::default()
    });
    sb.write_handoff("flux-bootstrap.yaml", FLUX);
    let agent = sb.spawn(&["run"]);
    agent
        .wait_for_stderr(Duration::from_secs(20), |e| {
            e.contains("wait phase started")
        })
        .await;
    // upstream's `sed` breaks the file before the API server is up.
    sb.write_handoff(
        "flux-bootstrap.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: x, namespace: y}\n",
    );
    sb.api.set_up(true);
    let out = agent.finish().await;
    assert_exit(&out, 79);
    assert_stderr(
        &out,
        "a manifest file changed after the agent started and is no longer valid",
    );
    assert_eq!(
        sb.catalyst.store_count(DEPLOYMENT_ID),
        1,
        "the PUT still went"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_optional_wait_ends_before_the_deadline() {
    let sb = Sandbox::new();
    sb.write_handoff("crossplane-provider.optional.yaml", PROVIDER_FILE);
    sb.write_config("manifests:\n  optional_wait: 1s\n");
    let started = std::time::Instant::now();
    let out = sb.run().await;
    assert_exit(&out, 0);
    // The sandbox's deadline is 60 s.
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_stderr(&out, "crossplane-provider.optional.yaml skipped");
}
