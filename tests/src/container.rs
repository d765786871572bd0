//! A Debian bookworm machine booted with systemd as PID 1 by
//! systemd-nspawn, sharing the host's network (so it reaches the fakes on
//! host loopback) and writing only to a tmpfs overlay.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::ship::{require, require_root, root, run};

/// The cached rootfs, built by tests/systemd/make-rootfs on first use
/// (once per process; the script also takes a lock against other processes).
pub fn rootfs() -> PathBuf {
    static READY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    READY
        .get_or_init(|| {
            let dir = std::env::var_os("CATALYST_TEST_ROOTFS")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from("/var/cache/catalyst-bootstrap-tests/bookworm-v3")
                });
            if !dir.join(".complete").exists() {
                require("debootstrap", "debootstrap");
                run(Command::new(root().join("tests/systemd/make-rootfs")).arg(&dir));
            }
            dir
        })
        .clone()
}

fn next_id() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub struct Container {
    nspawn: Child,
    leader: i32,
    log: PathBuf,
    _logdir: tempfile::TempDir,
    _cgroup: Cgroup,
}

/// A control group of the machine's own in each hierarchy systemd manages.
/// nspawn puts its payload in `<its own cgroup>/payload`: with the test
/// process at the root of a legacy `name=systemd` hierarchy, machines booted
/// at the same time all used `/payload`, so one machine's systemd removed
/// `system.slice/catalyst-bootstrap.service` while the other's was starting
/// a process in it (`status=219/CGROUP`).
struct Cgroup {
    dirs: Vec<PathBuf>,
}

impl Cgroup {
    fn new(name: &str) -> Cgroup {
        let base = Path::new("/sys/fs/cgroup");
        let roots: Vec<PathBuf> = if base.join("cgroup.procs").exists() {
            vec![base.to_path_buf()]
        } else {
            ["systemd", "unified"]
                .iter()
                .map(|h| base.join(h))
                .filter(|h| h.join("cgroup.procs").exists())
                .collect()
        };
        let dirs = roots
            .into_iter()
            .map(|root| {
                let dir = root.join(name);
                std::fs::create_dir(&dir)
                    .unwrap_or_else(|e| panic!("cannot create cgroup {}: {e}", dir.display()));
                dir
            })
            .collect();
        Cgroup { dirs }
    }

    /// `argv` started from inside this cgroup (sh moves itself, then execs).
    fn command(&self, argv: &[String]) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"while [ "$1" != -- ]; do echo $$ > "$1"; shift; done; shift; exec "$@""#)
            .arg("sh");
        for dir in &self.dirs {
            cmd.arg(dir.join("cgroup.procs"));
        }
        cmd.arg("--").args(argv);
        cmd
    }
}

impl Drop for Cgroup {
    /// Removes the machine's cgroups, children first, once its processes are gone.
    fn drop(&mut self) {
        fn remove(dir: &Path) {
            if let Ok(entries) = std::fs::read_dir(dir) {
                for entry in entries.flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        remove(&entry.path());
                    }
                }
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for dir in &self.dirs {
            remove(dir);
        }
    }
}

/// Runs one command inside the rootfs without booting it (no systemd as
/// PID 1), writing only to a tmpfs overlay; `binds` are (host path,
/// container path), read-only. Tools the tests need from Debian, such as
/// cloud-init's schema check, run here rather than being installed on the
/// host (installing cloud-init there enables its units for the host's next
/// boot).
pub fn run_in_rootfs(argv: &[&str], binds: &[(&Path, &str)]) -> Output {
    require_root();
    require("systemd-nspawn", "systemd-container");
    let mut cmd = Command::new("systemd-nspawn");
    cmd.args([
        "--quiet",
        "--register=no",
        "--keep-unit",
        "--volatile=overlay",
        "--pipe",
    ])
    .arg(format!(
        "--machine=catalyst-run-{}-{}",
        std::process::id(),
        next_id()
    ))
    .arg("--directory")
    .arg(rootfs());
    for (host, inside) in binds {
        cmd.arg(format!("--bind-ro={}:{inside}", host.display()));
    }
    cmd.arg("--").args(argv);
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run systemd-nspawn: {e}"))
}

