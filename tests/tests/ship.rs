//! What ships, checked as an image builder would: the static binary and the
//! .deb of both arches (amd64 built natively, arm64 cross-built; the same
//! assertions for each) and the systemd unit. The cloud-init snippet is
//! `cloud_init.rs`'s.

use std::process::Command;

use catalyst_bootstrap_tests::ship::{
    ARM64_OUT_VAR, Artifacts, arm64_artifacts, artifacts, require, require_root, root, run, stdout,
    which,
};

const SIZE_BUDGET: u64 = 6 * 1024 * 1024;

#[test]
fn static_binary_within_budget_runs_without_libc() {
    static_binary(artifacts());
}

#[test]
fn arm64_static_binary_within_budget_runs_without_libc() {
    static_binary(arm64_artifacts());
}

fn static_binary(a: &Artifacts) {
    let size = std::fs::metadata(&a.binary).unwrap().len();
    println!(
        "{} static binary: {size} bytes ({:.2} MiB; budget 6 MiB)",
        a.arch,
        size as f64 / 1048576.0
    );
    assert!(size <= SIZE_BUDGET, "{size} bytes is over the 6 MiB budget");

    let file = stdout(Command::new("file").arg(&a.binary));
    let machine = match a.arch {
        "amd64" => "x86-64",
        _ => "ARM aarch64",
    };
    assert!(
        file.contains("static-pie linked") && file.contains("stripped") && file.contains(machine),
        "{file}"
    );
    // Static-pie by the ELF itself: a position-independent executable
    // (ET_DYN, DF_1_PIE, so the kernel loads it at a random address) that
    // needs no shared object, no interpreter.
    let header = stdout(Command::new("readelf").arg("-h").arg(&a.binary));
    assert!(
        header.contains("DYN (Position-Independent Executable file)"),
        "{header}"
    );
    let dynamic = stdout(Command::new("readelf").arg("-dl").arg(&a.binary));
    assert!(dynamic.contains("Flags: NOW PIE"), "{dynamic}");
    assert!(!dynamic.contains("(NEEDED)"), "{dynamic}");
    assert!(!dynamic.contains("INTERP"), "{dynamic}");
    let sections = stdout(Command::new("readelf").arg("-S").arg(&a.binary));
    assert!(!sections.contains(".comment"), "{sections}");
    let ldd = Command::new("ldd").arg(&a.binary).output().unwrap();
    let ldd =
        String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    assert!(
        ldd.contains("statically linked") || ldd.contains("not a dynamic executable"),
        "ldd: {ldd}"
    );

    // An empty root: no libc, no /etc, nothing but the binary (and for
    // arm64 the static emulator that runs it on this machine).
    require_root();
    let chroot = tempfile::tempdir().unwrap();
    std::fs::copy(&a.binary, chroot.path().join("catalyst-bootstrap")).unwrap();
    let mut argv = vec!["/catalyst-bootstrap"];
    if a.arch == "arm64" {
        let qemu = which("qemu-aarch64-static");
        std::fs::copy(&qemu, chroot.path().join("qemu-aarch64-static")).unwrap();
        argv.insert(0, "/qemu-aarch64-static");
    }
    let out = stdout(
        Command::new("chroot")
            .arg(chroot.path())
            .args(&argv)
            .arg("--version"),
    );
    assert_eq!(out.trim(), format!("catalyst-bootstrap {}", a.version));
    let out = Command::new("chroot")
        .arg(chroot.path())
        .args(&argv)
        .arg("check-config")
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
    no_build_path(artifacts());
}

#[test]
fn arm64_no_build_path_leaks_into_the_binary() {
    no_build_path(arm64_artifacts());
}

fn no_build_path(a: &Artifacts) {
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
    deb_contents(artifacts());
}

#[test]
fn arm64_deb_has_the_right_contents_and_no_scripts() {
    deb_contents(arm64_artifacts());
}

