//! The bootstrap job: wait for the API server, then deliver the kubeconfig,
//! write the seed and apply the bootstrap Secrets side by side, then hand
//! the cluster to Flux (the manifests), recording each step so a restart
//! resumes where this run stopped. READY=1 goes to systemd once the
//! critical work (kubeconfig, seed, Secrets) is done; the hand-off follows.
//!
//! Each phase returns its outcome (see `outcome`), which says how it reads;
//! `report::Teller` tells it to the journal, STATUS= and the state file.

mod handoff;
pub(crate) mod kubeconfig;
pub(crate) mod manifests;
pub(crate) mod outcome;
pub(crate) mod preflight;
pub(crate) mod secrets;
pub(crate) mod seed;

use std::cell::Cell;

use anyhow::Context;
use tokio::time::Instant;
use tracing::Instrument;

use self::manifests::Manifests;
use self::outcome::{
    Address, Checked, Delivered, Ready, SecretStep, SecretsApplied, Seeded, Sending,
};
use self::preflight::{Check, Passed};
use self::secrets::Bundle;
use crate::config::{AddressSource, Config, Preflight, PublicAddress, RetryDelays};
use crate::exit::Exit;
use crate::memory::untrusted::Untrusted;
use crate::peers::api::CatalystApi;
use crate::peers::cluster::Cluster;
use crate::peers::metadata::Metadata;
use crate::peers::retry::RetryPolicy;
use crate::report::events::Events;
use crate::report::journal::{Event, record};
use crate::report::notify::Notifier;
use crate::report::state::{Outcome, Phase, State, Store};
use crate::report::{Ended, Teller};

/// The configured delays, spent by the retry algorithm.
impl From<RetryDelays> for RetryPolicy {
    fn from(d: RetryDelays) -> Self {
        RetryPolicy::new(d.initial, d.max, d.overloaded)
    }
}

pub(crate) struct Job<'a> {
    pub(crate) config: &'a Config,
    pub(crate) store: &'a Store,
    pub(crate) notifier: &'a Notifier,
    pub(crate) events: &'a Events,
    pub(crate) api: CatalystApi,
    /// From `config.retry`.
    pub(crate) retry: RetryPolicy,
}

