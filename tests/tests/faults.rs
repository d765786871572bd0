//! The fault matrix: every case is a named fault, the exit code it must end
//! with, and what it must say; after every run (and after the fresh run that
//! follows a case that leaves work undone) the same invariants are checked:
//! the seed Secret created at most once and never changed, the kubeconfig
//! captured at most once, the state file parseable and truthful, the exit
//! code as documented, the last sd_notify STATUS explaining the outcome, and
//! no secret in the output, the notifications or the state directory.
//!
//! README.md's fault table is this table (`readme_lists_every_case`).

use std::time::Duration;

use catalyst_bootstrap_tests::apiserver::Fault;
use catalyst_bootstrap_tests::catalyst::Step;
use catalyst_bootstrap_tests::pki::Pki;
use catalyst_bootstrap_tests::sandbox::{
    Agent, CERT_NAMES, DEPLOYMENT_ID, Finished, Sandbox, Signal, Start,
};
use catalyst_bootstrap_tests::ship::{require_root, root, run};
use http::Method;
use serde_json::{Value, json};

const NAMESPACES: &str = "/api/v1/namespaces";
const SECRETS: &str = "/api/v1/namespaces/openbao/secrets";
const SEED: &str = "/api/v1/namespaces/openbao/secrets/openbao-recovery-seed";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/catalyst-bootstrap";
/// A holder name that tries to end the STATUS= line, tell systemd the unit
/// is ready and drive the terminal of whoever reads the journal.
const INJECTED_HOLDER: &str = "node-b\nREADY=1\nMAINPID=1\n\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m";
const SHORT_DEADLINE: &str = "deadline: 3s\nretry:\n  initial_delay: 100ms\n  max_delay: 400ms\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    Process,
    Kubernetes,
    CatalystApi,
    Disk,
    /// A peer (or a proxy, webhook or the environment) that tries to make
    /// the agent leak or lie.
    Hostile,
    /// Input files that are not regular files.
    Files,
}

impl Area {
    fn name(self) -> &'static str {
        match self {
            Area::Process => "process",
            Area::Kubernetes => "Kubernetes API",
            Area::CatalystApi => "catalyst-api",
            Area::Disk => "disk",
            Area::Hostile => "hostile peer",
            Area::Files => "input file",
        }
    }
}

type Setup = fn(&Sandbox);

#[derive(Clone, Copy)]
enum Drive {
    /// Run to the end.
    Run,
    /// Run to the end, which must come within this long of the start.
    RunWithin(Duration),
    /// Send `signal` once `ready` holds for the sandbox and stderr.
    Signal {
        ready: fn(&Sandbox, &str) -> bool,
        signal: Signal,
    },
    /// Call `heal` once `when` holds: the agent has met the fault.
    Heal {
        when: fn(&Sandbox, &str) -> bool,
        heal: Setup,
    },
    /// The API server goes down and up every `period`, `cycles` times.
    Flap { period: Duration, cycles: u32 },
    /// A second agent on the same state directory while the first works.
    Twin,
    /// In a mount namespace whose /etc/resolv.conf names a closed loopback
    /// port: every lookup fails, nothing leaves the machine.
    NoDns,
}

struct Case {
    name: &'static str,
    area: Area,
    /// The fault, for people.
    fault: &'static str,
    start: Start,
    setup: Setup,
    drive: Drive,
    /// `None`: killed by the case itself (SIGKILL).
    exit: Option<i32>,
    /// On stderr, when not empty.
    says: &'static str,
    /// What an SRE sees, for the README table.
    outcome: &'static str,
    /// For work left undone: put right before a fresh run, which must
    /// finish with 0 and still keep every invariant.
    resume: Option<Setup>,
}

fn nothing(_: &Sandbox) {}

fn short_deadline(sb: &Sandbox) {
    sb.write_config(SHORT_DEADLINE);
}

fn stderr_has(needle: &'static str) -> impl Fn(&str) -> bool {
    move |e| e.contains(needle)
}

fn api_fault(sb: &Sandbox, method: Method, path: &str, times: usize, fault: Fault) {
    sb.api.fault(method, path, times, fault);
}

fn status(code: u16, reason: &'static str, message: &str) -> Fault {
    Fault::Status {
        code,
        reason,
        message: message.into(),
    }
}

