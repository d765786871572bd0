//! `bench/run` (or `cargo run --release -p catalyst-bootstrap-tests --bin
//! bench`): the agent against the shell it replaces (`bench/baseline.sh`),
//! on the same fakes, alternating A B A B. Writes `bench/results.json` and
//! `bench/results.md` and prints the table. `--quick` is the smoke version
//! the test suite runs: one iteration, short outages, nothing written.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use catalyst_bootstrap_tests::catalyst::Step;
use catalyst_bootstrap_tests::measure::{commit, date, machine, median, ms, write};
use catalyst_bootstrap_tests::sandbox::{
    DEPLOYMENT_ID, PUBLIC_ADDRESS, Sandbox, Start, agent_binary,
};
use catalyst_bootstrap_tests::ship::root;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Agent,
    Shell,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Agent => "agent",
            Tool::Shell => "shell",
        }
    }
}

/// One finished run of a tool.
struct Measured {
    wall: Duration,
    cpu: Duration,
    max_rss_kib: u64,
}

/// Starts `tool` against the sandbox; the caller reaps it with [`reap`].
fn spawn(tool: Tool, sb: &Sandbox) -> (u32, Instant) {
    spawn_logged(tool, sb, None)
}

/// Like [`spawn`], keeping the tool's stderr in `log`.
#[expect(
    clippy::zombie_processes,
    reason = "reaped by wait4 in reap(), for the rusage std's Child::wait does not give"
)]
fn spawn_logged(tool: Tool, sb: &Sandbox, log: Option<&Path>) -> (u32, Instant) {
    let mut cmd = match tool {
        Tool::Agent => sb.std_command(&["run"]),
        Tool::Shell => {
            let port = sb.api.addr().port();
            let mut cmd = Command::new("sh");
            cmd.arg(root().join("bench/baseline.sh"))
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                // A node at first boot: no kubectl cache yet.
                .env("HOME", sb.path("home"))
                .env("KUBECONFIG", sb.kubeconfig_path())
                .env("LOCAL_SERVER", format!("https://127.0.0.1:{port}"))
                .env("PUBLIC_SERVER", format!("https://{PUBLIC_ADDRESS}:{port}"))
                .env("CATALYST_API_URL", sb.catalyst.url())
                .env("CURL_CA_BUNDLE", sb.path("ca.pem"))
                .env("DEPLOYMENT_ID", DEPLOYMENT_ID)
                .env("TOKEN", &sb.token)
                .stdin(Stdio::null());
            cmd
        }
    };
    cmd.stdout(Stdio::null()).stderr(match log {
        Some(path) => Stdio::from(std::fs::File::create(path).expect("creating the log")),
        None => Stdio::null(),
    });
    let start = Instant::now();
    let child = cmd.spawn().expect("spawning the tool");
    (child.id(), start)
}

/// Waits for `pid` and reads its resource usage, which includes every
/// process it waited for (kubectl, curl).
fn reap(pid: u32, start: Instant) -> (i32, Measured) {
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet reaped; both pointers are valid.
    let r = unsafe { libc::wait4(pid as i32, &mut status, 0, &mut usage) };
    assert_eq!(r, pid as i32, "wait4");
    let wall = start.elapsed();
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (
        code,
        Measured {
            wall,
            cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
            max_rss_kib: usage.ru_maxrss as u64,
        },
    )
}

async fn run_to_end(tool: Tool, sb: &Sandbox) -> Measured {
    let (pid, start) = spawn(tool, sb);
    let (code, m) = tokio::task::spawn_blocking(move || reap(pid, start))
        .await
        .unwrap();
    assert_eq!(code, 0, "{} failed", tool.name());
    assert!(sb.seed_secret().is_some(), "{}: no seed", tool.name());
    assert!(
        sb.catalyst.stored(DEPLOYMENT_ID).is_some(),
        "{}: no kubeconfig",
        tool.name()
    );
    m
}

/// When catalyst-api stored the kubeconfig.
fn captured_at(sb: &Sandbox) -> Instant {
    sb.catalyst
        .requests()
        .iter()
        .find(|p| p.status == Some(204))
        .expect("a 204")
        .at
}

/// A sandbox with production retry settings: the benchmark measures the
/// agent as shipped, not the tests' fast timings.
fn sandbox(start: Start) -> Sandbox {
    let sb = Sandbox::with(start);
    sb.write_config(
        "deadline: 30m\nretry:\n  initial_delay: 1s\n  max_delay: 60s\n  overloaded_delay: 10s\n",
    );
    sb
}

