//! Helpers for the tests of what ships: the packaged artifacts, host tools
//! the tests need (a missing one fails the test with the install command,
//! never skips it), and commands run with their output checked.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Fails the test unless `tool` is on PATH, saying how to get it.
pub fn require(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is required for this test: apt-get install --no-install-recommends {package}"
    );
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (chroot, systemd-nspawn, dpkg-deb --root-owner-group)"
    );
}

/// Runs `cmd`, failing the test with its output if it does not exit 0.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

pub struct Artifacts {
    pub arch: &'static str,
    pub dir: PathBuf,
    pub deb: PathBuf,
    pub binary: PathBuf,
    /// The CycloneDX SBOM beside them (also in the .deb's doc directory).
    pub sbom: PathBuf,
    pub version: String,
}

/// The amd64 artifacts: `packaging/build` into `target/package-out`, once
/// per test process.
pub fn artifacts() -> &'static Artifacts {
    static BUILT: OnceLock<Artifacts> = OnceLock::new();
    BUILT.get_or_init(|| build_artifacts("amd64", root().join("target/package-out")))
}

/// Where an `ARCH=arm64 packaging/build` already made can be reused (CI
/// builds it once for the tests under qemu): its output directory.
pub const ARM64_OUT_VAR: &str = "CATALYST_BOOTSTRAP_ARM64_OUT";

/// The arm64 artifacts: the output directory in `CATALYST_BOOTSTRAP_ARM64_OUT`
/// when set (built by `ARCH=arm64 packaging/build` from this checkout), else
/// `ARCH=arm64 packaging/build` into `target/package-out-arm64`, once per
/// test process. The cross toolchain is required, never optional:
/// `packaging/arm64-toolchain` installs it.
pub fn arm64_artifacts() -> &'static Artifacts {
    static BUILT: OnceLock<Artifacts> = OnceLock::new();
    BUILT.get_or_init(|| match std::env::var_os(ARM64_OUT_VAR) {
        Some(dir) => {
            let a = describe("arm64", PathBuf::from(dir));
            for file in [&a.deb, &a.binary, &a.sbom, &a.dir.join("SHA256SUMS")] {
                assert!(
                    file.is_file(),
                    "{ARM64_OUT_VAR}: {} is missing; run `ARCH=arm64 packaging/build {}`",
                    file.display(),
                    a.dir.display()
                );
            }
            a
        }
        None => {
            require_arm64_toolchain();
            build_artifacts("arm64", root().join("target/package-out-arm64"))
        }
    })
}

/// Fails the test unless the arm64 cross toolchain is installed.
pub fn require_arm64_toolchain() {
    for (tool, package) in [
        ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
        ("aarch64-linux-gnu-objcopy", "binutils-aarch64-linux-gnu"),
        ("qemu-aarch64-static", "qemu-user-static"),
    ] {
        require(tool, package);
    }
    assert!(
        Path::new("/usr/bin/cargo").is_file()
            && Path::new("/usr/lib/rustlib/aarch64-unknown-linux-gnu").is_dir(),
        "Debian's Rust with the arm64 standard library is required: packaging/arm64-toolchain (as root) installs it"
    );
}

fn build_artifacts(arch: &'static str, dir: PathBuf) -> Artifacts {
    require("dpkg-deb", "dpkg");
    run(Command::new(root().join("packaging/build"))
        .arg(&dir)
        .env("ARCH", arch));
    describe(arch, dir)
}

fn describe(arch: &'static str, dir: PathBuf) -> Artifacts {
    let version = env!("CARGO_PKG_VERSION").to_string();
    Artifacts {
        arch,
        deb: dir.join(format!("catalyst-bootstrap_{version}_{arch}.deb")),
        binary: dir.join(format!("catalyst-bootstrap-{version}-linux-{arch}")),
        sbom: dir.join(format!(
            "catalyst-bootstrap-{version}-linux-{arch}.cdx.json"
        )),
        dir,
        version,
    }
}

/// The files of `deb`, unpacked into a temporary directory.
pub fn unpack(deb: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir.path()));
    dir
}

/// Renders cloud-init/catalyst-bootstrap.tftpl as OpenTofu's templatefile()
/// would for these values and `bootstrap_secrets` (file name, manifest):
/// its one `for` directive repeats the block for each, `~}` eating the
/// line break after the directive.
pub fn render_cloud_init(values: &[(&str, &str)], secrets: &[(&str, &str)]) -> String {
    let mut text =
        std::fs::read_to_string(root().join("cloud-init/catalyst-bootstrap.tftpl")).unwrap();
    let (open, close) = ("%{ for f, m in bootstrap_secrets ~}\n", "%{ endfor ~}\n");
    let start = text
        .find(open)
        .expect("the template's bootstrap_secrets loop");
    let end = text[start..].find(close).expect("its endfor") + start;
    let block = text[start + open.len()..end].to_string();
    let repeated: String = secrets
        .iter()
        .map(|(file, manifest)| {
            block.replace("${f}", file).replace(
                "${jsonencode(m)}",
                &serde_json::Value::from(*manifest).to_string(),
            )
        })
        .collect();
    text.replace_range(start..end + close.len(), &repeated);
    for (name, value) in values {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    assert!(!text.contains("${"), "unrendered variable left:\n{text}");
    text.replace("$${", "${")
}

/// `tool`'s path on PATH.
pub fn which(tool: &str) -> std::path::PathBuf {
    require(tool, tool);
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap()
}
