//! `catalyst-bootstrap doctor`, the real binary against the sandbox: one
//! state per check's fail path (a subset of the fault matrix's states:
//! configuration, kubeconfig, API server down or not ready, certificate
//! without the address, catalyst-api down / wrong CA / misrouted, seed and
//! marker present, done), each asserting the
//! lines it must print and that doctor changed nothing anywhere.

use std::time::{Duration, Instant};

use catalyst_bootstrap_tests::catalyst::Step;
use catalyst_bootstrap_tests::pki::Pki;
use catalyst_bootstrap_tests::sandbox::{CERT_NAMES, DEPLOYMENT_ID, Finished, Sandbox, Start};
use http::Method;
use serde_json::{Value, json};

mod handoff;

/// Every line doctor prints for a dependency, in order.
const CHECKS: &[&str] = &[
    "config",
    "credential",
    "kubeconfig",
    "rewrite",
    "api-server",
    "clock",
    "address",
    "preflight",
    "catalyst-api dns",
    "catalyst-api tcp",
    "catalyst-api proxy",
    "catalyst-api tls",
    "catalyst-api route",
    "seed",
    "manifests",
    "state",
];

async fn doctor(sb: &Sandbox, name: &str) -> Finished {
    let started = Instant::now();
    let out = sb.spawn(&["doctor"]).finish().await;
    let took = started.elapsed();
    println!(
        "--- doctor, {name} (exit {:?}, {took:?}):\n{}",
        out.code, out.stdout
    );
    assert!(
        took < Duration::from_secs(15),
        "doctor must answer within seconds, took {took:?}"
    );
    sb.assert_no_leaks(&[&out.stdout, &out.stderr]);
    assert_side_effect_free(sb);
    out
}

/// The line of `check`: (result word, the rest).
fn line<'a>(out: &'a Finished, check: &str) -> (&'a str, &'a str) {
    out.stdout
        .lines()
        .find_map(|l| {
            let (word, rest) = l.split_once("  ")?;
            let rest = rest.trim_start().strip_prefix(check)?.strip_prefix(": ")?;
            Some((word.trim(), rest))
        })
        .unwrap_or_else(|| panic!("no `{check}` line in:\n{}", out.stdout))
}

fn expect(out: &Finished, check: &str, word: &str, says: &str) {
    let (got, rest) = line(out, check);
    assert_eq!(got, word, "`{check}`: {rest}\n\n{}", out.stdout);
    assert!(rest.contains(says), "`{check}` should say {says:?}: {rest}");
}

/// Nothing written anywhere: no request but GET to the API server, only
/// OPTIONS (without Authorization or body) to catalyst-api, nothing stored
/// there, and no state directory created.
fn assert_side_effect_free(sb: &Sandbox) {
    let writes: Vec<_> = sb
        .api
        .requests()
        .into_iter()
        .filter(|r| r.method != Method::GET)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(
        writes.is_empty(),
        "doctor wrote to the API server: {writes:?}"
    );
    for r in sb.catalyst.requests() {
        assert_eq!(r.method, "OPTIONS", "{} {}", r.method, r.path);
        assert_eq!(r.authorization, None, "doctor sent an Authorization header");
        assert!(r.body.is_empty(), "doctor sent a body");
    }
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 0);
    assert!(sb.catalyst.stored(DEPLOYMENT_ID).is_none());
    assert_eq!(sb.trap.hits(), 0, "an environment proxy was used");
}

