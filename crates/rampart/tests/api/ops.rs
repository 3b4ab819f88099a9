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

/// What schemathesis (CI, `tests/schemathesis/run.py`) relies on, checked without it:
/// unique operation ids, path parameters exactly those of the path's template (query
/// parameters used to be declared `in: path`), and the edge layer's answers documented
/// on every API operation.
#[tokio::test]
async fn openapi_document_is_valid_and_documents_the_edge_answers() {
    let app = spawn_app().await;
    let doc: Value = app
        .get("/api/openapi.json", None)
        .await
        .json()
        .await
        .unwrap();
    let mut ids = std::collections::HashSet::new();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let template: std::collections::BTreeSet<&str> = path
            .split('{')
            .skip(1)
            .filter_map(|p| p.split_once('}').map(|(name, _)| name))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_string()), "operationId {id} twice");
            let in_path: std::collections::BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            assert_eq!(in_path, template, "{method} {path}: path parameters");
            if !path.starts_with("/api/v1/") {
                continue;
            }
            let responses = op["responses"].as_object().unwrap();
            for status in ["400", "403", "408", "429", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: no {status}"
                );
            }
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                assert!(responses.contains_key("401"), "{method} {path}: no 401");
            }
            if op.get("requestBody").is_some() {
                for status in ["413", "415", "422"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path}: no {status}"
                    );
                }
            }
        }
    }
    assert!(operations > 50, "only {operations} operations");
}
