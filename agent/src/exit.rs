//! Exit codes. The numbers follow sysexits(3) so systemd's
//! `RestartPreventExitStatus=` and SRE runbooks can key on them.

use std::fmt;

/// Declares `Exit`, its `ALL` list and each code's texts in one place.
macro_rules! exits {
    ($(
        $(#[$doc:meta])*
        $variant:ident = $code:literal, $display:literal, $summary:literal, $heals:literal, $meaning:literal;
    )*) => {
        /// The kind of failure, attached to an error chain with `.context(Exit::…)`
        /// where the kind becomes known; `main` finds it with `downcast_ref`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Exit {
            $($(#[$doc])* $variant,)*
        }

        impl Exit {
            pub const ALL: &[Exit] = &[$(Exit::$variant),*];

            pub fn code(self) -> u8 {
                match self {
                    $(Exit::$variant => $code,)*
                }
            }

            /// The code, a few words for `--help`, whether a restart heals
            /// it (docs/operating.md), and what it means (docs/operating.md).
            fn row(self) -> Row {
                match self {
                    $(Exit::$variant => Row { code: $code, summary: $summary, heals: $heals, meaning: $meaning },)*
                }
            }
        }

        impl fmt::Display for Exit {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $(Exit::$variant => $display,)*
                })
            }
        }
    };
}

exits! {
    /// The kubeconfig k3s wrote, or an object already in the cluster, is
    /// unusable as it is (EX_DATAERR).
    Data = 65, "unusable input data", "unusable data", "no",
        "unusable data: the k3s kubeconfig does not parse, has no clusters, repeats a cluster, user or context name (kubectl refuses such a file), or is over 1 MiB once rewritten; `422` from catalyst-api; the seed Secret exists without its key; the state file is from a newer version or another deployment";
    /// The API server's certificate does not verify for the address the
    /// kubeconfig would carry (EX_NOHOST): k3s needs another `--tls-san`.
    Certificate = 68, "certificate check failed", "certificate lacks the public address", "no",
        "preflight: the API server's certificate verifies neither for the public address nor for `sovereign_fqdn` (add `--tls-san=<address>` to k3s), or not with the kubeconfig's CA; nothing was sent";
    /// The overall deadline passed before the job was done (EX_UNAVAILABLE).
    Deadline = 69, "deadline passed", "deadline passed", "yes",
        "the overall deadline passed (the state file and the last log line say what was being waited for and the last error)";
    /// A bug or an unexpected local failure (EX_SOFTWARE).
    Internal = 70, "internal error", "internal error", "maybe", "internal error";
    /// The state directory cannot be written (EX_CANTCREAT).
    State = 73, "cannot write state", "cannot write state", "maybe", "the state directory, or the directory of `done_marker`, cannot be written";
    /// SIGTERM/SIGINT, or another agent holds the state lock (EX_TEMPFAIL).
    Interrupted = 75, "interrupted", "interrupted", "yes",
        "interrupted by SIGTERM/SIGINT (progress saved), or another agent already holds the state directory";
    /// catalyst-api answered something the contract does not allow (EX_PROTOCOL).
    Protocol = 76, "unexpected answer from catalyst-api", "unexpected catalyst-api answer", "no",
        "catalyst-api answered outside the contract (a redirect, `400`, `405`, `200` …)";
    /// catalyst-api rejected the bearer token (EX_NOPERM): never heals.
    Rejected = 77, "bearer token rejected by catalyst-api", "bearer rejected", "no",
        "catalyst-api rejected the bearer token (`401`, `403 invalid-bearer` / `no-bearer-hash`)";
    /// Configuration or credential is missing or invalid (EX_CONFIG): never heals.
    Config = 78, "configuration error", "bad configuration", "no", "bad configuration or credential";
    /// The API server refused an object of the hand-off as invalid (past
    /// sysexits' range: no EX_ code means this): never heals by a restart.
    Invalid = 79, "manifest object refused as invalid", "manifest object invalid", "no",
        "the hand-off: the API server refused an object of a required manifest file as invalid (`400`, `422`), or a file in `manifests.dir` became invalid after the agent started; the objects before it stay applied";
}

/// One exit code as `--help` and docs/operating.md describe it.
#[cfg_attr(not(test), allow(dead_code))] // the docs table's columns are read by its test.
struct Row {
    code: u8,
    summary: &'static str,
    heals: &'static str,
    meaning: &'static str,
}

/// Every code the agent exits with: success, clap's usage error, then `Exit`.
fn rows() -> Vec<Row> {
    let mut rows = vec![
        Row {
            code: 0,
            summary: "done",
            heals: "",
            meaning: "done (or an earlier run already was: the `done` stamp exists)",
        },
        Row {
            code: 2,
            summary: "usage error",
            heals: "no",
            meaning: "command-line usage error",
        },
    ];
    rows.extend(Exit::ALL.iter().map(|e| e.row()));
    rows
}

/// Each code and its meaning, for the man page.
#[cfg(test)]
pub(crate) fn meanings() -> Vec<(u8, &'static str)> {
    rows().iter().map(|r| (r.code, r.meaning)).collect()
}

/// The exit-code text of `--help`.
pub(crate) fn help() -> String {
    let codes: Vec<String> = rows()
        .iter()
        .map(|r| format!("{} {}", r.code, r.summary))
        .collect();
    format!(
        "Exit codes: {}. status: 0 done, 1 failed, 3 not done yet, 4 state file unreadable (see status --help). doctor: 0 nothing fails, 1 something does.",
        codes.join(", ")
    )
}

impl Exit {
    /// The kind recorded in an error chain; `Internal` when none was attached.
    pub fn of(err: &anyhow::Error) -> Exit {
        err.downcast_ref::<Exit>()
            .copied()
            .unwrap_or(Exit::Internal)
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

    /// The failures no restart heals: systemd must not restart them. Of
    /// those only a rejected token makes the token worthless, so only it
    /// (and success) removes the token (`ExecStopPost=`); the others need it
    /// for the restart after an operator's fix.
    #[test]
    fn the_unit_knows_which_failures_never_heal_and_which_end_the_token() {
        let never = [
            Exit::Data,
            Exit::Certificate,
            Exit::Protocol,
            Exit::Rejected,
            Exit::Config,
            Exit::Invalid,
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
        let removes: Vec<&str> = stop_post
            .split(['|', ' '])
            .filter_map(|w| w.strip_prefix("exited:"))
            .map(|w| w.trim_end_matches(')'))
            .collect();
        assert_eq!(
            removes,
            ["0".to_string(), Exit::Rejected.code().to_string()]
        );
    }

    #[test]
    fn the_operating_manual_lists_every_exit_code() {
        let mut table = String::from("| code | meaning | heals on restart? |\n|---|---|---|\n");
        for r in rows() {
            let heals = if r.heals.is_empty() {
                " ".to_string()
            } else {
                format!(" {} ", r.heals)
            };
            table += &format!("| {} | {} |{heals}|\n", r.code, r.meaning);
        }
        let doc = include_str!("../../docs/operating.md");
        assert!(
            doc.contains(&table),
            "docs/operating.md's exit-code table is out of date; it should read:\n\n{table}"
        );
        let mut codes: Vec<u8> = rows().iter().map(|r| r.code).collect();
        codes.dedup();
        assert_eq!(codes.len(), rows().len(), "codes are unique and in order");
    }

    #[test]
    fn unknown_errors_are_internal() {
        assert_eq!(Exit::of(&anyhow::anyhow!("boom")), Exit::Internal);
    }
}