async fn healthy(runs: usize) -> Value {
    let mut rows = json!({});
    let mut samples: [(Vec<f64>, Vec<f64>, Vec<f64>); 2] = Default::default();
    for i in 0..runs * 2 {
        let tool = if i % 2 == 0 { Tool::Agent } else { Tool::Shell };
        let sb = sandbox(Start::DEFAULT);
        let m = run_to_end(tool, &sb).await;
        let s = &mut samples[i % 2];
        s.0.push(ms(m.wall));
        s.1.push(ms(m.cpu));
        s.2.push(m.max_rss_kib as f64 / 1024.0);
    }
    for (k, tool) in [Tool::Agent, Tool::Shell].iter().enumerate() {
        let (wall, cpu, rss) = samples[k].clone();
        rows[tool.name()] = json!({
            "wall_ms": median(wall.clone()), "cpu_ms": median(cpu.clone()),
            "peak_rss_mib": median(rss.clone()),
            "samples": {"wall_ms": wall, "cpu_ms": cpu, "peak_rss_mib": rss},
        });
    }
    rows
}

async fn critical_path(runs: usize) -> Value {
    let mut samples: [Vec<f64>; 2] = Default::default();
    for i in 0..runs * 2 {
        let tool = if i % 2 == 0 { Tool::Agent } else { Tool::Shell };
        let sb = sandbox(Start {
            api_ready: false,
            ..Start::DEFAULT
        });
        let (pid, start) = spawn(tool, &sb);
        // Both are polling by now.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let ready = Instant::now();
        sb.api.set_ready(true);
        let (code, _) = tokio::task::spawn_blocking(move || reap(pid, start))
            .await
            .unwrap();
        assert_eq!(code, 0, "{} failed", tool.name());
        samples[i % 2].push(ms(captured_at(&sb) - ready));
    }
    json!({
        "agent": {"ms": median(samples[0].clone()), "samples": samples[0]},
        "shell": {"ms": median(samples[1].clone()), "samples": samples[1]},
    })
}

#[derive(Clone, Copy)]
enum Outage {
    /// Connection refused.
    Unreachable,
    /// `503` with a JSON error, no `Retry-After`.
    Overloaded,
}

/// The shell's fixed cadence (`curl --retry-delay 10`): a shell node whose
/// outage ends at a random phase of it captures up to one cadence later,
/// half of one at the median.
const SHELL_CADENCE: Duration = Duration::from_secs(10);

/// A random part of the shell's cadence: each run's outage lasts its span
/// plus this, so neither tool's capture is phase-aligned luck. Run `run` of
/// `runs` draws from its own slice of the cadence (stratified), so a few
/// runs cover every phase instead of clustering by chance.
fn random_phase(run: usize, runs: usize) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // std's hasher keys are random per `RandomState`: enough for a phase.
    let draw = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let within = (draw >> 11) as f64 / (1u64 << 53) as f64;
    SHELL_CADENCE.mul_f64((run as f64 + within) / runs as f64)
}

/// One run of `tool` through an outage of `span` seconds that lasts
/// `lasts` (the span and a random phase).
async fn outage(tool: Tool, kind: Outage, span: u64, lasts: Duration, run: usize) -> Value {
    let sb = sandbox(Start::DEFAULT);
    match kind {
        Outage::Unreachable => sb.catalyst.set_up(false),
        Outage::Overloaded => sb
            .catalyst
            .script((0..100_000).map(|_| Step::error(503, "write-failed"))),
    }
    let logs = root().join("target/bench-logs");
    std::fs::create_dir_all(&logs).unwrap();
    let kind_name = match kind {
        Outage::Unreachable => "unreachable",
        Outage::Overloaded => "overloaded",
    };
    let log = logs.join(format!("{kind_name}-{span}s-{}-{run}.log", tool.name()));
    let (pid, start) = spawn_logged(tool, &sb, Some(&log));
    tokio::time::sleep(lasts).await;
    let recovered = Instant::now();
    let during = sb.catalyst.requests().len();
    match kind {
        Outage::Unreachable => sb.catalyst.set_up(true),
        Outage::Overloaded => sb.catalyst.clear_script(),
    }
    let (code, _) = tokio::task::spawn_blocking(move || reap(pid, start))
        .await
        .unwrap();
    assert_eq!(code, 0, "{} failed after the outage", tool.name());
    json!({
        "requests_during": match kind {
            // Refused connections never reach the server to be counted.
            Outage::Unreachable => Value::Null,
            Outage::Overloaded => json!(during),
        },
        "capture_after_recovery_ms": ms(captured_at(&sb).saturating_duration_since(recovered)),
        "outage_ms": ms(lasts),
    })
}

