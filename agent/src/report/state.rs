//! Progress on disk, so a restart resumes instead of redoing: `state.json`
//! (atomically replaced, never holding secret material) and the `done` stamp.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::exit::Exit;
use crate::memory::untrusted::Untrusted;

const VERSION: u32 = 1;
pub(crate) const STATE_FILE: &str = "state.json";
pub(crate) const DONE_STAMP: &str = "done";
const LOCK_FILE: &str = "lock";
/// state.json is a few hundred bytes; a file far larger is not ours.
const MAX_STATE: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Outcome {
    Pending,
    Running,
    Done,
    Failed,
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PhaseRecord {
    pub(crate) outcome: Outcome,
    pub(crate) attempts: u32,
    pub(crate) started_at: Option<String>,
    pub(crate) finished_at: Option<String>,
    /// What happened, in words: "delivered", "kept existing seed", the last error.
    pub(crate) detail: Option<String>,
}

impl Default for PhaseRecord {
    fn default() -> Self {
        PhaseRecord {
            outcome: Outcome::Pending,
            attempts: 0,
            started_at: None,
            finished_at: None,
            detail: None,
        }
    }
}

/// A bootstrap Secret this node applied: its file and `namespace/name`.
/// Never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Applied {
    pub(crate) file: String,
    pub(crate) secret: String,
    /// The file was overwritten and removed.
    pub(crate) removed: bool,
}

/// An object of the hand-off this node applied: its file, type and
/// `Kind namespace/name`. Never its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Handed {
    pub(crate) file: String,
    pub(crate) api_version: String,
    pub(crate) object: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Wait,
    Kubeconfig,
    Seed,
    Secrets,
    Manifests,
}

impl Phase {
    pub(crate) const ALL: [Phase; 5] = [
        Phase::Wait,
        Phase::Kubeconfig,
        Phase::Seed,
        Phase::Secrets,
        Phase::Manifests,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Phase::Wait => "wait",
            Phase::Kubeconfig => "kubeconfig",
            Phase::Seed => "seed",
            Phase::Secrets => "secrets",
            Phase::Manifests => "manifests",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// Unknown fields are ignored, so files of earlier versions load: those of
/// 0.1 carry a `lease` record (HA coordination was removed in 0.2), dropped
/// at the next write.
pub(crate) struct State {
    pub(crate) version: u32,
    pub(crate) deployment_id: String,
    pub(crate) wait: PhaseRecord,
    pub(crate) kubeconfig: PhaseRecord,
    pub(crate) seed: PhaseRecord,
    /// Absent from files written before bootstrap Secrets existed.
    #[serde(default)]
    pub(crate) secrets: PhaseRecord,
    /// The bootstrap Secrets applied so far, in the order they were.
    #[serde(default)]
    pub(crate) applied: Vec<Applied>,
    /// Absent from files written before the hand-off existed.
    #[serde(default)]
    pub(crate) manifests: PhaseRecord,
    /// The hand-off's objects applied so far, in the order they were.
    #[serde(default)]
    pub(crate) handed: Vec<Handed>,
}

impl State {
    fn new(deployment_id: &str) -> Self {
        State {
            version: VERSION,
            deployment_id: deployment_id.to_string(),
            wait: PhaseRecord::default(),
            kubeconfig: PhaseRecord::default(),
            seed: PhaseRecord::default(),
            secrets: PhaseRecord::default(),
            applied: Vec::new(),
            manifests: PhaseRecord::default(),
            handed: Vec::new(),
        }
    }

    pub(crate) fn phase(&self, phase: Phase) -> &PhaseRecord {
        match phase {
            Phase::Wait => &self.wait,
            Phase::Kubeconfig => &self.kubeconfig,
            Phase::Seed => &self.seed,
            Phase::Secrets => &self.secrets,
            Phase::Manifests => &self.manifests,
        }
    }

    fn phase_mut(&mut self, phase: Phase) -> &mut PhaseRecord {
        match phase {
            Phase::Wait => &mut self.wait,
            Phase::Kubeconfig => &mut self.kubeconfig,
            Phase::Seed => &mut self.seed,
            Phase::Secrets => &mut self.secrets,
            Phase::Manifests => &mut self.manifests,
        }
    }

    /// Reads the state file for `status`; `None` when no run has written one.
    pub(crate) fn read(dir: &Path) -> anyhow::Result<Option<State>> {
        let path = dir.join(STATE_FILE);
        let bytes = match crate::config::file::read(&path, MAX_STATE) {
            Ok((bytes, _)) => bytes,
            Err(crate::config::file::FileError::Missing) => return Ok(None),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("reading {}", path.display()))
                    .context(Exit::State);
            }
        };
        let text = String::from_utf8_lossy(&bytes);
        // The version first: a newer file may not have our shape at all.
        let version = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("version")?.as_u64())
            .unwrap_or(0);
        if version > u64::from(VERSION) {
            return Err(anyhow::anyhow!(
                "{} was written by a newer catalyst-bootstrap (state version {}, this one knows {VERSION}); \
                 run the newer binary, or move the file aside to start over",
                path.display(),
                version
            ))
            .context(Exit::Data);
        }
        // serde's message may quote the file, which is shown like outside text.
        let state: State = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a valid state file: {}",
                path.display(),
                Untrusted::new(e.to_string()).shown()
            )
        })?;
        Ok(Some(state))
    }
}

