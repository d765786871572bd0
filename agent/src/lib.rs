//! catalyst-bootstrap: the first-boot agent of an OpenOva Sovereign
//! control-plane node. See README.md for what it does and how to run it.

mod cli;
mod commands;
mod config;
mod exit;
#[cfg(any(test, feature = "fleet"))]
#[doc(hidden)]
pub mod fleet;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz;
mod job;
#[cfg(test)]
mod man;
mod memory;
mod peers;
mod report;

use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tracing::Instrument;

pub use cli::{Cli, Command};
pub use exit::Exit;
pub use memory::alloc::WipingAllocator;
pub use report::journal::init as init_logging;

use crate::config::token::BearerToken;
use crate::peers::api::CatalystApi;
use crate::report::events::Events;
use crate::report::journal::{Event, record};
use crate::report::notify::Notifier;
use crate::report::state::Store;

/// Runs one command; `Ok` carries the exit code of a command that reports
/// through it (`status`), `Err` an error whose [`Exit`] kind sets the code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    harden()?;
    // One crypto provider for kube and reqwest alike.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = match cli.command {
        None | Some(Command::Run) => {
            runtime
                .block_on(run_job(&cli))
                .map(|()| 0)
                .inspect_err(|err| {
                    // An interrupted run has already said STOPPING and why.
                    let kind = Exit::of(err);
                    if kind != Exit::Interrupted {
                        Notifier::default().failed(kind.code(), &format!("{err:#}"));
                    }
                })
        }
        Some(Command::Status {
            json,
            wait,
            ref timeout,
        }) => {
            let dir = config::state_dir_for_status(cli.config.as_deref(), cli.overrides())?;
            let timeout = wait
                .then(|| config::parse_duration(timeout))
                .transpose()
                .context("--timeout")
                .context(Exit::Config)?;
            runtime.block_on(commands::status::show(&dir, json, timeout))
        }
        Some(Command::CheckConfig) => {
            let config = config::load(cli.config.as_deref(), cli.overrides())?;
            let token = BearerToken::load_as_the_unit_would(
                config.token_file.as_deref(),
                std::path::Path::new(config::token::CREDSTORE),
                report::state::is_done(&config.state_dir),
            )?;
            // The manifests as `run` would read them; those a run already
            // applied (their files left over) are not read again.
            let applied = report::state::State::read(&config.state_dir)
                .ok()
                .flatten()
                .map(|s| s.applied)
                .unwrap_or_default();
            let secrets = job::secrets::Bundle::load(&config.secrets_dir, &applied)?;
            let manifests = job::manifests::Manifests::load(&config.manifests_dir)?;
            print!("{}", config::render(&config, token.source()));
            print!("{}", secrets.render());
            print!("{}", manifests.render());
            Ok(0)
        }
        Some(Command::Doctor { json }) => Ok(runtime.block_on(commands::doctor::run(
            cli.config.as_deref(),
            cli.overrides(),
            json,
        ))),
    };
    // A blocking task still running (a certificate check cut short by the
    // deadline) must not keep the process past its answer.
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}

/// No core dumps and no ptrace/proc-mem access by other users while secrets
/// may be in memory: done before any secret is read.
fn harden() -> anyhow::Result<()> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    nix::sys::prctl::set_dumpable(false).context("making the process non-dumpable")?;
    // The unit's syscall filter denies setrlimit; it sets LimitCORE=0 instead.
    if setrlimit(Resource::RLIMIT_CORE, 0, 0).is_err()
        && getrlimit(Resource::RLIMIT_CORE) != Ok((0, 0))
    {
        anyhow::bail!("cannot disable core dumps (RLIMIT_CORE); set LimitCORE=0 in the unit");
    }
    Ok(())
}

async fn run_job(cli: &Cli) -> anyhow::Result<()> {
    let config = config::load(cli.config.as_deref(), cli.overrides())?;
    let notifier = Notifier::default();
    let span = tracing::info_span!("job", catalyst_deployment_id = %config.deployment_id);
    span.in_scope(|| config.warn_ignored());
    if report::state::is_done(&config.state_dir) {
        let text = format!(
            "Done (an earlier run finished; {} exists)",
            config.state_dir.join(report::state::DONE_STAMP).display()
        );
        span.in_scope(|| tracing::info!("{text}"));
        notifier.ready(&text);
        return Ok(());
    }
    let token = BearerToken::load(config.token_file.as_deref())?;
    let store = Store::open(&config.state_dir, &config.deployment_id)?;
    let api = CatalystApi::new(&config, token)?;
    let events = Events::new(&config.node_name);
    let job = job::Job {
        config: &config,
        store: &store,
        notifier: &notifier,
        events: &events,
        api,
        retry: config.retry.into(),
    };

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let ended = tokio::select! {
        result = job.run().instrument(span.clone()) => Ok(result),
        _ = term.recv() => Err("SIGTERM"),
        _ = int.recv() => Err("SIGINT"),
    };
    let result = match ended {
        Ok(result) => result.map(|()| {
            let state = store.snapshot();
            let text = format!(
                "Done: kubeconfig {}; seed: {}; hand-off: {}",
                state.kubeconfig.detail.as_deref().unwrap_or("delivered"),
                state.seed.detail.as_deref().unwrap_or("done"),
                state.manifests.detail.as_deref().unwrap_or("done")
            );
            span.in_scope(|| record(Event::JobDone, &text));
            events.emit(Event::JobDone, None, &text);
            notifier.ready(&text);
        }),
        Err(name) => {
            let text = format!("Stopping on {name}; progress is saved and the next run resumes");
            notifier.stopping(&text);
            let saved = store.interrupt_running();
            span.in_scope(|| record(Event::Interrupted, &text));
            events.emit(Event::Interrupted, None, &text);
            saved.and_then(|()| {
                Err(anyhow::anyhow!("stopped by {name} before the job was done"))
                    .context(Exit::Interrupted)
            })
        }
    };
    // The last outcome's Event is usually still queued: a brief chance.
    events.flush(report::events::FLUSH).await;
    result
}
