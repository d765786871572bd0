//! Fault cases: the hand-off, at each boundary: an apply written but not
//! recorded, the API server gone mid-phase, discovery failing, a kind that
//! never comes, an object refused as invalid, the marker's directory
//! missing, a stop while waiting for a kind.

use catalyst_bootstrap_tests::apiserver::{GIT_REPOSITORY, KUSTOMIZATION};
use catalyst_bootstrap_tests::handoff::{FLUX, GIT_REPO_PATH as REPO, KUSTOMIZATION_PATH as KIT};

use super::*;

/// Flux installed: its namespace and CRDs, and the hand-off file.
fn flux(sb: &Sandbox) {
    sb.api.insert_namespace("flux-system");
    sb.api.add_crd(GIT_REPOSITORY, Duration::ZERO);
    sb.api.add_crd(KUSTOMIZATION, Duration::ZERO);
    sb.write_handoff("flux-bootstrap.yaml", FLUX);
}

fn marker(sb: &Sandbox) -> std::path::PathBuf {
    sb.path("provisioner/cloud-init-complete")
}

pub(crate) const CASES: &[Case] = &[
    Case {
        name: "handoff_killed_after_apply_before_record",
        area: Area::Handoff,
        fault: "SIGKILL after the API server applied a hand-off object, before the agent heard back",
        start: Start::DEFAULT,
        setup: |sb| {
            flux(sb);
            api_fault(
                sb,
                Method::PATCH,
                REPO,
                1,
                Fault::CommitThenDelay(Duration::from_secs(60)),
            );
        },
        drive: Drive::Signal {
            ready: |sb, _| sb.api.object(REPO).is_some(),
            signal: Signal::SIGKILL,
        },
        exit: None,
        says: "",
        outcome: "killed; state.json does not record the object, so the restart applies it again (server-side apply: harmless) and the rest after it",
        resume: Some(|sb| sb.api.clear_faults()),
    },
    Case {
        name: "handoff_api_server_gone_mid_phase",
        area: Area::Handoff,
        fault: "the API server goes away and comes back while the hand-off waits for a kind and applies",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.api.insert_namespace("flux-system");
            sb.api.add_crd(GIT_REPOSITORY, Duration::from_millis(300));
            sb.api.add_crd(KUSTOMIZATION, Duration::from_secs(1));
            sb.write_handoff("flux-bootstrap.yaml", FLUX);
        },
        drive: Drive::Heal {
            when: |_, e| e.contains("handing the cluster to Flux"),
            heal: |sb| {
                sb.api.set_up(false);
                std::thread::sleep(Duration::from_millis(800));
                sb.api.set_up(true);
            },
        },
        exit: Some(0),
        says: "Kustomization flux-system/bootstrap-kit applied",
        outcome: "a wait with retries, not a failure: both objects applied once it is back; exit 0",
        resume: None,
    },
    Case {
        name: "handoff_discovery_failing",
        area: Area::Handoff,
        fault: "discovery of Flux's group version answers 503 five times",
        start: Start::DEFAULT,
        setup: |sb| {
            flux(sb);
            let fault = status(
                503,
                "ServiceUnavailable",
                "the aggregated API is unavailable",
            );
            api_fault(
                sb,
                Method::GET,
                "/apis/source.toolkit.fluxcd.io/v1",
                5,
                fault,
            );
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "GitRepository flux-system/openova applied",
        outcome: "retried like any 5xx; the objects applied once discovery answers; exit 0",
        resume: None,
    },
    Case {
        name: "handoff_required_kind_never_served",
        area: Area::Handoff,
        fault: "Flux's CRDs never become Established",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.write_handoff("flux-bootstrap.yaml", FLUX);
            short_deadline(sb);
        },
        drive: Drive::Run,
        exit: Some(69),
        says: "waiting for GitRepository (source.toolkit.fluxcd.io/v1) to be served",
        outcome: "exit 69 after READY=1 (the kubeconfig, seed and Secrets are done); systemd restarts it, and the restart hands over once Flux is installed",
        resume: Some(|sb| {
            sb.write_config("");
            flux(sb);
        }),
    },
    Case {
        name: "handoff_object_invalid",
        area: Area::Handoff,
        fault: "the API server refuses a hand-off object as invalid (422)",
        start: Start::DEFAULT,
        setup: |sb| {
            flux(sb);
            let fault = status(
                422,
                "Invalid",
                "Kustomization.kustomize.toolkit.fluxcd.io \"bootstrap-kit\" is invalid: spec.sourceRef: Required value",
            );
            api_fault(sb, Method::PATCH, KIT, 1, fault);
        },
        drive: Drive::Run,
        exit: Some(79),
        says: "spec.sourceRef: Required value",
        outcome: "exit 79 at once (not retried, not restarted), naming the object and the server's reason; the objects before it stay applied",
        resume: Some(|sb| sb.api.clear_faults()),
    },
    Case {
        name: "handoff_marker_directory_missing",
        area: Area::Handoff,
        fault: "`done_marker`'s directory does not exist",
        start: Start::DEFAULT,
        setup: |sb| {
            flux(sb);
            sb.write_config(&format!("done_marker: {}\n", marker(sb).display()));
        },
        drive: Drive::Run,
        exit: Some(73),
        says: "writing `done_marker`",
        outcome: "exit 73 naming the marker once the objects are applied; the restart writes it and applies nothing again",
        resume: Some(|sb| {
            std::fs::create_dir_all(marker(sb).parent().unwrap()).unwrap();
        }),
    },
    Case {
        name: "handoff_sigterm_while_waiting_for_a_kind",
        area: Area::Handoff,
        fault: "SIGTERM while the hand-off waits for Flux's CRDs",
        start: Start::DEFAULT,
        setup: |sb| sb.write_handoff("flux-bootstrap.yaml", FLUX),
        drive: Drive::Signal {
            ready: |_, e| e.contains("not served yet"),
            signal: Signal::SIGTERM,
        },
        exit: Some(75),
        says: "Stopping on SIGTERM",
        outcome: "exit 75, the hand-off recorded as interrupted; the restart resumes it and sends nothing twice",
        resume: Some(flux),
    },
];
