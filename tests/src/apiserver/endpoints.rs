//! Where clients reach the fake: the kubeconfig k3s writes, the same API
//! server on more addresses, and a plain `GET` as any client sends it.

use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::FakeApiServer;
use crate::http::Server;

impl FakeApiServer {
    /// Serves on `ip` too, same port: what a node reaching its own public
    /// address sees.
    pub fn serve_on(&self, ip: std::net::IpAddr) {
        let addr = SocketAddr::new(ip, self.addr().port());
        let server = Server::start_on(
            addr,
            Some(self.pki.server_config(true)),
            self.handler.clone(),
            true,
        );
        self.also.lock().unwrap().push(server);
    }

    /// The same API server (the same objects, as etcd shares them) on a
    /// loopback port of its own, refusing connections until `up`: one
    /// control-plane node's API server in an HA cluster, which may start
    /// later than its peers'. Its `kubeconfig_for(port)` is that node's
    /// k3s.yaml.
    pub fn node_endpoint(&self, up: bool) -> Server {
        Server::start_on(
            "127.0.0.1:0".parse().unwrap(),
            Some(self.pki.server_config(true)),
            self.handler.clone(),
            up,
        )
    }

    /// The kubeconfig k3s writes to /etc/rancher/k3s/k3s.yaml.
    pub fn kubeconfig(&self) -> String {
        self.kubeconfig_for(self.addr().port())
    }

    /// The same, on a node whose API server listens on `port`.
    pub fn kubeconfig_for(&self, port: u16) -> String {
        let b64 = |s: &str| STANDARD.encode(s);
        format!(
            "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: https://127.0.0.1:{port}
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {{}}
users:
- name: default
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
",
            ca = b64(&self.pki.ca_pem),
            cert = b64(&self.pki.client.cert_pem),
            key = b64(&self.pki.client.key_pem),
        )
    }

    /// `GET path` over HTTPS with the admin client certificate, as any
    /// client of the API server sends it: the status code and the body
    /// exactly as it came over the wire.
    pub async fn fetch(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = tokio::net::TcpStream::connect(self.addr()).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(self.pki.client_config());
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: application/json\r\n\
             User-Agent: curl/8.5.0\r\nConnection: close\r\n\r\n",
            self.addr().port()
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        // A server may close without close_notify; what arrived is the answer.
        let _ = tls.read_to_end(&mut response).await;
        let response = String::from_utf8(response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "{head}"
        );
        let code = head.split(' ').nth(1).unwrap().parse().unwrap();
        (code, body.to_string())
    }
}
