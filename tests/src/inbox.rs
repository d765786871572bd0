//! A datagram socket as systemd binds one: each datagram with its sender's
//! PID from the kernel (`SCM_CREDENTIALS`), a payload passed as a memfd read
//! in its place, and a barrier so that a reader sees every datagram sent
//! before it asked. The fake journald and the fake `NOTIFY_SOCKET` are both
//! one.

use std::collections::HashSet;
use std::io::{IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, UnixCredentials, recvmsg, setsockopt, sockopt,
};

/// What `sync` sends, followed by the mark's number; neither the agent nor
/// journald's clients send it.
const MARK: &str = "FAKE_INBOX_SYNC=";

/// The socket and what it received. Cheap to clone; the receiving thread
/// ends with the last clone.
pub struct Inbox<T> {
    path: PathBuf,
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Inbox<T> {
    fn clone(&self) -> Self {
        Inbox {
            path: self.path.clone(),
            shared: self.shared.clone(),
        }
    }
}

struct Shared<T> {
    items: Mutex<Vec<T>>,
    /// The numbers of the marks read so far, the barrier of `sync`: each
    /// caller waits for its own, so two at once cannot release each other.
    marks: Mutex<HashSet<u64>>,
    marked: Condvar,
    next_mark: AtomicU64,
}

impl<T: Clone + Send + 'static> Inbox<T> {
    /// Binds `path` and reads it on a thread of its own (not a task of the
    /// test's runtime, which a busy test can keep from running). `parse`
    /// turns a sender's PID and payload into an item, or `None` to drop it.
    pub fn bind(path: &Path, parse: fn(i32, Vec<u8>) -> Option<T>) -> Inbox<T> {
        let socket =
            UnixDatagram::bind(path).unwrap_or_else(|e| panic!("binding {}: {e}", path.display()));
        setsockopt(&socket, sockopt::PassCred, &true).expect("SO_PASSCRED");
        // The agent's datagrams are small; journald's own limit is far above.
        setsockopt(&socket, sockopt::RcvBuf, &(4 << 20)).expect("SO_RCVBUF");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let shared = Arc::new(Shared {
            items: Mutex::default(),
            marks: Mutex::default(),
            marked: Condvar::new(),
            next_mark: AtomicU64::new(0),
        });
        // The thread holds only a weak handle: it ends, at its next read
        // timeout, once the last clone of the inbox is gone.
        let weak = Arc::downgrade(&shared);
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            while weak.strong_count() > 0 {
                let Some((pid, payload)) = receive(&socket, &mut buf) else {
                    continue;
                };
                let Some(shared) = weak.upgrade() else { break };
                if let Some(mark) = mark_number(&payload) {
                    shared.marks.lock().unwrap().insert(mark);
                    shared.marked.notify_all();
                } else if let Some(item) = parse(pid, payload) {
                    shared.items.lock().unwrap().push(item);
                }
            }
        });
        Inbox {
            path: path.to_path_buf(),
            shared,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every item, in arrival order, including every datagram sent before
    /// the call (see `sync`).
    pub fn items(&self) -> Vec<T> {
        self.sync();
        self.shared.items.lock().unwrap().clone()
    }

    /// Returns once every datagram sent before the call has been read: the
    /// socket's queue is first in, first out, so a mark sent now is read
    /// after them. A process that has exited sent all it ever will.
    pub fn sync(&self) {
        let mark = self.shared.next_mark.fetch_add(1, Ordering::Relaxed);
        // Not holding the lock while sending: a full queue blocks the send
        // until the reader, which takes the lock for a mark, drains it.
        UnixDatagram::unbound()
            .unwrap()
            .send_to(format!("{MARK}{mark}\n").as_bytes(), &self.path)
            .unwrap_or_else(|e| panic!("marking {}: {e}", self.path.display()));
        let marks = self.shared.marks.lock().unwrap();
        let (marks, waited) = self
            .shared
            .marked
            .wait_timeout_while(marks, Duration::from_secs(30), |m| !m.contains(&mark))
            .unwrap();
        drop(marks);
        assert!(
            !waited.timed_out(),
            "{}: the reader stalled",
            self.path.display()
        );
    }
}

/// The number of a mark `sync` sent, if `payload` is one.
fn mark_number(payload: &[u8]) -> Option<u64> {
    std::str::from_utf8(payload)
        .ok()?
        .strip_prefix(MARK)?
        .trim_end()
        .parse()
        .ok()
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