/// Each span `runs` times, alternating: medians, the worst run, and every
/// sample.
async fn outages(spans: &[u64], runs: usize) -> Value {
    let mut rows = Vec::new();
    for (kind, name) in [
        (Outage::Unreachable, "unreachable"),
        (Outage::Overloaded, "overloaded (503)"),
    ] {
        for &secs in spans {
            let mut samples = [Vec::new(), Vec::new()];
            for run in 0..runs {
                // Both tools of a run see the same outage.
                let lasts = Duration::from_secs(secs) + random_phase(run, runs);
                for (i, tool) in [Tool::Agent, Tool::Shell].into_iter().enumerate() {
                    samples[i].push(outage(tool, kind, secs, lasts, run).await);
                }
            }
            let [agent, shell] = samples.map(|s| summary(&s));
            rows.push(json!({"kind": name, "seconds": secs, "agent": agent, "shell": shell}));
        }
    }
    Value::Array(rows)
}

fn summary(samples: &[Value]) -> Value {
    let of = |key: &str| -> Vec<f64> { samples.iter().filter_map(|s| s[key].as_f64()).collect() };
    let capture = of("capture_after_recovery_ms");
    let requests = of("requests_during");
    json!({
        "capture_after_recovery_ms": median(capture.clone()),
        "capture_after_recovery_max_ms": capture.iter().copied().fold(0.0, f64::max),
        "requests_during": if requests.is_empty() { Value::Null } else { json!(median(requests.clone())) },
        "requests_during_max": requests.iter().copied().reduce(f64::max),
        "samples": samples,
    })
}

/// Size of the shipped static binary and its start-up to first request.
async fn binary(runs: usize) -> Value {
    let path = agent_binary();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let mut startup = Vec::new();
    for _ in 0..runs {
        let sb = sandbox(Start::DEFAULT);
        let (pid, start) = spawn(Tool::Agent, &sb);
        let _ = tokio::task::spawn_blocking(move || reap(pid, start)).await;
        let first = sb.api.requests().first().expect("a request").at;
        startup.push(ms(first - start));
    }
    json!({"path": path.display().to_string(), "size_bytes": size, "startup_to_first_request_ms": median(startup)})
}

