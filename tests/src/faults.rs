//! The fault matrix's machinery (`tests/tests/faults/`): what a case is,
//! how it is driven, and the invariants every run must keep: the seed
//! Secret created at most once and never changed, the kubeconfig captured
//! at most once, the state file parseable and truthful, the exit code as
//! documented, the last sd_notify STATUS explaining the outcome, no secret
//! in any output, journal field, notification or state file, every
//! notification the agent's own words, and no request to the proxy trap.

use std::time::Duration;

use http::Method;
use serde_json::{Value, json};

use crate::apiserver::Fault;
use crate::sandbox::{Agent, DEPLOYMENT_ID, Finished, Sandbox, Signal, Start};
use crate::ship::{require_root, run};

pub const NAMESPACES: &str = "/api/v1/namespaces";
pub const SECRETS: &str = "/api/v1/namespaces/openbao/secrets";
pub const SEED: &str = "/api/v1/namespaces/openbao/secrets/openbao-recovery-seed";
/// Outside text (an error code catalyst-api sends) that tries to end the
/// STATUS= line, tell systemd the unit is ready and drive the terminal of
/// whoever reads the journal.
pub const INJECTED: &str = "node-b\nREADY=1\nMAINPID=1\n\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m";
pub const SHORT_DEADLINE: &str =
    "deadline: 3s\nretry:\n  initial_delay: 100ms\n  max_delay: 400ms\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Process,
    Kubernetes,
    CatalystApi,
    Disk,
    /// A peer (or a proxy, webhook or the environment) that tries to make
    /// the agent leak or lie.
    Hostile,
    /// Input files that are not regular files.
    Files,
    /// Bootstrap Secrets: stops at each boundary of the apply, record and
    /// removal.
    Secrets,
    /// The hand-off: discovery, the applies and their records, the marker.
    Handoff,
}

impl Area {
    pub fn name(self) -> &'static str {
        match self {
            Area::Process => "process",
            Area::Kubernetes => "Kubernetes API",
            Area::CatalystApi => "catalyst-api",
            Area::Disk => "disk",
            Area::Hostile => "hostile peer",
            Area::Files => "input file",
            Area::Secrets => "bootstrap Secrets",
            Area::Handoff => "hand-off",
        }
    }
}

pub type Setup = fn(&Sandbox);

#[derive(Clone, Copy)]
pub enum Drive {
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

pub struct Case {
    pub name: &'static str,
    pub area: Area,
    /// The fault, for people.
    pub fault: &'static str,
    pub start: Start,
    pub setup: Setup,
    pub drive: Drive,
    /// `None`: killed by the case itself (SIGKILL).
    pub exit: Option<i32>,
    /// On stderr, when not empty.
    pub says: &'static str,
    /// What an SRE sees, for the table in docs/faults.md.
    pub outcome: &'static str,
    /// For work left undone: put right before a fresh run, which must
    /// finish with 0 and still keep every invariant.
    pub resume: Option<Setup>,
}

pub fn nothing(_: &Sandbox) {}

pub fn short_deadline(sb: &Sandbox) {
    sb.write_config(SHORT_DEADLINE);
}

pub fn stderr_has(needle: &'static str) -> impl Fn(&str) -> bool {
    move |e| e.contains(needle)
}

pub fn api_fault(sb: &Sandbox, method: Method, path: &str, times: usize, fault: Fault) {
    sb.api.fault(method, path, times, fault);
}

pub fn status(code: u16, reason: &'static str, message: &str) -> Fault {
    Fault::Status {
        code,
        reason,
        message: message.into(),
    }
}

/// The environment's proxies all point at the trap.
pub fn proxies_to_trap(sb: &Sandbox) {
    for key in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        sb.set_env(key, &sb.trap.url);
    }
}

pub fn mount_tmpfs(sb: &Sandbox, options: &str) {
    require_root();
    std::fs::create_dir_all(sb.state_dir()).unwrap();
    run(std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", options, "catalyst-test"])
        .arg(sb.state_dir()));
}

pub fn unmount(sb: &Sandbox) {
    run(std::process::Command::new("umount").arg(sb.state_dir()));
}

/// `secrets_dir` as a read-only bind mount of itself: its files can be
/// read but not overwritten or removed.
pub fn secrets_read_only(sb: &Sandbox) {
    require_root();
    let dir = sb.secrets_dir();
    run(std::process::Command::new("mount")
        .arg("--bind")
        .arg(&dir)
        .arg(&dir));
    run(std::process::Command::new("mount")
        .args(["-o", "remount,bind,ro"])
        .arg(&dir));
}

pub fn secrets_writable(sb: &Sandbox) {
    run(std::process::Command::new("umount").arg(sb.secrets_dir()));
}

/// Unmounts what a case mounted (a disk case's tmpfs, a read-only
/// `secrets_dir`) even when the case fails before its resume step did.
pub struct Unmount<'a>(pub &'a Sandbox);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        for dir in [self.0.state_dir(), self.0.secrets_dir()] {
            let mounted = std::fs::read_to_string("/proc/self/mounts")
                .is_ok_and(|m| m.contains(&format!(" {} ", dir.display())));
            if mounted {
                run(std::process::Command::new("umount").arg(&dir));
            }
        }
    }
}

/// The agent as systemd runs it, its journal captured: every run of the
/// matrix is scanned for secrets in the journal too.
pub fn spawn(sb: &Sandbox) -> Agent {
    sb.spawn_journaled(&["run"], &[])
}

pub async fn run_agent(sb: &Sandbox) -> Finished {
    spawn(sb).finish().await
}

