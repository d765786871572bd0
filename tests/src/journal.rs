//! A fake journald: the native protocol socket (`/run/systemd/journal/socket`,
//! systemd.journal-fields(7), the "Native Journal Protocol"), bound in a
//! directory the sandbox mounts over `/run/systemd` in the agent's private
//! mount namespace. Like journald it takes each sender's PID from the
//! kernel (`SCM_CREDENTIALS`) and reads large entries from a passed memfd.

use std::io::{IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, UnixCredentials, recvmsg, setsockopt, sockopt,
};

/// What `sync` sends; no agent sends this field.
const MARK: &[u8] = b"FAKE_JOURNAL_SYNC=1\n";

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

/// The fake journald. Cheap to clone; the receiving thread ends with the
/// last clone.
#[derive(Clone)]
pub struct FakeJournal {
    inner: Arc<Inner>,
}

struct Inner {
    /// Mounted over `/run/systemd`; the socket is `journal/socket` in it.
    dir: PathBuf,
    entries: Arc<Mutex<Vec<Entry>>>,
    /// `MARK` datagrams seen, the barrier of `sync`.
    marks: Arc<Mutex<u64>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl FakeJournal {
    pub fn start(dir: &Path) -> FakeJournal {
        let socket_path = dir.join("journal/socket");
        std::fs::create_dir_all(socket_path.parent().unwrap()).unwrap();
        let socket = UnixDatagram::bind(&socket_path).expect("binding the journal socket");
        setsockopt(&socket, sockopt::PassCred, &true).expect("SO_PASSCRED");
        // The agent's entries are small; journald's own limit is far above.
        setsockopt(&socket, sockopt::RcvBuf, &(4 << 20)).expect("SO_RCVBUF");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let inner = Inner {
            dir: dir.to_path_buf(),
            entries: Arc::default(),
            marks: Arc::default(),
            stop: Arc::default(),
        };
        let (entries, marks, stop) = (
            inner.entries.clone(),
            inner.marks.clone(),
            inner.stop.clone(),
        );
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            while !stop.load(Ordering::Relaxed) {
                let Some((pid, payload)) = receive(&socket, &mut buf) else {
                    continue;
                };
                if payload == MARK {
                    *marks.lock().unwrap() += 1;
                } else if !payload.is_empty() {
                    let fields = parse(&payload)
                        .unwrap_or_else(|e| panic!("a malformed journal datagram: {e}"));
                    entries.lock().unwrap().push(Entry { pid, fields });
                }
            }
        });
        FakeJournal {
            inner: Arc::new(inner),
        }
    }

    /// The directory to mount over `/run/systemd`.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.inner.entries.lock().unwrap().clone()
    }

    /// The entries from `pid` (every sender: `None`), one line each.
    pub fn text(&self, pid: Option<i32>) -> String {
        self.entries()
            .iter()
            .filter(|e| pid.is_none_or(|p| e.pid == p))
            .map(|e| e.line() + "\n")
            .collect()
    }

    /// Returns once every datagram sent before the call has been read: a
    /// datagram socket delivers in order, so a mark sent now comes after
    /// them.
    pub fn sync(&self) {
        let before = *self.inner.marks.lock().unwrap();
        let sender = UnixDatagram::unbound().unwrap();
        sender
            .send_to(MARK, self.inner.dir.join("journal/socket"))
            .expect("marking the journal");
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while *self.inner.marks.lock().unwrap() == before {
            assert!(std::time::Instant::now() < end, "the fake journal stalled");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// One datagram: the sender's PID and the payload, read from the memfd
/// when one was passed instead (entries too large for a datagram).
fn receive(socket: &UnixDatagram, buf: &mut [u8]) -> Option<(i32, Vec<u8>)> {
    let mut cmsg = nix::cmsg_space!(UnixCredentials, [std::os::fd::RawFd; 1]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .ok()?;
    let len = msg.bytes;
    let mut pid = 0;
    let mut memfd = None;
    for c in msg.cmsgs().ok()? {
        match c {
            ControlMessageOwned::ScmCredentials(cred) => pid = cred.pid(),
            ControlMessageOwned::ScmRights(fds) => {
                // SAFETY: the kernel just installed this descriptor for us.
                memfd = fds.first().map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
            }
            _ => {}
        }
    }
    let payload = match memfd {
        Some(fd) => {
            let mut data = Vec::new();
            std::fs::File::from(fd).read_to_end(&mut data).ok()?;
            data
        }
        None => buf[..len].to_vec(),
    };
    Some((pid, payload))
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