impl Job<'_> {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.config.deadline;
        let state = self.store.snapshot();
        // Bad manifests stop the run before anything is sent. The hand-off's
        // are read again when it starts (see `handoff`).
        let bundle = Bundle::load(&self.config.secrets_dir, &state.applied)?;
        Manifests::load(&self.config.manifests_dir)?;

        let ready = self.phase(Phase::Wait, self.wait(deadline)).await?;
        // From here on, outcomes are Kubernetes Events too.
        self.events.attach(ready.cluster.clone());
        // Every control-plane node applies its own files (the apply is
        // idempotent); the PUT never waits for them. The hand-off needs the
        // Secrets (Flux pulls with `ghcr-pull`), not the PUT or the seed: a
        // cluster whose kubeconfig was not delivered is still handed over,
        // and the first failure is the job's once the hand-off has ended.
        let critical = Cell::new(2u8);
        let (work, handed) = tokio::join!(
            async {
                let done = self.deliver_and_seed(&ready, &state, deadline).await;
                if done.is_ok() {
                    self.critical_part_done(&critical);
                }
                done
            },
            async {
                self.secrets(&ready.cluster, bundle, &state, deadline)
                    .await?;
                self.critical_part_done(&critical);
                self.handoff(&ready.cluster, &state, deadline).await
            }
        );
        work?;
        handed?;
        self.store.mark_done()?;
        Ok(())
    }

    /// One of the two critical parts is done; after both, READY=1: a
    /// blocking `systemctl start` returns, and the unit is active while the
    /// hand-off goes on.
    fn critical_part_done(&self, left: &Cell<u8>) {
        left.set(left.get().saturating_sub(1));
        if left.get() > 0 {
            return;
        }
        for phase in [Phase::Kubeconfig, Phase::Seed, Phase::Secrets] {
            self.notifier.clear(phase.name());
        }
        let text = "kubeconfig, seed and bootstrap Secrets done; handing the cluster to Flux";
        record(Event::CriticalDone, text);
        self.notifier.ready(text);
    }

    /// The kubeconfig and the seed, side by side. No coordination: every
    /// control-plane node does the whole job. The seed is create-only (a 409
    /// keeps the first node's) and catalyst-api answers a repeated PUT with
    /// `already-set`, which counts as delivered.
    async fn deliver_and_seed(
        &self,
        ready: &Ready,
        state: &State,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        let kubeconfig_done = state.kubeconfig.outcome == Outcome::Done;
        let seed_done = state.seed.outcome == Outcome::Done;
        let deliver = async {
            if kubeconfig_done {
                tracing::info!("kubeconfig was delivered by an earlier run; not sending it again");
                return Ok(());
            }
            self.phase(Phase::Kubeconfig, self.deliver(ready, deadline))
                .await
                .map(drop)
        };
        let write_seed = async {
            if seed_done {
                tracing::info!("recovery seed was handled by an earlier run; not creating another");
                return Ok(());
            }
            self.phase(Phase::Seed, self.seed(&ready.cluster, deadline))
                .await
                .map(drop)
        };
        // The PUT never waits for the seed: both run, and both finish, so a
        // rejected token does not leave the node without its seed.
        let (delivered, seeded) = tokio::join!(deliver, write_seed);
        delivered?;
        seeded?;
        Ok(())
    }

    /// The bootstrap Secrets phase, when there is anything to do.
    async fn secrets(
        &self,
        cluster: &Cluster,
        bundle: Bundle,
        state: &State,
        deadline: Instant,
    ) -> anyhow::Result<()> {
        if bundle.is_empty() {
            if state.secrets.outcome != Outcome::Done {
                let none = SecretsApplied {
                    dir: bundle.dir,
                    applied: Vec::new(),
                    leftovers: 0,
                };
                self.teller().settled(Phase::Secrets, &none.detail())?;
            }
            return Ok(());
        }
        self.phase(Phase::Secrets, self.apply(cluster, bundle, deadline))
            .await
            .map(drop)
    }

    /// Each Secret applied, recorded, and its file overwritten and removed;
    /// then what earlier runs left.
    async fn apply(
        &self,
        cluster: &Cluster,
        bundle: Bundle,
        deadline: Instant,
    ) -> anyhow::Result<SecretsApplied> {
        let mut applied = Vec::new();
        for manifest in &bundle.manifests {
            let secret = manifest.secret();
            let file = bundle.dir.join(&manifest.file);
            let what = format!("applying Secret {secret} from {}", file.display());
            self.teller()
                .request(Phase::Secrets, &what)
                .step(&self.retry, deadline)
                .retry(|_| secrets::apply(cluster, manifest))
                .await?;
            self.store.applied(&manifest.file, &secret)?;
            self.teller().tell(&SecretStep {
                secret: &secret,
                file: &file,
                removed: false,
            });
            secrets::remove(&bundle.dir, &manifest.file)?;
            self.store.removed(&manifest.file)?;
            self.teller().tell(&SecretStep {
                secret: &secret,
                file: &file,
                removed: true,
            });
            applied.push(secret);
        }
        for file in &bundle.leftovers {
            secrets::remove(&bundle.dir, file)?;
            self.store.removed(file)?;
            tracing::info!(
                "{} was left by an earlier run after its Secret was applied; removed it",
                bundle.dir.join(file).display()
            );
        }
        Ok(SecretsApplied {
            dir: bundle.dir,
            applied,
            leftovers: bundle.leftovers.len(),
        })
    }

    fn teller(&self) -> Teller<'_> {
        Teller {
            store: self.store,
            notifier: self.notifier,
            events: self.events,
        }
    }

    /// Runs one phase in its span; its start, outcome or failure are told.
    async fn phase<O: Ended>(
        &self,
        phase: Phase,
        work: impl Future<Output = anyhow::Result<O>>,
    ) -> anyhow::Result<O> {
        let span = tracing::info_span!("phase", catalyst_phase = phase.name());
        let teller = self.teller();
        async {
            teller.started(phase)?;
            match work.await {
                Ok(outcome) => {
                    teller.ended(phase, &outcome)?;
                    Ok(outcome)
                }
                Err(err) => {
                    teller.failed(phase, &err);
                    Err(err)
                }
            }
        }
        .instrument(span)
        .await
    }

    /// The kubeconfig file, then `/readyz` of the API server it names.
    async fn wait(&self, deadline: Instant) -> anyhow::Result<Ready> {
        let path = &self.config.kubeconfig;
        let poll = RetryPolicy::local_poll();
        let what = format!("waiting for {}", path.display());
        let kubeconfig = self
            .teller()
            .poll(Phase::Wait, &what)
            .step(&poll, deadline)
            .retry(|_| async { kubeconfig::read(path) })
            .await?;
        let cluster = Cluster::from_kubeconfig(&kubeconfig, self.config.connect_timeout).await?;
        // From k3s's file: shown like outside text.
        let server = Untrusted::new(
            kubeconfig
                .clusters
                .iter()
                .find_map(|c| c.cluster.as_ref()?.server.clone())
                .unwrap_or_default(),
        )
        .shown();
        let what = format!("waiting for the API server at {server} to be ready");
        self.teller()
            .poll(Phase::Wait, &what)
            .step(&poll, deadline)
            .retry(|_| cluster.ready())
            .await?;
        Ok(Ready {
            kubeconfig,
            cluster,
            server,
        })
    }

    /// The public address, the certificate check, then the PUT.
    async fn deliver(&self, ready: &Ready, deadline: Instant) -> anyhow::Result<Delivered> {
        let address = self.address(deadline).await?;
        self.teller().tell(&address);
        let address = address.get();
        // Rewritten first: a kubeconfig too large to send fails without
        // touching the network.
        let mut rewritten = kubeconfig::rewrite(&ready.kubeconfig, address, None)?;
        let checked = self.preflight(&ready.cluster, address, deadline).await?;
        self.teller().tell(&checked);
        if let Some(name) = checked.server_name() {
            rewritten = kubeconfig::rewrite(&ready.kubeconfig, address, Some(name))?;
        }
        self.teller().tell(&Sending {
            rewritten: &rewritten,
            to: self.api.url(),
        });
        let what = "delivering the kubeconfig to catalyst-api";
        let delivery = self
            .teller()
            .request(Phase::Kubeconfig, what)
            .step(&self.retry, deadline)
            .retry(|_| self.api.put_kubeconfig(&rewritten))
            .await?;
        Ok(Delivered(delivery))
    }

    async fn address(&self, deadline: Instant) -> anyhow::Result<Address> {
        let base = match &self.config.public_address {
            AddressSource::Literal(address) => return Ok(Address::Configured(address.clone())),
            AddressSource::HetznerMetadata(base) => base,
        };
        let metadata = Metadata::new(base, self.config.connect_timeout)?;
        let what = format!("asking {} for the public address", metadata.url());
        let address = self
            .teller()
            .prepare(Phase::Kubeconfig, &what)
            .step(&self.retry, deadline)
            .retry(|_| metadata.public_ipv4())
            .await?;
        Ok(Address::Discovered(address))
    }

    /// Checks that the kubeconfig will verify at `address`.
    async fn preflight(
        &self,
        cluster: &Cluster,
        address: &PublicAddress,
        deadline: Instant,
    ) -> anyhow::Result<Checked> {
        let server = cluster.server();
        let Some(local) = reqwest::Url::parse(server)
            .ok()
            .as_ref()
            .and_then(preflight::endpoint)
        else {
            return Ok(Checked::NotLoopback {
                server: server.to_string(),
            });
        };
        let host = address.url_host();
        let what = format!("checking that the API server's certificate is valid for {host}");
        let checked = self
            .teller()
            .prepare(Phase::Kubeconfig, &what)
            .step(&self.retry, deadline)
            .retry(|_| {
                Check {
                    roots: cluster.ca().to_vec(),
                    address: address.clone(),
                    port: local.port(),
                    local,
                    fallback: self.config.sovereign_fqdn.clone(),
                    timeout: self.config.connect_timeout,
                }
                .run()
            })
            .await;
        match checked {
            Ok(Passed::Address { via }) => Ok(Checked::Passed { via, host }),
            Ok(Passed::Fallback { name, via }) => Ok(Checked::Fallback { via, host, name }),
            Err(err)
                if Exit::of(&err) == Exit::Certificate
                    && self.config.preflight == Preflight::Warn =>
            {
                Ok(Checked::Ignored {
                    error: format!("{err:#}"),
                })
            }
            Err(err) => Err(err.context(
                "preflight: not sending the kubeconfig (`preflight: warn` would send it anyway)",
            )),
        }
    }

    async fn seed(&self, cluster: &Cluster, deadline: Instant) -> anyhow::Result<Seeded<'_>> {
        let target = &self.config.seed;
        let body = seed::secret_body(target).context("preparing the recovery seed")?;
        let what = format!("writing Secret {}/{}", target.namespace, target.name);
        let outcome = self
            .teller()
            .request(Phase::Seed, &what)
            .step(&self.retry, deadline)
            .retry(|_| seed::ensure(cluster, target, &body))
            .await?;
        drop(body);
        Ok(Seeded { outcome, target })
    }
}
