//! Every error is the one JSON shape, and no input gets a 500.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{error_code, error_code_or_waf_block, spawn_app_with};

#[tokio::test]
async fn framework_errors_use_the_shape() {
    let app = spawn_app_with(|c| c.http.max_body_bytes = 2048).await;
    let res = app.get("/no/such/route", None).await;
    assert_eq!(error_code(res, StatusCode::NOT_FOUND).await, "not_found");

    let res = app
        .client
        .delete(app.url("/api/v1/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(res, StatusCode::METHOD_NOT_ALLOWED).await,
        "method_not_allowed"
    );

    let login = app.url("/api/v1/auth/login");
    let res = app
        .client
        .post(&login)
        .header("content-type", "application/json")
        .body("{\"email\":")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(res, StatusCode::BAD_REQUEST).await,
        "malformed_json"
    );

    let res = app
        .client
        .post(&login)
        .json(&json!({"email": 5, "password": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await,
        "invalid_body"
    );

    let res = app
        .client
        .post(&login)
        .body("email=a")
        .send()
        .await
        .unwrap();
    // With CRS in front: a body without a Content-Type (920340) from a numeric Host (the
    // test's 127.0.0.1, 920350) adds up to a block before the handler answers.
    error_code_or_waf_block(
        res,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    let big = json!({"email": "a@b.id", "password": "x".repeat(4096)});
    let res = app.client.post(&login).json(&big).send().await.unwrap();
    assert_eq!(
        error_code(res, StatusCode::PAYLOAD_TOO_LARGE).await,
        "payload_too_large"
    );
}

#[tokio::test]
async fn request_id_is_taken_when_sane_and_replaced_when_not() {
    let app = spawn_app_with(|_| {}).await;
    let res = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    let res = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "bad id\"{}")
        .send()
        .await
        .unwrap();
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(id, "bad id\"{}");
    assert_eq!(id.len(), 36, "a fresh UUID");
}

#[tokio::test]
async fn hostile_bodies_never_get_a_500() {
    let app = spawn_app_with(|_| {}).await;
    let bodies = [
        "",
        "null",
        "[]",
        "{}",
        "\"str\"",
        "{\"email\":null,\"password\":null}",
        "{\"email\":\"\u{0000}@x.id\",\"password\":\"\"}",
        "{\"email\":\"a@b.id\",\"password\":\"\\ud800\"}",
        "{\"email\":\"a@b.id\",\"password\":\"p\",\"extra\":{\"deep\":[[[[[[[[[[1]]]]]]]]]]}}",
        "\u{feff}{}",
        "{\"refresh_token\":1e999}",
    ];
    for path in [
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/tenants",
        "/api/v1/auth/logout",
    ] {
        for body in bodies {
            let res = app
                .client
                .post(app.url(path))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = res.status();
            assert!(status.is_client_error(), "{path} {body:?} -> {status}");
            error_code(res, status).await;
        }
    }
}

/// NUL characters, which PostgreSQL refuses in text (each was a 500 there), get a clear 400
/// `invalid_text` wherever they are: in a JSON body of any route, in a path id, in a query
/// filter. Runs on PostgreSQL when `RAMPART_TEST_DATABASE_URL` is set.
#[tokio::test]
async fn nul_characters_anywhere_are_a_400_not_a_500() {
    let app = spawn_app_with(|c| c.edge.rate_limit_enabled = false).await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let (_, admin) = crate::vault::merchant(&app, &root, "nulshop").await;

    let nul = "a\\u0000b";
    let bodies = [
        (
            "/api/v1/auth/login",
            format!(r#"{{"email":"x{nul}@b.id","password":"p"}}"#),
        ),
        (
            "/api/v1/auth/refresh",
            format!(r#"{{"refresh_token":"rft_{nul}"}}"#),
        ),
        (
            "/api/v1/tenants",
            format!(r#"{{"name":"{nul}","kind":"merchant"}}"#),
        ),
        (
            "/api/v1/api-keys",
            format!(r#"{{"name":"{nul}","scopes":["payments:read"]}}"#),
        ),
        (
            "/api/v1/payments",
            format!(
                r#"{{"amount":100,"currency":"IDR","reference":"{nul}","card":{{"number":"4242424242424242","exp_month":12,"exp_year":2030,"cvc":"123"}}}}"#
            ),
        ),
        (
            "/api/v1/tokens",
            format!(r#"{{"number":"4242{nul}","exp_month":12,"exp_year":2030}}"#),
        ),
        (
            "/api/v1/webhooks/endpoints",
            format!(r#"{{"url":"https://h.example/{nul}","events":["payment.captured"]}}"#),
        ),
    ];
    for (path, body) in &bodies {
        let res = app
            .client
            .post(app.url(path))
            .bearer_auth(&admin)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        crate::helpers::error_code_or_waf_block(res, StatusCode::BAD_REQUEST, "invalid_text").await;
    }
    for path in [
        "/api/v1/payments/txn_%00",
        "/api/v1/tenants/%00/users",
        "/api/v1/api-keys/%00",
        "/api/v1/payments?status=authorized%00",
        "/api/v1/payments?cursor=%00",
        "/api/v1/audit-events?action=%00",
        "/api/v1/reports/transactions?from=2026-01-01T00:00:00Z%00",
    ] {
        let res = app.get(path, Some(&admin)).await;
        crate::helpers::error_code_or_waf_block(res, StatusCode::BAD_REQUEST, "invalid_text").await;
    }
    // An escaped backslash before the letters is text, not a NUL: that login reaches its
    // handler.
    let res = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(r#"{"email":"a@b.id","password":"x\\u0000y"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}
