//! A throwaway PKI shaped like k3s's: a server CA, a serving certificate for
//! the loopback names, and an admin client certificate (`system:masters`).

use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    cert_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Identity {
    fn certified_key(&self) -> Arc<CertifiedKey> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let signing = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(key)
            .unwrap();
        Arc::new(CertifiedKey::new(vec![self.cert_der.clone()], signing))
    }
}

pub struct Pki {
    pub ca_pem: String,
    ca_der: CertificateDer<'static>,
    ca: CertifiedIssuer<'static, KeyPair>,
    pub server: Identity,
    pub client: Identity,
}

/// A serving certificate that can be changed while the server runs (a
/// clock that catches up, a certificate rotated).
#[derive(Debug)]
pub struct CertSwitch(Mutex<Arc<CertifiedKey>>);

impl CertSwitch {
    pub fn set(&self, identity: &Identity) {
        *self.0.lock().unwrap() = identity.certified_key();
    }
}

impl ResolvesServerCert for CertSwitch {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.lock().unwrap().clone())
    }
}

fn server_params(names: &[&str], valid_from_year: Option<i32>) -> CertificateParams {
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, "k3s");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    if let Some(year) = valid_from_year {
        params.not_before = rcgen::date_time_ymd(year, 1, 1);
        params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
    }
    params
}

fn issue(ca: &CertifiedIssuer<'static, KeyPair>, params: CertificateParams) -> Identity {
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca).unwrap();
    Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

impl Pki {
    /// `names`: the DNS names and IPs the serving certificate is valid for.
    pub fn new(names: &[&str]) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "k3s-server-ca@1700000000");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client
            .distinguished_name
            .push(DnType::CommonName, "system:admin");
        client
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        Pki {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            server: issue(&ca, server_params(names, None)),
            client: issue(&ca, client),
            ca,
        }
    }

    /// Another serving certificate from this CA; one valid only from a
    /// future year is what a node whose clock lags behind sees.
    pub fn issue_server(&self, names: &[&str], valid_from_year: Option<i32>) -> Identity {
        issue(&self.ca, server_params(names, valid_from_year))
    }

    /// Serving config; with `client_auth` clients may present a certificate
    /// from this CA and one they present must verify (the API server's
    /// `VerifyClientCertIfGiven`); requests without one are the handler's
    /// to refuse.
    pub fn server_config(&self, client_auth: bool) -> Arc<rustls::ServerConfig> {
        self.config(
            client_auth,
            Arc::new(CertSwitch(Mutex::new(self.server.certified_key()))),
        )
    }

    /// Without client authentication, serving whatever the switch holds
    /// (this PKI's serving certificate to begin with).
    pub fn switchable_server_config(&self) -> (Arc<rustls::ServerConfig>, Arc<CertSwitch>) {
        let switch = Arc::new(CertSwitch(Mutex::new(self.server.certified_key())));
        (self.config(false, switch.clone()), switch)
    }

    /// What a client of the API server with the admin identity uses:
    /// trusts this CA, presents the client certificate.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.client.key_der.clone()));
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![self.client.cert_der.clone()], key)
            .unwrap();
        Arc::new(config)
    }

    fn config(&self, client_auth: bool, certificate: Arc<CertSwitch>) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca_der.clone()).unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_cert_resolver(certificate);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}
