//! `rampart edge`: the edge layer as a reverse proxy in front of another application,
//! built by the same function the command uses, with CRS and response rules on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::HeaderMap;
use axum::routing::{any, get};
use axum::Router;
use rampart_config::Config;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{crs_dir, error_code, security_events_until};

/// The application behind the proxy: it echoes what reached it and counts requests.
async fn spawn_upstream(seen: Arc<AtomicUsize>) -> SocketAddr {
    let echo = move |headers: HeaderMap, body: Bytes| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            let h = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from)
            };
            axum::Json(json!({
                "x_forwarded_for": h("x-forwarded-for"),
                "x_request_id": h("x-request-id"),
                "host": h("host"),
                "connection": h("connection"),
                "body_len": body.len(),
            }))
        }
    };
    let slow = |body: Bytes| async move {
        // Slower than the clients that give up on it: they leave while it works.
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        axum::Json(json!({ "body_len": body.len() }))
    };
    let app = Router::new()
        .route("/echo", any(echo))
        .route("/slow", any(slow))
        .route(
            "/stall",
            get(|| async {
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/leak",
            get(|| async {
                (
                    [("content-type", "text/html")],
                    "<html><body>You have an error in your SQL syntax; check the manual that \
                     corresponds to your MySQL server version</body></html>",
                )
            }),
        )
        .route(
            "/big",
            get(|| async {
                let chunks =
                    (0..64).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 64 * 1024])));
                (
                    [("content-type", "application/octet-stream")],
                    Body::from_stream(tokio_stream_iter(chunks)),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    addr
}

/// A stream over an iterator, without a stream utility crate.
fn tokio_stream_iter<I>(iter: I) -> impl futures_core::Stream<Item = I::Item>
where
    I: Iterator + Unpin,
{
    struct It<I>(I);
    impl<I: Iterator + Unpin> futures_core::Stream for It<I> {
        type Item = I::Item;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<I::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    It(iter)
}

pub(crate) struct Proxy {
    pub base: String,
    client: reqwest::Client,
    dir: tempfile::TempDir,
}

/// `rampart edge` in front of `upstream`, built and served as the command does, with
/// `[http]` settings from `customise` (header timeout, connection cap).
pub(crate) async fn spawn_proxy(upstream: &str, customise: impl FnOnce(&mut Config)) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    config.waf.inspect_responses = true;
    // Hermetic: no CRS found on this machine unless the test names one.
    config.waf.crs_dir = "none".into();
    customise(&mut config);
    config.validate().expect("valid config");
    let upstream = rampart::proxy::Upstream::parse(upstream).unwrap();
    let router = rampart::proxy::build(&config, upstream)
        .await
        .expect("proxy builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut options = rampart::listener::ServeOptions::from_config(&config.http, None);
    options.grace = std::time::Duration::from_secs(1);
    tokio::spawn(rampart::listener::serve(
        router,
        listener,
        options,
        std::future::pending(),
    ));
    Proxy {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        dir,
    }
}

impl Proxy {
    async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn the_proxy_forwards_with_the_edge_layer_and_blocks_with_crs() {
    let Some(crs) = crs_dir() else { return };
    let seen = Arc::new(AtomicUsize::new(0));
    let up = spawn_upstream(seen.clone()).await;
    let proxy = spawn_proxy(&format!("http://{up}"), |c| {
        c.waf.crs_dir = crs.display().to_string();
    })
    .await;

    // Its own /health; the upstream has none.
    let res = proxy.get("/health").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(seen.load(Ordering::SeqCst), 0);

    // Forwarded: client address, request id, the client's Host; hop headers dropped.
    let res = proxy.get("/echo?page=2&sort=name").await;
    assert_eq!(res.status(), StatusCode::OK);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    let echo: Value = res.json().await.unwrap();
    assert_eq!(echo["x_forwarded_for"], "127.0.0.1");
    assert_eq!(echo["x_request_id"], id.as_str());
    assert_eq!(echo["host"], proxy.base.trim_start_matches("http://"));
    assert_eq!(echo["connection"], Value::Null);

    // A 1 KB form post reaches the upstream whole.
    let form = format!("name=Siti&comment={}", "a".repeat(1000));
    let res = proxy
        .client
        .post(format!("{}/echo", proxy.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["body_len"], form.len());

    // A large response the rules do not inspect streams through whole.
    let res = proxy.get("/big").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.bytes().await.unwrap().len(), 64 * 64 * 1024);

    // Blocked before the upstream: an SQL injection, a card number in the query.
    let before = seen.load(Ordering::SeqCst);
    let res = proxy.get("/echo?id=1%27%20OR%20%271%27%3D%271").await;
    assert_eq!(
        error_code(res, StatusCode::FORBIDDEN).await,
        "request_blocked"
    );
    let res = proxy.get("/echo?card=4111111111111111").await;
    assert_eq!(
        error_code(res, StatusCode::BAD_REQUEST).await,
        "card_number_outside_body"
    );
    assert_eq!(
        seen.load(Ordering::SeqCst),
        before,
        "the upstream saw neither"
    );

    // Response rules: an SQL error page leaking from the upstream is not shown.
    let res = proxy.get("/leak").await;
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(!body.contains("SQL syntax"), "{body}");

    let blocks =
        security_events_until(proxy.dir.path(), "waf_blocked", |found| found.len() >= 3).await;
    let rules: Vec<u64> = blocks
        .iter()
        .filter_map(|e| e["detail"]["blocking_rule"].as_u64())
        .collect();
    for expected in [949110, 10100, 959100] {
        assert!(rules.contains(&expected), "{expected} not in {rules:?}");
    }
    assert!(blocks.iter().any(|e| e["detail"]["phase"] == "response"
        && e["detail"]["outbound_anomaly_score"].as_i64() >= Some(4)));
    let log = std::fs::read_to_string(proxy.dir.path().join("logs/security.log")).unwrap();
    assert!(!log.contains("4111111111111111"));

    let metrics = proxy.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(r#"waf_rule_matches_total{rule_id="10100"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_proxy_answers_502_when_the_upstream_is_down() {
    // A port nobody listens on: bind, note it, close.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let proxy = spawn_proxy(&format!("http://{addr}"), |_| {}).await;
    let res = proxy.get("/anything").await;
    assert_eq!(
        error_code(res, StatusCode::BAD_GATEWAY).await,
        "bad_gateway"
    );
    // Our own rules run without CRS.
    let res = proxy.get("/x?c=4111-1111-1111-1111").await;
    assert_eq!(
        error_code(res, StatusCode::BAD_REQUEST).await,
        "card_number_outside_body"
    );
}

/// Clients that go away while the proxy reads their body, waits on a slow upstream or
/// streams the answer back: afterwards the proxy forwards ordinary requests as before, on
/// its pooled upstream connections, and answers its own `/health`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_vanish_leave_the_proxy_working() {
    let seen = Arc::new(AtomicUsize::new(0));
    let up = spawn_upstream(seen.clone()).await;
    let proxy = spawn_proxy(&format!("http://{up}"), |c| {
        c.edge.rate_limit_enabled = false;
    })
    .await;
    let addr: SocketAddr = proxy.base.trim_start_matches("http://").parse().unwrap();
    let make: crate::cancellation::RequestMaker = Arc::new(move |n| {
        if n % 3 == 0 {
            format!("GET /big HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes()
        } else {
            crate::cancellation::raw_post(
                addr,
                "/slow",
                &[],
                &json!({"n": n, "pad": "x".repeat(n % 4096)}),
            )
        }
    });
    let abandoned =
        crate::cancellation::abandon_requests(addr, make, 16, std::time::Duration::from_secs(3))
            .await;
    assert!(abandoned > 100, "the storm ran: {abandoned} requests");

    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    for i in 0..20 {
        let res = client
            .post(format!("{}/slow", proxy.base))
            .json(&json!({"after": i}))
            .send()
            .await
            .expect("the proxy answers after the storm");
        assert_eq!(res.status(), StatusCode::OK, "request {i} after the storm");
        let res = client
            .get(format!("{}/big", proxy.base))
            .send()
            .await
            .expect("the proxy answers after the storm");
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.bytes().await.unwrap().len(), 64 * 64 * 1024);
    }
    let res = client
        .get(format!("{}/health", proxy.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

/// An upstream slower than `http.request_timeout_secs` is the upstream's fault: 504
/// `gateway_timeout` in the error shape, not a 500.
#[tokio::test]
async fn a_slow_upstream_is_a_504_gateway_timeout() {
    let seen = Arc::new(AtomicUsize::new(0));
    let up = spawn_upstream(seen).await;
    let proxy = spawn_proxy(&format!("http://{up}"), |c| c.http.request_timeout_secs = 1).await;
    let res = proxy.get("/stall").await;
    assert_eq!(
        error_code(res, StatusCode::GATEWAY_TIMEOUT).await,
        "gateway_timeout"
    );
}