fn deb_contents(a: &Artifacts) {
    let info = stdout(Command::new("dpkg-deb").arg("--info").arg(&a.deb));
    for field in [
        "Package: catalyst-bootstrap",
        &format!("Architecture: {}", a.arch),
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
    let sbom = format!(
        "./usr/share/doc/catalyst-bootstrap/{}",
        a.sbom.file_name().unwrap().to_string_lossy()
    );
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
        (sbom.as_str(), "-rw-r--r-- root/root"),
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
    // The packaged binary is the bare one, byte for byte.
    let extracted = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-x")
        .arg(&a.deb)
        .arg(extracted.path()));
    assert!(
        std::fs::read(extracted.path().join("usr/bin/catalyst-bootstrap")).unwrap()
            == std::fs::read(&a.binary).unwrap(),
        "the .deb's binary differs from {}",
        a.binary.display()
    );
    let sums = run(Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&a.dir));
    let sums = String::from_utf8_lossy(&sums.stdout);
    assert_eq!(sums.matches(": OK").count(), 3, "{sums}");
    for file in [&a.deb, &a.binary, &a.sbom] {
        let name = file.file_name().unwrap().to_string_lossy();
        assert!(
            sums.contains(&format!("{name}: OK")),
            "{name} not in SHA256SUMS"
        );
    }
}

#[test]
fn lintian_is_clean() {
    lintian(artifacts());
}

#[test]
fn arm64_lintian_is_clean() {
    lintian(arm64_artifacts());
}

fn lintian(a: &Artifacts) {
    require("lintian", "lintian");
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

/// Each of the two is a cold release build of a copy (minutes on 2 cores):
/// `.ci/run` runs them after `tests/run`, which leaves them out of a
/// contributor's loop (`tests/run -- --ignored` runs them too).
#[test]
#[ignore = "a cold release build from a copy: .ci/run runs it"]
fn two_builds_from_different_checkouts_are_identical() {
    reproducible(artifacts());
}

/// The first build is `arm64_artifacts()`: in CI the one `.ci/run` made
/// from the checkout (CATALYST_BOOTSTRAP_ARM64_OUT), the second is made here
/// from a copy in another directory with another target dir.
#[test]
#[ignore = "a cold release build from a copy: .ci/run runs it"]
fn arm64_two_builds_from_different_checkouts_are_identical() {
    reproducible(arm64_artifacts());
}

fn reproducible(a: &Artifacts) {
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
        .env("ARCH", a.arch)
        .env("SOURCE_DATE_EPOCH", epoch.trim())
        .env("CARGO_TARGET_DIR", copy.path().join("target")));
    for name in [
        a.binary.file_name().unwrap(),
        a.deb.file_name().unwrap(),
        "SHA256SUMS".as_ref(),
    ] {
        let (one, two) = (
            std::fs::read(a.dir.join(name)).unwrap(),
            std::fs::read(out.join(name)).unwrap(),
        );
        assert!(
            one == two,
            "{name:?} differs between two builds of the same source{}",
            if std::env::var_os(ARM64_OUT_VAR).is_some() && a.arch == "arm64" {
                format!(
                    " (the first is {ARM64_OUT_VAR}={}: it must be built from this commit, \
                     whose time is SOURCE_DATE_EPOCH)",
                    a.dir.display()
                )
            } else {
                String::new()
            }
        );
    }
    println!(
        "{}: {} and {} are byte-identical to the build in {}",
        a.arch,
        a.binary.display(),
        a.deb.display(),
        out.display()
    );
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
        "ConditionPathExists=!/var/lib/catalyst-bootstrap/done",
        "LoadCredential=kubeconfig-bearer:",
        "StateDirectory=catalyst-bootstrap",
        "UMask=0077",
        "RestartPreventExitStatus=65 68 76 77 78",
        "LimitMEMLOCK=",
        "ExecStopPost=+/bin/sh -c",
    ] {
        assert!(unit_text.contains(line), "{line} missing from the unit");
    }
    // systemd keeps its copy of the credential while the unit is active:
    // the unit must end with the agent.
    assert!(
        !unit_text
            .lines()
            .any(|l| l.trim_start().starts_with("RemainAfterExit=")),
        "RemainAfterExit= would keep the token in /run/credentials"
    );
}
