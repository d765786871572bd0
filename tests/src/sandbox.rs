//! Everything one agent run needs, on loopback and in a temporary
//! directory: both fakes, a notify socket, config, token and kubeconfig.
//! The agent is the real binary, run as a child process.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
pub use nix::sys::signal::Signal;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::apiserver::FakeApiServer;
use crate::catalyst::FakeCatalystApi;
use crate::http::PlainServer;
use crate::journal::FakeJournal;
use crate::notify::NotifyListener;
use crate::pki::Pki;

pub const DEPLOYMENT_ID: &str = "0f1e2d3c4b5a6978";
/// TEST-NET-3 (RFC 5737): written into the kubeconfig, never contacted. It
/// is no address of this machine, so the preflight checks the certificate
/// on loopback.
pub const PUBLIC_ADDRESS: &str = "203.0.113.10";
/// The sovereign FQDN, the name k3s always has in `--tls-san`. Never
/// resolved: it is only ever a TLS name.
pub const SOVEREIGN_FQDN: &str = "api.sovereign.test";
/// The names in the API server's certificate unless a test says otherwise.
pub const CERT_NAMES: &[&str] = &["localhost", "127.0.0.1", "::1", PUBLIC_ADDRESS];

/// The settings the sandbox shortens so a run takes a second: (key, the
/// sandbox's value, the production default). `write_config` writes these and
/// the sandbox's banner lists them.
pub const TUNED: &[(&str, &str, &str)] = &[
    ("deadline", "60s", "30m"),
    ("retry.initial_delay", "50ms", "1s"),
    ("retry.max_delay", "400ms", "60s"),
    ("retry.overloaded_delay", "50ms", "10s"),
];

/// The agent binary of this workspace's build.
pub fn agent_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("CATALYST_BOOTSTRAP_BIN") {
        return PathBuf::from(path);
    }
    let bin = built_agent();
    assert!(
        !is_stale(&bin),
        "{} is missing or older than agent/src; run `cargo test --workspace` (or `cargo build -p catalyst-bootstrap`), \
         which builds it, rather than testing a stale binary",
        bin.display()
    );
    bin
}

/// Where cargo puts the agent for the profile of the running program:
/// target/<profile>/deps/<test> or target/<profile>/<bin>.
pub fn built_agent() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("catalyst-bootstrap")
}

/// `bin` is missing or older than the agent's sources.
pub fn is_stale(bin: &Path) -> bool {
    let built = std::fs::metadata(bin).and_then(|m| m.modified()).ok();
    let agent = crate::ship::root().join("agent");
    let manifest = std::fs::metadata(agent.join("Cargo.toml"))
        .and_then(|m| m.modified())
        .ok();
    let sources = newest_change(&agent.join("src")).max(manifest);
    built.is_none_or(|b| sources.is_some_and(|s| b < s))
}

/// The command that runs the agent before its arguments: the runner prefix
/// from `CATALYST_BOOTSTRAP_RUNNER` (split on whitespace; for example
/// `qemu-aarch64-static` to run an arm64 `CATALYST_BOOTSTRAP_BIN` on
/// x86_64), then the agent binary. With qemu-user the process started is
/// the emulator running the agent: it has the agent's PID, and signals sent
/// to it reach the agent.
pub fn agent_command() -> std::process::Command {
    let runner = agent_runner();
    let mut cmd = match runner.split_first() {
        Some((program, args)) => {
            let mut cmd = std::process::Command::new(program);
            cmd.args(args).arg(agent_binary());
            cmd
        }
        None => std::process::Command::new(agent_binary()),
    };
    cmd.stdin(Stdio::null());
    cmd
}