fn assert_no_state_dir(sb: &Sandbox) {
    assert!(
        !sb.state_dir().exists(),
        "doctor created the state directory {}",
        sb.state_dir().display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_every_line_ok_and_nothing_changes() {
    let sb = Sandbox::new();
    let out = doctor(&sb, "healthy").await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), CHECKS.len() + 1, "{}", out.stdout);
    for (l, check) in lines.iter().zip(CHECKS) {
        assert!(l.starts_with(&format!("ok    {check}: ")), "{l}");
    }
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with(&format!("{} ok, 0 warn, 0 fail", CHECKS.len()))
    );
    expect(&out, "credential", "ok", "present and well-formed");
    assert!(!out.stdout.contains(&sb.token));
    expect(&out, "rewrite", "ok", "https://127.0.0.1:");
    expect(&out, "rewrite", "ok", "-> https://203.0.113.10:");
    expect(&out, "api-server", "ok", "/readyz ok in");
    expect(&out, "api-server", "ok", "version v1.31");
    expect(&out, "clock", "ok", "agrees");
    expect(&out, "preflight", "ok", "valid for 203.0.113.10");
    expect(
        &out,
        "preflight",
        "ok",
        "the certificate names localhost, 127.0.0.1",
    );
    expect(&out, "catalyst-api tls", "ok", "verified with ca_bundle");
    expect(&out, "catalyst-api route", "ok", "answered 405");
    expect(
        &out,
        "catalyst-api route",
        "ok",
        "no Authorization, no body",
    );
    expect(&out, "seed", "ok", "a run would create it");
    expect(&out, "state", "ok", "a run starts from the beginning");

    // It asked catalyst-api exactly once, the way docs/operating.md says.
    let asked = sb.catalyst.requests();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(
        asked[0].path,
        format!("/api/v1/deployments/{DEPLOYMENT_ID}/kubeconfig")
    );
    assert!(
        !sb.api.requests().is_empty(),
        "it did look at the API server"
    );
    assert_no_state_dir(&sb);
    assert!(sb.seed_secret().is_none(), "no seed created");

    // --json: the same checks as data.
    let json = sb.spawn(&["doctor", "--json"]).finish().await;
    assert_eq!(json.code, Some(0));
    let lines: Vec<Value> = serde_json::from_str(&json.stdout).expect("an array");
    let names: Vec<&str> = lines.iter().map(|l| l["check"].as_str().unwrap()).collect();
    assert_eq!(names, CHECKS);
    assert!(
        lines
            .iter()
            .all(|l| l["result"] == "ok" && l["fix"].is_null())
    );
    assert_side_effect_free(&sb);
    assert_no_state_dir(&sb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_down_answers_within_seconds() {
    let sb = Sandbox::with(Start {
        api_up: false,
        ..Start::DEFAULT
    });
    sb.catalyst.set_up(false);
    let out = doctor(&sb, "API server and catalyst-api down").await;
    assert_eq!(out.code, Some(1));
    expect(&out, "api-server", "fail", "cannot reach the API server");
    expect(&out, "api-server", "fail", "systemctl status k3s");
    expect(&out, "clock", "fail", "not checked");
    expect(&out, "catalyst-api tcp", "fail", "");
    expect(&out, "catalyst-api route", "fail", "not checked");
    expect(&out, "config", "ok", "");
    expect(&out, "credential", "ok", "");
    assert!(
        out.stdout
            .lines()
            .last()
            .unwrap()
            .contains("fail: a run would not succeed")
    );
    assert_no_state_dir(&sb);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_not_ready() {
    let sb = Sandbox::with(Start {
        api_ready: false,
        ..Start::DEFAULT
    });
    let out = doctor(&sb, "API server not ready").await;
    assert_eq!(out.code, Some(1));
    expect(&out, "api-server", "fail", "500");
    expect(&out, "api-server", "fail", "readyz check failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeconfig_missing() {
    let sb = Sandbox::with(Start {
        kubeconfig: false,
        ..Start::DEFAULT
    });
    let out = doctor(&sb, "kubeconfig missing").await;
    assert_eq!(out.code, Some(1));
    expect(&out, "kubeconfig", "fail", "does not exist");
    expect(&out, "kubeconfig", "fail", "k3s writes it when it starts");
    expect(&out, "rewrite", "fail", "no kubeconfig");
    expect(&out, "api-server", "fail", "no kubeconfig");
    // catalyst-api is checked all the same.
    expect(&out, "catalyst-api route", "ok", "answered 405");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_that_does_not_load_is_one_failed_line() {
    let sb = Sandbox::new();
    sb.write_config("deadlin: 5m\n");
    let out = doctor(&sb, "bad configuration").await;
    assert_eq!(out.code, Some(1));
    expect(&out, "config", "fail", "unknown key `deadlin`");
    expect(&out, "config", "fail", "did you mean `deadline`?");
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    assert!(sb.api.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_missing() {
    let sb = Sandbox::new();
    std::fs::remove_file(sb.token_path()).unwrap();
    let out = doctor(&sb, "no bearer token").await;
    assert_eq!(out.code, Some(1));
    expect(&out, "credential", "fail", "bearer token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_without_the_public_address() {
    let sb = Sandbox::with(Start {
        cert_names: &["localhost", "127.0.0.1"],
        ..Start::DEFAULT
    });
    let out = doctor(&sb, "certificate lacks the public address").await;
    assert_eq!(out.code, Some(1));
    expect(&out, "preflight", "fail", "not valid for 203.0.113.10");
    expect(
        &out,
        "preflight",
        "fail",
        "the certificate names localhost, 127.0.0.1",
    );
    expect(&out, "preflight", "fail", "--tls-san=203.0.113.10");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalyst_api_down() {
    let sb = Sandbox::new();
    sb.catalyst.set_up(false);
    let out = doctor(&sb, "catalyst-api down").await;
    assert_eq!(out.code, Some(1));
    expect(&out, "catalyst-api dns", "ok", "is an address: no lookup");
    expect(&out, "catalyst-api tcp", "fail", "");
    // Nothing answered: no handshake, so the certificate is not blamed.
    expect(
        &out,
        "catalyst-api tls",
        "fail",
        "not checked, nothing answered",
    );
    let (_, tls) = line(&out, "catalyst-api tls");
    assert!(!tls.contains("certificate"), "{tls}");
    expect(&out, "api-server", "ok", "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalyst_api_with_a_certificate_the_configured_ca_does_not_sign() {
    let sb = Sandbox::new();
    std::fs::write(sb.path("ca.pem"), Pki::new(CERT_NAMES).ca_pem).unwrap();
    let out = doctor(&sb, "wrong CA").await;
    assert_eq!(out.code, Some(1));
    expect(&out, "catalyst-api tcp", "ok", "connected");
    expect(&out, "catalyst-api tls", "fail", "");
    expect(
        &out,
        "catalyst-api tls",
        "fail",
        "must verify with ca_bundle",
    );
    assert!(sb.catalyst.requests().is_empty(), "no request got through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalyst_api_route_misses_the_handler() {
    let sb = Sandbox::new();
    // A path prefix the ingress does not route: 404.
    sb.write_config(&format!("catalyst_api_url: {}/wrong\n", sb.catalyst.url()));
    let out = doctor(&sb, "misrouted").await;
    assert_eq!(out.code, Some(1));
    expect(&out, "catalyst-api tls", "ok", "");
    expect(&out, "catalyst-api route", "fail", "answered 404");
    expect(&out, "catalyst-api route", "fail", "path prefix");
    expect(&out, "config", "ok", "50-test.yaml set catalyst_api_url");

    // A gateway whose backend is down.
    sb.write_config("");
    sb.catalyst.script([Step::error(503, "no-backend")]);
    let out = doctor(&sb, "backend down").await;
    expect(&out, "catalyst-api route", "fail", "answered 503");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_already_present_is_kept_and_never_shown() {
    let sb = Sandbox::new();
    // base64 of 44 characters, as the contract's Secret holds it.
    let wire = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcQ==";
    sb.api.insert_secret(
        "openbao",
        "openbao-recovery-seed",
        json!({"recovery-seed": wire}),
    );
    let out = doctor(&sb, "seed present").await;
    assert_eq!(out.code, Some(0));
    expect(&out, "seed", "ok", "holds a seed (value not shown)");
    expect(
        &out,
        "seed",
        "ok",
        "adds Helm ownership metadata for release openbao/openbao",
    );
    assert!(!out.stdout.contains(wire));

    sb.api.insert_secret(
        "openbao",
        "openbao-init-marker",
        json!({"initialised-at": "eA=="}),
    );
    let out = doctor(&sb, "marker present").await;
    expect(
        &out,
        "seed",
        "ok",
        "OpenBao is initialised; a run writes no seed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_secret_without_its_key_fails() {
    let sb = Sandbox::new();
    sb.api
        .insert_secret("openbao", "openbao-recovery-seed", json!({"other": "eA=="}));
    let out = doctor(&sb, "seed Secret without key").await;
    assert_eq!(out.code, Some(1));
    expect(
        &out,
        "seed",
        "fail",
        "without a non-empty `recovery-seed` key",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_run_everything_is_done() {
    let sb = Sandbox::new();
    let run = sb.run().await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let before: Vec<String> = std::fs::read_dir(sb.state_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let state = std::fs::read(sb.state_dir().join("state.json")).unwrap();
    let writes = sb.watch_state_writes();
    let requests = sb.api.requests().len();
    let seed = sb.seed_secret();
    let out = sb.spawn(&["doctor"]).finish().await;
    println!("--- doctor, done:\n{}", out.stdout);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    expect(&out, "state", "ok", "the job is done; a run exits at once");
    expect(
        &out,
        "seed",
        "ok",
        "holds a seed (value not shown): a run keeps it unchanged",
    );
    sb.assert_no_leaks(&[&out.stdout, &out.stderr]);
    // Nothing new but GETs, the state directory as it was.
    let since = &sb.api.requests()[requests..];
    assert!(since.iter().all(|r| r.method == Method::GET), "{since:?}");
    assert_eq!(writes.take(), 0);
    assert_eq!(
        std::fs::read(sb.state_dir().join("state.json")).unwrap(),
        state
    );
    let after: Vec<String> = std::fs::read_dir(sb.state_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(before, after);
    assert_eq!(sb.seed_secret(), seed);
    assert_eq!(
        sb.catalyst.store_count(DEPLOYMENT_ID),
        1,
        "only the run's PUT"
    );
    let doctor_asked: Vec<_> = sb
        .catalyst
        .requests()
        .into_iter()
        .filter(|r| r.method != "PUT")
        .collect();
    assert_eq!(doctor_asked.len(), 1);
    assert_eq!(doctor_asked[0].method, "OPTIONS");
    assert_eq!(doctor_asked[0].authorization, None);
}

/// Issue 21: with a proxy set and catalyst-api's host in `NO_PROXY`, the
/// job connects directly, and so must doctor's DNS and TCP checks (they
/// went to the proxy). The proxy is the trap: nothing may reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_is_followed_as_the_job_follows_it() {
    let sb = Sandbox::new();
    let url: http::Uri = sb.catalyst.url().parse().unwrap();
    let host = url.host().unwrap().to_string();
    sb.set_env("HTTPS_PROXY", &sb.trap.url);
    sb.set_env("NO_PROXY", &format!("proxied.example, {host}"));
    let out = doctor(&sb, "NO_PROXY names catalyst-api").await;
    assert_eq!(out.code, Some(0), "{}{}", out.stdout, out.stderr);
    expect(&out, "catalyst-api proxy", "ok", "NO_PROXY names the host");
    expect(
        &out,
        "catalyst-api dns",
        "ok",
        &format!("{host} is an address"),
    );
    expect(
        &out,
        "catalyst-api tcp",
        "ok",
        &format!("connected to {host}:"),
    );
    expect(&out, "catalyst-api route", "ok", "answered 405");
    // The job takes the same path.
    let run = sb.run().await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(sb.trap.hits(), 0, "the job went through the proxy");
}
