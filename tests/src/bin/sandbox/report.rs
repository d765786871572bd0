//! What the sandbox prints: the banner before the run, and afterwards what
//! each fake saw (sd_notify, the seed as stored, the kubeconfig as
//! received, the hand-off's objects) and `status`. Secrets are masked.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use catalyst_bootstrap_tests::handoff::{GIT_REPO_PATH, KUSTOMIZATION_PATH, PROVIDER_PATH};
use catalyst_bootstrap_tests::sandbox::{DEPLOYMENT_ID, Sandbox, TUNED, agent_binary};

use super::{HANDOFF_CRDS, PROVIDER_CRD};

fn mask(value: &str) -> String {
    format!(
        "{}… ({} characters, masked)",
        &value[..4.min(value.len())],
        value.len()
    )
}

/// Where everything is, and what differs from production.
pub(crate) fn banner(sb: &Sandbox, cert_note: &str, flaky: bool) {
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
    println!("  differs from production:");
    for (key, here, production) in TUNED {
        println!("    {key:<24} {here:<6} (production default: {production})");
    }
    println!(
        "    kubeconfig, token_file, ca_bundle, state_dir in the directory above; catalyst_api_url on loopback"
    );
    println!(
        "  hand-off: Flux's CRDs become Established after {}s, Crossplane's after {}s",
        HANDOFF_CRDS.as_secs(),
        PROVIDER_CRD.as_secs()
    );
    if flaky {
        println!(
            "  --flaky: catalyst-api answers 503 + Retry-After: 1 once, then stores the kubeconfig but drops the answer"
        );
    }
}

/// What the fakes saw, and `status`.
pub(crate) async fn after(sb: &Sandbox, marker: &std::path::Path) -> anyhow::Result<()> {
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

    println!("\nthe hand-off, as the API server stores it:");
    for path in [GIT_REPO_PATH, KUSTOMIZATION_PATH, PROVIDER_PATH] {
        match sb.api.object(path) {
            Some(o) => println!(
                "  {} {} (resourceVersion {}, field manager {})",
                o["kind"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default(),
                o["metadata"]["resourceVersion"],
                o["metadata"]["managedFields"][0]["manager"]
            ),
            None => println!("  {path}: (not applied)"),
        }
    }
    println!(
        "  done_marker {}: {}",
        marker.display(),
        if marker.exists() { "written" } else { "absent" }
    );

    println!("\n$ catalyst-bootstrap status");
    let status = sb.spawn(&["status"]).finish().await;
    print!("{}", status.stdout);
    Ok(())
}