/// `CATALYST_BOOTSTRAP_RUNNER`, split on whitespace; empty when unset.
pub fn agent_runner() -> Vec<String> {
    std::env::var("CATALYST_BOOTSTRAP_RUNNER")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// True when the agent runs through a runner (an emulator): it starts
/// slower and some of what a test observes from outside is the emulator's.
pub fn under_emulation() -> bool {
    !agent_runner().is_empty()
}

/// How long a wait that is not itself the assertion should allow: `base`
/// natively, four times that under emulation (qemu-user starts the agent
/// in hundreds of milliseconds and runs it several times slower).
pub fn patience(base: Duration) -> Duration {
    if under_emulation() { base * 4 } else { base }
}

/// For a test that cannot hold under emulation: prints that `test` is
/// skipped and why (so the run shows it, never a silent pass) and returns
/// true; natively returns false and the test runs.
pub fn skip_under_emulation(test: &str, reason: &str) -> bool {
    if !under_emulation() {
        return false;
    }
    let line = format!(
        "SKIPPED under CATALYST_BOOTSTRAP_RUNNER={:?}: {test}: {reason}",
        agent_runner().join(" ")
    );
    println!("{line}");
    eprintln!("{line}");
    true
}

/// The newest modification time of any file under `dir`.
fn newest_change(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            newest_change(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(time);
    }
    newest
}

fn tuned(key: &str) -> &'static str {
    TUNED.iter().find(|t| t.0 == key).expect("a tuned key").1
}

/// A fresh random token in the contract's format.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub pki: Arc<Pki>,
    pub api: FakeApiServer,
    pub catalyst: FakeCatalystApi,
    pub notify: NotifyListener,
    pub journal: FakeJournal,
    pub token: String,
    /// Answers 204 to anything, and must never be asked: the proxy the
    /// environment names where the agent must not use one.
    pub trap: PlainServer,
    /// More environment for the agent.
    env: Mutex<Vec<(String, String)>>,
    /// Values of bootstrap Secrets handed to the agent, which
    /// [`Sandbox::assert_no_leaks`] looks for too.
    values: Mutex<Vec<String>>,
}

/// Values in [`Sandbox::write_upstream_secrets`]'s manifests.
pub const GHCR_TOKEN: &str = "ghp_registryPullToken0123456789abcdefABCDEF";
pub const S3_SECRET: &str = "s3SecretAccessKey0123456789abcdefghijklmnop";
pub const HCLOUD_TOKEN: &str = "hcloudApiToken0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN";

/// How the sandbox starts.
#[derive(Clone, Copy)]
pub struct Start {
    pub api_up: bool,
    pub api_ready: bool,
    pub kubeconfig: bool,
    /// The DNS names and IPs the API server's certificate is valid for.
    pub cert_names: &'static [&'static str],
    /// catalyst-api over plain HTTP on loopback (allowed there).
    pub catalyst_plain: bool,
}

impl Start {
    pub const DEFAULT: Start = Start {
        api_up: true,
        api_ready: true,
        kubeconfig: true,
        cert_names: CERT_NAMES,
        catalyst_plain: false,
    };
}

impl Default for Start {
    fn default() -> Self {
        Start::DEFAULT
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::with(Start::default())
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox::default()
    }

    /// Must be called inside a Tokio runtime (the fakes are tasks on it).
    pub fn with(start: Start) -> Sandbox {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::Builder::new()
            .prefix("catalyst-sandbox-")
            .tempdir()
            .unwrap();
        let pki = Arc::new(Pki::new(start.cert_names));
        let token = new_token();
        let api = FakeApiServer::start(pki.clone(), start.api_up, start.api_ready);
        let catalyst = if start.catalyst_plain {
            FakeCatalystApi::start_plain(DEPLOYMENT_ID, &token)
        } else {
            FakeCatalystApi::start(&pki, DEPLOYMENT_ID, &token)
        };
        let notify = NotifyListener::bind(&dir.path().join("notify.sock"));
        let journal = FakeJournal::start(&dir.path().join("run-systemd"));
        let sandbox = Sandbox {
            dir,
            pki,
            api,
            catalyst,
            notify,
            journal,
            token,
            trap: PlainServer::start(vec![(204, Vec::new())]),
            env: Mutex::new(Vec::new()),
            values: Mutex::new(Vec::new()),
        };
        std::fs::write(sandbox.path("ca.pem"), &sandbox.pki.ca_pem).unwrap();
        sandbox.write_secret_file("bearer", &format!("{}\n", sandbox.token));
        sandbox.write_config("");
        if start.kubeconfig {
            sandbox.write_kubeconfig();
        }
        sandbox
    }

