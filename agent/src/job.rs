//! The bootstrap job: wait for the API server, then deliver the kubeconfig
//! and write the seed side by side, recording each step so a restart
//! resumes where this run stopped.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;
use tracing::Instrument;

use crate::api::{CatalystApi, Delivery, PutError};
use crate::cluster::Cluster;
use crate::config::{AddressSource, Config, Preflight, PublicAddress};
use crate::exit::Exit;
use crate::journal::{Event, record};
use crate::kubeconfig;
use crate::lease::{self, Claim, Coordinator};
use crate::metadata::Metadata;
use crate::notify::Notifier;
use crate::preflight::{self, Check, Passed};
use crate::retry::{Progress, RetryPolicy, Step};
use crate::seed::{self, Ownership, SeedOutcome};
use crate::state::{Outcome, Phase, Store, now};

/// How often a wait logs that it is still waiting.
const WAIT_LOG_EVERY: Duration = Duration::from_secs(15);
/// How often a wait updates STATUS= (which shows the seconds waited), each
/// time extending systemd's start timeout by `WAIT_EXTEND` (plus margin).
const WAIT_STATUS_EVERY: Duration = Duration::from_secs(1);
const WAIT_EXTEND: Duration = Duration::from_secs(30);
/// How often a wait writes its progress (`detail`, `attempts`) to state.json.
const WAIT_SAVE_EVERY: Duration = Duration::from_secs(10);

/// Reports one phase's attempts to systemd, the journal and the state file.
///
/// A request that fails (the PUT, a Kubernetes write) is reported on every
/// failed attempt: a WARN line, STATUS=, the state file. Waiting for what is
/// expected to take time (the kubeconfig file, `/readyz`, a Lease another
/// node holds) is no failure: it is logged when it starts, every
/// `WAIT_LOG_EVERY` while it lasts and when it ends, and STATUS= and the
/// state file follow it at a bounded rate, never per poll.
struct Reporter<'a> {
    phase: Phase,
    what: &'a str,
    store: &'a Store,
    notifier: &'a Notifier,
    /// Whether attempts count in the state file's `attempts`, which counts
    /// the phase's own requests (the PUT, the create), not the steps that
    /// prepare them (address discovery, the certificate check); for the
    /// wait phase, its polls.
    counted: bool,
    /// Each attempt polls for something expected to take time: a failed
    /// one means "not yet", not an error.
    polls: bool,
    /// The wait in progress, if any.
    wait: Mutex<Option<Wait>>,
}

struct Wait {
    what: String,
    since: Instant,
    /// Polls that found it not there (yet).
    polls: u32,
    logged: Instant,
    shown: Option<Instant>,
    saved: Option<Instant>,
}

impl Reporter<'_> {
    /// A step reported here, retried by `policy` until `deadline`.
    fn step<'s>(&'s self, policy: &'s RetryPolicy, deadline: Instant) -> Step<'s> {
        Step {
            what: self.what,
            policy,
            deadline,
            progress: self,
        }
    }

    fn is_waiting(&self) -> bool {
        self.wait
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// One more poll that found `what` still going on, for `reason` (may
    /// be empty). The first poll starts the wait.
    fn waiting(&self, what: &str, reason: &str) {
        let now = Instant::now();
        let mut slot = self.wait.lock().unwrap_or_else(|e| e.into_inner());
        let because = |prefix: &str| {
            if reason.is_empty() {
                String::new()
            } else {
                format!("{prefix}{reason}")
            }
        };
        if slot.as_ref().is_none_or(|w| w.what != what) {
            let text = if reason.is_empty() {
                what.to_string()
            } else {
                format!("{what} ({reason})")
            };
            record(Event::WaitStarted, &text);
            *slot = Some(Wait {
                what: what.to_string(),
                since: now,
                polls: 0,
                logged: now,
                shown: None,
                saved: None,
            });
        }
        let Some(wait) = slot.as_mut() else { return };
        wait.polls += 1;
        let waited = (now - wait.since).as_secs();
        if now - wait.logged >= WAIT_LOG_EVERY {
            wait.logged = now;
            record(
                Event::WaitProgress,
                &format!(
                    "{what}: still waiting after {waited}s ({} polls{})",
                    wait.polls,
                    because("; last: ")
                ),
            );
        }
        if wait.shown.is_none_or(|t| now - t >= WAIT_STATUS_EVERY) {
            wait.shown = Some(now);
            self.notifier.phase(
                self.phase.name(),
                format!("{what} ({waited}s so far{})", because("; ")),
                Some(WAIT_EXTEND),
            );
        }
        if wait.saved.is_none_or(|t| now - t >= WAIT_SAVE_EVERY) {
            wait.saved = Some(now);
            let detail = format!(
                "{what}: {waited}s so far, {} polls{}",
                wait.polls,
                because("; last: ")
            );
            if let Err(e) = self.store.phase(self.phase, |r| r.detail = Some(detail)) {
                tracing::warn!("{e:#}");
            }
        }
    }

    /// The wait in progress, if any, ended well (a failed one is reported
    /// by its phase).
    fn end_wait(&self) {
        let wait = self.wait.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(wait) = wait {
            record(
                Event::WaitDone,
                &format!(
                    "{}: done after {:.1}s",
                    wait.what,
                    wait.since.elapsed().as_secs_f64()
                ),
            );
        }
    }
}