/// Now, to the millisecond and in the log lines' format, so `status` and
/// the log agree (`2026-11-22T05:14:02.711Z`).
pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

pub(crate) fn is_done(dir: &Path) -> bool {
    dir.join(DONE_STAMP).exists()
}

/// The state directory of a running job: holds the lock for its lifetime and
/// writes every change through to disk before returning.
pub(crate) struct Store {
    dir: PathBuf,
    state: Mutex<State>,
    _lock: Flock<File>,
}

impl Store {
    pub(crate) fn open(dir: &Path, deployment_id: &str) -> anyhow::Result<Store> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating state directory {}", dir.display()))
            .context(Exit::State)?;
        let lock = take_lock(dir)?;
        let state = match State::read(dir) {
            Ok(Some(state)) => state,
            Ok(None) => State::new(deployment_id),
            Err(e) if matches!(Exit::of(&e), Exit::Data | Exit::State) => return Err(e),
            Err(e) => {
                // Both operations are safe to repeat (create never overwrites a seed;
                // catalyst-api answers `already-set` to a repeated PUT), so a damaged
                // file is set aside for forensics and the job starts over.
                let aside = dir.join(format!("{STATE_FILE}.corrupt"));
                std::fs::rename(dir.join(STATE_FILE), &aside)
                    .with_context(|| {
                        format!("moving damaged state file aside to {}", aside.display())
                    })
                    .context(Exit::State)?;
                tracing::warn!("{e:#}; moved it to {} and starting over", aside.display());
                State::new(deployment_id)
            }
        };
        if state.deployment_id != deployment_id {
            return Err(anyhow::anyhow!(
                "{} belongs to deployment {} but the configuration says {deployment_id}; \
                 if this node was re-provisioned, remove {} and start again",
                dir.join(STATE_FILE).display(),
                Untrusted::new(state.deployment_id.as_str()).shown(),
                dir.display()
            ))
            .context(Exit::Data);
        }
        let store = Store {
            dir: dir.to_path_buf(),
            state: Mutex::new(state),
            _lock: lock,
        };
        store.update(|_| {})?;
        Ok(store)
    }

    pub(crate) fn snapshot(&self) -> State {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes one phase's record and persists the whole state.
    pub(crate) fn phase(
        &self,
        phase: Phase,
        change: impl FnOnce(&mut PhaseRecord),
    ) -> anyhow::Result<()> {
        self.update(|s| change(s.phase_mut(phase)))
    }

    /// Changes one phase's record in memory only; the next write persists
    /// it. For what changes on every poll of a wait.
    pub(crate) fn phase_unsaved(&self, phase: Phase, change: impl FnOnce(&mut PhaseRecord)) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        change(state.phase_mut(phase));
    }

    fn update(&self, change: impl FnOnce(&mut State)) -> anyhow::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut state);
        let mut json = serde_json::to_vec_pretty(&*state).expect("state serializes");
        json.push(b'\n');
        write_atomically(&self.dir, STATE_FILE, &json).context(Exit::State)
    }

    /// Records that the Secret from `file` is applied (before its file goes).
    pub(crate) fn applied(&self, file: &str, secret: &str) -> anyhow::Result<()> {
        self.update(|s| {
            s.applied.retain(|a| a.file != file);
            s.applied.push(Applied {
                file: file.to_string(),
                secret: secret.to_string(),
                removed: false,
            });
        })
    }

    /// Records that an object of the hand-off is applied.
    pub(crate) fn handed(&self, handed: Handed) -> anyhow::Result<()> {
        self.update(|s| {
            if !s.handed.contains(&handed) {
                s.handed.push(handed);
            }
        })
    }

    /// Records that `file` is overwritten and removed.
    pub(crate) fn removed(&self, file: &str) -> anyhow::Result<()> {
        self.update(|s| {
            for a in s.applied.iter_mut().filter(|a| a.file == file) {
                a.removed = true;
            }
        })
    }

    /// Marks phases that were running as interrupted (on SIGTERM/SIGINT).
    pub(crate) fn interrupt_running(&self) -> anyhow::Result<()> {
        self.update(|s| {
            for phase in Phase::ALL {
                let r = s.phase_mut(phase);
                if r.outcome == Outcome::Running {
                    r.outcome = Outcome::Interrupted;
                    r.finished_at = Some(now());
                }
            }
        })
    }

    pub(crate) fn mark_done(&self) -> anyhow::Result<()> {
        write_atomically(&self.dir, DONE_STAMP, format!("{}\n", now()).as_bytes())
            .context(Exit::State)
    }
}