    /// Sets `key=value` in the environment of every later agent run.
    pub fn set_env(&self, key: &str, value: &str) {
        self.env
            .lock()
            .unwrap()
            .push((key.to_string(), value.to_string()));
    }

    /// Puts a FIFO where `path` was: opening it for reading blocks until a
    /// writer comes, which none does.
    pub fn put_fifo(&self, path: &Path) {
        let _ = std::fs::remove_file(path);
        nix::unistd::mkfifo(
            path,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .expect("mkfifo");
    }

    /// Puts a character device that reads as endless zeros (1:5, like
    /// /dev/zero) where `path` was. Root only.
    pub fn put_zero_device(&self, path: &Path) {
        use nix::sys::stat::{Mode, SFlag, makedev, mknod};
        crate::ship::require_root();
        let _ = std::fs::remove_file(path);
        mknod(
            path,
            SFlag::S_IFCHR,
            Mode::S_IRUSR | Mode::S_IWUSR,
            makedev(1, 5),
        )
        .expect("mknod");
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("config.yaml")
    }

    pub fn kubeconfig_path(&self) -> PathBuf {
        self.path("k3s.yaml")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    pub fn token_path(&self) -> PathBuf {
        self.path("bearer")
    }

    /// Writes `content` readable by the owner only.
    pub fn write_secret_file(&self, name: &str, content: &str) {
        let path = self.path(name);
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// The agent's `secrets_dir`.
    pub fn secrets_dir(&self) -> PathBuf {
        self.path("secrets.d")
    }

    /// The agent's `manifests.dir` (the hand-off).
    pub fn manifests_dir(&self) -> PathBuf {
        self.path("manifests.d")
    }

    /// Writes a hand-off file into `manifests.dir`, as cloud-init's
    /// `write_files` would (root's, mode 0644).
    pub fn write_handoff(&self, file: &str, text: &str) {
        let dir = self.manifests_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// Writes a bootstrap Secret manifest `file` into `secrets_dir` with
    /// mode 0600; `values` are the secret values in it, for
    /// [`Sandbox::assert_no_leaks`].
    pub fn write_manifest(&self, file: &str, manifest: &str, values: &[&str]) {
        self.write_manifest_in(&self.secrets_dir(), file, manifest, values);
    }

    /// The same, into `dir`.
    pub fn write_manifest_in(&self, dir: &Path, file: &str, manifest: &str, values: &[&str]) {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(file);
        std::fs::write(&path, manifest).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        self.values
            .lock()
            .unwrap()
            .extend(values.iter().map(|v| v.to_string()));
    }

    /// The three Secrets the OpenOva control-plane cloud-init applied with
    /// `kubectl apply`, as manifests in `secrets_dir`.
    pub fn write_upstream_secrets(&self) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let auth = b64.encode(format!("openova-bot:{GHCR_TOKEN}"));
        let dockerconfig = format!(
            r#"{{"auths":{{"ghcr.io":{{"username":"openova-bot","password":"{GHCR_TOKEN}","auth":"{auth}"}}}}}}"#
        );
        self.write_manifest(
            "ghcr-pull.yaml",
            &format!(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: ghcr-pull\n  namespace: flux-system\n\
                 type: kubernetes.io/dockerconfigjson\ndata:\n  .dockerconfigjson: {}\n",
                b64.encode(&dockerconfig)
            ),
            &[GHCR_TOKEN, &auth],
        );
        self.write_manifest(
            "object-storage.yaml",
            &format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: object-storage, namespace: flux-system}}\n\
                 stringData:\n  endpoint: https://fsn1.your-objectstorage.com\n  bucket: sovereign-0f1e\n\
                 \x20 access-key: ACCESSKEY0123456789\n  secret-key: {S3_SECRET}\n"
            ),
            &[S3_SECRET],
        );
        self.write_manifest(
            "cloud-credentials.yaml",
            &format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: cloud-credentials, namespace: flux-system, \
                 labels: {{app.kubernetes.io/part-of: catalyst}}}}\nstringData: {{hcloud-token: {HCLOUD_TOKEN}}}\n"
            ),
            &[HCLOUD_TOKEN],
        );
    }

    /// The value of `key` in Secret `flux-system/<name>`, decoded.
    pub fn bootstrap_value(&self, name: &str, key: &str) -> Option<String> {
        use base64::Engine;
        let secret = self
            .api
            .object(&format!("/api/v1/namespaces/flux-system/secrets/{name}"))?;
        let wire = secret["data"][key].as_str()?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(wire)
            .ok()?;
        String::from_utf8(raw).ok()
    }

    /// The files left in `secrets_dir`.
    pub fn manifests_left(&self) -> Vec<String> {
        let mut left: Vec<String> = std::fs::read_dir(self.secrets_dir())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        left.sort();
        left
    }

    /// After [`Sandbox::write_upstream_secrets`] and a successful run: each
    /// Secret holds its file's values, and no file is left.
    pub fn assert_upstream_secrets(&self) {
        let got = (
            self.bootstrap_value("ghcr-pull", ".dockerconfigjson")
                .is_some_and(|v| v.contains(GHCR_TOKEN)),
            self.bootstrap_value("object-storage", "secret-key"),
            self.bootstrap_value("cloud-credentials", "hcloud-token"),
        );
        assert_eq!(
            got,
            (true, Some(S3_SECRET.into()), Some(HCLOUD_TOKEN.into())),
            "the Secrets do not hold the files' values"
        );
        assert!(
            self.manifests_left().is_empty(),
            "files left in secrets_dir: {:?}",
            self.manifests_left()
        );
    }

    /// Whether bootstrap Secret manifests were handed to the agent.
    pub fn has_manifests(&self) -> bool {
        !self.values.lock().unwrap().is_empty()
    }

    pub fn write_kubeconfig(&self) {
        self.write_secret_file("k3s.yaml", &self.api.kubeconfig());
    }

    /// The base configuration, plus `extra` YAML in the drop-in
    /// `config.d/50-test.yaml` (later drop-ins win over the main file).
    pub fn write_config(&self, extra: &str) {
        let drop_ins = self.path("config.d");
        std::fs::create_dir_all(&drop_ins).unwrap();
        std::fs::write(drop_ins.join("50-test.yaml"), extra).unwrap();
        let config = format!(
            "deployment_id: \"{DEPLOYMENT_ID}\"
catalyst_api_url: {url}
public_address: {PUBLIC_ADDRESS}
kubeconfig: {kubeconfig}
token_file: {token}
ca_bundle: {ca}
state_dir: {state}
secrets_dir: {secrets}
manifests:
  dir: {manifests}
deadline: {deadline}
retry:
  initial_delay: {initial}
  max_delay: {max}
  overloaded_delay: {overloaded}
",
            deadline = tuned("deadline"),
            initial = tuned("retry.initial_delay"),
            max = tuned("retry.max_delay"),
            overloaded = tuned("retry.overloaded_delay"),
            url = self.catalyst.url(),
            kubeconfig = self.kubeconfig_path().display(),
            token = self.token_path().display(),
            ca = self.path("ca.pem").display(),
            state = self.state_dir().display(),
            secrets = self.secrets_dir().display(),
            manifests = self.manifests_dir().display(),
        );
        std::fs::write(self.config_path(), config).unwrap();
    }

    /// The agent's command line against this sandbox, with a clean
    /// environment (no proxy, no credentials directory, no journal).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::from(self.std_command(args));
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// The same, for callers that reap the process themselves (the
    /// benchmark, which needs its rusage).
    pub fn std_command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = agent_command();
        cmd.arg("--config").arg(self.config_path()).args(args);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NOTIFY_SOCKET", self.notify.path())
            .envs(self.env.lock().unwrap().iter().cloned())
            .stdin(Stdio::null());
        cmd
    }

    pub fn spawn(&self, args: &[&str]) -> Agent {
        Agent::spawn(self.command(args))
    }

    /// The agent as a systemd unit runs it: stderr is a journal stream
    /// (`JOURNAL_STREAM` names it, systemd.exec(5)), so it logs natively to
    /// `/run/systemd/journal/socket`, which in its private mount namespace
    /// is this sandbox's journal. `binds` mounts more files over the
    /// machine's (source, target). Root only. The agent's `stderr()` is then
    /// what it wrote there plus its journal entries, one line each.
    pub fn spawn_journaled(&self, args: &[&str], binds: &[(&Path, &str)]) -> Agent {
        crate::ship::require_root();
        std::fs::create_dir_all("/run/systemd").expect("creating /run/systemd");
        let agent = self.std_command(args);
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-ec"])
            .arg(
                "mount --bind \"$0\" /run/systemd
                 while [ \"$1\" != -- ]; do mount --bind \"$1\" \"$2\"; shift 2; done
                 shift
                 JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2)
                 export JOURNAL_STREAM
                 exec \"$@\"",
            )
            .arg(self.journal.dir());
        for (source, target) in binds {
            cmd.arg(source).arg(target);
        }
        cmd.arg("--")
            .arg(agent.get_program())
            .args(agent.get_args())
            .env_clear();
        for (key, value) in agent.get_envs() {
            if let Some(value) = value {
                cmd.env(key, value);
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut agent = Agent::spawn(cmd);
        agent.journal = Some(self.journal.clone());
        agent
    }

    /// The agent as control-plane node `node`, with a state directory and
    /// a `secrets_dir` ([`Sandbox::node_secrets_dir`]) of its own.
    pub fn spawn_node(&self, node: &str) -> Agent {
        let dir = self.path(&format!("state-{node}"));
        self.spawn(&[
            "--node-name",
            node,
            "--state-dir",
            dir.to_str().unwrap(),
            "--secrets-dir",
            self.node_secrets_dir(node).to_str().unwrap(),
            "run",
        ])
    }

    pub fn node_secrets_dir(&self, node: &str) -> PathBuf {
        self.path(&format!("secrets-{node}"))
    }

    /// Runs `catalyst-bootstrap run` to the end.
    pub async fn run(&self) -> Finished {
        self.spawn(&["run"]).finish().await
    }

    /// The seed Secret as stored by the fake API server.
    pub fn seed_secret(&self) -> Option<serde_json::Value> {
        self.api
            .object("/api/v1/namespaces/openbao/secrets/openbao-recovery-seed")
    }

    /// No secret (bearer token, seed in any encoding, client key) appears in
    /// `outputs`, the sd_notify messages, the journal or any file of the
    /// state directory: not as written, and not after every character
    /// outside the secret's own alphabet is removed (an echo with something
    /// put between its characters). And nothing there carries ESC or BEL
    /// (terminal control for the SRE who reads it).
    pub fn assert_no_leaks(&self, outputs: &[&str]) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut secrets = vec![("bearer token", self.token.clone())];
        if let Some(wire) = self
            .seed_secret()
            .and_then(|s| s["data"]["recovery-seed"].as_str().map(str::to_string))
        {
            // A test may have put any value there; the forms that decode count.
            let text = b64
                .decode(&wire)
                .ok()
                .and_then(|t| String::from_utf8(t).ok());
            if let Some(text) = text {
                if let Ok(raw) = b64.decode(&text) {
                    secrets.push(("seed (hex)", hex(&raw)));
                }
                secrets.push(("seed (base64)", text));
            }
            secrets.push(("seed (double base64)", wire));
        }
        let key_body: String = self
            .pki
            .client
            .key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        secrets.push(("client key", key_body));
        for value in self.values.lock().unwrap().iter() {
            secrets.push(("a bootstrap Secret's value", value.clone()));
            secrets.push(("a bootstrap Secret's value (base64)", b64.encode(value)));
        }
        secrets.push(("client key (base64)", b64.encode(&self.pki.client.key_pem)));

        let mut haystacks: Vec<(String, String)> = outputs
            .iter()
            .enumerate()
            .map(|(i, o)| (format!("output #{i}"), o.to_string()))
            .collect();
        haystacks.push((
            "sd_notify messages".into(),
            self.notify.messages().join("\n"),
        ));
        self.journal.sync();
        haystacks.push(("the journal".into(), self.journal.text(None)));
        if let Ok(entries) = std::fs::read_dir(self.state_dir()) {
            for entry in entries.flatten() {
                let content = std::fs::read(entry.path()).unwrap_or_default();
                haystacks.push((
                    entry.path().display().to_string(),
                    String::from_utf8_lossy(&content).into_owned(),
                ));
            }
        }
        for (place, text) in &haystacks {
            if let Some(at) = text.find(['\u{1b}', '\u{7}', '\u{9b}']) {
                let around: String = text[at.saturating_sub(80)..].chars().take(160).collect();
                panic!("ESC, BEL or CSI in {place}: …{around:?}…");
            }
            for (what, secret) in &secrets {
                let hex_secret = secret.bytes().all(|c| c.is_ascii_hexdigit());
                let keep = |c: char| {
                    if hex_secret {
                        c.is_ascii_hexdigit()
                    } else {
                        c.is_ascii_alphanumeric() || c == '+' || c == '/'
                    }
                };
                let stripped: String = text.chars().filter(|c| keep(*c)).collect();
                let stripped = if hex_secret {
                    stripped.to_ascii_lowercase()
                } else {
                    stripped
                };
                let pure: String = secret.chars().filter(|c| keep(*c)).collect();
                // Any 32 characters of it, at every 16th offset.
                let chars: Vec<char> = pure.chars().collect();
                for start in (0..chars.len().saturating_sub(32) + 1).step_by(16) {
                    let window: String =
                        chars[start..(start + 32).min(chars.len())].iter().collect();
                    assert!(!text.contains(&window), "{what} leaked into {place}");
                    assert!(
                        !stripped.contains(&window),
                        "{what} leaked into {place} (with other characters between its own)"
                    );
                }
            }
        }
    }

    /// Every sd_notify datagram from the `from`-th on (one run's) is the
    /// agent's own `KEY=value` lines; `READY=1` comes at most once, with
    /// the agent's own words: the critical work done, or the whole job.
    pub fn assert_notify_well_formed(&self, from: usize) {
        const KEYS: &[&str] = &["STATUS", "READY", "STOPPING", "EXTEND_TIMEOUT_USEC"];
        let messages = self.notify.messages().split_off(from);
        let mut ready = 0;
        for (i, message) in messages.iter().enumerate() {
            for line in message.lines() {
                let key = line.split_once('=').map(|(k, _)| k).unwrap_or(line);
                assert!(
                    KEYS.contains(&key),
                    "sd_notify datagram #{i} carries {line:?}, not a key of the agent's: {message:?}"
                );
                if line == "READY=1" {
                    ready += 1;
                    assert!(
                        message.contains(
                            "STATUS=kubeconfig, seed and bootstrap Secrets done; handing the cluster to Flux"
                        ) || message.contains("STATUS=Done"),
                        "READY=1 (datagram #{i}) without the agent's words for it: {message:?}"
                    );
                }
            }
        }
        assert!(ready <= 1, "READY=1 sent {ready} times");
    }

    /// Starts counting writes of `state.json` (creating the state directory).
    pub fn watch_state_writes(&self) -> StateWrites {
        std::fs::create_dir_all(self.state_dir()).unwrap();
        StateWrites::watch(&self.state_dir())
    }

    pub fn state(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state_dir().join("state.json"))
            .expect("state.json exists");
        serde_json::from_str(&text).expect("state.json parses")
    }
}

