//! Entry points for `cargo fuzz` (`agent/fuzz`). Compiled only with
//! `--cfg fuzzing`, which cargo-fuzz sets: never part of a release build.
//! Each checks properties, not just the absence of a crash.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};

use crate::config::{PublicAddress, from_text};
use crate::job::kubeconfig::{MAX_BYTES, parse, rewrite};
use crate::peers::retry::Classify;

/// Any text as a configuration file: parsed or refused with a message that
/// names the file, never a panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(err) = from_text(text) {
        let message = format!("{err:#}");
        assert!(
            message.contains("config.yaml") || message.contains("missing required key"),
            "an error that names neither file nor key: {message}"
        );
    }
}

/// Any text as k3s's kubeconfig: when the agent accepts it, the rewrite either
/// refuses or produces YAML that parses back with every loopback server
/// pointed at the public address.
pub fn kubeconfig(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(kc) = parse(text) else {
        return;
    };
    for public in [
        PublicAddress::Ip("203.0.113.10".parse().unwrap()),
        PublicAddress::Ip("2001:db8::1".parse().unwrap()),
        PublicAddress::Name("api.sovereign.example".into()),
    ] {
        let Ok(out) = rewrite(&kc, &public, Some("api.sovereign.example")) else {
            continue;
        };
        assert!(out.body.len() <= MAX_BYTES);
        let back = kube::config::Kubeconfig::from_yaml(
            std::str::from_utf8(&out.body).expect("the rewrite is UTF-8"),
        )
        .expect("the rewrite parses as a kubeconfig");
        assert_eq!(back.clusters.len(), kc.clusters.len());
        for r in &out.rewrites {
            assert!(r.to.contains(&public.url_host()), "{r:?}");
            let cluster = back
                .clusters
                .iter()
                .find(|c| c.name == r.cluster)
                .and_then(|c| c.cluster.as_ref())
                .expect("a rewritten cluster survives");
            assert_eq!(cluster.server.as_deref(), Some(r.to.as_str()));
            assert_eq!(
                cluster.tls_server_name.as_deref(),
                Some("api.sovereign.example")
            );
        }
    }
}

/// Any answer from catalyst-api (first two bytes: the status code, then a
/// `Retry-After` and a `Location` line, then the body): classified without
/// a panic, and what would be logged never repeats the token.
pub fn response(data: &[u8]) {
    const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    if data.len() < 2 {
        return;
    }
    let code = 100 + u16::from_be_bytes([data[0], data[1]]) % 500;
    let Ok(status) = StatusCode::from_u16(code) else {
        return;
    };
    let rest = String::from_utf8_lossy(&data[2..]);
    let mut lines = rest.splitn(3, '\n');
    let mut headers = HeaderMap::new();
    for name in [RETRY_AFTER, LOCATION] {
        if let Some(value) = lines.next().and_then(|l| HeaderValue::from_str(l).ok()) {
            headers.insert(name, value);
        }
    }
    // Echo servers answer with the request: give the fuzzer the token to echo.
    let body = lines.next().unwrap_or_default().replace("TOKEN", TOKEN);
    crate::memory::untrusted::register(crate::memory::untrusted::Alphabet::Hex, TOKEN.as_bytes());
    match crate::peers::api::classify(status, &headers, &body) {
        Ok(_) => assert!(code == 204 || code == 403),
        Err(err) => {
            let _ = err.verdict();
            let logged = err.to_string();
            let hex: String = logged
                .chars()
                .filter(char::is_ascii_hexdigit)
                .collect::<String>()
                .to_ascii_lowercase();
            assert!(
                !hex.contains(&TOKEN[..24]),
                "the token reaches the log: {logged}"
            );
            assert!(
                !logged.chars().any(char::is_control),
                "a control character reaches the log: {logged:?}"
            );
        }
    }
}
