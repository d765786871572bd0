//! `bench/lease` (issue 15 item 9, "question the Lease"): three
//! control-plane nodes of one cluster, each with its own API server port
//! over the same objects, run by the agent as it is
//! (`CATALYST_BOOTSTRAP_BIN`: a Lease picks the node that does the work)
//! and by the same agent with the Lease phase taken out
//! (`CATALYST_BOOTSTRAP_NO_LEASE_BIN`: every node does the whole job), on
//! the same cases, alternating. Counts the requests each design sends to
//! catalyst-api and to the API server, times the capture and the end of the
//! last node, and checks the outcome (one kubeconfig stored, one seed
//! created, every surviving node exits 0 with its `done` stamp). Writes
//! `bench/lease.json` and `bench/lease.md`; `--runs N` (default 9; the
//! kill cases take ceil(N/2)).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use catalyst_bootstrap_tests::catalyst::Step;
use catalyst_bootstrap_tests::http::Server;
use catalyst_bootstrap_tests::measure::{commit, date, machine, median, ms, write};
use catalyst_bootstrap_tests::sandbox::{DEPLOYMENT_ID, PUBLIC_ADDRESS, Sandbox, Start};
use catalyst_bootstrap_tests::ship::root;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const NODES: [&str; 3] = ["cp-1", "cp-2", "cp-3"];
const SEED: &str = "/api/v1/namespaces/openbao/secrets/openbao-recovery-seed";
/// How much later than its peers' the late node's API server starts.
const LATE: Duration = Duration::from_secs(5);
/// The unit's `RestartSec=` (systemd/catalyst-bootstrap.service): after a
/// SIGKILL (`Restart=on-failure`) systemd starts the agent again this much
/// later.
const RESTART_SEC: Duration = Duration::from_secs(10);
/// Long enough that the killed node's PUT is never answered within a run.
const HUNG: Duration = Duration::from_secs(600);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Design {
    Lease,
    NoLease,
}

impl Design {
    const ALL: [Design; 2] = [Design::Lease, Design::NoLease];

    fn name(self) -> &'static str {
        match self {
            Design::Lease => "lease",
            Design::NoLease => "no-lease",
        }
    }

    fn binary(self) -> PathBuf {
        let var = match self {
            Design::Lease => "CATALYST_BOOTSTRAP_BIN",
            Design::NoLease => "CATALYST_BOOTSTRAP_NO_LEASE_BIN",
        };
        std::env::var_os(var)
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("{var} is not set: run bench/lease, which builds both"))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    /// All three API servers become ready at the same moment.
    AtOnce,
    /// The node whose PUT reaches catalyst-api first is SIGKILLed while
    /// catalyst-api holds that PUT unanswered; it never comes back (the
    /// node is gone).
    Killed,
    /// The same, and systemd starts the agent again `RESTART_SEC` later.
    KilledRestarted,
    /// cp-3's API server comes up `LATE` after the other two's.
    Late,
}

impl Case {
    const ALL: [Case; 4] = [
        Case::AtOnce,
        Case::Killed,
        Case::KilledRestarted,
        Case::Late,
    ];

    fn name(self) -> &'static str {
        match self {
            Case::AtOnce => "three nodes at once",
            Case::Killed => "node killed mid-PUT, gone",
            Case::KilledRestarted => "node killed mid-PUT, restarted after RestartSec=10s",
            Case::Late => "cp-3's API server 5 s late",
        }
    }

    fn runs(self, runs: usize) -> usize {
        match self {
            // Up to lease_duration (30 s) each with the Lease.
            Case::Killed | Case::KilledRestarted => runs.div_ceil(2),
            Case::AtOnce | Case::Late => runs,
        }
    }
}

/// One control-plane node: its own API server port, k3s.yaml and state.
struct Node {
    name: &'static str,
    endpoint: Server,
    kubeconfig: PathBuf,
    state: PathBuf,
}

impl Node {
    fn new(sb: &Sandbox, name: &'static str, up: bool) -> Node {
        let endpoint = sb.api.node_endpoint(up);
        let file = format!("k3s-{name}.yaml");
        sb.write_secret_file(&file, &sb.api.kubeconfig_for(endpoint.addr().port()));
        Node {
            name,
            endpoint,
            kubeconfig: sb.path(&file),
            state: sb.path(&format!("state-{name}")),
        }
    }