/// Counts the writes of `state.json` in a state directory with inotify:
/// every write renames a fsynced temporary file over it (`IN_MOVED_TO`).
pub struct StateWrites(Inotify);

impl StateWrites {
    fn watch(dir: &Path) -> StateWrites {
        let inotify =
            Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).expect("inotify_init");
        inotify
            // The creations of the temporary file keep the kernel from
            // coalescing consecutive identical IN_MOVED_TO events.
            .add_watch(dir, AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
            .expect("watching the state directory");
        StateWrites(inotify)
    }

    /// The writes since the last call (or since the watch began).
    pub fn take(&self) -> usize {
        let mut count = 0;
        loop {
            match self.0.read_events() {
                Ok(events) => {
                    assert!(
                        !events
                            .iter()
                            .any(|e| e.mask.contains(AddWatchFlags::IN_Q_OVERFLOW)),
                        "inotify queue overflowed"
                    );
                    count += events
                        .iter()
                        .filter(|e| {
                            e.mask.contains(AddWatchFlags::IN_MOVED_TO)
                                && e.name.as_deref() == Some(std::ffi::OsStr::new("state.json"))
                        })
                        .count();
                }
                Err(nix::errno::Errno::EAGAIN) => return count,
                Err(e) => panic!("reading inotify events: {e}"),
            }
        }
    }
}