impl Progress for Reporter<'_> {
    fn attempt(&self, n: u32) {
        let waiting = self.polls || self.is_waiting();
        if self.counted {
            if waiting {
                self.store.phase_unsaved(self.phase, |r| r.attempts += 1);
            } else if let Err(e) = self.store.phase(self.phase, |r| r.attempts += 1) {
                tracing::warn!("{e:#}");
            }
        }
        // A new step; while waiting, the wait's own text stays.
        if n == 1 && !self.is_waiting() {
            self.notifier
                .phase(self.phase.name(), self.what.to_string(), None);
        }
    }

    fn retrying(&self, n: u32, error: &str, next: Duration) {
        if self.polls {
            self.waiting(self.what, error);
            return;
        }
        let text = format!(
            "{} (attempt {n} failed: {error}; next try in {:.1}s)",
            self.what,
            next.as_secs_f64()
        );
        self.notifier
            .phase(self.phase.name(), text.clone(), Some(next));
        record(Event::AttemptFailed, &text);
        let _ = self.store.phase(self.phase, |r| {
            r.detail = Some(format!("attempt {n}: {error}"))
        });
    }

    fn pending(&self, _n: u32, status: &str, _next: Duration) {
        self.waiting(status, "");
    }

    fn succeeded(&self, _n: u32) {
        self.end_wait();
    }
}

pub(crate) struct Job<'a> {
    pub(crate) config: &'a Config,
    pub(crate) store: &'a Store,
    pub(crate) notifier: &'a Notifier,
    pub(crate) api: CatalystApi,
}