const CASES: &[Case] = &[
    // ── process ──
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
        name: "sigkill_after_lease",
        area: Area::Process,
        fault: "SIGKILL right after the Lease was taken",
        start: Start::DEFAULT,
        setup: nothing,
        drive: Drive::Signal {
            ready: |_, e| e.contains("lease phase done"),
            signal: Signal::SIGKILL,
        },
        exit: None,
        says: "",
        outcome: "next run (same node) takes its own Lease back and finishes",
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
        name: "sigint_waiting_for_lease",
        area: Area::Process,
        fault: "SIGINT while another node holds the Lease",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.write_config("lease_duration: 1s\n");
            sb.api.insert(
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/catalyst-bootstrap",
                json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                       "metadata": {"name": "catalyst-bootstrap", "namespace": "kube-system"},
                       "spec": {"holderIdentity": "cp-gone", "leaseDurationSeconds": 1}}),
            );
        },
        drive: Drive::Signal {
            ready: |_, e| e.contains("cp-gone holds Lease"),
            signal: Signal::SIGINT,
        },
        exit: Some(75),
        says: "Stopping on SIGINT",
        outcome: "exit 75; next run takes over once the Lease expires",
        resume: Some(nothing),
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
    // ── Kubernetes API ──
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
    // ── catalyst-api ──
    Case {
        name: "catalyst_unreachable",
        area: Area::CatalystApi,
        fault: "catalyst-api refuses connections at first",
        start: Start::DEFAULT,
        setup: |sb| sb.catalyst.set_up(false),
        drive: Drive::Heal {
            when: |_, e| e.contains("cannot reach catalyst-api"),
            heal: |sb| sb.catalyst.set_up(true),
        },
        exit: Some(0),
        says: "cannot reach catalyst-api",
        outcome: "probes every ≤ 0.5 s, delivers on recovery",
        resume: None,
    },
    Case {
        name: "catalyst_dns_failure",
        area: Area::CatalystApi,
        fault: "catalyst-api's name does not resolve (no DNS at first boot)",
        start: Start::DEFAULT,
        setup: |sb| {
            let url = sb.catalyst.url().replace("127.0.0.1", "catalyst.invalid");
            sb.write_config(&format!("{SHORT_DEADLINE}catalyst_api_url: {url}\n"));
        },
        drive: Drive::NoDns,
        exit: Some(69),
        says: "catalyst.invalid",
        outcome: "retried until the deadline; exit 69 naming the lookup failure; seed written",
        resume: None,
    },
    Case {
        name: "catalyst_unknown_ca",
        area: Area::CatalystApi,
        fault: "catalyst-api's certificate is from a CA not in `ca_bundle`",
        start: Start::DEFAULT,
        setup: |sb| {
            short_deadline(sb);
            sb.catalyst.present(&Pki::new(CERT_NAMES).server);
        },
        drive: Drive::Run,
        exit: Some(69),
        says: "invalid peer certificate",
        outcome: "never sends the token; exit 69 at the deadline naming the certificate error",
        resume: None,
    },
    Case {
        name: "catalyst_cert_not_yet_valid",
        area: Area::CatalystApi,
        fault: "catalyst-api's certificate not valid yet (the node's clock is behind) at first",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.catalyst
                .present(&sb.pki.issue_server(CERT_NAMES, Some(2100)))
        },
        drive: Drive::Heal {
            when: |_, e| e.contains("certificate not valid yet"),
            heal: |sb| sb.catalyst.present(&sb.pki.server),
        },
        exit: Some(0),
        says: "certificate not valid yet",
        outcome: "keeps retrying (until the deadline), delivers once the clock agrees",
        resume: None,
    },
    Case {
        name: "catalyst_503_retry_after",
        area: Area::CatalystApi,
        fault: "`503` with `Retry-After: 1`, twice",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.catalyst.script((0..2).map(|_| {
                Step::Respond {
                    status: 503,
                    body:
                        r#"{"error":"kubeconfigs-dir-unwritable","detail":"read-only file system"}"#
                            .into(),
                    retry_after: Some("1".into()),
                }
            }))
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "next try in 1.",
        outcome: "waits as told, then delivers",
        resume: None,
    },
    Case {
        name: "catalyst_slow_header",
        area: Area::CatalystApi,
        fault: "catalyst-api sends no answer for 3 s (`read_timeout: 500ms`)",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.write_config("read_timeout: 500ms\n");
            sb.catalyst.script([Step::Delay(Duration::from_secs(3))]);
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "attempt 1 failed",
        outcome: "the try times out, the retry delivers; captured once",
        resume: None,
    },
    Case {
        name: "catalyst_slow_body",
        area: Area::CatalystApi,
        fault: "catalyst-api stalls 3 s in the middle of an answer's body",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.write_config("read_timeout: 500ms\n");
            sb.catalyst.script([Step::SlowBody {
                status: 503,
                stall: Duration::from_secs(3),
            }]);
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "attempt 1 failed",
        outcome: "the read times out, the retry delivers",
        resume: None,
    },
    Case {
        name: "catalyst_answer_lost",
        area: Area::CatalystApi,
        fault: "catalyst-api stores the kubeconfig, the answer is lost",
        start: Start::DEFAULT,
        setup: |sb| sb.catalyst.script([Step::StoreThenDrop]),
        drive: Drive::Run,
        exit: Some(0),
        says: "already-set",
        outcome: "the retry gets `403 already-set`: success, captured once",
        resume: None,
    },
    Case {
        name: "catalyst_404",
        area: Area::CatalystApi,
        fault: "`404 deployment not found`, twice (ingress not routed yet)",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.catalyst.script((0..2).map(|_| Step::Respond {
                status: 404,
                body: "deployment not found\n".into(),
                retry_after: None,
            }))
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "does not know deployment",
        outcome: "an ERROR line per try, retried; delivers",
        resume: None,
    },
    Case {
        name: "catalyst_401",
        area: Area::CatalystApi,
        fault: "`401 missing-bearer`",
        start: Start::DEFAULT,
        setup: |sb| sb.catalyst.script([Step::error(401, "missing-bearer")]),
        drive: Drive::Run,
        exit: Some(77),
        says: "missing-bearer",
        outcome: "exit 77 at once, no retry; the seed is still written",
        resume: None,
    },
    Case {
        name: "catalyst_403_invalid_bearer",
        area: Area::CatalystApi,
        fault: "`403 invalid-bearer`",
        start: Start::DEFAULT,
        setup: |sb| sb.catalyst.script([Step::error(403, "invalid-bearer")]),
        drive: Drive::Run,
        exit: Some(77),
        says: "invalid-bearer",
        outcome: "exit 77 at once, no retry",
        resume: None,
    },
    Case {
        name: "catalyst_422",
        area: Area::CatalystApi,
        fault: "`422 body-too-large`",
        start: Start::DEFAULT,
        setup: |sb| sb.catalyst.script([Step::error(422, "body-too-large")]),
        drive: Drive::Run,
        exit: Some(65),
        says: "body-too-large",
        outcome: "exit 65 at once",
        resume: None,
    },
    Case {
        name: "catalyst_redirect",
        area: Area::CatalystApi,
        fault: "`307` redirect to another host",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.catalyst.script([Step::Redirect {
                status: 307,
                location: "https://127.0.0.9:9/elsewhere".into(),
            }])
        },
        drive: Drive::Run,
        exit: Some(76),
        says: "307",
        outcome: "not followed (the bearer goes nowhere else); exit 76",
        resume: None,
    },
    Case {
        name: "deadline_passes",
        area: Area::CatalystApi,
        fault: "catalyst-api answers `503` until the 3 s deadline",
        start: Start::DEFAULT,
        setup: |sb| {
            short_deadline(sb);
            sb.catalyst
                .script((0..1000).map(|_| Step::error(503, "write-failed")));
        },
        drive: Drive::Run,
        exit: Some(69),
        says: "gave up after",
        outcome: "exit 69; state and log name the last error",
        resume: Some(|sb| {
            sb.catalyst.clear_script();
            sb.write_config("");
        }),
    },
    // ── disk ──
    Case {
        name: "state_dir_read_only",
        area: Area::Disk,
        fault: "state directory on a read-only file system",
        start: Start::DEFAULT,
        setup: |sb| mount_tmpfs(sb, "ro,size=64k"),
        drive: Drive::Run,
        exit: Some(73),
        says: "Read-only file system",
        outcome: "exit 73 before anything is sent or written",
        resume: Some(unmount),
    },
    Case {
        name: "state_dir_full",
        area: Area::Disk,
        fault: "state directory on a full file system",
        start: Start::DEFAULT,
        setup: |sb| {
            mount_tmpfs(sb, "size=16k");
            // Fill it; what is left is too little for state.json.
            let _ = std::fs::write(sb.state_dir().join("filler"), vec![0u8; 64 * 1024]);
        },
        drive: Drive::Run,
        exit: Some(73),
        says: "No space left on device",
        outcome: "exit 73 before anything is sent or written",
        resume: Some(unmount),
    },
    Case {
        name: "state_file_corrupt",
        area: Area::Disk,
        fault: "state.json is garbage; the seed already exists from the earlier run",
        start: Start::DEFAULT,
        setup: |sb| {
            std::fs::create_dir_all(sb.state_dir()).unwrap();
            std::fs::write(sb.state_dir().join("state.json"), "{\"version\": 1, \"dep").unwrap();
            sb.api.insert_secret(
                "openbao",
                "openbao-recovery-seed",
                json!({"recovery-seed": "c2VlZC1mcm9tLXRoZS1lYXJsaWVyLXJ1bi0wMDAwMDAwMDAwMDA="}),
            );
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "state.json.corrupt",
        outcome: "set aside as state.json.corrupt, job redone safely: existing seed kept",
        resume: None,
    },
    Case {
        name: "state_file_from_the_future",
        area: Area::Disk,
        fault: "state.json written by a newer version",
        start: Start::DEFAULT,
        setup: |sb| {
            std::fs::create_dir_all(sb.state_dir()).unwrap();
            let state = json!({"version": 99, "deployment_id": DEPLOYMENT_ID});
            std::fs::write(sb.state_dir().join("state.json"), state.to_string()).unwrap();
        },
        drive: Drive::Run,
        exit: Some(65),
        says: "newer catalyst-bootstrap",
        outcome: "exit 65, nothing done, the file left as it was",
        resume: None,
    },
    // ── hostile peer ──
    Case {
        name: "seed_echoed_in_status",
        area: Area::Hostile,
        fault: "an admission webhook refuses the Secret create once with a `Status` quoting the request (the seed)",
        start: Start::DEFAULT,
        setup: |sb| {
            api_fault(
                sb,
                Method::POST,
                SECRETS,
                1,
                Fault::EchoInStatus {
                    code: 500,
                    reason: "InternalError",
                },
            )
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "withheld",
        outcome: "the message is withheld from every log and status; retried, seed written once",
        resume: None,
    },
    Case {
        name: "seed_echoed_by_proxy_502",
        area: Area::Hostile,
        fault: "a proxy answers the Secret create once with a plain-text 502 repeating the request",
        start: Start::DEFAULT,
        setup: |sb| api_fault(sb, Method::POST, SECRETS, 1, Fault::EchoRaw(502)),
        drive: Drive::Run,
        exit: Some(0),
        says: "withheld",
        outcome: "withheld; retried, seed written once",
        resume: None,
    },
    Case {
        name: "token_and_key_echoed_with_spacers",
        area: Area::Hostile,
        fault: "catalyst-api answers `503` once repeating the bearer and the kubeconfig, a zero-width space every ten characters",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.catalyst.script([Step::Echo {
                status: 503,
                spacer: "\u{200b}",
            }])
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "withheld",
        outcome: "withheld; retried, delivered",
        resume: None,
    },
    Case {
        name: "token_echoed_line_wrapped",
        area: Area::Hostile,
        fault: "catalyst-api answers `503` once repeating the request wrapped every ten characters",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.catalyst.script([Step::Echo {
                status: 503,
                spacer: "\n ",
            }])
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "withheld",
        outcome: "withheld; retried, delivered",
        resume: None,
    },
    Case {
        name: "error_code_injects_notify",
        area: Area::Hostile,
        fault: "catalyst-api's `error` code carries a newline, `READY=1`, `MAINPID=` and terminal escapes",
        start: Start::DEFAULT,
        setup: |sb| {
            sb.catalyst.script([Step::Respond {
                status: 503,
                body: json!({"error": INJECTED_HOLDER, "detail": "x\u{7}"}).to_string(),
                retry_after: None,
            }])
        },
        drive: Drive::Run,
        exit: Some(0),
        says: "node-b\\nREADY=1\\nMAINPID=1\\n\\u{1b}",
        outcome: "shown escaped on one line; systemd hears READY=1 only when done",
        resume: None,
    },
    Case {
        name: "lease_holder_injects_notify",
        area: Area::Hostile,
        fault: "a stale Lease held by `node-b\\nREADY=1\\nMAINPID=1` plus terminal escapes",
        start: Start::DEFAULT,
        setup: |sb| foreign_lease(sb, INJECTED_HOLDER, 1),
        drive: Drive::Run,
        exit: Some(0),
        says: "holds Lease",
        outcome: "shown escaped on one line; taken over after expiry; READY=1 only when done",
        resume: None,
    },
    Case {
        name: "lease_duration_absurd",
        area: Area::Hostile,
        fault: "a stale Lease of node-b claims `leaseDurationSeconds: 2000000000`",
        start: Start::DEFAULT,
        setup: |sb| foreign_lease(sb, "node-b", 2_000_000_000),
        drive: Drive::Run,
        exit: Some(0),
        says: "counting it as 4s",
        outcome: "counted as 4 × lease_duration (logged once); taken over, delivered",
        resume: None,
    },
    Case {
        name: "catalyst_503_drip",
        area: Area::Hostile,
        fault: "catalyst-api sends a `503` body one byte per 200 ms (4 KiB) past the 3 s deadline",
        start: Start::DEFAULT,
        setup: |sb| {
            short_deadline(sb);
            sb.catalyst.script([Step::Drip {
                status: 503,
                every: Duration::from_millis(200),
            }]);
        },
        drive: Drive::RunWithin(Duration::from_secs(10)),
        exit: Some(69),
        says: "no complete answer before the deadline",
        outcome: "the attempt ends at the deadline: exit 69 within seconds",
        resume: Some(|sb| {
            sb.catalyst.clear_script();
            sb.write_config("");
        }),
    },
    Case {
        name: "secret_create_drip",
        area: Area::Hostile,
        fault: "the API server answers the Secret create with a `500` body one byte per 200 ms past the 3 s deadline",
        start: Start::DEFAULT,
        setup: |sb| {
            short_deadline(sb);
            api_fault(
                sb,
                Method::POST,
                SECRETS,
                1,
                Fault::Drip {
                    code: 500,
                    every: Duration::from_millis(200),
                },
            );
        },
        drive: Drive::RunWithin(Duration::from_secs(10)),
        exit: Some(69),
        says: "no complete answer before the deadline",
        outcome: "exit 69 within seconds of the deadline; the next run writes the seed once",
        resume: Some(|sb| {
            sb.api.clear_faults();
            sb.write_config("");
        }),
    },
    Case {
        name: "http_proxy_with_plain_url",
        area: Area::Hostile,
        fault: "plain-http loopback catalyst_api_url with `HTTP_PROXY`/`ALL_PROXY` naming a capturing proxy",
        start: Start {
            catalyst_plain: true,
            ..Start::DEFAULT
        },
        setup: proxies_to_trap,
        drive: Drive::Run,
        exit: Some(0),
        says: "delivered",
        outcome: "no proxy: delivered straight to catalyst-api, bearer never at the proxy",
        resume: None,
    },
    Case {
        name: "all_proxy_with_https_url",
        area: Area::Hostile,
        fault: "https catalyst_api_url with only `HTTP_PROXY`/`ALL_PROXY` set",
        start: Start::DEFAULT,
        setup: proxies_to_trap,
        drive: Drive::Run,
        exit: Some(0),
        says: "delivered",
        outcome: "no proxy (only `HTTPS_PROXY` counts); delivered",
        resume: None,
    },
    // ── input file ──
    Case {
        name: "kubeconfig_is_a_fifo",
        area: Area::Files,
        fault: "a FIFO where k3s.yaml should be",
        start: Start {
            kubeconfig: false,
            ..Start::DEFAULT
        },
        setup: |sb| sb.put_fifo(&sb.kubeconfig_path()),
        drive: Drive::Run,
        exit: Some(65),
        says: "is a FIFO (named pipe), not a regular file",
        outcome: "exit 65 at once naming the path; nothing sent",
        resume: Some(|sb| {
            std::fs::remove_file(sb.kubeconfig_path()).unwrap();
            sb.write_kubeconfig();
        }),
    },
    Case {
        name: "kubeconfig_is_a_device",
        area: Area::Files,
        fault: "a character device (endless zeros) where k3s.yaml should be",
        start: Start {
            kubeconfig: false,
            ..Start::DEFAULT
        },
        setup: |sb| sb.put_zero_device(&sb.kubeconfig_path()),
        drive: Drive::Run,
        exit: Some(65),
        says: "is a character device, not a regular file",
        outcome: "exit 65 at once; nothing read",
        resume: Some(|sb| {
            std::fs::remove_file(sb.kubeconfig_path()).unwrap();
            sb.write_kubeconfig();
        }),
    },
    Case {
        name: "token_is_a_fifo",
        area: Area::Files,
        fault: "a FIFO where the bearer token file should be",
        start: Start::DEFAULT,
        setup: |sb| sb.put_fifo(&sb.token_path()),
        drive: Drive::Run,
        exit: Some(78),
        says: "is a FIFO (named pipe), not a regular file",
        outcome: "exit 78 at once naming the path; token not used",
        resume: Some(|sb| {
            std::fs::remove_file(sb.token_path()).unwrap();
            sb.write_secret_file("bearer", &format!("{}\n", sb.token));
        }),
    },
    Case {
        name: "config_is_a_fifo",
        area: Area::Files,
        fault: "a FIFO where the configuration file should be",
        start: Start::DEFAULT,
        setup: |sb| sb.put_fifo(&sb.config_path()),
        drive: Drive::Run,
        exit: Some(78),
        says: "is a FIFO (named pipe), not a regular file",
        outcome: "exit 78 at once naming the path",
        resume: Some(|sb| {
            std::fs::remove_file(sb.config_path()).unwrap();
            sb.write_config("");
        }),
    },
    Case {
        name: "drop_in_is_a_fifo",
        area: Area::Files,
        fault: "a FIFO as a `config.d/*.yaml` drop-in",
        start: Start::DEFAULT,
        setup: |sb| sb.put_fifo(&sb.path("config.d/60-fifo.yaml")),
        drive: Drive::Run,
        exit: Some(78),
        says: "60-fifo.yaml: is a FIFO (named pipe), not a regular file",
        outcome: "exit 78 at once naming the drop-in",
        resume: Some(|sb| std::fs::remove_file(sb.path("config.d/60-fifo.yaml")).unwrap()),
    },
    Case {
        name: "drop_in_is_a_device",
        area: Area::Files,
        fault: "a character device (endless zeros) as a drop-in",
        start: Start::DEFAULT,
        setup: |sb| sb.put_zero_device(&sb.path("config.d/60-zero.yaml")),
        drive: Drive::Run,
        exit: Some(78),
        says: "60-zero.yaml: is a character device, not a regular file",
        outcome: "exit 78 at once; not read until memory runs out",
        resume: Some(|sb| std::fs::remove_file(sb.path("config.d/60-zero.yaml")).unwrap()),
    },
];

/// Another node's Lease that nobody renews.
fn foreign_lease(sb: &Sandbox, holder: &str, seconds: i64) {
    sb.write_config("lease_duration: 1s\n");
    sb.api.insert(
        LEASE,
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "catalyst-bootstrap", "namespace": "kube-system"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": seconds,
                     "acquireTime": "2026-01-01T00:00:00.000000Z",
                     "renewTime": "2026-01-01T00:00:00.000000Z", "leaseTransitions": 0},
        }),
    );
}