/// A running agent whose stdout and stderr are collected as it goes.
pub struct Agent {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    /// Set for `spawn_journaled`: its entries count as stderr.
    journal: Option<FakeJournal>,
    /// The PID, kept for the journal after the process is reaped.
    pid: i32,
}

#[derive(Debug)]
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: String,
    /// With `spawn_journaled`, its journal entries too, one line each.
    pub stderr: String,
    /// How many entries it sent to the journal.
    pub journal_entries: usize,
}

fn collect(
    stream: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>,
    sink: Arc<Mutex<String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(mut stream) = stream else { return };
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
}

impl Agent {
    pub fn spawn(mut cmd: Command) -> Agent {
        let mut child = cmd.spawn().expect("spawning the agent");
        let pid = child.id().expect("a new child has a PID") as i32;
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.stdout.take(), stdout.clone()),
            collect(child.stderr.take(), stderr.clone()),
        ];
        Agent {
            child,
            stdout,
            stderr,
            readers,
            journal: None,
            pid,
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn stderr(&self) -> String {
        let mut text = self.stderr.lock().unwrap().clone();
        if let Some(journal) = &self.journal {
            text.push_str(&journal.text(Some(self.pid)));
        }
        text
    }

    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.pid()), signal).expect("signalling the agent");
    }

    /// Waits until `cond` holds for stderr, or panics after `timeout`.
    pub async fn wait_for_stderr(&self, timeout: Duration, cond: impl Fn(&str) -> bool) {
        let end = tokio::time::Instant::now() + timeout;
        while !cond(&self.stderr()) {
            assert!(
                tokio::time::Instant::now() < end,
                "timed out; stderr so far:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// True once the process has exited (it is not reaped twice: `finish` still works).
    pub fn try_finished(&self) -> bool {
        // kill(pid, 0) fails once the child is gone or a zombie is reaped; a
        // zombie still "exists", so look at its state instead.
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id().unwrap_or(0)))
            .map(|s| {
                s.split(") ")
                    .nth(1)
                    .is_some_and(|rest| rest.starts_with('Z'))
            })
            .unwrap_or(true)
    }

    /// Waits for the exit (at most two minutes) and returns what it printed.
    pub async fn finish(mut self) -> Finished {
        let status = tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .expect("agent did not exit within 120 s")
            .expect("waiting for the agent");
        for r in self.readers.drain(..) {
            let _ = r.await;
        }
        let journal_entries = self.journal.as_ref().map_or(0, |journal| {
            journal.sync();
            journal
                .entries()
                .iter()
                .filter(|e| e.pid == self.pid)
                .count()
        });
        Finished {
            code: status.code(),
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr(),
            journal_entries,
        }
    }
}

/// True when `path` exists and no one but the owner may read it.
pub fn is_private(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 == 0)
}

/// The run ended with `code`; says what it printed when not.
pub fn assert_exit(out: &Finished, code: i32) {
    assert_eq!(
        out.code,
        Some(code),
        "unexpected exit; stderr:\n{}",
        out.stderr
    );
}
