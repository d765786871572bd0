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
    pub dir: PathBuf,
    pub deb: PathBuf,
    pub binary: PathBuf,
    pub version: String,
}

/// `packaging/build` into `target/package-out`, once per test process.
pub fn artifacts() -> &'static Artifacts {
    static BUILT: OnceLock<Artifacts> = OnceLock::new();
    BUILT.get_or_init(|| {
        require("dpkg-deb", "dpkg");
        let dir = root().join("target/package-out");
        run(Command::new(root().join("packaging/build")).arg(&dir));
        let version = env!("CARGO_PKG_VERSION").to_string();
        Artifacts {
            deb: dir.join(format!("catalyst-bootstrap_{version}_amd64.deb")),
            binary: dir.join(format!("catalyst-bootstrap-{version}-linux-amd64")),
            dir,
            version,
        }
    })
}

/// Renders cloud-init/catalyst-bootstrap.tftpl as OpenTofu's templatefile()
/// would for these values.
pub fn render_cloud_init(values: &[(&str, &str)]) -> String {
    let mut text =
        std::fs::read_to_string(root().join("cloud-init/catalyst-bootstrap.tftpl")).unwrap();
    for (name, value) in values {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    assert!(!text.contains("${"), "unrendered variable left:\n{text}");
    text.replace("$${", "${")
}
