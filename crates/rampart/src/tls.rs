//! HTTPS terminated by Rampart itself: the rustls configuration built from `[tls]`, and
//! an accept loop that runs the handshake and hands each connection to hyper with an axum
//! `Router`. `app::serve` uses it when `tls.cert_file` is set; it takes any router, so a
//! standalone edge proxy can serve through it too.
//!
//! This module owns certificates, handshakes and connection lifetimes. It tells a request
//! only what the connection knows (the peer address as `ConnectInfo<SocketAddr>`, the
//! verified client certificate as `rampart_edge::ClientCertificate`) and must not look at
//! requests otherwise: policy is the edge's.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{ConnectInfo, Request};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rampart_config::{ClientAuthSetting, TlsConfig, TlsVersionSetting};
use rampart_edge::ClientCertificate;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// A client that has not finished its handshake by then is dropped, so slow or silent
/// clients cannot hold tasks and sockets.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The rustls server configuration for `[tls]`. Reads and checks the files now, so a
/// missing or unreadable file, a key that is not the certificate's, or a CA bundle without
/// certificates stops start-up with the config key and the file named.
pub fn server_config(tls: &TlsConfig) -> anyhow::Result<Arc<ServerConfig>> {
    // ring, named here rather than installed process-wide, so nothing depends on which
    // crate happens to install a default provider first.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersionSetting::Tls13 => &[&rustls::version::TLS13],
        TlsVersionSetting::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let chain = read_certificates("tls.cert_file", &tls.cert_file)?;
    let key = read_private_key(&tls.key_file)?;

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .context("the crypto provider does not support the configured TLS versions")?;
    let builder = match tls.client_auth {
        ClientAuthSetting::Off => builder.with_no_client_auth(),
        mode @ (ClientAuthSetting::Optional | ClientAuthSetting::Required) => {
            let file = &tls.client_ca_file;
            let mut roots = RootCertStore::empty();
            for ca in read_certificates("tls.client_ca_file", file)? {
                roots.add(ca).with_context(|| {
                    format!(
                        "tls.client_ca_file: {} holds a certificate that cannot be a trust anchor",
                        file.display()
                    )
                })?;
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if mode == ClientAuthSetting::Optional {
                // Asked for and verified when presented; routes that need one use the
                // `ClientCertificate` extractor.
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().with_context(|| {
                format!(
                    "tls.client_ca_file: cannot verify client certificates with {}",
                    file.display()
                )
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).with_context(|| {
        format!(
            "tls.key_file {} does not fit the certificate in tls.cert_file {}",
            tls.key_file.display(),
            tls.cert_file.display()
        )
    })?;
    // The server speaks HTTP/1.1 only (as the plain path does); saying so lets a client
    // that offers only h2 fail at the handshake instead of sending frames we cannot read.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_pem(key: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{key}: cannot read {}", path.display()))
}

fn read_certificates(key: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read_pem(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{key}: {} is not valid PEM", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "{key}: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = read_pem("tls.key_file", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => anyhow::anyhow!(
            "tls.key_file: {} holds no PEM private key (PKCS#8, RSA or EC)",
            path.display()
        ),
        other => anyhow::anyhow!("tls.key_file: {} is not valid PEM: {other}", path.display()),
    })
}

/// Serves `router` over TLS on `listener` until `shutdown` resolves; then stops
/// accepting, lets in-flight requests finish for at most `grace`, and drops the
/// connections still open. The same semantics as the plain-HTTP path in `app::serve`.
///
/// A failed or timed-out handshake is logged (debug, with the peer address) and ends only
/// that connection.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    config: Arc<ServerConfig>,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let acceptor = TlsAcceptor::from(config);
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
                    // The watcher is taken before the handshake, so shutdown also waits
                    // for connections still shaking hands.
                    connections.spawn(connection(
                        stream,
                        peer,
                        acceptor.clone(),
                        router.clone(),
                        graceful.watcher(),
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
        () = tokio::time::sleep(grace) => tracing::warn!(
            grace_secs = grace.as_secs(),
            "requests still running after the grace period; closing their connections"
        ),
    }
    connections.shutdown().await;
    Ok(())
}

/// One client: handshake (bounded by [`HANDSHAKE_TIMEOUT`]), then HTTP/1.1 until the client
/// closes or shutdown asks the connection to finish its current request.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    watcher: Watcher,
) {
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
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut request: Request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(ConnectInfo(peer));
        if let Some(cert) = &client_certificate {
            request.extensions_mut().insert(cert.clone());
        }
        router.clone().oneshot(request)
    });
    let http = hyper::server::conn::http1::Builder::new()
        // The timer enables hyper's header-read timeout (30 s): a client that sends
        // headers slowly cannot hold the connection either.
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(tls), service);
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
