//! End-to-end scenarios: the real binary against the fakes, one file per
//! phase or concern; the helpers they share are here.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use catalyst_bootstrap_tests::apiserver::Fault;
use catalyst_bootstrap_tests::catalyst::Step;
use catalyst_bootstrap_tests::helm;
use catalyst_bootstrap_tests::sandbox::{
    DEPLOYMENT_ID, Finished, PUBLIC_ADDRESS, SOVEREIGN_FQDN, Sandbox, Signal, Start, assert_exit,
};
use http::Method;
use serde_json::{Value, json};

mod adoption;
mod ha;
mod handoff;
mod job;
mod kubeconfig;
mod secrets;
mod seed;
mod status;
mod wait;

const SECRETS: &str = "/api/v1/namespaces/openbao/secrets";

const MARKER: &str = "/api/v1/namespaces/openbao/secrets/openbao-init-marker";

const SEED: &str = "/api/v1/namespaces/openbao/secrets/openbao-recovery-seed";

/// The agent said `needle` on stderr.
fn assert_stderr(out: &Finished, needle: &str) {
    assert!(
        out.stderr.contains(needle),
        "{needle:?} not in stderr:\n{}",
        out.stderr
    );
}

fn yaml(text: &[u8]) -> Value {
    serde_saphyr::from_slice(text).expect("valid YAML")
}

/// A sandbox whose API server is down, and an agent already waiting for it.
async fn agent_waiting_for_the_api_server() -> (Sandbox, catalyst_bootstrap_tests::sandbox::Agent) {
    let sb = Sandbox::with(Start {
        api_up: false,
        ..Start::default()
    });
    let agent = sb.spawn(&["run"]);
    agent
        .wait_for_stderr(Duration::from_secs(20), |e| {
            e.contains("wait phase started")
        })
        .await;
    (sb, agent)
}

fn phase_outcome(sb: &Sandbox, phase: &str) -> String {
    sb.state()[phase]["outcome"].as_str().unwrap().to_string()
}
