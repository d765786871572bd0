//! The serving loop both fakes share: TLS, HTTP/1.1, the whole request body
//! collected, and a handler that may answer or drop the connection unanswered.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// `None` closes the connection without a response, the way a crash or a
/// lost packet after the server committed looks to the client.
pub type Answer = Option<Response<BoxBody<Bytes, std::convert::Infallible>>>;
pub type Handler =
    Arc<dyn Fn(Request<Bytes>) -> Pin<Box<dyn Future<Output = Answer> + Send>> + Send + Sync>;

/// The service error that makes hyper close the connection unanswered.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fake")
    }
}

impl std::error::Error for Dropped {}

/// Binds `addr` with SO_REUSEADDR so a fake can go down and come back on
/// the same port.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(128)
}

/// A TLS server on a fixed loopback port that can be taken down (port
/// closed, open connections cut: clients see "connection refused") and
/// brought back up on the same port.
pub struct Server {
    addr: SocketAddr,
    up: watch::Sender<bool>,
}

impl Server {
    pub fn start(tls: Arc<rustls::ServerConfig>, handler: Handler, up: bool) -> Server {
        Server::start_on("127.0.0.1:0".parse().unwrap(), Some(tls), handler, up)
    }

    /// The same over plain HTTP (a catalyst-api reached on loopback).
    pub fn start_plain(handler: Handler, up: bool) -> Server {
        Server::start_on("127.0.0.1:0".parse().unwrap(), None, handler, up)
    }

    /// On `addr`, which must be a loopback address (port 0: any free port);
    /// TLS unless `tls` is `None`.
    pub fn start_on(
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: Handler,
        up: bool,
    ) -> Server {
        assert!(addr.ip().is_loopback(), "fakes listen on loopback only");
        let first = bind(addr).expect("binding a loopback port");
        let addr = first.local_addr().unwrap();
        let (tx, rx) = watch::channel(up);
        tokio::spawn(run(
            addr,
            if up { Some(first) } else { None },
            tls,
            handler,
            rx,
        ));
        Server { addr, up: tx }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

async fn run(
    addr: SocketAddr,
    mut listener: Option<TcpListener>,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Handler,
    mut up: watch::Receiver<bool>,
) {
    loop {
        // Down means a closed port. Taken down before this task first ran,
        // the port bound in `start_on` would otherwise stay open unanswered:
        // the kernel completes handshakes into its backlog and clients time
        // out instead of being refused.
        if !*up.borrow() {
            listener = None;
        }
        if up.wait_for(|u| *u).await.is_err() {
            return;
        }
        let current = match listener.take() {
            Some(l) => l,
            None => match bind(addr) {
                Ok(l) => l,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let mut down = up.clone();
        tokio::select! {
            _ = accept(current, tls.clone(), handler.clone(), up.clone()) => {}
            gone = down.wait_for(|u| !*u) => {
                // The `Server` was dropped while up. `wait_for` checks the
                // value before the sender, so the `wait_for(up)` above keeps
                // answering at once: without this return the task would
                // rebind the port in a busy loop for the rest of the
                // process (a runner with many sandboxes on one runtime).
                if gone.is_err() {
                    return;
                }
            }
        }
    }
}

/// Until the server goes down: dropping this future closes the port, and
/// every connection task watches `up` to cut itself.
async fn accept(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Handler,
    up: watch::Receiver<bool>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let handler = handler.clone();
        let mut down = up.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = connection(acceptor, tcp, handler) => {}
                _ = down.wait_for(|u| !*u) => {}
            }
        });
    }
}

/// In every request's extensions: whether the client presented a
/// certificate the server verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientCertified(pub bool);

async fn connection(acceptor: Option<TlsAcceptor>, tcp: tokio::net::TcpStream, handler: Handler) {
    // As Go's net/http (the API server, catalyst-api) does: without it, an
    // answer written in two segments waits for the client's delayed ACK.
    let _ = tcp.set_nodelay(true);
    let Some(acceptor) = acceptor else {
        return serve(tcp, ClientCertified(false), handler).await;
    };
    let Ok(stream) = acceptor.accept(tcp).await else {
        return;
    };
    let certified = ClientCertified(stream.get_ref().1.peer_certificates().is_some());
    serve(stream, certified, handler).await;
}

