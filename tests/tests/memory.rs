//! What the agent's memory holds: no copy of the seed (or of a bootstrap
//! Secret's value) outside locked pages while its phase runs, none at all
//! after it; the process is
//! non-dumpable and cannot dump core; argv and environment hold no secret.
//! Reading another process's memory needs root.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use catalyst_bootstrap_tests::apiserver::Fault;
use catalyst_bootstrap_tests::catalyst::Step;
use catalyst_bootstrap_tests::memory::{Hit, find, status_field};
use catalyst_bootstrap_tests::sandbox::{
    Agent, GHCR_TOKEN, HCLOUD_TOKEN, S3_SECRET, Sandbox, Signal, patience,
};
use catalyst_bootstrap_tests::ship::{require_root, run};
use http::Method;

const SECRETS: &str = "/api/v1/namespaces/openbao/secrets";
/// The agent runs as `nobody`, so that a non-dumpable process shows: its
/// `/proc/<pid>/*` files then belong to root instead of to its own uid.
const NOBODY: u32 = 65534;

/// The seed in every form it takes: raw bytes, the 44-character base64
/// text, and that text base64-encoded again (the Secret's wire form).
fn forms(wire: &str) -> Vec<(&'static str, Vec<u8>)> {
    let text = STANDARD.decode(wire).unwrap();
    let raw = STANDARD.decode(&text).unwrap();
    assert_eq!(raw.len(), 32);
    vec![
        ("raw", raw),
        ("base64", text),
        ("double base64", wire.as_bytes().to_vec()),
    ]
}