/// The same, with /etc/resolv.conf naming a closed port on loopback.
pub fn spawn_without_dns(sb: &Sandbox) -> Agent {
    let resolv = sb.path("resolv.conf");
    std::fs::write(
        &resolv,
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
    )
    .unwrap();
    sb.spawn_journaled(&["run"], &[(&resolv, "/etc/resolv.conf")])
}

/// Waits until `moment` holds for the sandbox and the agent's stderr.
pub async fn until(sb: &Sandbox, agent: &Agent, case: &Case, moment: fn(&Sandbox, &str) -> bool) {
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

pub async fn drive(sb: &Sandbox, case: &Case) -> Finished {
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
            sb.assert_notify_well_formed(second.pid);
            assert!(
                !sb.notify.lines_of(second.pid).contains(&"READY=1".into()),
                "{}: the twin said READY",
                case.name
            );
            first.finish().await
        }
    }
}

/// The invariants every run must keep. `seed` is the seed's wire value the
/// first time one was seen.
pub fn invariants(
    sb: &Sandbox,
    case: &Case,
    out: &Finished,
    expected: Option<i32>,
    seed: &mut Option<Value>,
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
    // Bootstrap Secrets: after success each holds its file's values and no
    // file is left; before it, a file goes only once its Secret is written.
    if sb.has_manifests() {
        if expected == Some(0) {
            sb.assert_upstream_secrets();
        }
        for file in ["ghcr-pull", "object-storage", "cloud-credentials"] {
            let gone = !sb.manifests_left().contains(&format!("{file}.yaml"));
            assert!(
                !gone
                    || sb
                        .api
                        .object(&format!("/api/v1/namespaces/flux-system/secrets/{file}"))
                        .is_some(),
                "{name}: the file of {file} is gone but its Secret was never written"
            );
        }
    }
    // The hand-off: each object recorded once, and none recorded that the
    // API server does not hold.
    if let Some(handed) = state_handed(sb) {
        let mut seen = std::collections::BTreeSet::new();
        for h in &handed {
            assert!(seen.insert(h.clone()), "{name}: {h} recorded twice");
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
            for phase in ["wait", "kubeconfig", "seed", "secrets", "manifests"] {
                assert_eq!(
                    state[phase]["outcome"], "done",
                    "{name}: {phase}: {state:#}"
                );
            }
        }
        (Some(code), Some(state))
            if [65, 69, 70, 76, 77, 79].contains(&code) && !name.starts_with("state_file") =>
        {
            assert!(!done, "{name}: failed but marked done");
            let failed = ["kubeconfig", "seed", "wait", "secrets", "manifests"]
                .iter()
                .any(|p| {
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
            let interrupted = ["kubeconfig", "seed", "wait", "secrets", "manifests"]
                .iter()
                .any(|p| state[p]["outcome"] == "interrupted");
            assert!(
                interrupted || matches!(case.drive, Drive::Twin),
                "{name}: {state:#}"
            );
        }
        _ => assert!(!done || expected == Some(0), "{name}: marked done"),
    }

    // Every run says something to systemd: checks that filter on the
    // run's PID must not pass on nothing.
    assert!(
        !sb.notify.messages_of(out.pid).is_empty(),
        "{name}: no sd_notify datagram from the run's PID {}",
        out.pid
    );
    // The last STATUS= of this run's process explains the outcome: what
    // `systemctl status` would show (a twin's words are not heard).
    if let Some(code) = expected {
        let last = sb.notify.statuses_of(out.pid).pop().unwrap_or_default();
        let explains = match code {
            0 => last.starts_with("Done"),
            75 => last.starts_with("Stopping on"),
            code => last.starts_with(&format!("Failed (exit {code})")),
        };
        assert!(
            explains,
            "{name}: last STATUS does not explain exit {code}: {last:?}"
        );
    }

    // No secret anywhere it could leak to; nothing a peer said made the
    // agent tell systemd more than its own words; no proxy was asked.
    sb.assert_no_leaks(&[&out.stderr, &out.stdout]);
    sb.assert_notify_well_formed(out.pid);
    assert_eq!(
        sb.trap.hits(),
        0,
        "{name}: a request went to the proxy trap"
    );
}

/// The hand-off objects state.json records, if it exists.
fn state_handed(sb: &Sandbox) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(sb.state_dir().join("state.json")).ok()?;
    let state: Value = serde_json::from_str(&text).ok()?;
    Some(
        state["handed"]
            .as_array()?
            .iter()
            .map(|h| format!("{} {}", h["file"], h["object"]))
            .collect(),
    )
}

pub async fn run_case(case: &Case) {
    let sb = Sandbox::with(case.start);
    (case.setup)(&sb);
    let _unmount = matches!(case.area, Area::Disk | Area::Secrets).then(|| Unmount(&sb));
    let out = drive(&sb, case).await;
    let mut seed = None;
    invariants(&sb, case, &out, case.exit, &mut seed);
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
        Some(73) if case.area == Area::Disk => {
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
        let again = run_agent(&sb).await;
        invariants(&sb, case, &again, Some(0), &mut seed);
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

/// Runs the `cases` of `area`. `CATALYST_FAULT_CASES=a,b` runs only those
/// cases (to look at one, or to run one against another binary with
/// `CATALYST_BOOTSTRAP_BIN`).
pub async fn run_area(cases: impl Iterator<Item = &'static Case>, area: Area) {
    let only = std::env::var("CATALYST_FAULT_CASES").ok();
    let chosen = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|n| n == name))
    };
    for case in cases.filter(|c| c.area == area && chosen(c.name)) {
        eprintln!("fault case {}", case.name);
        run_case(case).await;
    }
}