fn ratio(a: f64, b: f64) -> f64 {
    if a > 0.0 { b / a } else { 0.0 }
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

fn markdown(r: &Value) -> String {
    let h = &r["healthy"];
    let (a, s) = (&h["agent"], &h["shell"]);
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let mut out = format!(
        "Taken {} on commit {}; {} cores, {}; kubectl {}. Medians of {} runs each ({} for each outage), alternating. {}\n\n",
        r["date"].as_str().unwrap_or(""),
        r["commit"].as_str().unwrap_or(""),
        r["machine"]["cores"],
        r["machine"]["model"].as_str().unwrap_or(""),
        r["machine"]["kubectl"].as_str().unwrap_or(""),
        r["runs"],
        r["outage_runs"],
        match (&r["load"]["before"], &r["load"]["max"]) {
            (Value::Number(before), Value::Number(max)) => format!(
                "One-minute load average before the run {before} (refused above {max}), {} at its end.",
                r["load"]["after"]
            ),
            _ => "The load average before the run was not read: run it through bench/run.".into(),
        },
    );
    out +=
        "| measure | agent | shell | shell ÷ agent | target | met |\n|---|---|---|---|---|---|\n";
    let (wall, cpu) = (
        ratio(f(&a["wall_ms"]), f(&s["wall_ms"])),
        ratio(f(&a["cpu_ms"]), f(&s["cpu_ms"])),
    );
    out += &format!(
        "| healthy path, wall | {:.0} ms | {:.0} ms | {wall:.1}× | ≥ 10× | {} |\n",
        f(&a["wall_ms"]),
        f(&s["wall_ms"]),
        met(wall >= 10.0)
    );
    out += &format!(
        "| healthy path, CPU | {:.0} ms | {:.0} ms | {cpu:.1}× | ≥ 10× | {} |\n",
        f(&a["cpu_ms"]),
        f(&s["cpu_ms"]),
        met(cpu >= 10.0)
    );
    out += &format!(
        "| healthy path, peak RSS (largest process) | {:.1} MiB | {:.1} MiB | {:.1}× | agent ≤ 15 MiB | {} |\n",
        f(&a["peak_rss_mib"]),
        f(&s["peak_rss_mib"]),
        ratio(f(&a["peak_rss_mib"]), f(&s["peak_rss_mib"])),
        met(f(&a["peak_rss_mib"]) <= 15.0)
    );
    let c = &r["critical_path"];
    out += &format!(
        "| critical path: `/readyz` ok → kubeconfig captured | {:.0} ms | {:.0} ms | {:.1}× | agent < 100 ms | {} |\n",
        f(&c["agent"]["ms"]),
        f(&c["shell"]["ms"]),
        ratio(f(&c["agent"]["ms"]), f(&c["shell"]["ms"])),
        met(f(&c["agent"]["ms"]) < 100.0)
    );
    // A shell node at a random phase of its cadence: half a cadence at the
    // median, a whole one at worst (its answer time left out, which only
    // makes the bar higher for the agent).
    let (phase_median, phase_worst) = (ms(SHELL_CADENCE / 2), ms(SHELL_CADENCE));
    for row in r["outages"].as_array().into_iter().flatten() {
        let (ra, rs) = (&row["agent"], &row["shell"]);
        let requests = |v: &Value| match v["requests_during"].as_f64() {
            Some(n) => format!(
                "{n} requests (at most {}), ",
                v["requests_during_max"].as_f64().unwrap_or(n)
            ),
            None => String::new(),
        };
        let capture_ok = f(&ra["capture_after_recovery_ms"]) <= phase_median
            && f(&ra["capture_after_recovery_max_ms"]) <= phase_worst;
        let bar = format!(
            "no later than a shell node at a random phase: median ≤ {phase_median:.0} ms, worst ≤ {phase_worst:.0} ms"
        );
        let (target, ok) = if row["kind"] == "unreachable" {
            (bar, capture_ok)
        } else {
            let fewer = f(&ra["requests_during"]) <= f(&rs["requests_during"]) * 4.0 / 3.0;
            (
                format!("agent sends ≤ 4/3 of the shell's requests; {bar}"),
                capture_ok && fewer,
            )
        };
        out += &format!(
            "| catalyst-api {} for {} s (+ a random phase) | {}captured {:.0} ms after recovery (worst {:.0} ms) | {}captured {:.0} ms after recovery (worst {:.0} ms) | | {target} | {} |\n",
            row["kind"].as_str().unwrap_or(""),
            row["seconds"],
            requests(ra),
            f(&ra["capture_after_recovery_ms"]),
            f(&ra["capture_after_recovery_max_ms"]),
            requests(rs),
            f(&rs["capture_after_recovery_ms"]),
            f(&rs["capture_after_recovery_max_ms"]),
            met(ok),
        );
    }
    let b = &r["binary"];
    out += &format!(
        "| static binary | {:.2} MiB, first request {:.0} ms after exec | | | | |\n",
        f(&b["size_bytes"]) / 1048576.0,
        f(&b["startup_to_first_request_ms"])
    );
    out
}

/// The one-minute load average now.
fn load_now() -> Value {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(Value::Null, |l| json!(l))
}

/// `--name value` from the command line.
fn flag(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 1 } else { 5 };
    let spans: &[u64] = if quick { &[1] } else { &[5, 30, 120] };
    // An outage run takes 2 × (span + phase + capture): three of each, not five.
    let outage_runs = if quick { 1 } else { 3 };
    eprintln!("bench: agent {}", agent_binary().display());
    eprintln!("bench: healthy path, {runs} runs each");
    let healthy = healthy(runs).await;
    eprintln!("bench: critical path, {runs} runs each");
    let critical = critical_path(runs).await;
    eprintln!("bench: catalyst-api outages of {spans:?} s, {outage_runs} runs each");
    let outages = outages(spans, outage_runs).await;
    let binary = binary(runs).await;
    let results = json!({
        "date": date(),
        "commit": commit(),
        "machine": machine(),
        // bench/run reads it before it builds anything; the end's is ours.
        "load": {
            "before": flag("--load-before").and_then(|l| l.parse::<f64>().ok()),
            "max": flag("--max-load").and_then(|l| l.parse::<f64>().ok()),
            "after": load_now(),
        },
        "runs": runs,
        "outage_runs": outage_runs,
        "healthy": healthy,
        "critical_path": critical,
        "outages": outages,
        "binary": binary,
    });
    let table = markdown(&results);
    println!("{table}");
    if !quick {
        let dir: PathBuf = root().join("bench");
        write(&dir.join("results.json"), &format!("{results:#}\n"));
        write(&dir.join("results.md"), &table);
    }
}
