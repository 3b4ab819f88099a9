//! TLS and mutual TLS as a client meets them: real handshakes against the app `main`
//! builds, with a CA, a server certificate and client certificates that rcgen makes for
//! each test, and rustls clients (ring) that trust only that CA.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use rampart::app;
use rampart_config::{ClientAuthSetting, Config, TlsConfig, TlsVersionSetting};
use rampart_edge::ClientCertificate;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use reqwest::StatusCode;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ProtocolVersion, RootCertStore, SupportedProtocolVersion};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{error_code, spawn_app_using, TestApp};

const TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
const TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// A certificate and its key.
struct Issued {
    der: CertificateDer<'static>,
    pem: String,
    key: KeyPair,
}

/// A test CA, and the files of a server certificate it issued for `localhost` and
/// `127.0.0.1`, in a temp dir that lives as long as this value.
struct Pki {
    dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new(ca_name: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, ca_name);
        let ca = params.self_signed(&ca_key).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca,
            ca_key,
        };
        let server = pki.issue(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
            "rampart.test",
        );
        std::fs::write(pki.path("server.pem"), &server.pem).unwrap();
        std::fs::write(pki.path("server.key"), server.key.serialize_pem()).unwrap();
        std::fs::write(pki.path("ca.pem"), pki.ca.pem()).unwrap();
        pki
    }

    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose, common_name: &str) -> Issued {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        Issued {
            der: cert.der().clone(),
            pem: cert.pem(),
            key,
        }
    }

    /// A client certificate for a payment partner, issued by this CA.
    fn partner(&self, name: &str) -> Issued {
        self.issue(&[], ExtendedKeyUsagePurpose::ClientAuth, name)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `[tls]` serving the server certificate; partners' certificates from this CA when
    /// `client_auth` is not off.
    fn tls_config(
        &self,
        min_version: TlsVersionSetting,
        client_auth: ClientAuthSetting,
    ) -> TlsConfig {
        TlsConfig {
            cert_file: self.path("server.pem"),
            key_file: self.path("server.key"),
            min_version,
            client_ca_file: if client_auth == ClientAuthSetting::Off {
                PathBuf::new()
            } else {
                self.path("ca.pem")
            },
            client_auth,
        }
    }

    /// A rustls client trusting only this CA, offering `versions`, presenting `identity`.
    fn client_config(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        identity: Option<&Issued>,
    ) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots);
        match identity {
            None => builder.with_no_client_auth(),
            Some(id) => builder
                .with_client_auth_cert(
                    vec![id.der.clone()],
                    PrivateKeyDer::try_from(id.key.serialize_der()).unwrap(),
                )
                .unwrap(),
        }
    }

    fn https_client(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        identity: Option<&Issued>,
    ) -> reqwest::Client {
        reqwest::Client::builder()
            .use_preconfigured_tls(self.client_config(versions, identity))
            .build()
            .unwrap()
    }
}

