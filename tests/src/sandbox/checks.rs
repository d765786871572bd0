//! What every run must keep, as the fault matrix and the scenarios check
//! it: no secret on any surface, and sd_notify carrying only the agent's
//! own words.

use super::Sandbox;

impl Sandbox {
    pub fn assert_no_leaks(&self, outputs: &[&str]) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut secrets = vec![("bearer token", self.token.clone())];
        if let Some(wire) = self
            .seed_secret()
            .and_then(|s| s["data"]["recovery-seed"].as_str().map(str::to_string))
        {
            // A test may have put any value there; the forms that decode count.
            let text = b64
                .decode(&wire)
                .ok()
                .and_then(|t| String::from_utf8(t).ok());
            if let Some(text) = text {
                if let Ok(raw) = b64.decode(&text) {
                    secrets.push(("seed (hex)", hex(&raw)));
                }
                secrets.push(("seed (base64)", text));
            }
            secrets.push(("seed (double base64)", wire));
        }
        let key_body: String = self
            .pki
            .client
            .key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        secrets.push(("client key", key_body));
        for value in self.values.lock().unwrap().iter() {
            secrets.push(("a bootstrap Secret's value", value.clone()));
            secrets.push(("a bootstrap Secret's value (base64)", b64.encode(value)));
        }
        secrets.push(("client key (base64)", b64.encode(&self.pki.client.key_pem)));

        let mut haystacks: Vec<(String, String)> = outputs
            .iter()
            .enumerate()
            .map(|(i, o)| (format!("output #{i}"), o.to_string()))
            .collect();
        haystacks.push((
            "sd_notify messages".into(),
            self.notify.messages().join("\n"),
        ));
        self.journal.sync();
        haystacks.push(("the journal".into(), self.journal.text(None)));
        if let Ok(entries) = std::fs::read_dir(self.state_dir()) {
            for entry in entries.flatten() {
                let content = std::fs::read(entry.path()).unwrap_or_default();
                haystacks.push((
                    entry.path().display().to_string(),
                    String::from_utf8_lossy(&content).into_owned(),
                ));
            }
        }
        for (place, text) in &haystacks {
            if let Some(at) = text.find(['\u{1b}', '\u{7}', '\u{9b}']) {
                let around: String = text[at.saturating_sub(80)..].chars().take(160).collect();
                panic!("ESC, BEL or CSI in {place}: …{around:?}…");
            }
            for (what, secret) in &secrets {
                let hex_secret = secret.bytes().all(|c| c.is_ascii_hexdigit());
                let keep = |c: char| {
                    if hex_secret {
                        c.is_ascii_hexdigit()
                    } else {
                        c.is_ascii_alphanumeric() || c == '+' || c == '/'
                    }
                };
                let stripped: String = text.chars().filter(|c| keep(*c)).collect();
                let stripped = if hex_secret {
                    stripped.to_ascii_lowercase()
                } else {
                    stripped
                };
                let pure: String = secret.chars().filter(|c| keep(*c)).collect();
                // Any 32 characters of it, at every 16th offset.
                let chars: Vec<char> = pure.chars().collect();
                for start in (0..chars.len().saturating_sub(32) + 1).step_by(16) {
                    let window: String =
                        chars[start..(start + 32).min(chars.len())].iter().collect();
                    assert!(!text.contains(&window), "{what} leaked into {place}");
                    assert!(
                        !stripped.contains(&window),
                        "{what} leaked into {place} (with other characters between its own)"
                    );
                }
            }
        }
    }

    /// Every sd_notify datagram of one run (process `pid`) is the agent's
    /// own `KEY=value` lines; `READY=1` comes at most once, with the
    /// agent's own words: the critical work done, or the whole job.
    pub fn assert_notify_well_formed(&self, pid: i32) {
        const KEYS: &[&str] = &["STATUS", "READY", "STOPPING", "EXTEND_TIMEOUT_USEC"];
        let messages = self.notify.messages_of(pid);
        let mut ready = 0;
        for (i, message) in messages.iter().enumerate() {
            for line in message.lines() {
                let key = line.split_once('=').map(|(k, _)| k).unwrap_or(line);
                assert!(
                    KEYS.contains(&key),
                    "sd_notify datagram #{i} carries {line:?}, not a key of the agent's: {message:?}"
                );
                if line == "READY=1" {
                    ready += 1;
                    assert!(
                        message.contains(
                            "STATUS=kubeconfig, seed and bootstrap Secrets done; handing the cluster to Flux"
                        ) || message.contains("STATUS=Done"),
                        "READY=1 (datagram #{i}) without the agent's words for it: {message:?}"
                    );
                }
            }
        }
        assert!(ready <= 1, "READY=1 sent {ready} times");
    }
}
