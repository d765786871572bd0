//! A fake journald: the native protocol socket (`/run/systemd/journal/socket`,
//! systemd.journal-fields(7), the "Native Journal Protocol"), bound in a
//! directory the sandbox mounts over `/run/systemd` in the agent's private
//! mount namespace. Like journald it takes each sender's PID from the
//! kernel (`SCM_CREDENTIALS`) and reads large entries from a passed memfd.

use std::path::{Path, PathBuf};

use crate::inbox::Inbox;

/// One journal entry: the sender's PID and its fields in order.
#[derive(Debug, Clone)]
pub struct Entry {
    pub pid: i32,
    pub fields: Vec<(String, Vec<u8>)>,
}

impl Entry {
    pub fn get(&self, key: &str) -> Option<String> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// `MESSAGE` followed by every other field as `KEY=value`: what
    /// `journalctl -o verbose` would show, on one line.
    pub fn line(&self) -> String {
        let mut line = self.get("MESSAGE").unwrap_or_default();
        for (key, value) in self.fields.iter().filter(|(k, _)| k != "MESSAGE") {
            line.push_str(&format!(" {key}={}", String::from_utf8_lossy(value)));
        }
        line
    }
}

/// The fake journald. Cheap to clone.
#[derive(Clone)]
pub struct FakeJournal {
    /// Mounted over `/run/systemd`; the socket is `journal/socket` in it.
    dir: PathBuf,
    inbox: Inbox<Entry>,
}

impl FakeJournal {
    pub fn start(dir: &Path) -> FakeJournal {
        let socket_path = dir.join("journal/socket");
        std::fs::create_dir_all(socket_path.parent().unwrap()).unwrap();
        let inbox = Inbox::bind(&socket_path, |pid, payload| {
            (!payload.is_empty()).then(|| {
                let fields =
                    parse(&payload).unwrap_or_else(|e| panic!("a malformed journal datagram: {e}"));
                Entry { pid, fields }
            })
        });
        FakeJournal {
            dir: dir.to_path_buf(),
            inbox,
        }
    }

    /// The directory to mount over `/run/systemd`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every entry, including those of every datagram sent before the call.
    pub fn entries(&self) -> Vec<Entry> {
        self.inbox.items()
    }

    /// The entries from `pid` (every sender: `None`), one line each.
    pub fn text(&self, pid: Option<i32>) -> String {
        self.entries()
            .iter()
            .filter(|e| pid.is_none_or(|p| e.pid == p))
            .map(|e| e.line() + "\n")
            .collect()
    }

    /// Returns once every datagram sent before the call has been read.
    pub fn sync(&self) {
        self.inbox.sync();
    }
}

/// `KEY=value\n`, or `KEY\n` + little-endian u64 length + value + `\n` for
/// values that contain newlines.
fn parse(mut data: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut fields = Vec::new();
    while !data.is_empty() {
        let end = data
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("a field without a newline")?;
        let line = &data[..end];
        data = &data[end + 1..];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            let key = String::from_utf8_lossy(&line[..eq]).into_owned();
            fields.push((key, line[eq + 1..].to_vec()));
            continue;
        }
        let key = String::from_utf8_lossy(line).into_owned();
        if data.len() < 8 {
            return Err(format!("{key}: no length"));
        }
        let len = u64::from_le_bytes(data[..8].try_into().unwrap()) as usize;
        data = &data[8..];
        if data.len() < len + 1 || data[len] != b'\n' {
            return Err(format!("{key}: {len} bytes announced"));
        }
        fields.push((key, data[..len].to_vec()));
        data = &data[len + 1..];
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::MsgFlags;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixDatagram;

    #[test]
    fn parses_both_field_forms() {
        let mut data = b"PRIORITY=6\nMESSAGE\n".to_vec();
        data.extend_from_slice(&5u64.to_le_bytes());
        data.extend_from_slice(b"a\nb=c\nMESSAGE_ID=x\n");
        let fields = parse(&data).unwrap();
        assert_eq!(
            fields,
            vec![
                ("PRIORITY".to_string(), b"6".to_vec()),
                ("MESSAGE".to_string(), b"a\nb=c".to_vec()),
                ("MESSAGE_ID".to_string(), b"x".to_vec()),
            ]
        );
        assert!(parse(b"MESSAGE\n\x09\0\0\0\0\0\0\0short\n").is_err());
        assert!(parse(b"NO_NEWLINE=1").is_err());
    }

    #[test]
    fn records_the_senders_pid_and_waits_for_its_datagrams() {
        let dir = tempfile::tempdir().unwrap();
        let journal = FakeJournal::start(dir.path());
        let sender = UnixDatagram::unbound().unwrap();
        let socket = dir.path().join("journal/socket");
        sender.send_to(b"", &socket).unwrap();
        sender
            .send_to(b"MESSAGE=hello\nPRIORITY=6\n", &socket)
            .unwrap();
        journal.sync();
        let entries = journal.entries();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].get("MESSAGE").as_deref(), Some("hello"));
        let me = std::process::id() as i32;
        assert_eq!(entries[0].pid, me);
        assert_eq!(journal.text(Some(me)), "hello PRIORITY=6\n");
        assert_eq!(journal.text(Some(me + 1)), "");
        assert_eq!(journal.text(None), "hello PRIORITY=6\n");
    }

    #[test]
    fn reads_entries_passed_as_a_file_descriptor() {
        use nix::sys::socket::{ControlMessage, UnixAddr, sendmsg};
        use std::io::{Seek, Write};
        let dir = tempfile::tempdir().unwrap();
        let journal = FakeJournal::start(dir.path());
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"MESSAGE=large\n").unwrap();
        file.rewind().unwrap();
        let sender = UnixDatagram::unbound().unwrap();
        let to = UnixAddr::new(&dir.path().join("journal/socket")).unwrap();
        let fds = [file.as_raw_fd()];
        sendmsg(
            sender.as_raw_fd(),
            &[std::io::IoSlice::new(b"")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            Some(&to),
        )
        .unwrap();
        journal.sync();
        let entries = journal.entries();
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].get("MESSAGE").as_deref(), Some("large"));
    }
}
