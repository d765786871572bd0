//! The check before the kubeconfig leaves the node: does the API server's
//! serving certificate verify, with the kubeconfig's own CA, for the address
//! written into it? catalyst-api accepts any kubeconfig with 204, so one
//! that cannot work would otherwise fail quietly, later, somewhere else.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};

use crate::config::PublicAddress;
use crate::exit::Exit;
use crate::memory::untrusted::Untrusted;
use crate::peers::retry::{Classify, Retry, Verdict, innermost};

/// What the preflight connects to and what it expects to find.
pub(crate) struct Check {
    /// The kubeconfig's `certificate-authority-data`.
    pub(crate) roots: Vec<CertificateDer<'static>>,
    /// The host written into the kubeconfig.
    pub(crate) address: PublicAddress,
    pub(crate) port: u16,
    /// The API server's loopback endpoint from the k3s kubeconfig: the same
    /// listener, reachable even when the node cannot reach its own public
    /// address (no hairpin, or a firewall in front of it).
    pub(crate) local: SocketAddr,
    /// The sovereign FQDN, which k3s always has in `--tls-san`.
    pub(crate) fallback: Option<String>,
    pub(crate) timeout: Duration,
}

/// A certificate that will verify for the kubeconfig's users.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Passed {
    /// Valid for the address in the kubeconfig.
    Address { via: SocketAddr },
    /// Valid only for the fallback name: the kubeconfig gets it as
    /// `tls-server-name`.
    Fallback { name: String, via: SocketAddr },
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PreflightError {
    #[error(
        "cannot reach the API server at {via} to check its certificate: {}",
        innermost(error)
    )]
    Unreachable {
        via: SocketAddr,
        error: std::io::Error,
    },
    /// Clock skew at first boot: wait for NTP rather than refuse.
    #[error(
        "the API server's certificate (at {via}) is not valid at this node's current time ({}); \
         waiting for the clock",
        innermost(error)
    )]
    Clock {
        via: SocketAddr,
        error: rustls::Error,
    },
    #[error(
        "the API server's certificate is not valid for {address} (it names {presented}){fallback}; \
         the kubeconfig would fail TLS verification: start k3s with --tls-san={address}"
    )]
    NotCovered {
        address: String,
        presented: String,
        fallback: String,
    },
    #[error(
        "the API server's certificate (at {via}) does not verify with the kubeconfig's \
         certificate-authority-data: {}",
        innermost(error)
    )]
    Untrusted {
        via: SocketAddr,
        error: rustls::Error,
    },
    #[error(
        "TLS handshake with the API server at {via} failed: {}",
        innermost(error)
    )]
    Handshake {
        via: SocketAddr,
        error: std::io::Error,
    },
}

impl Classify for PreflightError {
    fn verdict(&self) -> Verdict {
        match self {
            PreflightError::Unreachable { error, .. } | PreflightError::Handshake { error, .. } => {
                Verdict::transport(error)
            }
            PreflightError::Clock { .. } => Verdict::Retry(Retry::default()),
            PreflightError::NotCovered { .. } | PreflightError::Untrusted { .. } => {
                Verdict::Permanent(Exit::Certificate)
            }
        }
    }
}

/// How one handshake ended, short of a connection failure.
enum Handshake {
    Verified,
    WrongName(Vec<String>),
}