/// The environment's proxies all point at the trap.
fn proxies_to_trap(sb: &Sandbox) {
    for key in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        sb.set_env(key, &sb.trap.url);
    }
}

fn mount_tmpfs(sb: &Sandbox, options: &str) {
    require_root();
    std::fs::create_dir_all(sb.state_dir()).unwrap();
    run(std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", options, "catalyst-test"])
        .arg(sb.state_dir()));
}

fn unmount(sb: &Sandbox) {
    run(std::process::Command::new("umount").arg(sb.state_dir()));
}

/// Unmounts a disk case's tmpfs even when the case fails before its resume
/// step did.
struct Unmount<'a>(&'a Sandbox);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let mounted = std::fs::read_to_string("/proc/self/mounts")
            .is_ok_and(|m| m.contains(&format!(" {} ", self.0.state_dir().display())));
        if mounted {
            unmount(self.0);
        }
    }
}

/// The agent as systemd runs it, its journal captured: every run of the
/// matrix is scanned for secrets in the journal too.
fn spawn(sb: &Sandbox) -> Agent {
    sb.spawn_journaled(&["run"], &[])
}

async fn run_agent(sb: &Sandbox) -> Finished {
    spawn(sb).finish().await
}

/// The same, with /etc/resolv.conf naming a closed port on loopback.
fn spawn_without_dns(sb: &Sandbox) -> Agent {
    let resolv = sb.path("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )
    .unwrap();
    sb.spawn_journaled(&["run"], &[(&resolv, "/etc/resolv.conf")])
}

/// Waits until `moment` holds for the sandbox and the agent's stderr.
async fn until(sb: &Sandbox, agent: &Agent, case: &Case, moment: fn(&Sandbox, &str) -> bool) {
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    while !moment(sb, &agent.stderr()) {
        assert!(
            tokio::time::Instant::now() < end,
            "{}: the moment never came:\n{}",
            case.name,
            agent.stderr()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn drive(sb: &Sandbox, case: &Case) -> Finished {
    match case.drive {
        Drive::Run => run_agent(sb).await,
        Drive::RunWithin(limit) => {
            let started = std::time::Instant::now();
            let out = run_agent(sb).await;
            assert!(
                started.elapsed() < limit,
                "{}: took {:?}, more than {limit:?}",
                case.name,
                started.elapsed()
            );
            out
        }
        Drive::NoDns => spawn_without_dns(sb).finish().await,
        Drive::Signal { ready, signal } => {
            let agent = spawn(sb);
            until(sb, &agent, case, ready).await;
            agent.signal(signal);
            agent.finish().await
        }
        Drive::Heal { when, heal } => {
            let agent = spawn(sb);
            until(sb, &agent, case, when).await;
            heal(sb);
            agent.finish().await
        }
        Drive::Flap { period, cycles } => {
            let agent = spawn(sb);
            for i in 0..cycles {
                sb.api.set_up(i % 2 == 1);
                tokio::time::sleep(period).await;
            }
            sb.api.set_up(true);
            agent.finish().await
        }
        Drive::Twin => {
            let first = spawn(sb);
            first
                .wait_for_stderr(
                    Duration::from_secs(20),
                    stderr_has("sending the kubeconfig"),
                )
                .await;
            let second = run_agent(sb).await;
            assert_eq!(
                second.code,
                Some(75),
                "{}: the twin:\n{}",
                case.name,
                second.stderr
            );
            assert!(
                second.stderr.contains("already working in"),
                "{}: the twin does not say why:\n{}",
                case.name,
                second.stderr
            );
            sb.assert_no_leaks(&[&second.stderr]);
            first.finish().await
        }
    }
}

/// The invariants every run must keep. `seed` is the seed's wire value the
/// first time one was seen.
fn invariants(
    sb: &Sandbox,
    case: &Case,
    out: &Finished,
    expected: Option<i32>,
    seed: &mut Option<Value>,
    notified_from: usize,
) {
    let name = case.name;
    let log = &out.stderr;
    assert_eq!(out.code, expected, "{name}: exit code; stderr:\n{log}");
    assert!(
        out.journal_entries > 0,
        "{name}: nothing reached the journal; stderr:\n{log}"
    );

    // The seed Secret: created at most once, never changed, never replaced;
    // the one write allowed is adding Helm's ownership metadata to a Secret
    // that lacked it (a merge patch naming only those keys).
    assert!(sb.api.creations(SEED) <= 1, "{name}: seed created twice");
    let ownership_only = |body: &Option<Value>| {
        let Some(meta) = body.as_ref().and_then(|b| b.as_object()).and_then(|b| {
            (b.len() == 1)
                .then(|| b.get("metadata"))
                .flatten()?
                .as_object()
        }) else {
            return false;
        };
        meta.keys()
            .all(|k| ["resourceVersion", "labels", "annotations"].contains(&k.as_str()))
            && meta["labels"] == json!({"app.kubernetes.io/managed-by": "Helm"})
            && meta["annotations"]
                .as_object()
                .is_some_and(|a| a.keys().all(|k| k.starts_with("meta.helm.sh/release-")))
    };
    assert!(
        sb.api.requests().iter().all(|r| {
            r.path != SEED
                || r.method == Method::GET
                || (r.method == Method::PATCH && ownership_only(&r.body))
        }),
        "{name}: the seed Secret was modified"
    );
    if let Some(now) = sb.seed_secret().map(|s| s["data"].clone()) {
        match seed {
            Some(first) => assert_eq!(*first, now, "{name}: the seed changed"),
            None => *seed = Some(now),
        }
    }
    // The kubeconfig: captured at most once.
    assert!(
        sb.catalyst.store_count(DEPLOYMENT_ID) <= 1,
        "{name}: kubeconfig stored twice"
    );

    // The state file: parseable and truthful.
    let done = sb.state_dir().join("done").exists();
    let state = std::fs::read(sb.state_dir().join("state.json"))
        .ok()
        .map(|b| {
            serde_json::from_slice::<Value>(&b)
                .unwrap_or_else(|e| panic!("{name}: state.json: {e}"))
        });
    match (expected, &state) {
        (Some(0), state) => {
            assert!(done, "{name}: exit 0 without the done stamp");
            let state = state.as_ref().expect("state.json after a successful run");
            for phase in ["wait", "lease", "kubeconfig", "seed"] {
                assert_eq!(
                    state[phase]["outcome"], "done",
                    "{name}: {phase}: {state:#}"
                );
            }
        }
        (Some(code), Some(state))
            if [65, 69, 70, 76, 77].contains(&code) && !name.starts_with("state_file") =>
        {
            assert!(!done, "{name}: failed but marked done");
            let failed = ["kubeconfig", "seed", "wait", "lease"].iter().any(|p| {
                state[p]["outcome"] == "failed"
                    && state[p]["detail"].as_str().is_some_and(|d| !d.is_empty())
            });
            assert!(
                failed,
                "{name}: exit {code} but no phase says why: {state:#}"
            );
        }
        (Some(75), Some(state)) => {
            assert!(!done, "{name}: interrupted but marked done");
            let interrupted = ["kubeconfig", "seed", "wait", "lease"]
                .iter()
                .any(|p| state[p]["outcome"] == "interrupted");
            assert!(
                interrupted || matches!(case.drive, Drive::Twin),
                "{name}: {state:#}"
            );
        }
        _ => assert!(!done || expected == Some(0), "{name}: marked done"),
    }

    // The last STATUS= explains the outcome. The listener reads the socket
    // on its own task: the agent's last datagram may still be in flight.
    if let Some(code) = expected {
        let explains = |last: &str| match code {
            0 => last.starts_with("Done"),
            75 => last.starts_with("Stopping on"),
            code => last.starts_with(&format!("Failed (exit {code})")),
        };
        let end = std::time::Instant::now() + Duration::from_secs(2);
        let mut last = sb.notify.statuses().pop().unwrap_or_default();
        while !explains(&last) && std::time::Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
            last = sb.notify.statuses().pop().unwrap_or_default();
        }
        assert!(
            explains(&last),
            "{name}: last STATUS does not explain exit {code}: {last:?}"
        );
    }

    // No secret anywhere it could leak to; nothing a peer said made the
    // agent tell systemd more than its own words; no proxy was asked.
    sb.assert_no_leaks(&[&out.stderr, &out.stdout]);
    sb.assert_notify_well_formed(notified_from);
    assert_eq!(
        sb.trap.hits(),
        0,
        "{name}: a request went to the proxy trap"
    );
}

async fn run_case(case: &Case) {
    let sb = Sandbox::with(case.start);
    (case.setup)(&sb);
    let _unmount = (case.area == Area::Disk).then(|| Unmount(&sb));
    let out = drive(&sb, case).await;
    let mut seed = None;
    invariants(&sb, case, &out, case.exit, &mut seed, 0);
    if !case.says.is_empty() {
        assert!(
            out.stderr.contains(case.says),
            "{}: {:?} not on stderr:\n{}",
            case.name,
            case.says,
            out.stderr
        );
    }
    match case.exit {
        Some(77 | 76 | 65) if case.area == Area::CatalystApi => assert!(
            sb.catalyst.store_count(DEPLOYMENT_ID) == 0,
            "{}: stored although refused",
            case.name
        ),
        Some(73) => {
            assert!(
                sb.catalyst.requests().is_empty(),
                "{}: sent without state",
                case.name
            );
            assert!(
                sb.seed_secret().is_none(),
                "{}: seed without state",
                case.name
            );
        }
        _ => {}
    }
    if let Some(resume) = case.resume {
        resume(&sb);
        let from = sb.notify.messages().len();
        let again = run_agent(&sb).await;
        invariants(&sb, case, &again, Some(0), &mut seed, from);
        assert!(
            sb.seed_secret().is_some(),
            "{}: no seed after resuming",
            case.name
        );
        assert_eq!(
            sb.catalyst.store_count(DEPLOYMENT_ID),
            1,
            "{}: resumed",
            case.name
        );
    }
}

/// `CATALYST_FAULT_CASES=a,b` runs only those cases (to look at one, or
/// to run one against another binary with `CATALYST_BOOTSTRAP_BIN`).
async fn run_area(area: Area) {
    let only = std::env::var("CATALYST_FAULT_CASES").ok();
    let chosen = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|n| n == name))
    };
    for case in CASES.iter().filter(|c| c.area == area && chosen(c.name)) {
        eprintln!("fault case {}", case.name);
        run_case(case).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_faults() {
    run_area(Area::Process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_api_faults() {
    run_area(Area::Kubernetes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalyst_api_faults() {
    run_area(Area::CatalystApi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_faults() {
    run_area(Area::Disk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers() {
    run_area(Area::Hostile).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_files() {
    run_area(Area::Files).await;
}

/// The scan is not blind to the journal: a token logged there is found.
#[tokio::test]
#[should_panic(expected = "bearer token leaked into the journal")]
async fn the_leak_scan_reads_the_journal() {
    let sb = Sandbox::new();
    let entry = format!("MESSAGE=retrying with {}\nPRIORITY=4\n", sb.token);
    std::os::unix::net::UnixDatagram::unbound()
        .unwrap()
        .send_to(entry.as_bytes(), sb.journal.dir().join("journal/socket"))
        .unwrap();
    sb.assert_no_leaks(&[]);
}

fn readme_table() -> String {
    let mut table = String::from("| area | fault | exit | outcome |\n|---|---|---|---|\n");
    for case in CASES {
        let exit = case.exit.map_or("killed".to_string(), |c| c.to_string());
        table.push_str(&format!(
            "| {} | {} | {exit} | {} |\n",
            case.area.name(),
            case.fault,
            case.outcome
        ));
    }
    table
}

#[test]
fn readme_lists_every_case() {
    assert!(CASES.len() >= 30, "the matrix has {} cases", CASES.len());
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let table = readme_table();
    assert!(
        readme.contains(&table),
        "README.md's fault table is out of date; it should read:\n\n{table}"
    );
}
