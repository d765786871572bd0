//! Fault cases: the local Kubernetes API server.

use super::*;

pub(crate) const CASES: &[Case] = &[
    Case {
        name: "api_down_at_start",
        area: Area::Kubernetes,
        fault: "API server not listening at first",
        start: Start {
            api_up: false,
            ..Start::DEFAULT
        },
        setup: nothing,
        drive: Drive::Heal {
            when: |_, e| e.contains("waiting for the API server"),
            heal: |sb| sb.api.set_up(true),
        },
        exit: Some(0),
        says: "",
        outcome: "waits (probing every ≤ 50 ms), then does the job",
        resume: None,
    },
    Case {
        name: "api_flapping",
        area: Area::Kubernetes,
        fault: "API server up and down every 300 ms for 3 s",
        start: Start::DEFAULT,
        setup: nothing,
        drive: Drive::Flap {
            period: Duration::from_millis(300),
            cycles: 10,
        },
        exit: Some(0),
        says: "",
        outcome: "retries through it; one seed",
        resume: None,
    },
    Case {
        name: "api_not_ready",
        area: Area::Kubernetes,
        fault: "`/readyz` answers 500 at first",
        start: Start {
            api_ready: false,
            ..Start::DEFAULT
        },
        setup: nothing,
        drive: Drive::Heal {
            when: |sb, _| sb.api.count(&Method::GET, "/readyz") >= 2,
            heal: |sb| sb.api.set_ready(true),
        },
        exit: Some(0),
        says: "",
        outcome: "waits, then does the job",
        resume: None,
    },
    Case {
        name: "secret_create_500",
        area: Area::Kubernetes,
        fault: "`500` on the Secret create, three times",
        start: Start::DEFAULT,
        setup: |sb| {
            api_fault(
                sb,
                Method::POST,
                SECRETS,
                3,
                status(500, "InternalError", "etcd leader changed"),
            )
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "etcd leader changed",
        outcome: "retried with backoff; one seed",
        resume: None,
    },
    Case {
        name: "secret_create_503",
        area: Area::Kubernetes,
        fault: "`503` on the Secret create, three times",
        start: Start::DEFAULT,
        setup: |sb| {
            api_fault(
                sb,
                Method::POST,
                SECRETS,
                3,
                status(
                    503,
                    "ServiceUnavailable",
                    "the server is currently unable to handle the request",
                ),
            )
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "unable to handle the request",
        outcome: "retried with backoff; one seed",
        resume: None,
    },
    Case {
        name: "secret_create_429",
        area: Area::Kubernetes,
        fault: "`429` on the Secret create, three times",
        start: Start::DEFAULT,
        setup: |sb| {
            api_fault(
                sb,
                Method::POST,
                SECRETS,
                3,
                status(429, "TooManyRequests", "too many requests"),
            )
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "too many requests",
        outcome: "retried with backoff; one seed",
        resume: None,
    },
    Case {
        name: "reset_after_secret_commit",
        area: Area::Kubernetes,
        fault: "connection reset after the Secret create was committed",
        start: Start::DEFAULT,
        setup: |sb| api_fault(sb, Method::POST, SECRETS, 1, Fault::CommitThenDrop),
        drive: Drive::Run,
        exit: Some(0),
        says: "already holds a seed; kept it",
        outcome: "the retry gets `409 AlreadyExists`: our own seed, kept",
        resume: None,
    },
    Case {
        name: "namespace_terminating",
        area: Area::Kubernetes,
        fault: "namespace `openbao` is `Terminating` when the seed is written",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.api.insert_namespace("openbao");
            sb.api.terminate_namespace("openbao");
        },
        drive: Drive::Heal {
            when: |_, e| e.contains("being terminated"),
            heal: |sb| sb.api.finish_termination("openbao"),
        },
        exit: Some(0),
        says: "being terminated",
        outcome: "waits for it to go, recreates it, writes the seed",
        resume: None,
    },
    Case {
        name: "secret_without_key",
        area: Area::Kubernetes,
        fault: "the seed Secret exists without the `recovery-seed` key",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.api
                .insert_secret("openbao", "openbao-recovery-seed", json!({"other": "eA=="}))
        },
        drive: Drive::Run,
        exit: Some(65),
        says: "recovery-seed",
        outcome: "exit 65 naming the Secret and key; not overwritten",
        resume: None,
    },
    Case {
        name: "init_marker_present",
        area: Area::Kubernetes,
        fault: "`openbao-init-marker` exists (OpenBao initialised)",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.api.insert_secret(
                "openbao",
                "openbao-init-marker",
                json!({"initialised-at": "MjAyNi0wMS0wMQ=="}),
            );
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "OpenBao is already initialised",
        outcome: "no seed written, said so; kubeconfig delivered",
        resume: None,
    },
    Case {
        name: "namespace_create_forbidden",
        area: Area::Kubernetes,
        fault: "`403` (RBAC) on the namespace create",
        start: Start::DEFAULT,
        setup: |sb| {
            api_fault(
                sb,
                Method::POST,
                NAMESPACES,
                1,
                status(
                    403,
                    "Forbidden",
                    "namespaces is forbidden: User \"system:admin\" cannot create resource",
                ),
            )
        },
        drive: Drive::Run,
        exit: Some(70),
        says: "cannot create resource",
        outcome: "exit 70 naming the refusal; the kubeconfig is still delivered",
        resume: None,
    },
];
