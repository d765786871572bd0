//! Scenarios: HA control planes, with no coordination: every node does the
//! whole job. The seed is create-only (a 409 keeps the first node's) and
//! catalyst-api answers a repeated PUT with `already-set`.

use catalyst_bootstrap_tests::http::Server;
use catalyst_bootstrap_tests::sandbox::{Agent, patience};

use super::*;

const NODES: [&str; 3] = ["cp-1", "cp-2", "cp-3"];
const ALREADY: &str = "already captured by an earlier attempt or another control-plane node";
const KEPT: &str = "Secret openbao/openbao-recovery-seed already holds a seed; kept it unchanged";

/// Each node's state.json, with its done stamp checked.
fn node_state(sb: &Sandbox, node: &str) -> Value {
    let dir = sb.path(&format!("state-{node}"));
    assert!(dir.join("done").exists(), "{node} is done");
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    assert!(state.get("lease").is_none(), "{state}");
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_control_plane_nodes_store_one_kubeconfig_and_create_one_seed() {
    let sb = Sandbox::new();
    let agents: Vec<_> = NODES.iter().map(|n| sb.spawn_node(n)).collect();
    let mut outs = Vec::new();
    for agent in agents {
        outs.push(agent.finish().await);
    }
    for out in &outs {
        assert_exit(out, 0);
        sb.assert_no_leaks(&[&out.stderr, &out.stdout]);
    }
    assert_eq!(sb.catalyst.requests().len(), 3, "every node sends it");
    assert_eq!(
        sb.catalyst.store_count(DEPLOYMENT_ID),
        1,
        "one kubeconfig stored"
    );
    assert!(sb.seed_secret().is_some());
    assert_eq!(
        sb.api.count(&Method::PATCH, SEED),
        0,
        "the seed is never patched"
    );
    assert_eq!(sb.api.count(&Method::PUT, SEED), 0, "nor replaced");
    assert!(
        sb.api
            .requests()
            .iter()
            .all(|r| !r.path.contains("/leases/")),
        "no Lease"
    );
    let (mut delivered, mut captured, mut written, mut kept) = (0, 0, 0, 0);
    for node in NODES {
        let state = node_state(&sb, node);
        match state["kubeconfig"]["detail"].as_str().unwrap() {
            "delivered" => delivered += 1,
            ALREADY => captured += 1,
            other => panic!("{node}: kubeconfig {other:?}"),
        }
        match state["seed"]["detail"].as_str().unwrap() {
            "recovery seed written to Secret openbao/openbao-recovery-seed" => written += 1,
            KEPT => kept += 1,
            other => panic!("{node}: seed {other:?}"),
        }
    }
    assert_eq!((delivered, captured), (1, 2), "one stored, two already set");
    assert_eq!(
        (written, kept),
        (1, 2),
        "one seed created, kept by the others"
    );
    let says = |text: &str| outs.iter().filter(|o| o.stderr.contains(text)).count();
    assert_eq!(
        says("(403 already-set): an earlier attempt or another control-plane node"),
        2
    );
    assert_eq!(says("already holds a seed; kept it unchanged"), 2);
}

/// Control-plane node `node` with an API server port of its own.
fn spawn_on(sb: &Sandbox, node: &str, endpoint: &Server) -> Agent {
    let file = format!("k3s-{node}.yaml");
    sb.write_secret_file(&file, &sb.api.kubeconfig_for(endpoint.addr().port()));
    sb.spawn(&[
        "--node-name",
        node,
        "--state-dir",
        sb.path(&format!("state-{node}")).to_str().unwrap(),
        "--secrets-dir",
        sb.node_secrets_dir(node).to_str().unwrap(),
        "--kubeconfig",
        sb.path(&file).to_str().unwrap(),
        "run",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_mid_put_holds_nobody_up() {
    let sb = Sandbox::new();
    // The first PUT to arrive hangs; its node is killed and never back.
    sb.catalyst.script([Step::Delay(Duration::from_secs(120))]);
    let endpoints: Vec<Server> = NODES.iter().map(|_| sb.api.node_endpoint(true)).collect();
    let agents: Vec<Agent> = NODES
        .iter()
        .zip(&endpoints)
        .map(|(node, endpoint)| spawn_on(&sb, node, endpoint))
        .collect();
    // Each node's kubeconfig names its own port.
    let sent_by = |body: &[u8]| {
        let text = String::from_utf8_lossy(body);
        endpoints
            .iter()
            .position(|e| text.contains(&format!("{PUBLIC_ADDRESS}:{}\n", e.addr().port())))
            .expect("the kubeconfig names one node's port")
    };
    let end = std::time::Instant::now() + patience(Duration::from_secs(30));
    let victim = loop {
        if let Some(body) = sb.catalyst.arrivals().first() {
            break sent_by(body);
        }
        assert!(
            std::time::Instant::now() < end,
            "no PUT reached catalyst-api"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    agents[victim].signal(Signal::SIGKILL);
    let killed = std::time::Instant::now();
    let mut outs = Vec::new();
    for (i, agent) in agents.into_iter().enumerate() {
        let out = agent.finish().await;
        if i == victim {
            assert_eq!(out.code, None, "killed");
        } else {
            assert_exit(&out, 0);
            sb.assert_no_leaks(&[&out.stderr, &out.stdout]);
            outs.push(out);
        }
    }
    let took = killed.elapsed();
    assert!(
        took < patience(Duration::from_secs(10)),
        "the others finished {took:?} after the kill, far sooner than the hung PUT"
    );
    assert_eq!(
        sb.catalyst.store_count(DEPLOYMENT_ID),
        1,
        "one kubeconfig stored"
    );
    let stored = sb.catalyst.stored(DEPLOYMENT_ID).unwrap();
    assert_ne!(sent_by(&stored), victim, "a survivor's");
    assert!(sb.seed_secret().is_some());
    let mut kubeconfigs = Vec::new();
    let mut seeds = Vec::new();
    for (i, node) in NODES.iter().enumerate() {
        if i == victim {
            assert!(!sb.path(&format!("state-{node}")).join("done").exists());
            continue;
        }
        let state = node_state(&sb, node);
        kubeconfigs.push(state["kubeconfig"]["detail"].as_str().unwrap().to_string());
        seeds.push(state["seed"]["detail"].as_str().unwrap().to_string());
    }
    kubeconfigs.sort();
    assert_eq!(
        kubeconfigs,
        [ALREADY, "delivered"],
        "one stored, one already set"
    );
    // The victim may have created the seed before it died: then both keep it.
    assert!(
        seeds.iter().filter(|s| *s == KEPT).count() >= 1,
        "{seeds:?}"
    );
}

/// A configuration written for 0.1 still runs: `lease_duration` is accepted
/// and ignored, with one warning naming the file. `check-config` shows the
/// key only where it is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_sets_lease_duration_still_runs_with_one_warning() {
    let sb = Sandbox::new();
    let unset = sb.command(&["check-config"]).output().await.unwrap();
    let unset = String::from_utf8_lossy(&unset.stdout);
    assert!(
        unset.contains("deployment_id: ") && !unset.contains("lease_duration"),
        "{unset}"
    );
    sb.write_config("lease_duration: 30s\n");
    let out = sb.run().await;
    assert_exit(&out, 0);
    let warned: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("`lease_duration` is no longer used"))
        .collect();
    assert_eq!(warned.len(), 1, "{}", out.stderr);
    assert!(
        warned[0].contains(" WARN ") && warned[0].contains(".yaml"),
        "{}",
        warned[0]
    );
    let shown = sb.command(&["check-config"]).output().await.unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("lease_duration: 30s (ignored: no longer used)"),
        "{shown}"
    );
}
