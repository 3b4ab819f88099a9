//! Health, readiness, metrics, OpenAPI.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_app, STRONG_PASSWORD};

#[tokio::test]
async fn health_and_ready() {
    let app = spawn_app().await;
    let res = app.get("/health", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ok");
    let res = app.get("/ready", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ready");
}

#[tokio::test]
async fn metrics_count_requests_logins_and_pool() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    app.login("root@example.id", STRONG_PASSWORD).await;
    app.login("root@example.id", "wrong password here").await;
    app.get("/health", None).await;
    let text = app.get("/metrics", None).await.text().await.unwrap();
    for needle in [
        "http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 1",
        "http_requests_total{method=\"POST\",route=\"/api/v1/auth/login\",status=\"401\"} 1",
        "http_request_duration_seconds_bucket",
        "rampart_login_attempts_total{outcome=\"success\"} 1",
        "rampart_login_attempts_total{outcome=\"invalid_credentials\"} 1",
        "rampart_db_pool_connections{state=\"idle\"}",
        "rampart_db_pool_max_connections",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let app = spawn_app().await;
    let doc: Value = app
        .get("/api/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/users/me",
        "/api/v1/tenants",
        "/api/v1/tenants/{tenant_id}",
        "/api/v1/tenants/{tenant_id}/users",
        "/.well-known/jwks.json",
        "/health",
        "/ready",
        "/metrics",
        "/api/openapi.json",
    ] {
        assert!(paths.contains_key(path), "{path} missing from OpenAPI");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}
