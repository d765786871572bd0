//! Everything one agent run needs, on loopback and in a temporary
//! directory: both fakes, a notify socket, config, token and kubeconfig.
//! The agent is the real binary, run as a child process.

mod agent;
mod binary;
mod checks;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
pub use nix::sys::signal::Signal;
use tokio::process::Command;

use crate::apiserver::FakeApiServer;
use crate::catalyst::FakeCatalystApi;
use crate::http::PlainServer;
use crate::journal::FakeJournal;
use crate::notify::NotifyListener;
use crate::pki::Pki;

pub use self::agent::{Agent, Finished, assert_exit, is_private};
pub use self::binary::{
    agent_binary, agent_command, agent_runner, built_agent, is_stale, patience,
    skip_under_emulation, under_emulation,
};

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
