//! The cloud-init snippet for real: cloud-init (NoCloud) in the booted
//! rootfs installs the package, writes the files and starts the unit; a
//! tampered download installs nothing.

use super::*;

/// Boots a node whose NoCloud seed is the rendered snippet.
fn boot_with_cloud_init(
    sb: &Sandbox,
    deb_sha256: &str,
    deb_url: &str,
    dirs: &tempfile::TempDir,
) -> Container {
    let seed = dirs.path().join("seed");
    let dropins = dirs.path().join("config.d");
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::create_dir_all(&dropins).unwrap();
    let user_data = render_cloud_init(
        &[
            ("deployment_id", DEPLOYMENT_ID),
            ("catalyst_api_url", &sb.catalyst.url()),
            ("public_address", PUBLIC_ADDRESS),
            ("sovereign_fqdn", SOVEREIGN_FQDN),
            ("kubeconfig_bearer", &sb.token),
            (
                "agent_deb_url",
                &format!("{deb_url}/catalyst-bootstrap.deb"),
            ),
            ("agent_deb_sha256", deb_sha256),
        ],
        &[("cloud-credentials", CLOUD_CREDENTIALS)],
    );
    // Merged into upstream's template, whose own write_files make
    // /var/lib/catalyst (cilium-values.yaml), where done_marker goes.
    let user_data = user_data.replacen(
        "write_files:\n",
        "write_files:\n- path: /var/lib/catalyst/cilium-values.yaml\n  content: \"upstream's\"\n",
        1,
    );
    std::fs::write(seed.join("user-data"), user_data).unwrap();
    std::fs::write(
        seed.join("meta-data"),
        "instance-id: iid-catalyst-test\nlocal-hostname: cp-1\n",
    )
    .unwrap();
    // What the snippet does not carry: the fakes' CA and quick retries.
    std::fs::write(dropins.join("ca.pem"), &sb.pki.ca_pem).unwrap();
    std::fs::write(
        dropins.join("50-test.yaml"),
        "ca_bundle: /etc/catalyst-bootstrap/config.d/ca.pem\nretry:\n  initial_delay: 200ms\n  max_delay: 1s\n  overloaded_delay: 200ms\n",
    )
    .unwrap();
    std::fs::write(dirs.path().join("k3s.yaml"), sb.api.kubeconfig()).unwrap();
    Container::boot(&[
        (&seed, "/var/lib/cloud/seed/nocloud"),
        (&dropins, "/etc/catalyst-bootstrap/config.d"),
        (&dirs.path().join("k3s.yaml"), "/etc/rancher/k3s/k3s.yaml"),
    ])
}

const HCLOUD_TOKEN: &str = "hcloudTokenValue0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN";
/// base64 of [`HCLOUD_TOKEN`].
const HCLOUD_TOKEN_B64: &str =
    "aGNsb3VkVG9rZW5WYWx1ZTAxMjM0NTY3ODlhYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ekFCQ0RFRkdISUpLTE1O";
const CLOUD_CREDENTIALS: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: cloud-credentials, namespace: flux-system}\nstringData:\n  hcloud-token: hcloudTokenValue0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN\n";

#[test]
fn cloud_init_installs_and_starts_the_agent_and_refuses_a_bad_checksum() {
    let (_rt, sb) = fakes();
    let deb = std::fs::read(&artifacts().deb).unwrap();
    let sha = sha256_hex(&deb);
    let files = PlainServer::start(vec![(200, deb)]);

    let dirs = tempfile::tempdir().unwrap();
    let c = boot_with_cloud_init(&sb, &sha, &files.url, &dirs);
    let status = c.exec(&["cloud-init", "status", "--wait", "--long"]);
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(status.contains("status: done"), "cloud-init:\n{status}");
    wait_finished(&c, "the agent to finish");
    assert_eq!(sb.catalyst.store_count(DEPLOYMENT_ID), 1);
    assert!(sb.seed_secret().is_some());
    let mode = c.sh("stat -c %a /etc/catalyst-bootstrap/config.yaml");
    assert_eq!(mode.trim(), "644");
    // The bootstrap Secret went through the packaged unit's sandbox: applied,
    // and its file gone.
    let secret = sb
        .api
        .object("/api/v1/namespaces/flux-system/secrets/cloud-credentials")
        .expect("the bootstrap Secret was applied");
    assert_eq!(secret["data"]["hcloud-token"], HCLOUD_TOKEN_B64);
    let left = c.sh("ls -A /etc/catalyst-bootstrap/secrets.d");
    assert_eq!(left.trim(), "", "files left in secrets.d");
    // The provisioner's signal, through the unit's sandbox.
    assert!(
        c.exec(&["test", "-e", "/var/lib/catalyst/cloud-init-complete"])
            .status
            .success(),
        "no done_marker:\n{}",
        diagnose(&c)
    );
    let log = c.sh("journalctl -u catalyst-bootstrap --no-pager -o cat");
    assert!(!log.contains(HCLOUD_TOKEN), "{log}");
    drop(c);

    // A tampered download is not installed.
    let (_rt2, sb2) = fakes();
    let dirs2 = tempfile::tempdir().unwrap();
    let c = boot_with_cloud_init(&sb2, &"0".repeat(64), &files.url, &dirs2);
    let _ = c.exec(&["cloud-init", "status", "--wait"]);
    let installed = c.exec(&["sh", "-c", "command -v catalyst-bootstrap"]);
    assert!(
        !installed.status.success(),
        "installed despite a SHA-256 mismatch"
    );
    let log = c.sh("cat /var/log/cloud-init-output.log");
    assert!(log.contains("did NOT match"), "{log}");
    assert!(sb2.catalyst.requests().is_empty());
}
