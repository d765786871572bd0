//! A fake `NOTIFY_SOCKET`: records every sd_notify datagram and its sender.
//! systemd takes the sender's PID from the kernel and, with the default
//! `NotifyAccess=main`, obeys the main process only: a second agent started
//! by hand beside the unit is not heard. The checks read one process's
//! datagrams for the same reason.

use std::path::Path;

use crate::inbox::Inbox;

#[derive(Debug, Clone)]
struct Datagram {
    pid: i32,
    text: String,
}

pub struct NotifyListener {
    inbox: Inbox<Datagram>,
}

impl NotifyListener {
    pub fn bind(path: &Path) -> NotifyListener {
        NotifyListener {
            inbox: Inbox::bind(path, |pid, payload| {
                Some(Datagram {
                    pid,
                    text: String::from_utf8_lossy(&payload).into_owned(),
                })
            }),
        }
    }

    pub fn path(&self) -> &Path {
        self.inbox.path()
    }

    /// Every datagram, in arrival order, including every one sent before
    /// the call: a reader never races the agent's last words.
    pub fn messages(&self) -> Vec<String> {
        self.inbox.items().into_iter().map(|d| d.text).collect()
    }

    /// The datagrams `pid` sent, in order.
    pub fn messages_of(&self, pid: i32) -> Vec<String> {
        self.inbox
            .items()
            .into_iter()
            .filter(|d| d.pid == pid)
            .map(|d| d.text)
            .collect()
    }

    /// Every `KEY=value` line, in order.
    pub fn lines(&self) -> Vec<String> {
        lines(&self.messages())
    }

    /// The `KEY=value` lines `pid` sent, in order.
    pub fn lines_of(&self, pid: i32) -> Vec<String> {
        lines(&self.messages_of(pid))
    }

    /// The `STATUS=` texts, in order.
    pub fn statuses(&self) -> Vec<String> {
        statuses(&self.messages())
    }

    /// The `STATUS=` texts `pid` sent, in order.
    pub fn statuses_of(&self, pid: i32) -> Vec<String> {
        statuses(&self.messages_of(pid))
    }
}

fn lines(messages: &[String]) -> Vec<String> {
    messages
        .iter()
        .flat_map(|m| m.lines().map(str::to_string))
        .collect()
}

fn statuses(messages: &[String]) -> Vec<String> {
    lines(messages)
        .iter()
        .filter_map(|l| l.strip_prefix("STATUS=").map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    /// A datagram already sent is there when the check reads, with its
    /// sender. With the listener on a task of the test's runtime, a read
    /// before that task ran missed the last datagram (this test failed so).
    #[tokio::test]
    async fn a_datagram_sent_before_the_read_is_read_with_its_sender() {
        let dir = tempfile::tempdir().unwrap();
        let listener = NotifyListener::bind(&dir.path().join("notify.sock"));
        let sender = UnixDatagram::unbound().unwrap();
        for text in ["STATUS=first", "READY=1\nSTATUS=Done"] {
            sender.send_to(text.as_bytes(), listener.path()).unwrap();
        }
        assert_eq!(listener.statuses(), ["first", "Done"]);
        let me = std::process::id() as i32;
        assert_eq!(listener.statuses_of(me), ["first", "Done"]);
        assert!(listener.messages_of(me + 1).is_empty());
        assert_eq!(listener.lines()[1], "READY=1");
    }
}
