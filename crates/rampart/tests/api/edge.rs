//! The edge: security headers, CORS, client address, rate limits, body rules.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, security_events, spawn_app, spawn_app_with, TestApp};
use crate::vault::{key, merchant};

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    for path in ["/health", "/no/such/route"] {
        let res = app.get(path, None).await;
        let h = res.headers();
        assert!(h["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age="));
        assert!(h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"));
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert!(h.contains_key("permissions-policy"));
        assert_eq!(h["cache-control"], "no-store");
    }
    // A route that sets its own caching keeps it.
    let res = app.get("/.well-known/jwks.json", None).await;
    assert!(res.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
}

#[tokio::test]
async fn a_card_number_in_the_url_or_a_header_is_refused_and_never_echoed() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/tokens?number=4111111111111111",
        "/api/v1/tokens/4111111111111111/detokenize",
        "/health?card=4111%201111%201111%201111",
    ] {
        let res = app.get(path, None).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{path}");
        let body = res.text().await.unwrap();
        assert!(body.contains("card_number_outside_body"), "{body}");
        // Not the number in any spelling (a random request id may hold "4111" by chance).
        for spelling in ["4111111111111111", "4111 1111", "4111%201111"] {
            assert!(!body.contains(spelling), "{body}");
        }
    }
    let res = app
        .client
        .get(app.url("/health"))
        .header("x-card", "5555-5555-5555-4444")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(res, StatusCode::BAD_REQUEST).await,
        "card_number_outside_body"
    );
    // Long numbers that are not cards pass: a millisecond timestamp.
    assert_eq!(
        app.get("/health?since=1732000000000001", None)
            .await
            .status(),
        StatusCode::OK
    );
    // The security log has each block, by rule, and never the number.
    let blocks = security_events(app.dir.path(), "waf_blocked").await;
    assert!(blocks
        .iter()
        .any(|e| e["detail"]["blocking_rule"] == 10100 && e["source_ip"] == "127.0.0.1"));
    let log = std::fs::read_to_string(app.dir.path().join("logs/security.log")).unwrap();
    for digits in [
        "4111111111111111",
        "4111 1111",
        "5555-5555",
        "5555555555554444",
    ] {
        assert!(!log.contains(digits), "{digits} reached the security log");
    }
}

