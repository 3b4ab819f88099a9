//! The accept loop for `serve` and `rampart edge`, plain HTTP and TLS alike: what a slow or
//! idle client may hold. Every connection gets `http.header_read_timeout_secs` to send a
//! request's headers (hyper starts that clock whenever the connection waits for a request,
//! so it also closes idle kept-alive connections); at most `http.max_connections` are open
//! at once, and one more is answered with a 503 and closed rather than left waiting in the
//! kernel's queue; the open-files limit is raised to its hard limit at start, so the cap,
//! not `EMFILE`, is what refuses. 1,100 connections that sent a header byte every few
//! seconds used to stop a plain-HTTP node from answering anyone for over a minute.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rampart_edge::ClientCertificate;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// A TLS handshake not done by then is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a listener serves its connections.
#[derive(Clone)]
pub struct ServeOptions {
    /// `None`: plain HTTP (a proxy in front terminates TLS).
    pub tls: Option<Arc<ServerConfig>>,
    /// In-flight requests get this long to finish at shutdown.
    pub grace: Duration,
    /// Time to send a request's headers, on a new or a kept-alive connection.
    pub header_read_timeout: Duration,
    /// Connections open at once; one more gets 503 and is closed.
    pub max_connections: usize,
}

impl ServeOptions {
    pub fn from_config(http: &rampart_config::HttpConfig, tls: Option<Arc<ServerConfig>>) -> Self {
        ServeOptions {
            tls,
            grace: Duration::from_secs(http.shutdown_grace_secs),
            header_read_timeout: Duration::from_secs(http.header_read_timeout_secs),
            max_connections: http.max_connections as usize,
        }
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions::from_config(&rampart_config::HttpConfig::default(), None)
    }
}

/// The answer to a connection over `max_connections`: the one error shape, then close.
fn refusal() -> Vec<u8> {
    let body = serde_json::json!({"error": {
        "code": "too_many_connections",
        "message": "the server is at its connection limit; retry shortly",
        "request_id": uuid::Uuid::new_v4().to_string(),
    }})
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Raises this process's open-files limit to its hard limit, and returns how many
/// connections fit under it with room left for the database, logs and object files.
pub fn connection_capacity(wanted: usize) -> usize {
    const RESERVED: u64 = 256;
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-files limit");
            return wanted;
        }
    };
    let fits = limit.saturating_sub(RESERVED).max(1) as usize;
    if fits < wanted {
        tracing::warn!(
            open_files_limit = limit,
            max_connections = wanted,
            serving = fits,
            "the open-files limit caps http.max_connections; raise LimitNOFILE (systemd) or ulimit -n"
        );
        fits
    } else {
        wanted
    }
}

/// Serves `router` until `shutdown` resolves, then drains in-flight requests for at most
/// `options.grace`.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let acceptor = options.tls.clone().map(TlsAcceptor::from);
    let slots = Arc::new(Semaphore::new(connection_capacity(
        options.max_connections.max(1),
    )));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        tracing::error!("a connection task panicked");
                    }
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        connections.spawn(refuse(stream, peer));
                        continue;
                    };
                    // The watcher is taken before any handshake, so shutdown also waits
                    // for connections still shaking hands.
                    connections.spawn(connection(
                        stream,
                        peer,
                        acceptor.clone(),
                        router.clone(),
                        options.header_read_timeout,
                        graceful.watcher(),
                        slot,
                    ));
                }
                Err(e) => accept_failed(e).await,
            },
        }
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(options.grace) => tracing::warn!(
            grace_secs = options.grace.as_secs(),
            "requests still running after the grace period; closing their connections"
        ),
    }
    connections.shutdown().await;
    Ok(())
}

/// Over the connection limit: a short, bounded answer, then close.
async fn refuse(mut stream: TcpStream, peer: SocketAddr) {
    tracing::warn!(peer = %peer, "connection refused: at http.max_connections");
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&refusal())).await;
    let _ = stream.shutdown().await;
}

/// One client: TLS handshake when configured (bounded by [`HANDSHAKE_TIMEOUT`]), then
/// HTTP/1.1 until the client closes, stalls on headers, or shutdown asks the connection to
/// finish its current request. Holds its connection slot until then.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    router: Router,
    header_read_timeout: Duration,
    watcher: Watcher,
    _slot: OwnedSemaphorePermit,
) {
    let Some(acceptor) = acceptor else {
        serve_http(stream, peer, None, router, header_read_timeout, watcher).await;
        return;
    };
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %peer, "TLS handshake timed out");
            return;
        }
    };
    // rustls reports peer certificates only after verifying them against the client CAs.
    let client_certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| ClientCertificate::from_der(cert));
    serve_http(
        tls,
        peer,
        client_certificate,
        router,
        header_read_timeout,
        watcher,
    )
    .await;
}

async fn serve_http<I>(
    io: I,
    peer: SocketAddr,
    client_certificate: Option<ClientCertificate>,
    router: Router,
    header_read_timeout: Duration,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request: Request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        if let Some(cert) = &client_certificate {
            request.extensions_mut().insert(cert.clone());
        }
        router.clone().oneshot(request)
    });
    let http = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(http).await {
        tracing::debug!(peer = %peer, error = %e, "connection closed with an error");
    }
}

/// Errors a client can cause (it hung up before we accepted) are ignored; others (out of
/// file descriptors) are logged, and the loop pauses instead of spinning on them.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept connections; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
