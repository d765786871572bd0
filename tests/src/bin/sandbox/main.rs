//! `cargo run -p catalyst-bootstrap-tests`: the agent's whole job against
//! fakes on loopback, no cluster needed. `--flaky` adds a catalyst-api that
//! is briefly overloaded, to show a classified retry. `--cert=fallback` and
//! `--cert=missing` give the API server a certificate without the public
//! address, to show the preflight's other two outcomes.
//!
//! This file is the script (which fakes, how they behave, the run);
//! `report` prints what the fakes saw.

mod report;

use std::time::Duration;

use catalyst_bootstrap_tests::apiserver::{GIT_REPOSITORY, KUSTOMIZATION, PROVIDER};
use catalyst_bootstrap_tests::catalyst::Step;
use catalyst_bootstrap_tests::handoff::{FLUX, PROVIDER_FILE};
use catalyst_bootstrap_tests::sandbox::{
    CERT_NAMES, SOVEREIGN_FQDN, Sandbox, Start, built_agent, is_stale,
};

fn build_agent() -> anyhow::Result<()> {
    if std::env::var_os("CATALYST_BOOTSTRAP_BIN").is_some() {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let release = exe.parent().is_some_and(|d| d.ends_with("release"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    // `cargo run` gave this process the sandbox package's CARGO_MANIFEST_DIR,
    // CARGO_PKG_* … ; ring's build script declares `rerun-if-env-changed` on
    // several of them, so inheriting them made the inner build see ring (and
    // all that depends on it, the agent included) as dirty on every run.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(set_by_cargo_run) {
            cmd.env_remove(key);
        }
    }
    // Said only when there is something to build: cargo is quiet otherwise.
    if is_stale(&built_agent()) {
        eprintln!(
            "building catalyst-bootstrap (the first time compiles its dependencies: a few minutes)"
        );
    }
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "catalyst-bootstrap",
        "--bin",
        "catalyst-bootstrap",
    ]);
    if release {
        cmd.arg("--release");
    }
    anyhow::ensure!(
        cmd.status()?.success(),
        "building catalyst-bootstrap failed"
    );
    Ok(())
}

/// What `cargo run` sets for the program it runs (and a build script
/// gets), as opposed to the settings of cargo itself (`CARGO`, `CARGO_HOME`,
/// `CARGO_TARGET_DIR`, `CARGO_BUILD_*` …), which the inner build needs.
fn set_by_cargo_run(key: &str) -> bool {
    ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_", "CARGO_CFG_"]
        .iter()
        .any(|p| key.starts_with(p))
        || matches!(
            key,
            "CARGO_CRATE_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        )
}

/// When the hand-off's kinds are served, after the sandbox starts.
pub(crate) const HANDOFF_CRDS: Duration = Duration::from_secs(3);
pub(crate) const PROVIDER_CRD: Duration = Duration::from_secs(5);
const USAGE: &str = "\
usage: cargo run -p catalyst-bootstrap-tests [-- [--flaky] [--cert=address|fallback|missing]]

Runs the real catalyst-bootstrap binary once against a fake Kubernetes API
server and a fake catalyst-api on loopback, and shows what happened.

  --flaky          catalyst-api answers 503 + Retry-After once, then stores the
                   kubeconfig but drops its answer: shows the retries
  --cert=address   the API server's certificate names the public address (default)
  --cert=fallback  it names only the sovereign FQDN: the kubeconfig gets tls-server-name
  --cert=missing   it names neither: the preflight refuses to send (exit 68)
  -h, --help       this text

Everything lives in a temporary directory that is removed at the end.
The sandbox exits with the agent's exit code.
";

/// Bad usage: the text, on stderr, and exit 2 (no error chain, no backtrace).
fn usage_error(what: &str) -> ! {
    eprintln!("sandbox: {what}\n\n{USAGE}");
    std::process::exit(2);
}

fn main() -> anyhow::Result<()> {
    let mut flaky = false;
    let mut cert = "address".to_string();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(());
            }
            "--flaky" => flaky = true,
            _ if arg.starts_with("--cert=") => cert = arg["--cert=".len()..].to_string(),
            _ => usage_error(&format!("unknown argument {arg:?}")),
        }
    }
    let runtime = tokio::runtime::Runtime::new()?;
    // The exit code is known only once the sandbox (its temporary directory
    // with token, client key and state) is dropped: exit only after that.
    let (code, dir) = runtime.block_on(sandbox(flaky, &cert))?;
    drop(runtime);
    println!("removed {}", dir.display());
    std::process::exit(code);
}

/// The agent's exit code, and the temporary directory, removed by now.
async fn sandbox(flaky: bool, cert: &str) -> anyhow::Result<(i32, std::path::PathBuf)> {
    let (cert_names, cert_note): (&'static [&'static str], _) = match cert {
        "address" => (CERT_NAMES, "valid for the public address"),
        "fallback" => (
            &["localhost", "127.0.0.1", SOVEREIGN_FQDN],
            "valid for the sovereign FQDN only (k3s with --tls-san=<fqdn>)",
        ),
        "missing" => (
            &["localhost", "127.0.0.1"],
            "valid for loopback only: the kubeconfig could not work",
        ),
        other => usage_error(&format!("--cert={other}: use address, fallback or missing")),
    };
    build_agent()?;
    let sb = Sandbox::with(Start {
        cert_names,
        ..Start::default()
    });
    let marker = sb.path("cloud-init-complete");
    sb.write_config(&format!(
        "sovereign_fqdn: {SOVEREIGN_FQDN}\ndone_marker: {}\n",
        marker.display()
    ));
    // The hand-off: Flux's CRDs come a few seconds after the API server (its
    // install), Crossplane's later still.
    sb.api.insert_namespace("flux-system");
    sb.api.add_crd(GIT_REPOSITORY, HANDOFF_CRDS);
    sb.api.add_crd(KUSTOMIZATION, HANDOFF_CRDS);
    sb.api.add_crd(PROVIDER, PROVIDER_CRD);
    sb.write_handoff("flux-bootstrap.yaml", FLUX);
    sb.write_handoff("crossplane-provider.optional.yaml", PROVIDER_FILE);
    if flaky {
        sb.catalyst.script([
            Step::Respond {
                status: 503,
                body: r#"{"error":"write-failed","detail":"disk busy"}"#.into(),
                retry_after: Some("1".into()),
            },
            Step::StoreThenDrop,
        ]);
    }
    report::banner(&sb, cert_note, flaky);
    println!("\n── agent log (stderr) ──");

    let agent = sb.spawn(&["run"]);
    let mut shown = 0;
    let mut interrupt = std::pin::pin!(tokio::signal::ctrl_c());
    let finished = loop {
        let text = agent.stderr();
        print!("{}", &text[shown..]);
        shown = text.len();
        if agent.try_finished() {
            break agent.finish().await;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = &mut interrupt => {
                // Dropping the agent kills it; dropping the sandbox removes its directory.
                println!("\n── interrupted ──");
                return Ok((130, sb.dir.path().to_path_buf()));
            }
        }
    };
    print!("{}", &finished.stderr[shown..]);
    println!("── exit code {:?} ──\n", finished.code);

    report::after(&sb, &marker).await?;
    Ok((finished.code.unwrap_or(1), sb.dir.path().to_path_buf()))
}