#[tokio::test]
async fn json_nested_too_deep_is_refused_before_parsing() {
    let app = spawn_app_with(|c| c.edge.max_json_depth = 8).await;
    let deep = format!("{}{}", "[".repeat(9), "]".repeat(9));
    let res = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(res, StatusCode::BAD_REQUEST).await,
        "json_too_deep"
    );
    // Brackets inside strings do not count.
    let res = app
        .post(
            "/api/v1/auth/login",
            None,
            &json!({"email": "[[[[[[[[[[@example.id", "password": "{{{{{{{{{{{{"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

async fn assert_rate_limited(res: reqwest::Response, policy: &str) {
    let h = res.headers().clone();
    assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
    assert!(
        h["ratelimit-policy"]
            .to_str()
            .unwrap()
            .starts_with(&format!("\"{policy}\";q=")),
        "{h:?}"
    );
    assert!(h["ratelimit"].to_str().unwrap().contains(";r=0;"), "{h:?}");
    assert_eq!(
        error_code(res, StatusCode::TOO_MANY_REQUESTS).await,
        "rate_limited"
    );
}

#[tokio::test]
async fn the_per_ip_limit_answers_429_with_ratelimit_headers() {
    let app = spawn_app_with(|c| {
        c.edge.ip_per_minute = 60;
        c.edge.ip_burst = 5;
    })
    .await;
    for i in 0..5 {
        let res = app.get("/health", None).await;
        assert_eq!(res.status(), StatusCode::OK, "request {i}");
        assert!(res.headers().contains_key("ratelimit"));
    }
    assert_rate_limited(app.get("/health", None).await, "ip").await;
}

async fn get_from(app: &TestApp, forwarded_for: &str) -> StatusCode {
    app.client
        .get(app.url("/health"))
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    // Untrusted: X-Forwarded-For is ignored, every request is 127.0.0.1's.
    let app = spawn_app_with(|c| c.edge.ip_burst = 2).await;
    assert_eq!(get_from(&app, "198.51.100.1").await, StatusCode::OK);
    assert_eq!(get_from(&app, "198.51.100.2").await, StatusCode::OK);
    assert_eq!(
        get_from(&app, "198.51.100.3").await,
        StatusCode::TOO_MANY_REQUESTS
    );

    // Behind a trusted proxy (127.0.0.1 here), each forwarded client has its own quota.
    let app = spawn_app_with(|c| {
        c.edge.ip_burst = 2;
        c.edge.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    assert_eq!(get_from(&app, "198.51.100.1").await, StatusCode::OK);
    assert_eq!(get_from(&app, "198.51.100.1").await, StatusCode::OK);
    assert_eq!(
        get_from(&app, "198.51.100.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(get_from(&app, "198.51.100.2").await, StatusCode::OK);
}

#[tokio::test]
async fn tenant_and_api_key_limits_follow_the_caller() {
    let app = spawn_app_with(|c| {
        c.edge.tenant_per_minute_default = 60;
        c.edge.tenant_burst = 4;
        c.edge.api_key_per_minute = 60;
        c.edge.api_key_burst = 2;
    })
    .await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    // Two requests of the platform tenant were spent setting the merchant up; the
    // merchant tenant's own quota starts full.
    let (_, shop) = merchant(&app, &root, "shop").await;
    let api_key = key(&app, &shop, &["audit:read"]).await; // shop: 1 of 4
    for _ in 0..2 {
        let res = app.get("/api/v1/audit-events", Some(&api_key)).await; // 2, 3
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_rate_limited(
        app.get("/api/v1/audit-events", Some(&api_key)).await,
        "api_key",
    )
    .await;
    let res = app.get("/api/v1/users/me", Some(&shop)).await; // shop: 4 of 4
    assert_eq!(res.status(), StatusCode::OK);
    assert_rate_limited(app.get("/api/v1/users/me", Some(&shop)).await, "tenant").await;
    // Another tenant is not affected.
    assert_eq!(
        app.get("/api/v1/users/me", Some(&root)).await.status(),
        StatusCode::OK
    );
}

/// Two nodes on one Redis enforce one limit (needs `RAMPART_TEST_REDIS_URL`).
#[tokio::test]
async fn nodes_sharing_redis_share_the_limit() {
    if std::env::var("RAMPART_TEST_REDIS_URL").is_err() {
        eprintln!("skipped: set RAMPART_TEST_REDIS_URL");
        return;
    }
    let prefix = format!("rampart-test:{}:", uuid::Uuid::new_v4().simple());
    let node = || {
        let prefix = prefix.clone();
        spawn_app_with(move |c| {
            c.redis.key_prefix = prefix;
            c.edge.ip_burst = 4;
        })
    };
    let (a, b) = (node().await, node().await);
    let mut ok = 0;
    for i in 0..6 {
        let app = if i % 2 == 0 { &a } else { &b };
        if app.get("/health", None).await.status() == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 4, "one burst across both nodes");
}

/// Two `rampart serve` processes on one database and one Redis enforce one per-tenant
/// limit together (needs `RAMPART_TEST_REDIS_URL`).
#[tokio::test]
async fn two_processes_on_one_redis_enforce_one_tenant_limit() {
    if std::env::var("RAMPART_TEST_REDIS_URL").is_err() {
        eprintln!("skipped: set RAMPART_TEST_REDIS_URL");
        return;
    }
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let (_, shop) = merchant(&app, &root, "shop").await;
    // A fresh key prefix: the processes share their own limits, not the test app's.
    let prefix = format!("rampart-test:{}:", uuid::Uuid::new_v4().simple());
    let env = [
        ("RAMPART_REDIS_KEY_PREFIX", prefix.as_str()),
        ("RAMPART_EDGE_TENANT_PER_MINUTE_DEFAULT", "60"),
        ("RAMPART_EDGE_TENANT_BURST", "4"),
    ];
    let (a, b) = (app.spawn_node(&env).await, app.spawn_node(&env).await);
    let mut statuses = Vec::new();
    for i in 0..8 {
        let node = if i % 2 == 0 { &a } else { &b };
        let res = app
            .client
            .get(format!("{}/api/v1/users/me", node.base))
            .bearer_auth(&shop)
            .send()
            .await
            .unwrap();
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(res.headers()["ratelimit-policy"]
                .to_str()
                .unwrap()
                .starts_with("\"tenant\""));
        }
        statuses.push(res.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 429, 429, 429, 429],
        "one burst of 4 across both processes"
    );
}

#[tokio::test]
async fn cors_allows_listed_origins_and_patterns_only() {
    let app = spawn_app_with(|c| c.edge.cors_origins = vec!["https://*.go.id".into()]).await;
    let preflight = |origin: &str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/users/me"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let res = preflight("https://dinas.jakarta.go.id").await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let h = res.headers();
    assert_eq!(
        h["access-control-allow-origin"],
        "https://dinas.jakarta.go.id"
    );
    assert!(h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    let res = preflight("https://evil.example").await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(!res.headers().contains_key("access-control-allow-origin"));

    let res = app
        .client
        .get(app.url("/health"))
        .header("origin", "https://kemnaker.go.id")
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://kemnaker.go.id"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}
