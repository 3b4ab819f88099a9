//! HTTPS terminated by Rampart itself: the rustls configuration built from `[tls]`.
//! `app::serve` uses it when `tls.cert_file` is set, through `listener`, which runs the
//! handshake (bounded) and hands each connection to hyper; the standalone edge proxy serves
//! through the same path.
//!
//! This module owns certificates. The listener tells a request only what the connection
//! knows (the peer address as `ConnectInfo<SocketAddr>`, the verified client certificate as
//! `rampart_edge::ClientCertificate`) and must not look at requests otherwise: policy is
//! the edge's.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use rampart_config::{ClientAuthSetting, TlsConfig, TlsVersionSetting};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;

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

/// Serves `router` over TLS with `config` (the default connection limits; `serve` and the
/// proxy pass theirs to [`crate::listener::serve`]).
pub async fn serve(
    router: Router,
    listener: TcpListener,
    config: Arc<ServerConfig>,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let options = crate::listener::ServeOptions {
        tls: Some(config),
        grace,
        ..Default::default()
    };
    crate::listener::serve(router, listener, options, shutdown).await
}
