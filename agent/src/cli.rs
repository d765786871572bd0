//! The command line. Secrets are never accepted here: argv is readable by
//! every process on the node.

use std::path::PathBuf;

use clap::{Arg, ArgMatches, Args, FromArgMatches, Parser, Subcommand};

use crate::config::{Initial, KEYS, Overrides};

#[derive(Debug, Parser)]
#[command(
    name = "catalyst-bootstrap",
    version,
    about = "First-boot agent for OpenOva Sovereign control-plane nodes: delivers the node's kubeconfig \
             to catalyst-api and writes the OpenBao recovery seed",
    after_help = crate::exit::help()
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

    /// The configuration keys that are also flags (`--deployment-id` …),
    /// generated from their declarations.
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Do the bootstrap job (the default).
    Run,
    /// Show each phase's outcome from the state file.
    #[command(after_help = crate::commands::status::HELP)]
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Block until the job is done or has failed (progress on stderr).
        #[arg(long)]
        wait: bool,
        /// With --wait: give up after this long (exit 3).
        #[arg(
            long,
            value_name = "DURATION",
            default_value = "31m",
            requires = "wait"
        )]
        timeout: String,
    },
    /// Validate configuration and bearer credential; print the effective configuration.
    CheckConfig,
    /// Check every dependency of the job without side effects (safe while
    /// the service runs): exit 0 when nothing fails, 1 otherwise.
    Doctor {
        /// Print JSON: an array of {check, result, seen, fix}.
        #[arg(long)]
        json: bool,
    },
}

impl Cli {
    pub(crate) fn overrides(&self) -> &Overrides {
        &self.overrides
    }
}

/// One global flag per key declared with a flag, its help the key's doc line.
impl Args for Overrides {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        cmd.args(KEYS.iter().filter(|k| k.flag.is_some()).map(|k| {
            let default = match k.initial {
                Initial::Value(v) => format!(" [default: {v}]"),
                Initial::Unset(text) if !text.is_empty() => format!(" [default: {text}]"),
                _ => String::new(),
            };
            Arg::new(k.name)
                .long(k.flag_name())
                .value_name(k.flag)
                .global(true)
                .help(format!("{}{default}", k.doc.replace('`', "")))
        }))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for Overrides {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Overrides(
            KEYS.iter()
                .filter(|k| k.flag.is_some())
                .filter_map(|k| Some((k.name, matches.get_one::<String>(k.name)?.clone())))
                .collect(),
        ))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}