    /// The kubeconfig this node sends names its own port.
    fn sent(&self, body: &[u8]) -> bool {
        let server = format!("{PUBLIC_ADDRESS}:{}\n", self.endpoint.addr().port());
        String::from_utf8_lossy(body).contains(&server)
    }

    fn spawn(&self, design: Design, sb: &Sandbox, log: &Path) -> Running {
        let args = [
            "--node-name",
            self.name,
            "--state-dir",
            self.state.to_str().unwrap(),
            "--kubeconfig",
            self.kubeconfig.to_str().unwrap(),
            "run",
        ];
        let cmd = sb.std_command_of(std::process::Command::new(design.binary()), &args);
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("creating the log"))
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawning the agent");
        let pid = child.id().expect("a new child has a PID") as i32;
        let exit = tokio::spawn(async move {
            let status = tokio::time::timeout(Duration::from_secs(300), child.wait())
                .await
                .expect("the agent did not exit within 300 s")
                .expect("waiting for the agent");
            (status.code(), Instant::now())
        });
        Running { pid, exit }
    }
}

struct Running {
    pid: i32,
    exit: tokio::task::JoinHandle<(Option<i32>, Instant)>,
}

/// Where a request to the API server goes, for counting.
fn kind(method: &str, path: &str) -> String {
    let what = if matches!(path, "/readyz" | "/healthz" | "/livez") {
        "readiness poll"
    } else if path.contains("/leases") {
        "Lease"
    } else if path.contains("/events") {
        "Event"
    } else if path.ends_with("/openbao-init-marker") {
        "init marker"
    } else if path.contains("/secrets") {
        "seed Secret"
    } else if path.starts_with("/api/v1/namespaces") {
        "Namespace"
    } else {
        path
    };
    format!("{what} {method}")
}

