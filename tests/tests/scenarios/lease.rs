//! Scenarios: HA control planes: the Lease.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_control_plane_nodes_write_one_seed_and_send_one_kubeconfig() {
    let sb = Sandbox::new();
    // The PUT outlasts the Lease three times over: only renewal keeps the
    // others from taking over.
    sb.write_config("lease_duration: 2s\n");
    sb.catalyst.script([Step::Delay(Duration::from_secs(6))]);
    let nodes = ["cp-1", "cp-2", "cp-3"];
    let agents: Vec<_> = nodes.iter().map(|n| sb.spawn_node(n)).collect();
    let mut outs = Vec::new();
    for agent in agents {
        outs.push(agent.finish().await);
    }
    for out in &outs {
        assert_exit(out, 0);
        sb.assert_no_leaks(&[&out.stderr, &out.stdout]);
    }
    assert_eq!(sb.catalyst.requests().len(), 1, "one PUT");
    assert_eq!(sb.api.count(&Method::POST, SECRETS), 1, "one seed create");
    let lease = sb.api.object(LEASE).expect("the Lease exists");
    let holder = lease["spec"]["holderIdentity"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        lease["metadata"]["annotations"]["catalyst.openova.io/completed-by"],
        holder.as_str()
    );
    assert_eq!(
        lease["metadata"]["annotations"]["catalyst.openova.io/deployment-id"],
        DEPLOYMENT_ID
    );
    let followers = outs
        .iter()
        .filter(|o| {
            o.stderr
                .contains(&format!("control-plane node {holder} did the work"))
        })
        .count();
    assert_eq!(
        followers, 2,
        "the two others name the node that did the work"
    );
    for node in nodes {
        let dir = sb.path(&format!("state-{node}"));
        assert!(dir.join("done").exists(), "{node} is done");
        let state: Value =
            serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
        assert_eq!(state["lease"]["outcome"], "done");
        if node != holder {
            assert_eq!(
                state["seed"]["detail"],
                format!("done by control-plane node {holder}")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holder_is_taken_over_after_expiry_without_a_second_seed() {
    let sb = Sandbox::new();
    sb.write_config("lease_duration: 2s\n");
    // The holder dies while its PUT hangs.
    sb.catalyst.script([Step::Delay(Duration::from_secs(60))]);
    let first = sb.spawn_node("cp-1");
    first
        .wait_for_stderr(Duration::from_secs(20), |e| {
            e.contains("recovery seed written") && e.contains("sending the kubeconfig")
        })
        .await;
    let seed = sb.seed_secret().expect("the holder wrote the seed");
    first.signal(Signal::SIGKILL);
    assert_eq!(first.finish().await.code, None, "killed");
    sb.catalyst.clear_script();

    let out = sb.spawn_node("cp-2").finish().await;
    assert_exit(&out, 0);
    assert_stderr(
        &out,
        "control-plane node cp-1 holds Lease kube-system/catalyst-bootstrap",
    );
    assert_stderr(
        &out,
        "node cp-1 stopped renewing Lease kube-system/catalyst-bootstrap",
    );
    assert_stderr(&out, "already holds a seed; kept it");
    assert_eq!(sb.seed_secret().unwrap(), seed, "no second seed");
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 1);
    let lease = sb.api.object(LEASE).unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "cp-2");
    assert_eq!(lease["spec"]["leaseTransitions"], 1);
    assert_eq!(
        lease["metadata"]["annotations"]["catalyst.openova.io/completed-by"],
        "cp-2"
    );
    sb.assert_no_leaks(&[&out.stderr, &out.stdout]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_says_who_holds_the_lease_for_the_whole_wait() {
    let sb = Sandbox::new();
    // Polled every second; taken over once it has not changed for 4 s.
    sb.write_config("lease_duration: 4s\n");
    sb.api.insert(
        LEASE,
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "catalyst-bootstrap", "namespace": "kube-system"},
               "spec": {"holderIdentity": "cp-gone", "leaseDurationSeconds": 4}}),
    );
    let out = sb.run().await;
    assert_exit(&out, 0);
    let statuses = sb.notify.statuses();
    let first = statuses
        .iter()
        .position(|s| s.contains("cp-gone holds Lease"))
        .unwrap_or_else(|| panic!("{statuses:#?}"));
    let held = statuses
        .iter()
        .position(|s| s.contains("cp-gone stopped renewing") || s.contains("and does the work"))
        .unwrap_or_else(|| panic!("{statuses:#?}"));
    let between = &statuses[first..held];
    assert!(
        between.iter().all(|s| s.contains("cp-gone holds Lease")),
        "the waiting text stays while waiting: {between:#?}"
    );
    let waiting: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("cp-gone"))
        .collect();
    assert!(
        waiting.len() <= 4 && !waiting.iter().any(|l| l.contains("WARN")),
        "{waiting:#?}"
    );
    assert!(
        waiting
            .iter()
            .any(|l| l.contains("INFO") && l.contains("done after")),
        "the wait's end is logged with how long it took: {waiting:#?}"
    );
}