async fn serve<S>(stream: S, certified: ClientCertified, handler: Handler)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(certified);
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            handler(Request::from_parts(parts, body))
                .await
                .ok_or(Dropped)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

pub fn respond(status: u16, content_type: &str, body: impl Into<Bytes>) -> Answer {
    Some(
        Response::builder()
            .status(status)
            .header("Content-Type", content_type)
            .body(Full::new(body.into()).boxed())
            .unwrap(),
    )
}

/// A response whose body starts, then stalls for `stall` before it ends: a
/// server that hangs mid-body.
pub fn respond_stalling(status: u16, content_type: &str, body: &str, stall: Duration) -> Answer {
    let (head, tail) = body.split_at(body.len() / 2);
    let chunks = [(Duration::ZERO, head), (stall, tail)];
    respond_paced(
        status,
        content_type,
        body.len(),
        chunks.map(|(d, t)| (d, Bytes::from(t.to_string()))),
    )
}

/// A response whose body comes one byte every `every`: a peer (or a broken
/// proxy) that never trips a per-read timeout.
pub fn respond_dripping(status: u16, content_type: &str, body: &str, every: Duration) -> Answer {
    let bytes = Bytes::from(body.to_string());
    let chunks = (0..bytes.len()).map(|i| (every, bytes.slice(i..i + 1)));
    respond_paced(status, content_type, body.len(), chunks)
}

/// A response whose body is `chunks`, each sent after its delay.
fn respond_paced(
    status: u16,
    content_type: &str,
    len: usize,
    chunks: impl IntoIterator<Item = (Duration, Bytes)>,
) -> Answer {
    let paced = Paced {
        chunks: chunks.into_iter().collect(),
        sleep: None,
    };
    Some(
        Response::builder()
            .status(status)
            .header("Content-Type", content_type)
            .header("Content-Length", len)
            .body(paced.boxed())
            .unwrap(),
    )
}

struct Paced {
    chunks: std::collections::VecDeque<(Duration, Bytes)>,
    /// The delay before the front chunk, once started.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl hyper::body::Body for Paced {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let Some(&(delay, _)) = self.chunks.front() else {
            return Poll::Ready(None);
        };
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sleep = None;
        let (_, chunk) = self.chunks.pop_front().expect("a front chunk");
        Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
    }
}

/// A plain-HTTP server on loopback (what cloud-init downloads from, or a
/// metadata service): answers each request with the next scripted
/// `(status, body)`, the last one forever, and counts requests.
pub struct PlainServer {
    pub url: String,
    hits: Arc<std::sync::atomic::AtomicUsize>,
}

impl PlainServer {
    pub fn start(answers: Vec<(u16, Vec<u8>)>) -> PlainServer {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        assert!(!answers.is_empty());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let (status, body) = &answers[n.min(answers.len() - 1)];
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream
                    .write_all(head.as_bytes())
                    .and_then(|_| stream.write_all(body));
            }
        });
        PlainServer { url, hits }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Taken down before its task first ran (a test's setup), the server
    /// refuses connections rather than leaving them unanswered.
    #[tokio::test]
    async fn down_means_refused_even_right_after_start() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pki = crate::pki::Pki::new(&["localhost"]);
        let handler: Handler = Arc::new(|_| Box::pin(async { respond(204, "text/plain", "") }));
        let server = Server::start(pki.server_config(false), handler, true);
        server.set_up(false);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = tokio::net::TcpStream::connect(server.addr()).await;
        assert_eq!(
            refused.map(|_| ()).unwrap_err().kind(),
            std::io::ErrorKind::ConnectionRefused
        );
        server.set_up(true);
        let end = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(server.addr()).await.is_err() {
            assert!(tokio::time::Instant::now() < end, "never came back up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
