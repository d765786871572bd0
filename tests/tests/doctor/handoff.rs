//! doctor's hand-off lines: what a run would apply, which kinds are served
//! now and which it would wait for, and the marker's directory.

use catalyst_bootstrap_tests::apiserver::GIT_REPOSITORY;

use super::*;

/// The hand-off as a run would do it: which kinds are served now, which a
/// run would wait for, and whether the marker's directory is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hand_off_names_served_and_awaited_kinds_and_the_marker() {
    let sb = Sandbox::new();
    sb.api.add_crd(GIT_REPOSITORY, Duration::ZERO);
    sb.write_handoff(
        "flux-bootstrap.yaml",
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: openova, namespace: flux-system}\n---\n\
         apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: kit, namespace: flux-system}\n",
    );
    sb.write_handoff(
        "crossplane.optional.yaml",
        "apiVersion: pkg.crossplane.io/v1\nkind: Provider\nmetadata: {name: provider-hcloud}\n",
    );
    sb.write_config(&format!(
        "done_marker: {}\n",
        sb.path("no-such-dir/cloud-init-complete").display()
    ));
    let out = doctor(&sb, "hand-off").await;
    expect(
        &out,
        "manifests",
        "warn",
        "3 object(s) in 2 file(s), 3 to apply",
    );
    expect(
        &out,
        "manifests",
        "warn",
        "served now: GitRepository (source.toolkit.fluxcd.io/v1)",
    );
    expect(
        &out,
        "manifests",
        "warn",
        "not served yet: Kustomization (kustomize.toolkit.fluxcd.io/v1)",
    );
    expect(
        &out,
        "manifests",
        "warn",
        "not served yet, optional (waited for 30m",
    );
    expect(&out, "done-marker", "fail", "no-such-dir does not exist");
    assert_eq!(out.code, Some(1));
    assert_side_effect_free(&sb);

    // A file a run would refuse fails here too.
    sb.write_handoff(
        "bad.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: x, namespace: y}\n",
    );
    let out = doctor(&sb, "hand-off, a Secret").await;
    expect(
        &out,
        "manifests",
        "fail",
        "bad.yaml, document 1: is a Secret",
    );
}
