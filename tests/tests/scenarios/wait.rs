//! Scenarios: the wait phase: the kubeconfig file and the API server.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_up_late() {
    let sb = Sandbox::with(Start {
        api_up: false,
        api_ready: false,
        ..Start::default()
    });
    let agent = sb.spawn(&["run"]);
    tokio::time::sleep(Duration::from_millis(800)).await;
    sb.api.set_up(true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        sb.catalyst.requests().is_empty(),
        "no PUT before the API server is ready"
    );
    sb.api.set_ready(true);
    let out = agent.finish().await;
    assert_exit(&out, 0);
    assert!(
        sb.notify
            .statuses()
            .iter()
            .any(|s| s.contains("waiting for the API server") && s.contains("s so far"))
    );
    assert!(sb.api.count(&Method::GET, "/readyz") >= 2);
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_appears_late() {
    let sb = Sandbox::with(Start {
        kubeconfig: false,
        ..Start::default()
    });
    let agent = sb.spawn(&["run"]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(sb.api.requests().is_empty());
    sb.write_kubeconfig();
    let out = agent.finish().await;
    assert_exit(&out, 0);
    assert!(
        sb.notify
            .statuses()
            .iter()
            .any(|s| s.contains("k3s.yaml does not exist yet"))
    );
    assert!(sb.seed_secret().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_missing_at_the_deadline_exits_69_naming_the_file() {
    let sb = Sandbox::with(Start {
        kubeconfig: false,
        ..Start::default()
    });
    sb.write_config("deadline: 1s\n");
    let out = sb.run().await;
    assert_exit(&out, 69);
    assert!(
        out.stderr.contains("k3s.yaml does not exist yet")
            && out.stderr.contains("deadline passed"),
        "{}",
        out.stderr
    );
    assert_eq!(phase_outcome(&sb, "wait"), "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_kubeconfigs_exit_65() {
    // kubectl refuses a repeated name; so does the agent, naming it.
    let twice = |k3s: String| {
        let twice = k3s.replacen(
            "clusters:\n",
            "clusters:\n- name: default\n  cluster: {server: https://10.0.0.1:6443}\n",
            1,
        );
        assert_ne!(twice, k3s, "the fake's kubeconfig has a clusters list");
        twice
    };
    let cases: [(&dyn Fn(String) -> String, &str); 3] = [
        (&twice, "cluster name \"default\" appears more than once"),
        (&|_| "this: [is not\n".into(), "is not a usable kubeconfig"),
        (
            &|_| "apiVersion: v1\nkind: Config\nclusters: []\n".into(),
            "it has no clusters",
        ),
    ];
    for (content, expect) in cases {
        let sb = Sandbox::new();
        write_settled_kubeconfig(&sb, &content(sb.api.kubeconfig()));
        let out = sb.run().await;
        assert_exit(&out, 65);
        assert!(
            out.stderr.contains(expect) && out.stderr.contains("k3s.yaml"),
            "{}",
            out.stderr
        );
        assert!(sb.catalyst.requests().is_empty());
    }

    // Under 1 MiB as k3s wrote it, over 1 MiB once rewritten to a long
    // public name: refused before sending.
    let sb = Sandbox::new();
    let long_name = format!("{}.example", ["sovereign-control-plane"; 8].join("."));
    sb.write_config(&format!("public_address: {long_name}\n"));
    let base = sb.api.kubeconfig();
    let padding = 1024 * 1024 - 100 - base.len();
    std::fs::write(
        sb.kubeconfig_path(),
        format!("{base}padding: {}\n", "x".repeat(padding)),
    )
    .unwrap();
    let out = sb.run().await;
    assert_exit(&out, 65);
    assert_stderr(&out, "catalyst-api accepts at most 1048576");
    assert!(sb.catalyst.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_used_where_readyz_is_missing() {
    let sb = Sandbox::new();
    sb.api.fault(
        Method::GET,
        "/readyz",
        1000,
        Fault::Status {
            code: 404,
            reason: "NotFound",
            message: "the server could not find the requested resource".into(),
        },
    );
    let out = sb.run().await;
    assert_exit(&out, 0);
    assert!(sb.api.count(&Method::GET, "/healthz") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_kubeconfig_is_reported_without_quoting_its_key() {
    let sb = Sandbox::new();
    // The client key is the file's last line: a broken line after it makes
    // the YAML parser quote the key in its error, which must not reach a log.
    let broken = format!(
        "{}    client-certificate-data: [oops\n",
        sb.api.kubeconfig()
    );
    write_settled_kubeconfig(&sb, &broken);
    let out = sb.run().await;
    assert_exit(&out, 65);
    assert_stderr(&out, "is not a usable kubeconfig");
    sb.assert_no_leaks(&[&out.stderr]);
}

/// What the agent produced while it waited.
#[derive(Debug)]
struct DuringWait {
    seconds: f64,
    /// Log entries (a message may span several lines).
    lines: Vec<String>,
    datagrams: Vec<String>,
    state_writes: usize,
}

/// Starts the agent in a sandbox where something it waits for is missing,
/// lets it wait `wait`, counts what it logged, sent to systemd and wrote
/// to its state file meanwhile, then lets the wait end with `end` and runs
/// the job to success.
async fn wait_for(
    start: Start,
    wait: Duration,
    end: impl FnOnce(&Sandbox),
) -> (Sandbox, DuringWait, Finished) {
    let sb = Sandbox::with(start);
    let writes = sb.watch_state_writes();
    let agent = sb.spawn(&["run"]);
    agent
        .wait_for_stderr(Duration::from_secs(20), |e| {
            e.contains("wait phase started")
        })
        .await;
    let began = std::time::Instant::now();
    let entries = |text: &str| -> Vec<String> {
        let mut entries: Vec<String> = Vec::new();
        for line in text.lines() {
            match entries.last_mut() {
                Some(last) if !line.starts_with("20") => last.push_str(line),
                _ => entries.push(line.to_string()),
            }
        }
        entries
    };
    // From the entry that says the phase started, and from the start for
    // datagrams (none is sent before the wait phase).
    let lines = entries(&agent.stderr())
        .iter()
        .position(|e| e.contains("wait phase started"))
        .unwrap()
        + 1;
    writes.take();
    tokio::time::sleep(wait).await;
    let during = DuringWait {
        seconds: began.elapsed().as_secs_f64(),
        lines: entries(&agent.stderr()).split_off(lines),
        datagrams: sb.notify.messages(),
        state_writes: writes.take(),
    };
    println!(
        "during {:.1}s of waiting: {} log entries on stderr, {} notify datagrams, {} state.json writes",
        during.seconds,
        during.lines.len(),
        during.datagrams.len(),
        during.state_writes
    );
    end(&sb);
    let out = agent.finish().await;
    assert_exit(&out, 0);
    (sb, during, out)
}

/// Waiting for what is expected to take time is no failure: one line when
/// it starts and progress at most every 15 s, STATUS= about once a second
/// with EXTEND_TIMEOUT_USEC, state.json at most every 10 s.
fn assert_quiet(during: &DuringWait) {
    let seconds = during.seconds;
    assert!(
        during.lines.len() as f64 <= 1.0 + seconds / 15.0
            && !during.lines.iter().any(|l| l.contains("WARN")),
        "{during:#?}"
    );
    assert!(
        during.datagrams.len() as f64 <= 2.0 * seconds + 2.0,
        "{during:#?}"
    );
    assert!(
        during
            .datagrams
            .iter()
            .any(|d| d.contains("EXTEND_TIMEOUT_USEC=")),
        "systemd's start timeout is still extended: {during:#?}"
    );
    assert!(
        during.state_writes as f64 <= 1.0 + seconds / 10.0,
        "{during:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_wait_for_the_kubeconfig_is_quiet() {
    let (sb, during, out) = wait_for(
        Start {
            kubeconfig: false,
            ..Start::default()
        },
        Duration::from_secs(16),
        |sb| {
            // Saved during the wait: how long, how many polls, why.
            let wait = &sb.state()["wait"];
            assert!(wait["attempts"].as_u64().unwrap() > 10, "{wait}");
            let detail = wait["detail"].as_str().unwrap();
            assert!(
                detail.contains("s so far") && detail.contains("k3s.yaml does not exist yet"),
                "{detail}"
            );
            sb.write_kubeconfig()
        },
    )
    .await;
    assert_quiet(&during);
    let [started, progress] = &during.lines[..] else {
        panic!("a start and a progress line: {during:#?}")
    };
    assert!(
        started.contains("INFO")
            && started.contains("waiting for")
            && started.contains("k3s.yaml does not exist yet"),
        "{during:#?}"
    );
    assert!(
        progress.contains("INFO")
            && progress.contains("still waiting after 15s")
            && progress.contains("polls; last: ")
            && progress.contains("k3s.yaml does not exist yet"),
        "{during:#?}"
    );
    assert!(
        during
            .datagrams
            .iter()
            .any(|d| d.contains("k3s.yaml does not exist yet") && d.contains("s so far")),
        "{during:#?}"
    );
    let waited = said_waited(&out, "k3s.yaml: done after ");
    assert!((14.0..18.0).contains(&waited), "waited {waited}s");
    assert!(sb.seed_secret().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_wait_for_readyz_is_quiet() {
    let (sb, during, out) = wait_for(
        Start {
            api_ready: false,
            ..Start::default()
        },
        Duration::from_secs(7),
        |sb| sb.api.set_ready(true),
    )
    .await;
    assert_quiet(&during);
    assert!(
        during.lines[0].contains("INFO") && during.lines[0].contains("waiting for the API server"),
        "{during:#?}"
    );
    let waited = said_waited(&out, "to be ready: done after ");
    assert!((5.0..9.0).contains(&waited), "waited {waited}s");
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 1);
}

/// How long the agent says it waited, after `marker`. Its clock starts a
/// little after the test's, more so under emulation: compare with a range.
fn said_waited(out: &Finished, marker: &str) -> f64 {
    out.stderr
        .split(marker)
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {marker:?} line:\n{}", out.stderr))
}

/// Writes `text` as k3s.yaml, last changed long enough ago that the agent
/// treats a parse failure as final rather than as k3s still writing it.
fn write_settled_kubeconfig(sb: &Sandbox, text: &str) {
    std::fs::write(sb.kubeconfig_path(), text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(sb.kubeconfig_path())
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(30))
        .unwrap();
}

/// catalyst-api refusing connections is probed every fraction of a second;
/// the journal tells it as one wait (start, progress, end), not a warning
/// per probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalyst_api_refusing_connections_is_a_quiet_wait() {
    let sb = Sandbox::new();
    sb.catalyst.set_up(false);
    let agent = sb.spawn(&["run"]);
    agent
        .wait_for_stderr(Duration::from_secs(20), |e| {
            e.contains("delivering the kubeconfig to catalyst-api (")
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    sb.catalyst.set_up(true);
    let out = agent.finish().await;
    assert_exit(&out, 0);
    let warned = out
        .stderr
        .lines()
        .filter(|l| l.contains("failed: "))
        .count();
    assert_eq!(warned, 0, "a line per probe:\n{}", out.stderr);
    assert_stderr(
        &out,
        "delivering the kubeconfig to catalyst-api: done after",
    );
}
