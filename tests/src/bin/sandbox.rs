//! `cargo run -p catalyst-bootstrap-tests`: the agent's whole job against
//! fakes on loopback, no cluster needed. `--flaky` adds a catalyst-api that
//! is briefly overloaded, to show a classified retry. `--cert=fallback` and
//! `--cert=missing` give the API server a certificate without the public
//! address, to show the preflight's other two outcomes.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use catalyst_bootstrap_tests::catalyst::Step;
use catalyst_bootstrap_tests::sandbox::{
    CERT_NAMES, DEPLOYMENT_ID, SOVEREIGN_FQDN, Sandbox, Start, agent_binary,
};

fn build_agent() -> anyhow::Result<()> {
    if std::env::var_os("CATALYST_BOOTSTRAP_BIN").is_some() {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let release = exe.parent().is_some_and(|d| d.ends_with("release"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
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

fn mask(value: &str) -> String {
    format!(
        "{}… ({} characters, masked)",
        &value[..4.min(value.len())],
        value.len()
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut flaky = false;
    let mut cert = "address".to_string();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--flaky" => flaky = true,
            _ if arg.starts_with("--cert=") => cert = arg["--cert=".len()..].to_string(),
            _ => anyhow::bail!(
                "unknown argument {arg:?}; use --flaky and --cert=address|fallback|missing"
            ),
        }
    }
    let (cert_names, cert_note): (&'static [&'static str], _) = match cert.as_str() {
        "address" => (CERT_NAMES, "valid for the public address"),
        "fallback" => (
            &["localhost", "127.0.0.1", SOVEREIGN_FQDN],
            "valid for the sovereign FQDN only (k3s with --tls-san=<fqdn>)",
        ),
        "missing" => (
            &["localhost", "127.0.0.1"],
            "valid for loopback only: the kubeconfig could not work",
        ),
        other => anyhow::bail!("--cert={other}: use address, fallback or missing"),
    };
    build_agent()?;
    let sb = Sandbox::with(Start {
        cert_names,
        ..Start::default()
    });
    sb.write_config(&format!("sovereign_fqdn: {SOVEREIGN_FQDN}\n"));
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
    println!(
        "catalyst-bootstrap sandbox (everything on loopback, in {})",
        sb.dir.path().display()
    );
    println!(
        "  fake Kubernetes API server  https://{}  (client-certificate TLS, like k3s; certificate {cert_note})",
        sb.api.addr()
    );
    println!(
        "  fake catalyst-api           {}  (the contract's response table)",
        sb.catalyst.url()
    );
    println!("  agent                       {}", agent_binary().display());
    if flaky {
        println!(
            "  --flaky: catalyst-api answers 503 + Retry-After: 1 once, then stores the kubeconfig but drops the answer"
        );
    }
    println!("\n── agent log (stderr) ──");

    let agent = sb.spawn(&["run"]);
    let mut shown = 0;
    let finished = loop {
        let text = agent.stderr();
        print!("{}", &text[shown..]);
        shown = text.len();
        if agent.try_finished() {
            break agent.finish().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    print!("{}", &finished.stderr[shown..]);
    println!("── exit code {:?} ──\n", finished.code);

    println!("sd_notify messages, in order:");
    for line in sb.notify.lines() {
        println!("  {line}");
    }

    println!("\nSecret openbao/openbao-recovery-seed as stored:");
    match sb.seed_secret() {
        Some(secret) => {
            let wire = secret["data"]["recovery-seed"].as_str().unwrap_or_default();
            let text = String::from_utf8(STANDARD.decode(wire)?)?;
            println!("  type: {}", secret["type"]);
            println!("  annotations: {}", secret["metadata"]["annotations"]);
            println!(
                "  data.recovery-seed: base64 of a {}-character seed: {}",
                text.len(),
                mask(&text)
            );
            println!("  decoded seed: {} bytes", STANDARD.decode(&text)?.len());
        }
        None => println!("  (none)"),
    }

    println!("\nkubeconfig as received by catalyst-api:");
    match sb.catalyst.stored(DEPLOYMENT_ID) {
        Some(body) => {
            let kc: serde_json::Value = serde_saphyr::from_slice(&body)?;
            for cluster in kc["clusters"].as_array().into_iter().flatten() {
                println!(
                    "  cluster {}: server {}",
                    cluster["name"], cluster["cluster"]["server"]
                );
                if let Some(name) = cluster["cluster"].get("tls-server-name") {
                    println!("    tls-server-name {name} (set by the preflight)");
                }
            }
            let key = kc["users"][0]["user"]["client-key-data"]
                .as_str()
                .unwrap_or_default();
            println!(
                "  user default: client certificate and key present (key {})",
                mask(key)
            );
            println!("  PUT requests received: {}", sb.catalyst.requests().len());
        }
        None => println!("  (nothing captured)"),
    }

    println!("\n$ catalyst-bootstrap status");
    let status = sb.spawn(&["status"]).finish().await;
    print!("{}", status.stdout);
    std::process::exit(finished.code.unwrap_or(1));
}