impl Check {
    /// Connects to the public address when it is an IP (a name may not
    /// resolve yet at first boot), else, or when that fails, to the loopback
    /// endpoint with the name as SNI; then tries the fallback name.
    pub(crate) async fn run(self) -> Result<Passed, PreflightError> {
        tokio::task::spawn_blocking(move || self.blocking())
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// The names the certificate presents (for `doctor`): one handshake on
    /// the loopback endpoint verifying it for a name no certificate holds
    /// (`.invalid`, RFC 6761), so the verifier reports the names it found.
    pub(crate) async fn presented_names(self) -> Result<String, PreflightError> {
        tokio::task::spawn_blocking(move || {
            let config = self.client_config()?;
            let name = ServerName::try_from("catalyst-bootstrap-doctor.invalid")
                .expect("a valid DNS name");
            match handshake(&config, name, self.local, self.timeout)? {
                Handshake::WrongName(presented) => Ok(readable(&presented)),
                Handshake::Verified => Ok("a name ending in .invalid (!)".to_string()),
            }
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    fn client_config(&self) -> Result<Arc<ClientConfig>, PreflightError> {
        let mut roots = RootCertStore::empty();
        let (_, unparsable) = roots.add_parsable_certificates(self.roots.iter().cloned());
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| PreflightError::Untrusted {
                via: self.local,
                error,
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        if unparsable > 0 {
            tracing::warn!(
                "{unparsable} certificate(s) in certificate-authority-data could not be parsed"
            );
        }
        Ok(Arc::new(config))
    }

    fn blocking(&self) -> Result<Passed, PreflightError> {
        let config = self.client_config()?;

        let name = match &self.address {
            PublicAddress::Ip(ip) => ServerName::IpAddress((*ip).into()),
            PublicAddress::Name(name) => ServerName::try_from(name.clone())
                .expect("public_address names are validated as DNS names"),
        };
        let via = match self.address {
            PublicAddress::Ip(ip) if is_own(ip) => {
                let public = SocketAddr::new(ip, self.port);
                match TcpStream::connect_timeout(&public, self.timeout) {
                    Ok(_) => public,
                    Err(e) => {
                        tracing::info!(
                            "the public address {public} is not reachable from this node ({e}); \
                             checking the certificate on {} instead",
                            self.local
                        );
                        self.local
                    }
                }
            }
            _ => self.local,
        };
        let presented = match handshake(&config, name, via, self.timeout)? {
            Handshake::Verified => return Ok(Passed::Address { via }),
            Handshake::WrongName(presented) => presented,
        };
        if let Some(fallback) = &self.fallback {
            let name = ServerName::try_from(fallback.clone())
                .expect("sovereign_fqdn is validated as a DNS name");
            if let Handshake::Verified = handshake(&config, name, via, self.timeout)? {
                return Ok(Passed::Fallback {
                    name: fallback.clone(),
                    via,
                });
            }
        }
        Err(PreflightError::NotCovered {
            address: self.address.url_host(),
            presented: readable(&presented),
            fallback: match &self.fallback {
                Some(name) => format!(", nor for the fallback name {name} (`sovereign_fqdn`)"),
                None => ", and no `sovereign_fqdn` is configured to fall back on".to_string(),
            },
        })
    }
}

/// Whether `ip` is one of this node's addresses (Hetzner puts the public
/// IPv4 on eth0): only then is connecting to it a check of this node's
/// listener rather than a trip through NAT, a floating IP or a load
/// balancer that forwards only 80 and 443. Binding is local and sends nothing.
fn is_own(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// The names a certificate presents, as rustls reports them
/// (`DnsName("a")`, `IpAddress(1.2.3.4)`), made readable.
fn readable(presented: &[String]) -> String {
    if presented.is_empty() {
        return "no names".to_string();
    }
    let names = presented
        .iter()
        .map(|p| {
            let inner = p
                .split_once('(')
                .and_then(|(_, rest)| rest.strip_suffix(')'))
                .unwrap_or(p);
            inner.trim_matches('"').to_string()
        })
        .collect::<Vec<_>>()
        .join(", ");
    // The certificate's names are the API server's words, not ours.
    Untrusted::new(names).shown()
}

/// One TLS handshake to `via`, verifying the certificate for `name`,
/// within `timeout` as a whole: a server that drips its handshake a byte at
/// a time must not hold this blocking thread past it.
fn handshake(
    config: &Arc<ClientConfig>,
    name: ServerName<'static>,
    via: SocketAddr,
    timeout: Duration,
) -> Result<Handshake, PreflightError> {
    let end = std::time::Instant::now() + timeout;
    let unreachable = |error| PreflightError::Unreachable { via, error };
    let mut tcp = TcpStream::connect_timeout(&via, timeout).map_err(unreachable)?;
    tcp.set_nodelay(true).map_err(unreachable)?;
    let mut conn = rustls::ClientConnection::new(config.clone(), name)
        .map_err(|error| PreflightError::Untrusted { via, error })?;
    while conn.is_handshaking() {
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(PreflightError::Handshake {
                via,
                error: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no complete handshake within {}s", timeout.as_secs()),
                ),
            });
        }
        let set = |t| {
            tcp.set_read_timeout(Some(t))
                .and_then(|()| tcp.set_write_timeout(Some(t)))
        };
        set(left).map_err(|error| PreflightError::Handshake { via, error })?;
        // One read or write at a time (not `complete_io`, which loops on a
        // peer that keeps sending), so the time left is checked in between.
        let io = |error| PreflightError::Handshake { via, error };
        if conn.wants_write() {
            conn.write_tls(&mut tcp).map_err(io)?;
            continue;
        }
        if conn.read_tls(&mut tcp).map_err(io)? == 0 {
            return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        match conn.process_new_packets() {
            Ok(_) => {}
            Err(rustls::Error::InvalidCertificate(cert)) => {
                // Tell the server why, as complete_io would have.
                let _ = conn.write_tls(&mut tcp);
                return classify(cert, via);
            }
            Err(error) => {
                let _ = conn.write_tls(&mut tcp);
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    error,
                )));
            }
        }
    }
    while conn.wants_write() && conn.write_tls(&mut tcp).is_ok() {}
    conn.send_close_notify();
    let _ = conn.complete_io(&mut tcp);
    Ok(Handshake::Verified)
}

fn classify(cert: CertificateError, via: SocketAddr) -> Result<Handshake, PreflightError> {
    match cert {
        CertificateError::NotValidForName => Ok(Handshake::WrongName(Vec::new())),
        CertificateError::NotValidForNameContext { presented, .. } => {
            Ok(Handshake::WrongName(presented))
        }
        CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. }
        | CertificateError::Expired
        | CertificateError::ExpiredContext { .. } => Err(PreflightError::Clock {
            via,
            error: rustls::Error::InvalidCertificate(cert),
        }),
        other => Err(PreflightError::Untrusted {
            via,
            error: rustls::Error::InvalidCertificate(other),
        }),
    }
}

/// The loopback endpoint a k3s server URL names (`localhost` is 127.0.0.1).
pub(crate) fn endpoint(server: &reqwest::Url) -> Option<SocketAddr> {
    let port = server.port_or_known_default()?;
    let ip = match server.host()? {
        url::Host::Domain(d) if d.eq_ignore_ascii_case("localhost") => {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        }
        url::Host::Domain(_) => return None,
        url::Host::Ipv4(ip) => IpAddr::V4(ip),
        url::Host::Ipv6(ip) => IpAddr::V6(ip),
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that sends a TLS record header and then one byte every 50 ms
    /// never trips a per-read timeout; the handshake still ends on time.
    #[test]
    fn a_dripping_handshake_ends_within_its_timeout() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let via = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            use std::io::Write;
            let (mut peer, _) = listener.accept().unwrap();
            let _ = peer.write_all(&[0x16, 0x03, 0x03, 0x40, 0x00]);
            for _ in 0..200 {
                std::thread::sleep(Duration::from_millis(50));
                if peer.write_all(&[0]).is_err() {
                    return;
                }
            }
        });
        let config = Arc::new(
            ClientConfig::builder()
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth(),
        );
        let name = ServerName::try_from("localhost").unwrap();
        let started = std::time::Instant::now();
        let result = handshake(&config, name, via, Duration::from_millis(400));
        assert!(matches!(result, Err(PreflightError::Handshake { .. })));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn loopback_endpoints_of_server_urls() {
        let cases = [
            ("https://127.0.0.1:6443", Some("127.0.0.1:6443")),
            ("https://localhost:6443", Some("127.0.0.1:6443")),
            ("https://[::1]:6443", Some("[::1]:6443")),
            ("https://127.0.0.1", Some("127.0.0.1:443")),
            ("https://api.example:6443", None),
        ];
        for (url, want) in cases {
            let got = endpoint(&url.parse().unwrap());
            assert_eq!(got, want.map(|w| w.parse().unwrap()), "{url}");
        }
    }

