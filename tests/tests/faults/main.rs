//! The fault matrix: every case is a named fault, the exit code it must end
//! with, and what it must say; after every run (and after the fresh run that
//! follows a case that leaves work undone) the same invariants are checked:
//! the seed Secret created at most once and never changed, the kubeconfig
//! captured at most once, the state file parseable and truthful, the exit
//! code as documented, the last sd_notify STATUS explaining the outcome, and
//! no secret in the output, the notifications or the state directory.
//!
//! The cases live in one file per area; the machinery and the invariants in
//! the harness (`catalyst_bootstrap_tests::faults`). docs/faults.md's table
//! is this table (`docs_list_every_case`).

mod catalyst;
mod disk;
mod files;
mod handoff;
mod hostile;
mod kubernetes;
mod process;
mod secrets;

use std::time::Duration;

use catalyst_bootstrap_tests::apiserver::Fault;
use catalyst_bootstrap_tests::catalyst::Step;
use catalyst_bootstrap_tests::faults::*;
use catalyst_bootstrap_tests::pki::Pki;
use catalyst_bootstrap_tests::sandbox::{CERT_NAMES, DEPLOYMENT_ID, Sandbox, Signal, Start};
use catalyst_bootstrap_tests::ship::root;
use http::Method;
use serde_json::json;

/// Every case, in docs/faults.md's order.
fn cases() -> impl Iterator<Item = &'static Case> {
    [
        process::CASES,
        kubernetes::CASES,
        catalyst::CASES,
        disk::CASES,
        hostile::CASES,
        files::CASES,
        secrets::CASES,
        handoff::CASES,
    ]
    .into_iter()
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_faults() {
    run_area(cases(), Area::Process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_api_faults() {
    run_area(cases(), Area::Kubernetes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handoff_faults() {
    run_area(cases(), Area::Handoff).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalyst_api_faults() {
    run_area(cases(), Area::CatalystApi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_faults() {
    run_area(cases(), Area::Disk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers() {
    run_area(cases(), Area::Hostile).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_files() {
    run_area(cases(), Area::Files).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_secrets() {
    run_area(cases(), Area::Secrets).await;
}

/// The scan is not blind to the journal: a token logged there is found.
#[tokio::test]
#[should_panic(expected = "bearer token leaked into the journal")]
async fn the_leak_scan_reads_the_journal() {
    let sb = Sandbox::new();
    let entry = format!("MESSAGE=retrying with {}\nPRIORITY=4\n", sb.token);
    std::os::unix::net::UnixDatagram::unbound()
        .unwrap()
        .send_to(entry.as_bytes(), sb.journal.dir().join("journal/socket"))
        .unwrap();
    sb.assert_no_leaks(&[]);
}

fn docs_table() -> String {
    let mut table = String::from("| area | fault | exit | outcome |\n|---|---|---|---|\n");
    for case in cases() {
        let exit = case.exit.map_or("killed".to_string(), |c| c.to_string());
        table.push_str(&format!(
            "| {} | {} | {exit} | {} |\n",
            case.area.name(),
            case.fault,
            case.outcome
        ));
    }
    table
}

#[test]
fn docs_list_every_case() {
    assert!(
        cases().count() >= 30,
        "the matrix has {} cases",
        cases().count()
    );
    let doc = std::fs::read_to_string(root().join("docs/faults.md")).unwrap();
    let table = docs_table();
    assert!(
        doc.contains(&table),
        "docs/faults.md's fault table is out of date; it should read:\n\n{table}"
    );
}
