//! A node under a real systemd (`tests/tests/systemd*.rs`): the fakes on the
//! host's loopback, the packaged agent installed and provisioned as
//! cloud-init and k3s would leave it, and what to wait for and look at.

use std::time::{Duration, Instant};

use crate::container::Container;
use crate::sandbox::{DEPLOYMENT_ID, PUBLIC_ADDRESS, Sandbox};
use crate::ship::artifacts;

pub const UNIT: &str = "catalyst-bootstrap";

/// The fakes, on a runtime of their own so the test thread may block.
pub fn fakes() -> (tokio::runtime::Runtime, Sandbox) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sb = rt.block_on(async { Sandbox::new() });
    (rt, sb)
}

fn node_config(sb: &Sandbox, ca_path: &str) -> String {
    format!(
        "deployment_id: \"{DEPLOYMENT_ID}\"\ncatalyst_api_url: {}\npublic_address: {PUBLIC_ADDRESS}\nca_bundle: {ca_path}\n\
         retry:\n  initial_delay: 200ms\n  max_delay: 1s\n  overloaded_delay: 200ms\n",
        sb.catalyst.url()
    )
}

/// What cloud-init and k3s would have left on the node.
pub fn provision(c: &Container, sb: &Sandbox) {
    c.sh(&format!(
        "dpkg -i /mnt/pkg/catalyst-bootstrap_{}_amd64.deb",
        artifacts().version
    ));
    c.write("/etc/catalyst-bootstrap/ca.pem", &sb.pki.ca_pem, "0644");
    c.write(
        "/etc/catalyst-bootstrap/config.yaml",
        &node_config(sb, "/etc/catalyst-bootstrap/ca.pem"),
        "0644",
    );
    c.write("/etc/rancher/k3s/k3s.yaml", &sb.api.kubeconfig(), "0600");
    c.write(
        "/etc/credstore/kubeconfig-bearer",
        &format!("{}\n", sb.token),
        "0600",
    );
}

pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Neither the credential store nor systemd's copy holds the token.
pub fn assert_token_gone(c: &Container) {
    for path in [
        "/etc/credstore/kubeconfig-bearer",
        "/run/credentials/catalyst-bootstrap.service",
    ] {
        let present = c.exec(&["test", "-e", path]);
        assert!(
            !present.status.success(),
            "{path} outlived the job:\n{}",
            diagnose(c)
        );
    }
}

/// What an SRE would look at, for failure messages.
pub fn diagnose(c: &Container) -> String {
    let out = c.exec(&["sh", "-c", "systemctl status --no-pager -l catalyst-bootstrap; journalctl -u catalyst-bootstrap --no-pager -o cat"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A node booted, provisioned and its unit started (not waited for).
pub fn started(sb: &Sandbox) -> Container {
    let c = Container::boot(&[(&artifacts().dir, "/mnt/pkg")]);
    provision(&c, sb);
    c.sh("systemctl start --no-block catalyst-bootstrap");
    c
}

/// A started node whose catalyst-api answers `503` to its first `refusals`
/// PUTs, once the agent has sent `puts` of them: it is retrying.
pub fn retrying(refusals: usize, puts: usize) -> (tokio::runtime::Runtime, Sandbox, Container) {
    let (rt, sb) = fakes();
    sb.catalyst
        .script((0..refusals).map(|_| crate::catalyst::Step::error(503, "write-failed")));
    let c = started(&sb);
    wait_until("the agent to retry", Duration::from_secs(60), || {
        sb.catalyst.requests().len() >= puts
    });
    (rt, sb, c)
}
