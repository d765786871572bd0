//! The command line. Secrets are never accepted here: argv is readable by
//! every process on the node.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Overrides;

#[derive(Debug, Parser)]
#[command(
    name = "catalyst-bootstrap",
    version,
    about = "First-boot agent for OpenOva Sovereign control-plane nodes: delivers the node's kubeconfig \
             to catalyst-api and writes the OpenBao recovery seed",
    after_help = "Exit codes: 0 done, 65 unusable data, 68 certificate lacks the public address, 69 deadline passed, 70 internal error, \
                  73 cannot write state, 75 interrupted, 76 unexpected catalyst-api answer, \
                  77 bearer rejected, 78 bad configuration. status: 0 done, 1 failed, 2 not done yet."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Configuration file, replacing /usr/lib/… and /etc/catalyst-bootstrap/config.yaml;
    /// drop-ins are read from config.d/ beside it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log debug detail.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[arg(long, global = true, value_name = "HEX16")]
    deployment_id: Option<String>,
    #[arg(long, global = true, value_name = "URL")]
    catalyst_api_url: Option<String>,
    /// Public IP address or DNS name of this node's API server.
    #[arg(long, global = true, value_name = "ADDRESS")]
    public_address: Option<String>,
    /// The kubeconfig k3s writes.
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<String>,
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<String>,
    #[arg(long, global = true, value_name = "NAME")]
    region: Option<String>,
    /// This node's name, its identity on the coordination Lease (default: the hostname).
    #[arg(long, global = true, value_name = "NAME")]
    node_name: Option<String>,
    /// Overall deadline, like 30m.
    #[arg(long, global = true, value_name = "DURATION")]
    deadline: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Do the bootstrap job (the default).
    Run,
    /// Show each phase's outcome from the state file.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Block until the job is done or has failed.
        #[arg(long)]
        wait: bool,
    },
    /// Validate configuration and bearer credential; print the effective configuration.
    CheckConfig,
}

impl Cli {
    pub(crate) fn overrides(&self) -> Overrides {
        let flags = [
            ("deployment_id", &self.deployment_id),
            ("catalyst_api_url", &self.catalyst_api_url),
            ("public_address", &self.public_address),
            ("kubeconfig", &self.kubeconfig),
            ("state_dir", &self.state_dir),
            ("region", &self.region),
            ("node_name", &self.node_name),
            ("deadline", &self.deadline),
        ];
        Overrides(
            flags
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.clone()?)))
                .collect(),
        )
    }
}