fn scan(pid: i32, forms: &[(&'static str, Vec<u8>)]) -> Vec<(&'static str, Hit)> {
    forms
        .iter()
        .flat_map(|(form, bytes)| find(pid, bytes).into_iter().map(move |h| (*form, h)))
        .collect()
}

/// The agent on `sb`, as `nobody`, which owns the sandbox.
fn spawn_as_nobody(sb: &Sandbox) -> Agent {
    run(std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{NOBODY}:{NOBODY}"))
        .arg(sb.dir.path()));
    let mut cmd = sb.command(&["run"]);
    cmd.uid(NOBODY).gid(NOBODY);
    Agent::spawn(cmd)
}

/// While `what` is alive (its phase has not said `over` yet): copies of
/// `forms` only in locked pages.
fn assert_only_locked(agent: &Agent, forms: &[(&'static str, Vec<u8>)], what: &str, over: &str) {
    let started = std::time::Instant::now();
    let during = scan(agent.pid(), forms);
    println!("scan while {what} is alive: {:?}", started.elapsed());
    assert!(
        !agent.stderr().contains(over),
        "the scan outlasted {what}; it proves nothing"
    );
    let unlocked: Vec<_> = during.iter().filter(|(_, h)| !h.locked).collect();
    assert!(
        unlocked.is_empty(),
        "copies of {what} outside locked memory while it is alive: {unlocked:#?}"
    );
}

/// Once the agent has said `over`: no copy of `forms` anywhere.
async fn assert_gone(agent: &Agent, forms: &[(&'static str, Vec<u8>)], what: &str, over: &str) {
    agent
        .wait_for_stderr(Duration::from_secs(60), |e| e.contains(over))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = scan(agent.pid(), forms);
    assert!(
        after.is_empty(),
        "copies of {what} after its phase: {after:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_copy_of_the_seed_outside_locked_memory() {
    require_root();
    let sb = Sandbox::new();
    // The API server sits on the Secret create for a while (the seed is
    // alive), then catalyst-api on the PUT (the seed phase is over).
    // Per-read timeouts above the held-open create: the agent must wait it
    // out, not retry (read_timeout follows connect_timeout for the API server).
    sb.write_config("connect_timeout: 90s\nread_timeout: 90s\n");
    sb.api.fault(
        Method::POST,
        SECRETS,
        1,
        // Under emulation the scan covers the emulator's memory too and
        // takes longer: the seed phase is held open accordingly.
        Fault::Delay(patience(Duration::from_secs(8))),
    );
    sb.catalyst.script([Step::Delay(Duration::from_secs(60))]);
    let agent = spawn_as_nobody(&sb);
    let pid = agent.pid();

    // While the create is in flight: the body has reached the API server,
    // so the seed is known to the test; the agent holds it in locked pages.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let wire = loop {
        let body = sb
            .api
            .requests()
            .into_iter()
            .find(|r| r.method == Method::POST && r.path == SECRETS)
            .and_then(|r| r.body);
        if let Some(body) = body {
            break body["data"]["recovery-seed"].as_str().unwrap().to_string();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Secret create:\n{}",
            agent.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let forms = forms(&wire);
    assert!(
        status_field(pid, "VmLck").parse::<u64>().unwrap() > 0,
        "VmLck is 0 while the seed is alive"
    );
    let written = "recovery seed written";
    assert_only_locked(&agent, &forms, "the seed", written);
    // After the seed phase, while the agent waits on catalyst-api.
    assert_gone(&agent, &forms, "the seed", written).await;

    // Non-dumpable: the kernel hands /proc/<pid>/status (and mem, maps …)
    // to root although the process runs as nobody.
    assert_eq!(status_field(pid, "Uid"), NOBODY.to_string());
    for file in ["status", "mem"] {
        let meta = std::fs::metadata(format!("/proc/{pid}/{file}")).unwrap();
        assert_eq!(
            meta.uid(),
            0,
            "/proc/<pid>/{file} belongs to the process: it is dumpable"
        );
    }
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    assert_eq!(core.split_whitespace().nth(4), Some("0"), "{core}");
    assert_eq!(core.split_whitespace().nth(5), Some("0"), "{core}");

    // argv and environment.
    let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let token = sb.token.as_bytes();
    for (what, bytes) in [("argv", &argv), ("environment", &environ)] {
        for (form, secret) in forms
            .iter()
            .map(|(f, b)| (*f, b.as_slice()))
            .chain([("bearer token", token)])
        {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "{form} in the agent's {what}"
            );
        }
    }

    agent.signal(Signal::SIGTERM);
    let out = agent.finish().await;
    assert_eq!(out.code, Some(75), "{}", out.stderr);
    sb.assert_no_leaks(&[&out.stderr, &out.stdout]);
}

/// A bootstrap Secret's values: outside locked memory neither while its
/// apply is in flight nor after the phase (the manifest was read into
/// locked pages; the parsed document was wiped when freed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_copy_of_a_bootstrap_secret_after_its_phase() {
    require_root();
    let sb = Sandbox::new();
    sb.write_upstream_secrets();
    sb.write_config("connect_timeout: 90s\nread_timeout: 90s\n");
    let cloud = "/api/v1/namespaces/flux-system/secrets/cloud-credentials";
    sb.api.fault(
        Method::PATCH,
        cloud,
        1,
        Fault::Delay(patience(Duration::from_secs(8))),
    );
    sb.catalyst.script([Step::Delay(Duration::from_secs(60))]);
    let agent = spawn_as_nobody(&sb);
    let forms: Vec<(&'static str, Vec<u8>)> = vec![
        ("hcloud token", HCLOUD_TOKEN.as_bytes().to_vec()),
        (
            "hcloud token (base64)",
            STANDARD.encode(HCLOUD_TOKEN).into_bytes(),
        ),
        ("S3 secret key", S3_SECRET.as_bytes().to_vec()),
        (
            "S3 secret key (base64)",
            STANDARD.encode(S3_SECRET).into_bytes(),
        ),
        ("registry token", GHCR_TOKEN.as_bytes().to_vec()),
    ];

    // While the apply is held open: the values are in locked pages only.
    agent
        .wait_for_stderr(Duration::from_secs(20), |_| {
            sb.api.count(&Method::PATCH, cloud) > 0
        })
        .await;
    let what = "a bootstrap Secret";
    assert_only_locked(&agent, &forms, what, "applied from");
    // After the phase, while the agent waits on catalyst-api.
    assert_gone(&agent, &forms, what, "secrets phase done").await;
    assert!(sb.manifests_left().is_empty());

    agent.signal(Signal::SIGTERM);
    let out = agent.finish().await;
    assert_eq!(out.code, Some(75), "{}", out.stderr);
    sb.assert_no_leaks(&[&out.stderr, &out.stdout]);
}