fn take_lock(dir: &Path) -> anyhow::Result<Flock<File>> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening lock file {}", path.display()))
        .context(Exit::State)?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, _)) => {
            let mut holder = String::new();
            let _ = (&mut file).take(32).read_to_string(&mut holder);
            return Err(anyhow::anyhow!(
                "another catalyst-bootstrap (pid {}) is already working in {}; not starting a second one",
                Untrusted::new(holder).shown(),
                dir.display()
            ))
            .context(Exit::Interrupted);
        }
    };
    lock.set_len(0)
        .and_then(|_| writeln!(lock, "{}", std::process::id()))
        .with_context(|| format!("writing lock file {}", path.display()))
        .context(Exit::State)?;
    Ok(lock)
}

/// Temp file, fsync, rename, fsync of the directory: a crash leaves either
/// the old or the new file, never a torn one.
fn write_atomically(dir: &Path, name: &str, content: &[u8]) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let target = dir.join(name);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef";

    #[test]
    fn changes_persist_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), ID).unwrap();
            store
                .phase(Phase::Seed, |r| {
                    r.outcome = Outcome::Done;
                    r.detail = Some("written".into());
                })
                .unwrap();
        }
        let state = State::read(dir.path()).unwrap().unwrap();
        assert_eq!(state.seed.outcome, Outcome::Done);
        assert_eq!(state.kubeconfig.outcome, Outcome::Pending);
        let reopened = Store::open(dir.path(), ID).unwrap();
        assert_eq!(reopened.snapshot().seed.detail.as_deref(), Some("written"));
        assert!(!dir.path().join(".state.json.tmp").exists());
    }

    #[test]
    fn a_state_file_with_a_lease_record_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let record = |outcome: &str, detail: &str| {
            format!(
                r#"{{"outcome": "{outcome}", "attempts": 1, "started_at": "2026-11-22T05:16:12Z",
                    "finished_at": "2026-11-22T05:16:12Z", "detail": "{detail}"}}"#
            )
        };
        std::fs::write(
            dir.path().join(STATE_FILE),
            format!(
                r#"{{"version": 1, "deployment_id": "{ID}", "wait": {}, "lease": {},
                    "kubeconfig": {}, "seed": {}}}"#,
                record("done", "API server at https://127.0.0.1:6443 is ready"),
                record(
                    "done",
                    "node cp-1 holds Lease kube-system/catalyst-bootstrap"
                ),
                record("done", "delivered"),
                record("running", "writing Secret openbao/openbao-recovery-seed"),
            ),
        )
        .unwrap();
        let store = Store::open(dir.path(), ID).unwrap();
        let state = store.snapshot();
        assert_eq!(state.kubeconfig.outcome, Outcome::Done);
        assert_eq!(state.kubeconfig.detail.as_deref(), Some("delivered"));
        assert_eq!(state.seed.outcome, Outcome::Running);
        assert_eq!(state.secrets.outcome, Outcome::Pending);
        assert!(!dir.path().join("state.json.corrupt").exists());
        // Rewritten on open, without the record.
        let text = std::fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
        assert!(!text.contains("lease"), "{text}");
    }

    #[test]
    fn second_store_on_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path(), ID).unwrap();
        let err = Store::open(dir.path(), ID)
            .err()
            .expect("second open must fail");
        assert_eq!(Exit::of(&err), Exit::Interrupted);
        assert!(format!("{err:#}").contains(&format!("pid {}", std::process::id())));
    }

    #[test]
    fn corrupt_state_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "{not json").unwrap();
        let store = Store::open(dir.path(), ID).unwrap();
        assert_eq!(store.snapshot().seed.outcome, Outcome::Pending);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("state.json.corrupt")).unwrap(),
            "{not json"
        );
    }

    #[test]
    fn future_version_and_other_deployment_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = State::new(ID);
        state.version = VERSION + 1;
        std::fs::write(
            dir.path().join(STATE_FILE),
            serde_json::to_vec(&state).unwrap(),
        )
        .unwrap();
        let err = Store::open(dir.path(), ID).err().unwrap();
        assert_eq!(Exit::of(&err), Exit::Data);
        assert!(format!("{err:#}").contains("newer catalyst-bootstrap"));
        // A newer file need not have this version's shape to be recognised.
        std::fs::write(
            dir.path().join(STATE_FILE),
            r#"{"version": 9, "phases": []}"#,
        )
        .unwrap();
        let err = Store::open(dir.path(), ID).err().unwrap();
        assert!(format!("{err:#}").contains("newer catalyst-bootstrap"));
        assert!(dir.path().join(STATE_FILE).exists(), "left as it was");

        state.version = VERSION;
        std::fs::write(
            dir.path().join(STATE_FILE),
            serde_json::to_vec(&state).unwrap(),
        )
        .unwrap();
        let err = Store::open(dir.path(), "fedcba9876543210").err().unwrap();
        assert!(format!("{err:#}").contains("belongs to deployment 0123456789abcdef"));
    }
}
