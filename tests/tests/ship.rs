//! What ships, checked as an image builder would: the static binary, the
//! .deb, the systemd unit and the cloud-init snippet.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use catalyst_bootstrap_tests::ship::{
    artifacts, render_cloud_init, require, require_root, root, run, stdout,
};

const SIZE_BUDGET: u64 = 6 * 1024 * 1024;

#[test]
fn static_binary_within_budget_runs_without_libc() {
    let a = artifacts();
    let size = std::fs::metadata(&a.binary).unwrap().len();
    println!(
        "static binary: {size} bytes ({:.2} MiB; budget 6 MiB)",
        size as f64 / 1048576.0
    );
    assert!(size <= SIZE_BUDGET, "{size} bytes is over the 6 MiB budget");

    let file = stdout(Command::new("file").arg(&a.binary));
    assert!(
        file.contains("static-pie linked") && file.contains("stripped"),
        "{file}"
    );
    let ldd = Command::new("ldd").arg(&a.binary).output().unwrap();
    let ldd =
        String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    assert!(
        ldd.contains("statically linked") || ldd.contains("not a dynamic executable"),
        "ldd: {ldd}"
    );

    // An empty root: no libc, no /etc, nothing but the binary.
    require_root();
    let chroot = tempfile::tempdir().unwrap();
    std::fs::copy(&a.binary, chroot.path().join("catalyst-bootstrap")).unwrap();
    let out = stdout(
        Command::new("chroot")
            .arg(chroot.path())
            .args(["/catalyst-bootstrap", "--version"]),
    );
    assert_eq!(out.trim(), format!("catalyst-bootstrap {}", a.version));
    let out = Command::new("chroot")
        .arg(chroot.path())
        .args(["/catalyst-bootstrap", "check-config"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(78),
        "a clear configuration error, not a loader failure"
    );
}

#[test]
fn no_build_path_leaks_into_the_binary() {
    let a = artifacts();
    let bytes = std::fs::read(&a.binary).unwrap();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    for path in [
        root().display().to_string(),
        format!("{home}/.cargo"),
        format!("{home}/.rustup"),
    ] {
        let found = bytes.windows(path.len()).any(|w| w == path.as_bytes());
        assert!(!found, "{path} is embedded in the binary");
    }
}

#[test]
fn deb_has_the_right_contents_and_no_scripts() {
    let a = artifacts();
    let info = stdout(Command::new("dpkg-deb").arg("--info").arg(&a.deb));
    for field in [
        "Package: catalyst-bootstrap",
        "Architecture: amd64",
        &format!("Version: {}", a.version),
    ] {
        assert!(info.contains(field), "{field} missing:\n{info}");
    }
    for script in ["postinst", "prerm", "postrm", "preinst"] {
        assert!(
            !info.contains(script),
            "the package must not run {script} (it never enables or starts the unit)"
        );
    }
    let contents = stdout(Command::new("dpkg-deb").arg("--contents").arg(&a.deb));
    for (path, mode) in [
        ("./usr/bin/catalyst-bootstrap", "-rwxr-xr-x root/root"),
        (
            "./usr/lib/systemd/system/catalyst-bootstrap.service",
            "-rw-r--r-- root/root",
        ),
        (
            "./usr/lib/systemd/catalog/catalyst-bootstrap.catalog",
            "-rw-r--r-- root/root",
        ),
        (
            "./usr/share/doc/catalyst-bootstrap/config.yaml.example",
            "-rw-r--r-- root/root",
        ),
        // The reference on the node: every key and exit code (agent/src/man.rs).
        (
            "./usr/share/man/man1/catalyst-bootstrap.1.gz",
            "-rw-r--r-- root/root",
        ),
    ] {
        let line = contents
            .lines()
            .find(|l| l.ends_with(path))
            .unwrap_or_else(|| panic!("{path} missing:\n{contents}"));
        assert!(line.starts_with(mode), "{line}");
    }
    let sums = run(Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&a.dir));
    assert_eq!(
        String::from_utf8_lossy(&sums.stdout)
            .matches(": OK")
            .count(),
        2
    );
}

#[test]
fn lintian_is_clean() {
    require("lintian", "lintian");
    let a = artifacts();
    let out = Command::new("lintian")
        .args(["--tag-display-limit", "0", "--display-info"])
        .arg(&a.deb)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let findings: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(findings.is_empty(), "lintian:\n{text}");
}