fn sha256_hex(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn spawn_tls_app(client: reqwest::Client, tls: TlsConfig) -> TestApp {
    spawn_app_using(client, |c| c.tls = tls).await
}

fn address(app: &TestApp) -> SocketAddr {
    app.base
        .strip_prefix("https://")
        .expect("the app serves HTTPS")
        .parse()
        .unwrap()
}

/// A bare handshake; the protocol version it agreed on.
async fn handshake(addr: SocketAddr, config: ClientConfig) -> std::io::Result<ProtocolVersion> {
    let tcp = TcpStream::connect(addr).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    Ok(tls.get_ref().1.protocol_version().expect("handshake done"))
}

#[tokio::test]
async fn health_is_served_over_tls_1_3() {
    let pki = Pki::new("Rampart test CA");
    let app = spawn_tls_app(
        pki.https_client(TLS13_ONLY, None),
        pki.tls_config(TlsVersionSetting::Tls13, ClientAuthSetting::Off),
    )
    .await;

    let version = handshake(address(&app), pki.client_config(TLS13_ONLY, None))
        .await
        .expect("TLS 1.3 handshake");
    assert_eq!(version, ProtocolVersion::TLSv1_3);
    let res = app.get("/health", None).await;
    assert_eq!(res.status(), StatusCode::OK);

    // A client that trusts another CA does not accept the server.
    let stranger = Pki::new("Another CA");
    let err = handshake(address(&app), stranger.client_config(TLS13_ONLY, None))
        .await
        .expect_err("the server's certificate is not from the stranger's CA");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn tls_1_2_clients_are_refused_unless_min_version_is_1_2() {
    let pki = Pki::new("Rampart test CA");
    let default = spawn_tls_app(
        pki.https_client(TLS12_ONLY, None),
        pki.tls_config(TlsVersionSetting::Tls13, ClientAuthSetting::Off),
    )
    .await;
    let err = handshake(address(&default), pki.client_config(TLS12_ONLY, None))
        .await
        .expect_err("TLS 1.2 is refused by default");
    assert!(err.to_string().to_lowercase().contains("version"), "{err}");
    let res = default.client.get(default.url("/health")).send().await;
    assert!(res.is_err(), "a TLS 1.2-only client got {res:?}");

    let lenient = spawn_tls_app(
        pki.https_client(TLS12_ONLY, None),
        pki.tls_config(TlsVersionSetting::Tls12, ClientAuthSetting::Off),
    )
    .await;
    let version = handshake(address(&lenient), pki.client_config(TLS12_ONLY, None))
        .await
        .expect("TLS 1.2 allowed");
    assert_eq!(version, ProtocolVersion::TLSv1_2);
    assert_eq!(lenient.get("/health", None).await.status(), StatusCode::OK);
    // 1.3 is still what a modern client gets.
    let version = handshake(address(&lenient), pki.client_config(TLS13_ONLY, None))
        .await
        .expect("TLS 1.3");
    assert_eq!(version, ProtocolVersion::TLSv1_3);
}

#[tokio::test]
async fn required_client_auth_admits_only_certificates_from_the_client_ca() {
    let pki = Pki::new("Rampart test CA");
    let partner = pki.partner("partner-bank");
    let app = spawn_tls_app(
        pki.https_client(TLS13_ONLY, Some(&partner)),
        pki.tls_config(TlsVersionSetting::Tls13, ClientAuthSetting::Required),
    )
    .await;
    assert_eq!(app.get("/health", None).await.status(), StatusCode::OK);

    // No certificate: no HTTP response at all, the handshake fails.
    let anonymous = pki.https_client(TLS13_ONLY, None);
    let res = anonymous.get(app.url("/health")).send().await;
    assert!(res.is_err(), "a client without a certificate got {res:?}");

    // A certificate from a CA the server does not trust for clients.
    let stranger_ca = Pki::new("Another CA");
    let impostor = stranger_ca.partner("partner-bank");
    let res = pki
        .https_client(TLS13_ONLY, Some(&impostor))
        .get(app.url("/health"))
        .send()
        .await;
    assert!(res.is_err(), "a certificate from another CA got {res:?}");

    // The failed handshakes did not disturb the server.
    assert_eq!(app.get("/health", None).await.status(), StatusCode::OK);
}

/// A small router of the kind partner routes will be: one route that needs a client
/// certificate, one that only looks, one that reports the peer address, behind the same
/// `request_context` the app uses (so rejections have the one error shape).
fn partner_router() -> Router {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = rampart_edge::HttpMetrics::register(&mut registry);
    Router::new()
        .route(
            "/partner",
            get(|cert: ClientCertificate| async move {
                axum::Json(json!({ "fingerprint": cert.sha256_fingerprint() }))
            }),
        )
        .route(
            "/whoami",
            get(|cert: Option<ClientCertificate>| async move {
                axum::Json(json!({
                    "fingerprint": cert.as_ref().map(|c| c.sha256_fingerprint().to_string()),
                    "der_len": cert.as_ref().map(|c| c.der().len()),
                }))
            }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        )
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            rampart_edge::request_context,
        ))
}

#[tokio::test]
async fn optional_client_auth_shows_the_certificate_only_when_one_was_presented() {
    let pki = Pki::new("Rampart test CA");
    let partner = pki.partner("partner-bank");
    let config = rampart::tls::server_config(
        &pki.tls_config(TlsVersionSetting::Tls13, ClientAuthSetting::Optional),
    )
    .expect("TLS config loads");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(rampart::tls::serve(
        partner_router(),
        listener,
        config,
        Duration::from_secs(30),
        std::future::pending(),
    ));
    let url = |path: &str| format!("https://127.0.0.1:{}{path}", addr.port());

    let with_cert = pki.https_client(TLS13_ONLY, Some(&partner));
    let body: Value = with_cert
        .get(url("/whoami"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expected = sha256_hex(partner.der.as_ref());
    assert_eq!(body["fingerprint"], expected, "{body}");
    assert_eq!(body["der_len"], partner.der.len(), "{body}");
    let res = with_cert.get(url("/partner")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["fingerprint"], expected, "{body}");

    let without = pki.https_client(TLS13_ONLY, None);
    let body: Value = without
        .get(url("/whoami"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["fingerprint"], Value::Null, "{body}");
    let res = without.get(url("/partner")).send().await.unwrap();
    assert_eq!(
        error_code(res, StatusCode::UNAUTHORIZED).await,
        "client_certificate_required"
    );

    // The edge reads the client address from ConnectInfo, as on the plain path.
    let peer = without.get(url("/peer")).send().await.unwrap();
    assert_eq!(peer.text().await.unwrap(), "127.0.0.1");
    server.abort();
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_no_answer_and_breaks_nothing() {
    let pki = Pki::new("Rampart test CA");
    let app = spawn_tls_app(
        pki.https_client(TLS13_ONLY, None),
        pki.tls_config(TlsVersionSetting::Tls13, ClientAuthSetting::Off),
    )
    .await;
    let mut tcp = TcpStream::connect(address(&app)).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    // The server ends the connection (perhaps after a TLS alert); it never answers HTTP.
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");

    assert_eq!(app.get("/health", None).await.status(), StatusCode::OK);
}

/// A TLS server whose one route, `/slow`, reports that it started and then waits for
/// `release`; `stop` starts the shutdown.
struct SlowServer {
    pki: Pki,
    url: String,
    addr: SocketAddr,
    started: tokio::sync::mpsc::Receiver<()>,
    release: Arc<tokio::sync::Notify>,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn slow_server(grace: Duration) -> SlowServer {
    let pki = Pki::new("Rampart test CA");
    let config = rampart::tls::server_config(
        &pki.tls_config(TlsVersionSetting::Tls13, ClientAuthSetting::Off),
    )
    .unwrap();
    let (started_tx, started) = tokio::sync::mpsc::channel::<()>(1);
    let release = Arc::new(tokio::sync::Notify::new());
    let router = Router::new().route(
        "/slow",
        get({
            let release = release.clone();
            move || async move {
                started_tx.send(()).await.unwrap();
                release.notified().await;
                "done"
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(rampart::tls::serve(
        router,
        listener,
        config,
        grace,
        async move {
            let _ = stop_rx.await;
        },
    ));
    SlowServer {
        pki,
        url: format!("https://127.0.0.1:{}/slow", addr.port()),
        addr,
        started,
        release,
        stop,
        server,
    }
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_stops_accepting() {
    // Far longer than the test: the request must finish by itself, not be cut.
    let mut s = slow_server(Duration::from_secs(300)).await;
    let client = s.pki.https_client(TLS13_ONLY, None);
    let in_flight = tokio::spawn(client.get(&s.url).send());
    s.started
        .recv()
        .await
        .expect("the request reached its handler");
    s.stop.send(()).unwrap();

    // The listener closes once the accept loop has seen the signal.
    let mut refused = false;
    for _ in 0..500 {
        if TcpStream::connect(s.addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "still accepting connections after shutdown");
    assert!(!s.server.is_finished(), "returned with a request in flight");

    s.release.notify_one();
    let res = in_flight
        .await
        .unwrap()
        .expect("the in-flight request finished");
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "done");
    s.server.await.unwrap().expect("serve returns cleanly");
}

#[tokio::test]
async fn shutdown_cuts_requests_still_running_after_the_grace_period() {
    let mut s = slow_server(Duration::ZERO).await;
    let client = s.pki.https_client(TLS13_ONLY, None);
    let in_flight = tokio::spawn(client.get(&s.url).send());
    s.started
        .recv()
        .await
        .expect("the request reached its handler");
    s.stop.send(()).unwrap();

    // Never released: serve must return by itself, closing the connection. (The bound
    // only keeps a broken build from hanging the suite.)
    tokio::time::timeout(Duration::from_secs(60), s.server)
        .await
        .expect("serve returned after the grace period")
        .unwrap()
        .expect("serve returns cleanly");
    let res = in_flight.await.unwrap();
    assert!(res.is_err(), "the cut request got {res:?}");
}

fn config_in(dir: &tempfile::TempDir, tls: TlsConfig) -> Config {
    Config {
        data_dir: dir.path().to_path_buf(),
        tls,
        ..Config::default()
    }
}

async fn start_up_error(config: Config) -> String {
    match app::build(config).await {
        Ok(_) => panic!("the app started"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn start_up_names_the_tls_file_and_key_that_are_wrong() {
    let pki = Pki::new("Rampart test CA");
    let dir = tempfile::tempdir().unwrap();
    let good = pki.tls_config(TlsVersionSetting::Tls13, ClientAuthSetting::Off);

    let missing = pki.path("nowhere.pem");
    let err = start_up_error(config_in(
        &dir,
        TlsConfig {
            cert_file: missing.clone(),
            ..good.clone()
        },
    ))
    .await;
    assert!(err.contains("tls.cert_file"), "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");

    // The key file holds a certificate, not a key.
    let err = start_up_error(config_in(
        &dir,
        TlsConfig {
            key_file: pki.path("server.pem"),
            ..good.clone()
        },
    ))
    .await;
    assert!(err.contains("tls.key_file"), "{err}");
    assert!(err.contains("no PEM private key"), "{err}");

    // A key, but not the certificate's.
    let other = pki.partner("someone");
    std::fs::write(pki.path("other.key"), other.key.serialize_pem()).unwrap();
    let err = start_up_error(config_in(
        &dir,
        TlsConfig {
            key_file: pki.path("other.key"),
            ..good.clone()
        },
    ))
    .await;
    assert!(err.contains("tls.key_file"), "{err}");
    assert!(err.contains("does not fit"), "{err}");

    // A certificate file without certificates.
    std::fs::write(pki.path("empty.pem"), "not a certificate\n").unwrap();
    let err = start_up_error(config_in(
        &dir,
        TlsConfig {
            cert_file: pki.path("empty.pem"),
            ..good.clone()
        },
    ))
    .await;
    assert!(err.contains("tls.cert_file"), "{err}");
    assert!(err.contains("no PEM certificate"), "{err}");

    let err = start_up_error(config_in(
        &dir,
        TlsConfig {
            client_auth: ClientAuthSetting::Required,
            client_ca_file: missing.clone(),
            ..good.clone()
        },
    ))
    .await;
    assert!(err.contains("tls.client_ca_file"), "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
}

#[test]
fn tls_settings_that_do_not_fit_together_are_refused_by_name() {
    let load = |vars: &[(&str, &str)]| {
        let env: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_from(None, &env).map_err(|e| e.to_string())
    };
    let err = load(&[("RAMPART_TLS_CERT_FILE", "/etc/rampart/cert.pem")]).unwrap_err();
    assert!(err.contains("tls.key_file"), "{err}");
    let err = load(&[
        ("RAMPART_TLS_CERT_FILE", "/etc/rampart/cert.pem"),
        ("RAMPART_TLS_KEY_FILE", "/etc/rampart/key.pem"),
        ("RAMPART_TLS_CLIENT_AUTH", "optional"),
    ])
    .unwrap_err();
    assert!(err.contains("tls.client_ca_file"), "{err}");
    let err = load(&[("RAMPART_TLS_MIN_VERSION", "1.0")]).unwrap_err();
    assert!(err.contains("tls.min_version"), "{err}");
    let ok = load(&[
        ("RAMPART_TLS_CERT_FILE", "/etc/rampart/cert.pem"),
        ("RAMPART_TLS_KEY_FILE", "/etc/rampart/key.pem"),
        ("RAMPART_TLS_MIN_VERSION", "1.2"),
    ])
    .expect("a complete [tls]");
    assert_eq!(ok.tls.min_version, TlsVersionSetting::Tls12);
}
