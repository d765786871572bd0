//! The hand-off under a real systemd: READY=1 once the critical work is
//! done, the unit "active (running)" while it waits for Flux's CRD, the
//! marker written through the sandbox, then inactive with Result=success.

use catalyst_bootstrap_tests::apiserver::{GIT_REPOSITORY, KUSTOMIZATION};
use catalyst_bootstrap_tests::handoff::{FLUX, KUSTOMIZATION_PATH as OBJECT};

use super::*;

#[test]
fn ready_comes_before_the_hand_off_ends_and_the_marker_is_written() {
    let (_rt, sb) = fakes();
    sb.api.insert_namespace("flux-system");
    // Flux's CRDs arrive with its install, after the API server is up.
    let crd_after = Duration::from_secs(12);
    sb.api.add_crd(GIT_REPOSITORY, crd_after);
    sb.api.add_crd(KUSTOMIZATION, crd_after);
    let c = Container::boot(&[(&artifacts().dir, "/mnt/pkg")]);
    provision(&c, &sb);
    c.sh("mkdir -p /var/lib/catalyst");
    c.sh("echo 'done_marker: /var/lib/catalyst/cloud-init-complete' >> /etc/catalyst-bootstrap/config.yaml");
    c.write(
        "/etc/catalyst-bootstrap/manifests.d/flux-bootstrap.yaml",
        FLUX,
        "0644",
    );

    // A blocking start returns at READY=1, while the kind is not served.
    let started = Instant::now();
    let out = c.exec(&["systemctl", "start", UNIT]);
    assert!(out.status.success(), "{}", diagnose(&c));
    assert!(
        started.elapsed() < crd_after,
        "systemctl start waited for the hand-off ({:?})",
        started.elapsed()
    );
    assert_eq!(
        sb.catalyst.store_count(DEPLOYMENT_ID),
        1,
        "kubeconfig not delivered at READY"
    );
    assert_eq!(c.show(UNIT, "ActiveState"), "active", "{}", diagnose(&c));
    assert_eq!(c.show(UNIT, "SubState"), "running");
    wait_until("STATUS= of the hand-off", Duration::from_secs(10), || {
        c.show(UNIT, "StatusText")
            .contains("waiting for GitRepository")
    });
    assert!(sb.api.object(OBJECT).is_none());
    assert!(
        !c.exec(&["test", "-e", "/var/lib/catalyst/cloud-init-complete"])
            .status
            .success(),
        "the marker came before the hand-off"
    );

    wait_finished(&c, "the hand-off to end");
    assert!(sb.api.object(OBJECT).is_some(), "{}", diagnose(&c));
    let marker = c.sh("stat -c '%s %U' /var/lib/catalyst/cloud-init-complete");
    assert_eq!(marker.trim(), "0 root", "{}", diagnose(&c));
    let log = c.sh("journalctl -u catalyst-bootstrap --no-pager -o cat");
    let ready = log.find("kubeconfig, seed and bootstrap Secrets done");
    let applied = log.find("Kustomization flux-system/bootstrap-kit applied");
    assert!(
        matches!((ready, applied), (Some(r), Some(a)) if r < a),
        "READY after the hand-off:\n{log}"
    );
    for body in catalyst_bootstrap_tests::handoff::BODY_TEXTS {
        assert!(!log.contains(body), "{body}: {log}");
    }
}