#[test]
fn two_builds_from_different_checkouts_are_identical() {
    let a = artifacts();
    // Another path, another target dir: only the source may matter.
    let copy = tempfile::Builder::new()
        .prefix("catalyst-repro-")
        .tempdir()
        .unwrap();
    let files = stdout(
        Command::new("git")
            .args(["ls-files", "-z"])
            .current_dir(root()),
    );
    for file in files.split('\0').filter(|f| !f.is_empty()) {
        let (from, to) = (root().join(file), copy.path().join(file));
        if from.is_file() {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&from, &to).unwrap();
        }
    }
    let epoch = stdout(
        Command::new("git")
            .args(["log", "-1", "--format=%ct"])
            .current_dir(root()),
    );
    let out = copy.path().join("out");
    run(Command::new(copy.path().join("packaging/build"))
        .arg(&out)
        .env("SOURCE_DATE_EPOCH", epoch.trim())
        .env("CARGO_TARGET_DIR", copy.path().join("target")));
    for name in [a.binary.file_name().unwrap(), a.deb.file_name().unwrap()] {
        let (one, two) = (
            std::fs::read(a.dir.join(name)).unwrap(),
            std::fs::read(out.join(name)).unwrap(),
        );
        assert!(
            one == two,
            "{name:?} differs between two builds of the same source"
        );
    }
}

#[test]
fn unit_verifies_cleanly_and_is_hardened() {
    require("systemd-analyze", "systemd");
    let a = artifacts();
    // The packaged unit, with ExecStart= pointing at the packaged binary
    // where it was extracted (verify checks that the command exists).
    let root_dir = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&a.deb)
        .arg(root_dir.path()));
    let unit = root_dir
        .path()
        .join("usr/lib/systemd/system/catalyst-bootstrap.service");
    let bin = root_dir.path().join("usr/bin/catalyst-bootstrap");
    let check_dir = tempfile::tempdir().unwrap();
    let check = check_dir.path().join("catalyst-bootstrap.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    std::fs::write(
        &check,
        text.replace("/usr/bin/catalyst-bootstrap", &bin.display().to_string()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&check)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().is_empty() && out.status.success(),
        "systemd-analyze verify:\n{stderr}"
    );

    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("exposure level for catalyst-bootstrap.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no score in:\n{text}"));
    println!("systemd-analyze security exposure: {score}");
    assert!(score <= 1.5, "exposure {score} is above 1.5:\n{text}");

    let unit_text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "RemainAfterExit=yes",
        "ConditionPathExists=!/var/lib/catalyst-bootstrap/done",
        "LoadCredential=kubeconfig-bearer:",
        "StateDirectory=catalyst-bootstrap",
        "UMask=0077",
        "RestartPreventExitStatus=65 68 76 77 78",
        "LimitMEMLOCK=",
    ] {
        assert!(unit_text.contains(line), "{line} missing from the unit");
    }
}

#[test]
fn cloud_init_snippet_is_valid_and_small() {
    let rendered = render_cloud_init(&[
        ("deployment_id", "0f1e2d3c4b5a6978"),
        ("catalyst_api_url", "https://console.openova.io/sovereign"),
        ("public_address", "203.0.113.10"),
        ("sovereign_fqdn", "api.sovereign.example.com"),
        ("kubeconfig_bearer", &"a".repeat(64)),
        (
            "agent_deb_url",
            "https://releases.openova.io/catalyst-bootstrap/catalyst-bootstrap_0.1.0_amd64.deb",
        ),
        ("agent_deb_sha256", &"e".repeat(64)),
    ]);
    println!(
        "rendered cloud-init snippet: {} bytes (budget 2048)",
        rendered.len()
    );
    assert!(
        rendered.len() <= 2048,
        "{} bytes is over the 2 KiB budget",
        rendered.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("user-data");
    std::fs::write(&file, &rendered).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    // cloud-init of the test rootfs (Debian bookworm, as on the nodes), not
    // of the host: installed there, it would configure the host's next boot.
    let out = catalyst_bootstrap_tests::container::run_in_rootfs(
        &["cloud-init", "schema", "--config-file", "/run/user-data"],
        &[(&file, "/run/user-data")],
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("Valid cloud-config"),
        "cloud-init schema:\n{text}"
    );
}
