//! The benchmark's smoke run: one iteration of every measurement, so the
//! benchmark cannot rot. Its numbers are not judged here (targets are met
//! in `bench/run`, not asserted in timed tests); that it runs, that both
//! tools do the whole job, and that it reports every row are.

use catalyst_bootstrap_tests::ship::{require, root, run};

#[test]
fn benchmark_smoke_runs_both_tools_through_every_measurement() {
    require("kubectl", "kubernetes-client (or the machine's kubectl)");
    require("curl", "curl");
    let out = run(std::process::Command::new(env!("CARGO_BIN_EXE_bench")).arg("--quick"));
    let table = String::from_utf8_lossy(&out.stdout);
    for row in [
        "| healthy path, wall |",
        "| healthy path, CPU |",
        "| healthy path, peak RSS",
        "| critical path:",
        "| catalyst-api unreachable for 1 s (+ a random phase) |",
        "| catalyst-api overloaded (503) for 1 s (+ a random phase) |",
        "| static binary |",
    ] {
        assert!(table.contains(row), "{row:?} missing from:\n{table}");
    }
}

/// `bench/run` refuses a busy machine before it builds or measures
/// anything, saying why and what the bar was.
#[test]
fn the_benchmark_refuses_a_busy_machine() {
    let results = root().join("bench/results.json");
    let before = std::fs::metadata(&results).and_then(|m| m.modified()).ok();
    let out = std::process::Command::new(root().join("bench/run"))
        // Any load average is above this bar.
        .env("BENCH_MAX_LOAD", "-1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the machine is busy: one-minute load average")
            && stderr.contains("above -1"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::metadata(&results).and_then(|m| m.modified()).ok(),
        before,
        "results written by a refused run"
    );
}