/// One run of `design` on `case`.
async fn run(design: Design, case: Case, n: usize) -> Value {
    let logs = root().join("target/bench-logs/lease");
    std::fs::create_dir_all(&logs).unwrap();
    let log = |node: &str, suffix: &str| {
        let case = case.name().split(',').next().unwrap().replace(' ', "-");
        logs.join(format!("{case}-{}-{n}-{node}{suffix}.log", design.name()))
    };
    let sb = Sandbox::with(Start {
        api_ready: false,
        ..Start::DEFAULT
    });
    // Production settings, as `bench/run` uses: lease_duration stays 30s.
    sb.write_config(
        "deadline: 30m\nretry:\n  initial_delay: 1s\n  max_delay: 60s\n  overloaded_delay: 10s\n",
    );
    if matches!(case, Case::Killed | Case::KilledRestarted) {
        sb.catalyst.script([Step::Delay(HUNG)]);
    }
    let nodes: Vec<Node> = NODES
        .iter()
        .map(|name| Node::new(&sb, name, !(case == Case::Late && *name == "cp-3")))
        .collect();
    let mut running: Vec<Running> = nodes
        .iter()
        .map(|node| node.spawn(design, &sb, &log(node.name, "")))
        .collect();
    // Every node is polling /readyz by now.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let ready = Instant::now();
    sb.api.set_ready(true);
    let mut last_ready = ready;
    let mut killed = None;
    match case {
        Case::AtOnce => {}
        Case::Late => {
            tokio::time::sleep(LATE).await;
            last_ready = Instant::now();
            nodes[2].endpoint.set_up(true);
        }
        Case::Killed | Case::KilledRestarted => {
            let end = Instant::now() + Duration::from_secs(60);
            let victim = loop {
                let first = sb.catalyst.arrivals().into_iter().next();
                if let Some(i) = first.and_then(|body| nodes.iter().position(|n| n.sent(&body))) {
                    break i;
                }
                assert!(Instant::now() < end, "no PUT reached catalyst-api");
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            kill(Pid::from_raw(running[victim].pid), Signal::SIGKILL).expect("SIGKILL");
            killed = Some(victim);
            if case == Case::KilledRestarted {
                tokio::time::sleep(RESTART_SEC).await;
                let node = &nodes[victim];
                let again = node.spawn(design, &sb, &log(node.name, "-restarted"));
                let first = std::mem::replace(&mut running[victim], again);
                let (code, _) = first.exit.await.unwrap();
                assert_eq!(code, None, "the first run was killed");
                killed = None;
            }
        }
    }
    let mut problems = Vec::new();
    let mut last_exit = None;
    for (i, r) in running.into_iter().enumerate() {
        let (code, at) = r.exit.await.unwrap();
        if killed == Some(i) {
            if code.is_some() {
                problems.push(format!("{} was not killed: exit {code:?}", nodes[i].name));
            }
            continue;
        }
        last_exit = last_exit.max(Some(at));
        if code != Some(0) {
            problems.push(format!("{} exited {code:?}", nodes[i].name));
        }
        if !nodes[i].state.join("done").exists() {
            problems.push(format!("{} has no done stamp", nodes[i].name));
        }
    }
    let stores = sb.catalyst.store_count(DEPLOYMENT_ID);
    if stores != 1 {
        problems.push(format!("{stores} kubeconfigs stored"));
    }
    let seeds = sb.api.creations(SEED);
    if seeds != 1 {
        problems.push(format!("{seeds} seed Secrets created"));
    }
    let answered = sb.catalyst.requests();
    let capture = answered.iter().find(|p| p.status == Some(204));
    let status_count = |s: u16| answered.iter().filter(|p| p.status == Some(s)).count();
    // The first /readyz the server answered ok: from there the capture no
    // longer includes the 25-50 ms poll interval, only the job's own path.
    let first_ok = sb
        .api
        .requests()
        .into_iter()
        .find(|r| r.at >= ready && kind(r.method.as_str(), &r.path).starts_with("readiness"))
        .map(|r| r.at);
    let mut api: BTreeMap<String, usize> = BTreeMap::new();
    for r in sb.api.requests() {
        *api.entry(kind(r.method.as_str(), &r.path)).or_default() += 1;
    }
    // What each node's state.json says it did: the "who did the work" record.
    let records: BTreeMap<&str, Value> = nodes
        .iter()
        .map(|node| {
            let state = std::fs::read(node.state.join("state.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .unwrap_or_default();
            let detail = |phase: &str| state[phase]["detail"].clone();
            (
                node.name,
                json!({"kubeconfig": detail("kubeconfig"), "seed": detail("seed")}),
            )
        })
        .collect();
    let lease_completed_by = sb
        .api
        .object("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/catalyst-bootstrap")
        .map(|l| l["metadata"]["annotations"]["catalyst.openova.io/completed-by"].clone());
    let result = json!({
        "capture_ms": capture.map(|p| ms(p.at.saturating_duration_since(ready))),
        "readyz_ok_to_capture_ms": capture
            .zip(first_ok)
            .map(|(p, ok)| ms(p.at.saturating_duration_since(ok))),
        "last_done_ms": last_exit.map(|at| ms(at.saturating_duration_since(last_ready))),
        "puts_sent": sb.catalyst.arrivals().len(),
        "puts_204": status_count(204),
        "puts_already_set": status_count(403),
        "api": api,
        "killed": killed.map(|i| nodes[i].name),
        "records": records,
        "lease_completed_by": lease_completed_by,
        "problems": problems,
    });
    eprintln!(
        "  {} {}: capture {:?} ms, last node done {:?} ms, {} PUTs, problems {:?}",
        case.name(),
        design.name(),
        result["capture_ms"].as_f64().map(f64::round),
        result["last_done_ms"].as_f64().map(f64::round),
        result["puts_sent"],
        result["problems"]
    );
    result
}

/// The job's requests to the API server in one run: all but the readiness
/// polls, whose number depends only on when the server became ready.
fn job_requests(sample: &Value) -> f64 {
    sample["api"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !k.starts_with("readiness"))
        .filter_map(|(_, v)| v.as_f64())
        .sum()
}

fn summary(samples: &[Value]) -> Value {
    let of =
        |f: &dyn Fn(&Value) -> Option<f64>| -> Vec<f64> { samples.iter().filter_map(f).collect() };
    let capture = of(&|s| s["capture_ms"].as_f64());
    let done = of(&|s| s["last_done_ms"].as_f64());
    let worst = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let mut kinds: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for s in samples {
        for (k, v) in s["api"].as_object().into_iter().flatten() {
            kinds
                .entry(k.clone())
                .or_default()
                .push(v.as_f64().unwrap_or(0.0));
        }
    }
    json!({
        "capture_ms": median(capture.clone()),
        "capture_max_ms": worst(&capture),
        "readyz_ok_to_capture_ms": median(of(&|s| s["readyz_ok_to_capture_ms"].as_f64())),
        "last_done_ms": median(done.clone()),
        "last_done_max_ms": worst(&done),
        "puts_sent": median(of(&|s| s["puts_sent"].as_f64())),
        "puts_204": median(of(&|s| s["puts_204"].as_f64())),
        "puts_already_set": median(of(&|s| s["puts_already_set"].as_f64())),
        "api_job_requests": median(samples.iter().map(job_requests).collect()),
        "api_job_requests_max": worst(&samples.iter().map(job_requests).collect::<Vec<_>>()),
        "api": kinds.into_iter().map(|(k, v)| (k, json!(median(v)))).collect::<BTreeMap<_, _>>(),
        "correct": samples.iter().filter(|s| s["problems"].as_array().is_some_and(Vec::is_empty)).count(),
        "runs": samples.len(),
        "samples": samples,
    })
}

/// The 1-minute load average.
fn load() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

fn markdown(r: &Value) -> String {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let mut out = format!(
        "Taken {} on commit {}; {} cores, {}; 1-minute load average {} before, {} after. \
         Three control-plane nodes, production settings \
         (`lease_duration` 30 s, `retry` 1 s/60 s/10 s); the shipped static build of each design; \
         medians (worst) of {} runs, {} for the kill cases, alternating.\n\n",
        r["date"].as_str().unwrap_or(""),
        r["commit"].as_str().unwrap_or(""),
        r["machine"]["cores"],
        r["machine"]["model"].as_str().unwrap_or(""),
        r["load_average"]["before"],
        r["load_average"]["after"],
        r["runs"],
        Case::Killed.runs(r["runs"].as_u64().unwrap_or(0) as usize),
    );
    out += "| case | design | API ready → captured | first ok `/readyz` → captured | last API server ready → last node done | PUTs sent (204 / already-set) | API server requests, besides `/readyz` polls | correct runs |\n";
    out += "|---|---|---|---|---|---|---|---|\n";
    for row in r["cases"].as_array().into_iter().flatten() {
        for design in Design::ALL {
            let s = &row[design.name()];
            let kinds: Vec<String> = s["api"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| !k.starts_with("readiness"))
                .map(|(k, v)| format!("{k} {}", f(v)))
                .collect();
            out += &format!(
                "| {} | {} | {:.0} ms ({:.0}) | {:.0} ms | {:.0} ms ({:.0}) | {} ({} / {}) | {} (at most {}): {} | {}/{} |\n",
                row["case"].as_str().unwrap_or(""),
                design.name(),
                f(&s["capture_ms"]),
                f(&s["capture_max_ms"]),
                f(&s["readyz_ok_to_capture_ms"]),
                f(&s["last_done_ms"]),
                f(&s["last_done_max_ms"]),
                f(&s["puts_sent"]),
                f(&s["puts_204"]),
                f(&s["puts_already_set"]),
                f(&s["api_job_requests"]),
                f(&s["api_job_requests_max"]),
                kinds.join(", "),
                s["correct"],
                s["runs"],
            );
        }
    }
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(9);
    for design in Design::ALL {
        eprintln!(
            "bench/lease: {} {}",
            design.name(),
            design.binary().display()
        );
    }
    // Other work on the machine stretches every millisecond figure (the
    // counts and the 10 s / 30 s delays hold regardless): say how busy it was.
    let load_before = load();
    let mut cases = Vec::new();
    for case in Case::ALL {
        eprintln!(
            "bench/lease: {}, {} runs each",
            case.name(),
            case.runs(runs)
        );
        let mut samples = [Vec::new(), Vec::new()];
        for n in 0..case.runs(runs) {
            for (i, design) in Design::ALL.into_iter().enumerate() {
                samples[i].push(run(design, case, n).await);
            }
        }
        let [lease, no_lease] = samples.map(|s| summary(&s));
        cases.push(json!({"case": case.name(), "lease": lease, "no-lease": no_lease}));
    }
    let results = json!({
        "date": date(),
        "commit": commit(),
        "machine": machine(),
        "runs": runs,
        "load_average": {"before": load_before, "after": load()},
        "cases": cases,
    });
    let table = markdown(&results);
    println!("{table}");
    let dir = root().join("bench");
    write(&dir.join("lease.json"), &format!("{results:#}\n"));
    write(&dir.join("lease.md"), &table);
}
