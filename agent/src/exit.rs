//! Exit codes. The numbers follow sysexits(3) so systemd's
//! `RestartPreventExitStatus=` and SRE runbooks can key on them.

use std::fmt;

/// The kind of failure, attached to an error chain with `.context(Exit::…)`
/// where the kind becomes known; `main` finds it with `downcast_ref`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The kubeconfig k3s wrote, or an object already in the cluster, is
    /// unusable as it is (EX_DATAERR).
    Data,
    /// The API server's certificate does not verify for the address the
    /// kubeconfig would carry (EX_NOHOST): k3s needs another `--tls-san`.
    Certificate,
    /// The overall deadline passed before the job was done (EX_UNAVAILABLE).
    Deadline,
    /// A bug or an unexpected local failure (EX_SOFTWARE).
    Internal,
    /// The state directory cannot be written (EX_CANTCREAT).
    State,
    /// SIGTERM/SIGINT, or another agent holds the state lock (EX_TEMPFAIL).
    Interrupted,
    /// catalyst-api answered something the contract does not allow (EX_PROTOCOL).
    Protocol,
    /// catalyst-api rejected the bearer token (EX_NOPERM): never heals.
    Rejected,
    /// Configuration or credential is missing or invalid (EX_CONFIG): never heals.
    Config,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Data => 65,
            Exit::Certificate => 68,
            Exit::Deadline => 69,
            Exit::Internal => 70,
            Exit::State => 73,
            Exit::Interrupted => 75,
            Exit::Protocol => 76,
            Exit::Rejected => 77,
            Exit::Config => 78,
        }
    }

    /// The kind recorded in an error chain; `Internal` when none was attached.
    pub fn of(err: &anyhow::Error) -> Exit {
        err.downcast_ref::<Exit>()
            .copied()
            .unwrap_or(Exit::Internal)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Exit::Data => "unusable input data",
            Exit::Certificate => "certificate check failed",
            Exit::Deadline => "deadline passed",
            Exit::Internal => "internal error",
            Exit::State => "cannot write state",
            Exit::Interrupted => "interrupted",
            Exit::Protocol => "unexpected answer from catalyst-api",
            Exit::Rejected => "bearer token rejected by catalyst-api",
            Exit::Config => "configuration error",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn kind_survives_outer_context() {
        let err = Err::<(), _>(anyhow::anyhow!("field deployment_id"))
            .context(Exit::Config)
            .context("loading /etc/catalyst-bootstrap/config.yaml")
            .unwrap_err();
        assert_eq!(Exit::of(&err), Exit::Config);
        assert_eq!(Exit::of(&err).code(), 78);
    }

    /// The failures no restart heals: systemd must not restart them, and
    /// the single-use token goes with them (`ExecStopPost=`).
    #[test]
    fn the_unit_knows_which_failures_never_heal() {
        let never = [
            Exit::Data,
            Exit::Certificate,
            Exit::Protocol,
            Exit::Rejected,
            Exit::Config,
        ]
        .map(|e| e.code().to_string());
        let unit = include_str!("../../systemd/catalyst-bootstrap.service");
        let prevent = unit
            .lines()
            .find_map(|l| l.strip_prefix("RestartPreventExitStatus="))
            .expect("RestartPreventExitStatus=");
        assert_eq!(prevent.split(' ').collect::<Vec<_>>(), never);
        let stop_post = unit
            .lines()
            .find_map(|l| l.strip_prefix("ExecStopPost="))
            .expect("ExecStopPost=");
        let mut removes: Vec<&str> = stop_post
            .split(['|', ' '])
            .filter_map(|w| w.strip_prefix("exited:"))
            .map(|w| w.trim_end_matches(')'))
            .collect();
        assert_eq!(removes.remove(0), "0", "success removes the token");
        assert_eq!(removes, never);
    }

    #[test]
    fn unknown_errors_are_internal() {
        assert_eq!(Exit::of(&anyhow::anyhow!("boom")), Exit::Internal);
    }
}