    #[test]
    fn presented_names_are_listed_plainly() {
        let presented = [
            r#"DnsName("localhost")"#.to_string(),
            "IpAddress(127.0.0.1)".to_string(),
        ];
        assert_eq!(readable(&presented), "localhost, 127.0.0.1");
        assert_eq!(readable(&[]), "no names");
    }

    #[test]
    fn own_addresses_are_told_apart_without_sending_anything() {
        assert!(is_own("127.0.0.1".parse().unwrap()));
        // TEST-NET-3 is assigned to no machine.
        assert!(!is_own("203.0.113.10".parse().unwrap()));
    }

    #[test]
    fn certificate_errors_are_classified_by_what_heals() {
        let via: SocketAddr = "127.0.0.1:6443".parse().unwrap();
        assert!(matches!(
            classify(CertificateError::NotValidForName, via),
            Ok(Handshake::WrongName(_))
        ));
        let clock = classify(CertificateError::NotValidYet, via).err().unwrap();
        assert_eq!(clock.verdict(), Verdict::Retry(Retry::default()));
        let untrusted = classify(CertificateError::UnknownIssuer, via)
            .err()
            .unwrap();
        assert_eq!(untrusted.verdict(), Verdict::Permanent(Exit::Certificate));
        assert!(untrusted.to_string().contains("certificate-authority-data"));
    }
}
