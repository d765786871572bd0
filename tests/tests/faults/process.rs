//! Fault cases: the agent process: signals at every boundary, two agents.

use super::*;

pub(crate) const CASES: &[Case] = &[
    Case {
        name: "sigkill_after_wait",
        area: Area::Process,
        fault: "SIGKILL right after the API server answered `/readyz`",
        start: Start::DEFAULT,
        setup: nothing,
        drive: Drive::Signal {
            ready: |_, e| e.contains("wait phase done"),
            signal: Signal::SIGKILL,
        },
        exit: None,
        says: "",
        outcome: "next run resumes; one seed, one kubeconfig",
        resume: Some(nothing),
    },
    Case {
        name: "sigkill_mid_secret_create",
        area: Area::Process,
        fault: "SIGKILL while the Secret create is in flight",
        start: Start::DEFAULT,
        setup: |sb| {
            api_fault(
                sb,
                Method::POST,
                SECRETS,
                1,
                Fault::Delay(Duration::from_secs(30)),
            )
        },
        drive: Drive::Signal {
            ready: |sb, _| sb.api.count(&Method::POST, SECRETS) == 1,
            signal: Signal::SIGKILL,
        },
        exit: None,
        says: "",
        outcome: "next run writes the seed once",
        resume: Some(nothing),
    },
    Case {
        name: "sigkill_after_secret_committed",
        area: Area::Process,
        fault: "SIGKILL after the API server stored the Secret, before the answer",
        start: Start::DEFAULT,
        setup: |sb| {
            api_fault(
                sb,
                Method::POST,
                SECRETS,
                1,
                Fault::CommitThenDelay(Duration::from_secs(30)),
            )
        },
        drive: Drive::Signal {
            ready: |sb, _| sb.seed_secret().is_some(),
            signal: Signal::SIGKILL,
        },
        exit: None,
        says: "",
        outcome: "next run finds its own seed (409), keeps it",
        resume: Some(nothing),
    },
    Case {
        name: "sigkill_mid_put",
        area: Area::Process,
        fault: "SIGKILL while the PUT waits for catalyst-api",
        start: Start::DEFAULT,
        setup: |sb| sb.catalyst.script([Step::Delay(Duration::from_secs(30))]),
        drive: Drive::Signal {
            ready: |_, e| e.contains("sending the kubeconfig"),
            signal: Signal::SIGKILL,
        },
        exit: None,
        says: "",
        outcome: "next run sends it; captured once",
        resume: Some(|sb| sb.catalyst.clear_script()),
    },
    Case {
        name: "sigkill_after_put_committed",
        area: Area::Process,
        fault: "SIGKILL after catalyst-api stored the kubeconfig, before the answer",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.catalyst
                .script([Step::StoreThenDelay(Duration::from_secs(30))])
        },
        drive: Drive::Signal {
            ready: |sb, _| sb.catalyst.store_count(DEPLOYMENT_ID) == 1,
            signal: Signal::SIGKILL,
        },
        exit: None,
        says: "",
        outcome: "next run gets `403 already-set`: success, captured once",
        resume: Some(|sb| sb.catalyst.clear_script()),
    },
    Case {
        name: "sigterm_waiting_for_kubeconfig",
        area: Area::Process,
        fault: "SIGTERM while waiting for k3s to write its kubeconfig",
        start: Start {
            kubeconfig: false,
            ..Start::DEFAULT
        },
        setup: nothing,
        drive: Drive::Signal {
            ready: |_, e| e.contains("wait phase started"),
            signal: Signal::SIGTERM,
        },
        exit: Some(75),
        says: "Stopping on SIGTERM",
        outcome: "exit 75, progress saved; next run resumes",
        resume: Some(|sb| sb.write_kubeconfig()),
    },
    Case {
        name: "sigterm_waiting_for_api_server",
        area: Area::Process,
        fault: "SIGTERM while waiting for the API server",
        start: Start {
            api_up: false,
            ..Start::DEFAULT
        },
        setup: nothing,
        drive: Drive::Signal {
            ready: |_, e| e.contains("waiting for the API server"),
            signal: Signal::SIGTERM,
        },
        exit: Some(75),
        says: "Stopping on SIGTERM",
        outcome: "exit 75; next run resumes",
        resume: Some(|sb| sb.api.set_up(true)),
    },
    Case {
        name: "sigterm_in_put_backoff",
        area: Area::Process,
        fault: "SIGTERM while backing off from catalyst-api `503`s",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.catalyst
                .script((0..100).map(|_| Step::error(503, "write-failed")))
        },
        drive: Drive::Signal {
            ready: |_, e| e.contains("attempt 2 failed"),
            signal: Signal::SIGTERM,
        },
        exit: Some(75),
        says: "Stopping on SIGTERM",
        outcome: "exit 75; next run resumes",
        resume: Some(|sb| sb.catalyst.clear_script()),
    },
    Case {
        name: "sigterm_in_seed_backoff",
        area: Area::Process,
        fault: "SIGTERM while backing off from Secret-create `500`s",
        start: Start::DEFAULT,
        setup: |sb| {
            api_fault(
                sb,
                Method::POST,
                SECRETS,
                1000,
                status(500, "InternalError", "etcdserver: request timed out"),
            )
        },
        drive: Drive::Signal {
            ready: |_, e| e.contains("etcdserver: request timed out"),
            signal: Signal::SIGTERM,
        },
        exit: Some(75),
        says: "Stopping on SIGTERM",
        outcome: "exit 75; next run resumes",
        resume: Some(|sb| sb.api.clear_faults()),
    },
    Case {
        name: "two_agents_one_state_dir",
        area: Area::Process,
        fault: "a second agent started on the same state directory",
        start: Start::DEFAULT,
        setup: |sb| sb.catalyst.script([Step::Delay(Duration::from_secs(2))]),
        drive: Drive::Twin,
        exit: Some(0),
        says: "",
        outcome: "the second exits 75 naming the first's pid; the first finishes",
        resume: None,
    },
];
