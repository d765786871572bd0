//! The hand-off phase: the objects of `manifests.dir` applied in file-name
//! order, required files first, then `done_marker`, then the optional
//! files, which may wait `manifests.optional_wait` for their kinds.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use nix::fcntl::OFlag;
use tokio::time::Instant;

use super::Job;
use super::manifests::{File, Manifests};
use super::outcome::{HandedOff, HandedToFlux, KindAwaited, ObjectApplied, Skipped};
use super::secrets::FIELD_MANAGER;
use crate::exit::Exit;
use crate::peers::cluster::Cluster;
use crate::peers::discovery::{ApplyError, Discovery, ObjectRef};
use crate::peers::retry::RetryPolicy;
use crate::report::state::{Handed, Outcome, Phase, State};

/// Asking discovery whether a kind is served yet: a GET of one group
/// version, at most this often once the backoff has grown.
const KIND_POLL_MAX: Duration = Duration::from_secs(5);

impl Job<'_> {
    /// The hand-off, unless an earlier run finished it.
    pub(super) async fn handoff(
        &self,
        cluster: &Cluster,
        state: &State,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        if state.manifests.outcome == Outcome::Done {
            tracing::info!("the hand-off was finished by an earlier run; not applying it again");
            return Ok(());
        }
        self.phase(Phase::Manifests, self.hand_off(cluster, state, deadline))
            .await
            .map(drop)
    }

    async fn hand_off(
        &self,
        cluster: &Cluster,
        state: &State,
        deadline: Instant,
    ) -> anyhow::Result<HandedOff> {
        // Read again: upstream's `sed` may have rewritten a file since the
        // start (checked then, so only a change can fail here).
        let manifests = Manifests::load(&self.config.manifests_dir).map_err(|err| {
            if Exit::of(&err) == Exit::Data {
                err.context(
                    "a manifest file changed after the agent started and is no longer valid",
                )
                .context(Exit::Invalid)
            } else {
                err
            }
        })?;
        let discovery = Discovery::new(cluster);
        let mut out = HandedOff {
            dir: manifests.dir.clone(),
            applied: 0,
            earlier: 0,
            skipped: Vec::new(),
        };
        let (optional, required): (Vec<&File>, Vec<&File>) =
            manifests.files.iter().partition(|f| f.optional);
        for file in &required {
            let (applied, earlier) = self
                .apply_file(&discovery, &manifests.dir, file, state, deadline)
                .await?;
            out.applied += applied;
            out.earlier += earlier;
        }
        if let Some(marker) = &self.config.done_marker {
            write_marker(marker)?;
        }
        if !manifests.is_empty() || self.config.done_marker.is_some() {
            self.teller().tell(&HandedToFlux {
                marker: self.config.done_marker.as_deref(),
                optional: optional.len(),
            });
        }
        // One wait for all optional files, never past the job's deadline.
        let until = deadline.min(Instant::now() + self.config.optional_wait);
        for file in optional {
            match self
                .apply_file(&discovery, &manifests.dir, file, state, until)
                .await
            {
                Ok((applied, earlier)) => {
                    out.applied += applied;
                    out.earlier += earlier;
                }
                Err(err) => {
                    self.teller().tell(&Skipped {
                        file: &manifests.dir.join(&file.name),
                        why: format!("{err:#}"),
                    });
                    out.skipped.push(file.name.clone());
                }
            }
        }
        Ok(out)
    }

    /// Each object of `file` not applied by an earlier run: its kind waited
    /// for, then applied and recorded. The objects applied now, and those
    /// an earlier run applied.
    async fn apply_file(
        &self,
        discovery: &Discovery,
        dir: &Path,
        file: &File,
        state: &State,
        deadline: Instant,
    ) -> anyhow::Result<(usize, usize)> {
        let path = dir.join(&file.name);
        let (mut applied, mut earlier) = (0, 0);
        let poll = RetryPolicy {
            max: KIND_POLL_MAX.max(self.retry.initial),
            ..self.retry
        };
        for object in &file.objects {
            let handed: Handed = object.handed(&file.name);
            if state.handed.contains(&handed) {
                earlier += 1;
                continue;
            }
            let id = object.id();
            let target = ObjectRef {
                api_version: &object.api_version,
                kind: &object.kind,
                namespace: object.namespace.as_deref(),
                name: &object.name,
            };
            let served = discovery.resolve(&object.api_version, &object.kind).await;
            if let Err(ApplyError::NotServed) = served {
                self.teller().tell(&KindAwaited {
                    kind: &object.kind,
                    api_version: &object.api_version,
                    object: &id,
                    optional: file.optional,
                });
                let what = format!(
                    "waiting for {} ({}) to be served",
                    object.kind, object.api_version
                );
                self.teller()
                    .poll(Phase::Manifests, &what)
                    .step(&poll, deadline)
                    .retry(|_| discovery.resolve(&object.api_version, &object.kind))
                    .await?;
            }
            let what = format!("applying {id} from {}", path.display());
            self.teller()
                .request(Phase::Manifests, &what)
                .step(&self.retry, deadline)
                .retry(|_| discovery.apply(FIELD_MANAGER, &target, object.body.clone()))
                .await
                // The deadline's error names the step already; a refusal does not.
                .map_err(|e| match Exit::of(&e) {
                    Exit::Deadline => e,
                    _ => e.context(what.clone()),
                })?;
            self.store.handed(handed)?;
            self.teller().tell(&ObjectApplied {
                object: &id,
                file: &path,
            });
            applied += 1;
        }
        Ok((applied, earlier))
    }
}

/// An empty file at `path` (kept if it exists), synced with its directory,
/// so that no crash after the `done` stamp can lose it.
fn write_marker(path: &Path) -> anyhow::Result<()> {
    let context = || {
        format!(
            "writing `done_marker` {} (its directory must exist and be writable: \
             the unit grants /var/lib/catalyst)",
            path.display()
        )
    };
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(path)
        .with_context(context)
        .context(Exit::State)?;
    file.sync_all().with_context(context).context(Exit::State)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(context)
            .context(Exit::State)?;
    }
    Ok(())
}
