//! Scenarios: `catalyst-bootstrap status`.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_command_reports_each_outcome() {
    let sb = Sandbox::new();
    let out = sb.spawn(&["status"]).finish().await;
    assert_exit(&out, 3);
    assert!(out.stdout.contains("not started"), "{}", out.stdout);

    sb.catalyst.script([Step::error(401, "missing-bearer")]);
    assert_exit(&sb.run().await, 77);
    let out = sb.spawn(&["status"]).finish().await;
    assert_exit(&out, 1);
    assert!(
        out.stdout.contains("kubeconfig  failed") && out.stdout.contains("missing-bearer"),
        "{}",
        out.stdout
    );

    assert_exit(&sb.run().await, 0);
    let out = sb.spawn(&["status", "--json"]).finish().await;
    assert_exit(&out, 0);
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["result"], "done");
    assert_eq!(json["state"]["kubeconfig"]["outcome"], "done");
    assert_eq!(json["state"]["kubeconfig"]["attempts"], 2);
    assert_eq!(json["state"]["deployment_id"], DEPLOYMENT_ID);
    // Times to the millisecond, as the log lines have them.
    let started = json["state"]["kubeconfig"]["started_at"].as_str().unwrap();
    assert_eq!(started.len(), "2026-11-22T05:14:02.711Z".len(), "{started}");
    assert!(
        started.ends_with('Z') && started.as_bytes()[19] == b'.',
        "{started}"
    );
}

/// state.json is a file anyone with root may have edited: `status` shows its
/// text escaped, never as terminal control.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_a_hostile_state_file_escaped() {
    let sb = Sandbox::new();
    sb.catalyst.script([Step::error(401, "missing-bearer")]);
    assert_exit(&sb.run().await, 77);
    let path = sb.state_dir().join("state.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    state["kubeconfig"]["detail"] = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m\nREADY=1".into();
    std::fs::write(&path, state.to_string()).unwrap();
    let out = sb.spawn(&["status"]).finish().await;
    assert_exit(&out, 1);
    assert!(
        !out.stdout.contains(['\u{1b}', '\u{7}', '\u{9b}'])
            && out.stdout.contains("\\u{1b}]0;owned"),
        "{:?}",
        out.stdout
    );
    let detail_lines = out.stdout.lines().filter(|l| l.contains("READY=1")).count();
    assert_eq!(detail_lines, 1, "{}", out.stdout);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("kubeconfig") && l.contains("\\nREADY=1"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_wait_blocks_until_done() {
    let (sb, agent) = agent_waiting_for_the_api_server().await;
    let waiter = sb.spawn(&["status", "--wait"]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiter.try_finished(),
        "status --wait returned before the job was done"
    );
    sb.api.set_up(true);
    assert_exit(&agent.finish().await, 0);
    let out = waiter.finish().await;
    assert_exit(&out, 0);
    assert!(out.stdout.contains("catalyst-bootstrap: done"));
}