impl Job<'_> {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.config.deadline;
        let state = self.store.snapshot();
        let kubeconfig_done = state.kubeconfig.outcome == Outcome::Done;
        let seed_done = state.seed.outcome == Outcome::Done;

        let (kc, cluster) = self.phase(Phase::Wait, self.wait(deadline)).await?;
        let coordinator = Coordinator {
            cluster: &cluster,
            node: &self.config.node_name,
            deployment_id: &self.config.deployment_id,
            duration: self.config.lease_duration,
        };
        let held = match self
            .phase(Phase::Lease, self.claim(&coordinator, deadline))
            .await?
        {
            Claim::Held(held) => held,
            Claim::DoneBy { node, .. } => {
                let detail = format!("done by control-plane node {}", node.shown());
                for phase in [Phase::Kubeconfig, Phase::Seed] {
                    self.store.phase(phase, |r| {
                        r.outcome = Outcome::Done;
                        r.finished_at = Some(now());
                        r.detail = Some(detail.clone());
                    })?;
                }
                self.store.mark_done()?;
                return Ok(());
            }
        };
        let deliver = async {
            if kubeconfig_done {
                tracing::info!("kubeconfig was delivered by an earlier run; not sending it again");
                return Ok(());
            }
            self.phase(Phase::Kubeconfig, self.deliver(&kc, &cluster, deadline))
                .await
        };
        let write_seed = async {
            if seed_done {
                tracing::info!("recovery seed was handled by an earlier run; not creating another");
                return Ok(());
            }
            self.phase(Phase::Seed, self.seed(&cluster, deadline)).await
        };
        // The PUT never waits for the seed: both run, and both finish, so a
        // rejected token does not leave the node without its seed.
        let (delivered, seeded) = coordinator
            .renewing(&held, async { tokio::join!(deliver, write_seed) })
            .await;
        delivered?;
        seeded?;
        // Without the record the others take over after expiry and find the
        // work done (seed kept, `already-set`): slower, not wrong.
        let what = format!("recording completion on Lease kube-system/{}", lease::NAME);
        let reporter = self.step_reporter(Phase::Lease, &what);
        if let Err(e) = coordinator
            .complete(held, &reporter.step(&self.config.retry, deadline))
            .await
        {
            tracing::warn!("{e:#}");
        }
        self.store.mark_done()?;
        Ok(())
    }

    /// Holds the Lease, or learns that another node did the work.
    async fn claim(
        &self,
        coordinator: &Coordinator<'_>,
        deadline: Instant,
    ) -> anyhow::Result<(Claim, String)> {
        let what = format!("claiming Lease kube-system/{}", lease::NAME);
        let reporter = self.reporter(Phase::Lease, &what);
        let claim = coordinator
            .claim(&reporter.step(&self.config.retry, deadline))
            .await?;
        let detail = match &claim {
            Claim::Held(_) => {
                let text = format!(
                    "node {} holds Lease kube-system/{} and does the work",
                    self.config.node_name,
                    lease::NAME
                );
                record(Event::LeaseHeld, &text);
                text
            }
            Claim::DoneBy { node, at } => {
                let text = format!(
                    "control-plane node {} did the work (recorded on Lease kube-system/{} at {}); \
                     nothing left to do on this node",
                    node.shown(),
                    lease::NAME,
                    at.shown()
                );
                record(Event::PeerCompleted, &text);
                text
            }
        };
        Ok((claim, detail))
    }

    /// Runs one phase in its span, recording start, outcome and failure.
    async fn phase<T>(
        &self,
        phase: Phase,
        work: impl Future<Output = anyhow::Result<(T, String)>>,
    ) -> anyhow::Result<T> {
        let span = tracing::info_span!("phase", catalyst_phase = phase.name());
        async {
            self.store.phase(phase, |r| {
                r.outcome = Outcome::Running;
                r.started_at = Some(now());
                r.finished_at = None;
                r.detail = None;
            })?;
            record(
                Event::PhaseStarted,
                &format!("{} phase started", phase.name()),
            );
            match work.await {
                Ok((value, detail)) => {
                    self.store.phase(phase, |r| {
                        r.outcome = Outcome::Done;
                        r.finished_at = Some(now());
                        r.detail = Some(detail.clone());
                    })?;
                    // The wait is over once the others start: keep STATUS short.
                    if phase == Phase::Wait {
                        self.notifier.clear(phase.name());
                    } else {
                        self.notifier.phase(phase.name(), detail.clone(), None);
                    }
                    record(
                        Event::PhaseDone,
                        &format!("{} phase done: {detail}", phase.name()),
                    );
                    Ok(value)
                }
                Err(err) => {
                    let text = format!("{err:#}");
                    let _ = self.store.phase(phase, |r| {
                        r.outcome = Outcome::Failed;
                        r.finished_at = Some(now());
                        r.detail = Some(text.clone());
                    });
                    self.notifier
                        .phase(phase.name(), format!("failed: {text}"), None);
                    record(
                        Event::PhaseFailed,
                        &format!("{} phase failed: {text}", phase.name()),
                    );
                    Err(err)
                }
            }
        }
        .instrument(span)
        .await
    }

    fn reporter<'b>(&'b self, phase: Phase, what: &'b str) -> Reporter<'b> {
        Reporter {
            phase,
            what,
            store: self.store,
            notifier: self.notifier,
            counted: true,
            polls: false,
            wait: Mutex::new(None),
        }
    }

    /// For polling something expected to take time.
    fn poll_reporter<'b>(&'b self, phase: Phase, what: &'b str) -> Reporter<'b> {
        Reporter {
            polls: true,
            ..self.reporter(phase, what)
        }
    }

    /// For a step that prepares the phase's request.
    fn step_reporter<'b>(&'b self, phase: Phase, what: &'b str) -> Reporter<'b> {
        Reporter {
            counted: false,
            ..self.reporter(phase, what)
        }
    }

    /// The kubeconfig file, then `/readyz` of the API server it names.
    async fn wait(
        &self,
        deadline: Instant,
    ) -> anyhow::Result<((kube::config::Kubeconfig, Cluster), String)> {
        let path = &self.config.kubeconfig;
        let poll = RetryPolicy::local_poll();
        let what = format!("waiting for {}", path.display());
        let kc = self
            .poll_reporter(Phase::Wait, &what)
            .step(&poll, deadline)
            .retry(|_| async { kubeconfig::read(path) })
            .await?;
        let cluster = Cluster::connect(&kc, self.config.connect_timeout).await?;
        let server = kc
            .clusters
            .iter()
            .find_map(|c| c.cluster.as_ref()?.server.clone())
            .unwrap_or_default();
        let what = format!("waiting for the API server at {server} to be ready");
        self.poll_reporter(Phase::Wait, &what)
            .step(&poll, deadline)
            .retry(|_| cluster.ready())
            .await?;
        Ok(((kc, cluster), format!("API server at {server} is ready")))
    }

    async fn deliver(
        &self,
        kc: &kube::config::Kubeconfig,
        cluster: &Cluster,
        deadline: Instant,
    ) -> anyhow::Result<((), String)> {
        let address = match &self.config.public_address {
            AddressSource::Literal(address) => address.clone(),
            AddressSource::HetznerMetadata(base) => {
                let metadata = Metadata::new(base, self.config.connect_timeout)?;
                let what = format!("asking {} for the public address", metadata.url());
                let reporter = self.step_reporter(Phase::Kubeconfig, &what);
                let address = reporter
                    .step(&self.config.retry, deadline)
                    .retry(|_| metadata.public_ipv4())
                    .await?;
                tracing::info!(
                    "public address from the metadata service: {}",
                    address.url_host()
                );
                address
            }
        };
        // Rewritten first: a kubeconfig too large to send fails without
        // touching the network.
        let mut rewritten = kubeconfig::rewrite(kc, &address, None)?;
        if let Some(name) = self.preflight(cluster, &address, deadline).await? {
            rewritten = kubeconfig::rewrite(kc, &address, Some(&name))?;
        }
        for r in &rewritten.rewrites {
            tracing::info!(
                "cluster {:?}: server {} rewritten to {}",
                r.cluster,
                r.from,
                r.to
            );
        }
        if rewritten.rewrites.is_empty() {
            tracing::warn!(
                "no cluster in the kubeconfig points at a loopback address; sending it unchanged"
            );
        }
        tracing::info!("sending the kubeconfig to {}", self.api.url());
        let what = "delivering the kubeconfig to catalyst-api".to_string();
        let reporter = self.reporter(Phase::Kubeconfig, &what);
        let delivery = reporter.step(&self.config.retry, deadline).retry(|_| async {
            let result = self.api.put_kubeconfig(&rewritten).await;
            if let Err(PutError::Status { status: 404, .. }) = &result {
                tracing::error!(
                    "catalyst-api does not know deployment {} (404): check deployment_id and catalyst_api_url, \
                     or the ingress route; retrying in case the route is still being set up",
                    self.config.deployment_id
                );
            }
            result
        })
        .await?;
        Ok((
            (),
            match delivery {
                Delivery::Captured => {
                    record(
                        Event::KubeconfigDelivered,
                        "kubeconfig delivered to catalyst-api (204)",
                    );
                    "delivered".to_string()
                }
                Delivery::AlreadyCaptured => {
                    record(
                        Event::KubeconfigAlreadyCaptured,
                        "catalyst-api already has this deployment's kubeconfig (403 already-set): an earlier \
                     attempt delivered it; counting it as delivered",
                    );
                    "already captured by an earlier attempt".to_string()
                }
            },
        ))
    }

    /// Checks that the kubeconfig will verify; `Some(name)` when clients
    /// must verify the certificate against `name` (`tls-server-name`).
    async fn preflight(
        &self,
        cluster: &Cluster,
        address: &PublicAddress,
        deadline: Instant,
    ) -> anyhow::Result<Option<String>> {
        let server = cluster.server();
        let Some(local) = reqwest::Url::parse(server)
            .ok()
            .as_ref()
            .and_then(preflight::endpoint)
        else {
            tracing::info!(
                "the API server {server} is not a loopback address, so the kubeconfig keeps it; \
                 no certificate check"
            );
            return Ok(None);
        };
        let host = address.url_host();
        let what = format!("checking that the API server's certificate is valid for {host}");
        let reporter = self.step_reporter(Phase::Kubeconfig, &what);
        let checked = reporter
            .step(&self.config.retry, deadline)
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
            Ok(Passed::Address { via }) => {
                record(
                    Event::PreflightPassed,
                    &format!(
                        "preflight: the API server's certificate (checked at {via}) is valid for {host}"
                    ),
                );
                Ok(None)
            }
            Ok(Passed::Fallback { name, via }) => {
                record(
                    Event::PreflightFallback,
                    &format!(
                        "preflight: the API server's certificate (checked at {via}) is not valid for {host} \
                         but is for {name}; the kubeconfig gets tls-server-name: {name} \
                         (add --tls-san={host} to k3s to make the address itself verify)"
                    ),
                );
                Ok(Some(name))
            }
            Err(err)
                if Exit::of(&err) == Exit::Certificate
                    && self.config.preflight == Preflight::Warn =>
            {
                record(
                    Event::PreflightIgnored,
                    &format!(
                        "preflight: {err:#}; sending the kubeconfig anyway because of `preflight: warn`"
                    ),
                );
                Ok(None)
            }
            Err(err) => Err(err.context(
                "preflight: not sending the kubeconfig (`preflight: warn` would send it anyway)",
            )),
        }
    }

    async fn seed(&self, cluster: &Cluster, deadline: Instant) -> anyhow::Result<((), String)> {
        let target = &self.config.seed;
        let body = seed::secret_body(target).context("preparing the recovery seed")?;
        let what = format!("writing Secret {}/{}", target.namespace, target.name);
        let reporter = self.reporter(Phase::Seed, &what);
        let outcome = reporter
            .step(&self.config.retry, deadline)
            .retry(|_| seed::ensure(cluster, target, &body))
            .await?;
        drop(body);
        let (event, text) = match outcome {
            SeedOutcome::Written => (
                Event::SeedWritten,
                format!(
                    "recovery seed written to Secret {}/{}",
                    target.namespace, target.name
                ),
            ),
            SeedOutcome::Kept(ownership) => {
                let kept = format!(
                    "Secret {}/{} already holds a seed; kept it unchanged",
                    target.namespace, target.name
                );
                let release = target
                    .helm_release
                    .as_ref()
                    .map(|r| format!("{}/{}", r.name, r.namespace))
                    .unwrap_or_default();
                let text = match ownership {
                    Ownership::Unchanged => kept,
                    Ownership::Added => {
                        format!("{kept}; added Helm ownership metadata for release {release}")
                    }
                    Ownership::Foreign(owner) => {
                        tracing::warn!(
                            "Secret {}/{} names {owner} as its owner: Helm will refuse to install \
                             release {release} over it until someone decides which release owns it \
                             (or sets `seed.helm_release`); not taking it over",
                            target.namespace,
                            target.name
                        );
                        format!(
                            "{kept}; left its ownership alone (it belongs to {owner}, not {release})"
                        )
                    }
                };
                (Event::SeedKept, text)
            }
            SeedOutcome::Skipped => (
                Event::SeedSkipped,
                format!(
                    "Secret {}/{} exists, so OpenBao is already initialised; no seed written",
                    target.namespace, target.marker
                ),
            ),
        };
        record(event, &text);
        Ok(((), text))
    }
}
