//! A fake `NOTIFY_SOCKET`: records every sd_notify datagram the agent sends.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::net::UnixDatagram;

pub struct NotifyListener {
    path: PathBuf,
    messages: Arc<Mutex<Vec<String>>>,
}

impl NotifyListener {
    pub fn bind(path: &Path) -> NotifyListener {
        let socket = UnixDatagram::bind(path).expect("binding the notify socket");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = messages.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = socket.recv(&mut buf).await {
                sink.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        });
        NotifyListener {
            path: path.to_path_buf(),
            messages,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every datagram, in arrival order.
    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }

    /// Every `KEY=value` line, in order.
    pub fn lines(&self) -> Vec<String> {
        self.messages()
            .iter()
            .flat_map(|m| m.lines().map(str::to_string).collect::<Vec<_>>())
            .collect()
    }

    /// The `STATUS=` texts, in order.
    pub fn statuses(&self) -> Vec<String> {
        self.lines()
            .iter()
            .filter_map(|l| l.strip_prefix("STATUS=").map(str::to_string))
            .collect()
    }
}
