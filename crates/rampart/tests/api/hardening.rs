//! Unauthenticated requests cannot exhaust the server: password hashing is bounded, and
//! what is shed gets 503 with `Retry-After`, never a 500 or a hang.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

/// The documented bound (README, "Sizing"): a burst of logins keeps a node under this.
const LOGIN_BURST_RSS_LIMIT: u64 = 300 * 1024 * 1024;

/// 200 concurrent wrong logins against a `rampart serve` process: it stays under 300 MB,
/// answers `/health` all along, sheds what it cannot hash in time with 503 and
/// `Retry-After`, and is back near its idle memory within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_logins_is_shed_not_stored_in_memory() {
    let app = spawn_app().await;
    let node = app
        .spawn_node(&[
            ("RAMPART_EDGE_RATE_LIMIT_ENABLED", "false"),
            ("RAMPART_AUTH_LOGIN_MAX_FAILURES", "1000000"),
            ("RAMPART_AUTH_LOGIN_IP_MAX_FAILURES", "1000000"),
        ])
        .await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let login = format!("{}/api/v1/auth/login", node.base);
    // Warm up: the first hash allocates its reusable memory.
    let res = http
        .post(&login)
        .json(&json!({"email": "warm@example.id", "password": "not the password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = node.rss_bytes();

    let burst: Vec<_> = (0..200)
        .map(|i| {
            let (http, login) = (http.clone(), login.clone());
            tokio::spawn(async move {
                let res = http
                    .post(&login)
                    .json(&json!({"email": format!("guess{i}@example.id"), "password": "hunter2 hunter2"}))
                    .send()
                    .await
                    .expect("a login answers");
                let retry_after = res.headers().get("retry-after").is_some();
                (res.status(), retry_after)
            })
        })
        .collect();
    let started = Instant::now();
    let mut peak = idle;
    let mut health_checks = 0;
    while !burst.iter().all(|t| t.is_finished()) {
        let res = tokio::time::timeout(
            Duration::from_secs(2),
            http.get(format!("{}/health", node.base)).send(),
        )
        .await
        .expect("/health answers within 2 s during the burst")
        .expect("/health answers");
        assert_eq!(res.status(), StatusCode::OK);
        health_checks += 1;
        peak = peak.max(node.rss_bytes());
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the burst ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut refused, mut shed) = (0, 0);
    for t in burst {
        match t.await.unwrap() {
            (StatusCode::UNAUTHORIZED, _) => refused += 1,
            (StatusCode::SERVICE_UNAVAILABLE, retry_after) => {
                assert!(retry_after, "a shed login says when to retry");
                shed += 1;
            }
            (other, _) => panic!("a login in the burst answered {other}"),
        }
    }
    eprintln!(
        "burst: {refused} refused, {shed} shed; RSS idle {} MB, peak {} MB; {health_checks} /health checks",
        idle >> 20,
        peak >> 20
    );
    assert_eq!(refused + shed, 200);
    assert!(
        shed > 0,
        "more than the node can hash in its queue time is shed"
    );
    assert!(
        peak < LOGIN_BURST_RSS_LIMIT,
        "peak RSS {} MB over the bound",
        peak >> 20
    );
    let mut after = node.rss_bytes();
    for _ in 0..50 {
        if after < idle + 64 * 1024 * 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = node.rss_bytes();
    }
    assert!(
        after < idle + 64 * 1024 * 1024,
        "RSS back near idle: idle {} MB, after {} MB",
        idle >> 20,
        after >> 20
    );
}
