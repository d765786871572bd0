//! The credstore token after a kill at the last moment (issue 21), under a
//! real systemd: once the done stamp exists, `ExecStopPost=` removes the
//! token whatever the exit status. A SIGKILL between the stamp and the exit
//! left it: the exit status says "killed", which keeps the token for a
//! restart, and the stamp's condition never runs the unit again.

use std::time::Duration;

use catalyst_bootstrap_tests::node::{assert_token_gone, retrying};

use super::*;

#[test]
fn a_kill_between_the_done_stamp_and_the_exit_leaves_no_token() {
    // catalyst-api keeps answering 503: the agent runs until it is killed.
    let (_rt, _sb, c) = retrying(1000, 1);

    // The point between the stamp and the exit: the stamp is there and the
    // agent still runs. Then SIGKILL, which nothing in the agent can see.
    let pid = c.show(UNIT, "MainPID");
    assert_ne!(pid, "0", "{}", diagnose(&c));
    c.sh(&format!(
        "touch /var/lib/catalyst-bootstrap/done && kill -9 {pid}"
    ));
    // systemd schedules the restart (`Restart=on-failure`), whose
    // condition then finds the stamp: the unit ends inactive.
    wait_until(
        "the restart to be skipped by the done stamp",
        Duration::from_secs(40),
        || c.show(UNIT, "ActiveState") == "inactive",
    );
    let log = diagnose(&c);
    assert!(log.contains("code=killed, status=9/KILL"), "{log}");
    assert_token_gone(&c);
}