impl Container {
    /// Boots the rootfs; `binds` are (host path, container path), read-only.
    pub fn boot(binds: &[(&Path, &str)]) -> Container {
        require_root();
        require("systemd-nspawn", "systemd-container");
        require("nsenter", "util-linux");
        let rootfs = rootfs();
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("nspawn.log");
        // nspawn names a machine after its directory and leaves state under
        // /run/systemd/nspawn/propagate/<name>: every boot gets its own name.
        let name = format!("catalyst-test-{}-{}", std::process::id(), next_id());
        let cgroup = Cgroup::new(&name);
        let mut argv: Vec<String> = [
            "systemd-nspawn",
            "--quiet",
            "--boot",
            "--register=no",
            "--keep-unit",
            "--volatile=overlay",
            "--console=pipe",
            // nspawn's own seccomp filter denies mlock(2) unless the
            // container keeps CAP_IPC_LOCK; a VM has no such filter. The unit
            // itself drops every capability and locks its pages under
            // LimitMEMLOCK=.
            "--capability=CAP_IPC_LOCK",
        ]
        .map(String::from)
        .to_vec();
        argv.push(format!("--machine={name}"));
        argv.push(format!("--directory={}", rootfs.display()));
        for (host, inside) in binds {
            argv.push(format!("--bind-ro={}:{inside}", host.display()));
        }
        let mut cmd = cgroup.command(&argv);
        let file = std::fs::File::create(&log).unwrap();
        let nspawn = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("systemd-nspawn could not be started");
        let mut container = Container {
            nspawn,
            leader: 0,
            log,
            _logdir: logdir,
            _cgroup: cgroup,
        };
        container.leader = container.find_leader();
        // Booted once the manager has finished start-up (degraded is fine:
        // some units of a cloud image do not apply to a container).
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let out = container.exec(&["systemctl", "is-system-running"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the container did not boot (state {state:?}); nspawn log:\n{}",
                container.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        container
    }

    /// The container's PID 1 as the host sees it: the child of nspawn that runs systemd.
    fn find_leader(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        let nspawn = self.nspawn.id() as i32;
        loop {
            if let Ok(Some(status)) = self.nspawn.try_wait() {
                panic!(
                    "systemd-nspawn exited ({status}); it cannot run here:\n{}",
                    self.log()
                );
            }
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
                    continue;
                };
                let ppid: i32 = rest
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if ppid == nspawn && comm.trim() == "systemd" {
                    return pid;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no systemd under nspawn; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `argv` inside the container (all its namespaces), with a clean environment.
    fn command(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.leader.to_string(), "-a", "--"])
            .args(argv)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
        cmd
    }

    /// Runs `argv` inside the container; its exit status is the caller's to judge.
    pub fn exec(&self, argv: &[&str]) -> Output {
        self.command(argv).output().expect("nsenter")
    }

    /// Runs a shell script inside; fails the test unless it exits 0.
    pub fn sh(&self, script: &str) -> String {
        String::from_utf8_lossy(&run(&mut self.command(&["sh", "-euc", script])).stdout)
            .into_owned()
    }

    /// Writes `content` to `path` inside the container with `mode`.
    pub fn write(&self, path: &str, content: &str, mode: &str) {
        let script = format!("mkdir -p \"$(dirname {path})\"; cat > {path}; chmod {mode} {path}");
        let mut child = self
            .command(&["sh", "-euc", &script])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), content.as_bytes()).unwrap();
        drop(child.stdin.take());
        assert!(
            child.wait().unwrap().success(),
            "writing {path} in the container failed"
        );
    }

    /// The machine's PID 1's control groups, as the host sees them.
    pub fn cgroups(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/cgroup", self.leader)).unwrap_or_default()
    }

    /// `systemctl show -p NAME --value UNIT`.
    pub fn show(&self, unit: &str, property: &str) -> String {
        self.sh(&format!("systemctl show -p {property} --value {unit}"))
            .trim()
            .to_string()
    }
}

impl Drop for Container {
    /// Killing nspawn alone would orphan the container's systemd and keep
    /// the machine alive (and block later boots): kill the container's PID 1,
    /// which ends its whole PID namespace, then reap nspawn.
    fn drop(&mut self) {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        if self.leader > 0 {
            let _ = kill(Pid::from_raw(self.leader), Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}
