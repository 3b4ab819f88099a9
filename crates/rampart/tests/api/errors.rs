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

/// One request written as raw bytes on a fresh connection: the status code, the
/// `Content-Type` (if any) and the body of the answer. The server closes the connection
/// after it (the request says `Connection: close`, or it cannot be parsed); with
/// `half_close` the client also ends its side after the request.
async fn raw_exchange(
    base: &str,
    request: &[u8],
    half_close: bool,
) -> (u16, Option<String>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    if half_close {
        // The server sees the end of what we send: a body shorter than its
        // Content-Length ends here.
        stream.shutdown().await.unwrap();
    }
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the server answers and closes")
    .ok();
    let text = String::from_utf8_lossy(&answer).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let content_type = head.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("content-type: ")
            .map(str::to_string)
    });
    (status, content_type, body.as_bytes().to_vec())
}

fn shaped(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not the error shape: {:?}", String::from_utf8_lossy(body)));
    assert!(v["error"]["request_id"].is_string(), "{v}");
    v["error"]["code"].as_str().unwrap().to_string()
}

/// What the HTTP library itself refuses, seen over raw TCP. Everything that reaches the
/// router gets the error shape with a precise code: axum's query and path rejections, a
/// broken chunked body, a body cut short of its Content-Length (both were 413
/// `payload_too_large` before), a missing or wrong content type, a wrong method. What
/// hyper refuses while parsing (request line, header syntax, lengths, too many headers, a
/// URI too long) it answers itself, before any of our code runs, with a bare status and
/// no body; README's errors section says why that cannot carry the shape. This test pins
/// both halves, so a hyper upgrade that changes them shows here.
#[tokio::test]
async fn errors_of_the_http_library_get_the_shape_where_the_server_can_answer() {
    let app = spawn_app_with(|c| c.edge.rate_limit_enabled = false).await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let login = "POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
                 Content-Type: application/json\r\n";
    let bearer = format!("Authorization: Bearer {root}\r\nConnection: close\r\n");
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!("GET /api/v1/payments?limit=abc HTTP/1.1\r\nHost: t\r\n{bearer}\r\n"),
            400,
            "invalid_query",
        ),
        (
            format!("GET /api/v1/tenants/%FF HTTP/1.1\r\nHost: t\r\n{bearer}\r\n"),
            400,
            "invalid_path",
        ),
        (
            format!("{login}Transfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n"),
            400,
            "bad_body",
        ),
        (
            format!("{login}Content-Length: 100\r\n\r\n{{\"email\":"),
            400,
            "bad_body",
        ),
        (
            "POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}".into(),
            415,
            "unsupported_media_type",
        ),
        (
            "POST /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}"
                .into(),
            415,
            "unsupported_media_type",
        ),
        (
            "DELETE /api/v1/auth/login HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".into(),
            405,
            "method_not_allowed",
        ),
    ];
    for (request, status, code) in &cases {
        let cut_short = request.contains("Content-Length: 100");
        let (got, content_type, body) =
            raw_exchange(&app.base, request.as_bytes(), cut_short).await;
        if crate::helpers::crs_everywhere() && got == 403 {
            assert_eq!(shaped(&body), "request_blocked");
            continue;
        }
        // The request line names the case (the rest holds a token).
        let case = request.lines().next().unwrap_or_default();
        assert_eq!(
            (got, content_type.as_deref()),
            (*status, Some("application/json")),
            "{case}: {:?}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(shaped(&body), *code, "{case}");
    }

    // hyper's own answers: a status, no body, no content type (see README).
    let big_uri = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(70_000));
    let many_headers = format!(
        "GET /health HTTP/1.1\r\nHost: t\r\n{}\r\n",
        (0..200)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect::<String>()
    );
    let parse_errors: Vec<(String, u16)> = vec![
        ("GARBAGE\r\n\r\n".into(), 400),
        ("GET / HTTP/2.0\r\nHost: t\r\n\r\n".into(), 400),
        (
            "GET /health HTTP/1.1\r\nHost: t\r\nBad Header: v\r\n\r\n".into(),
            400,
        ),
        (
            "GET /health HTTP/1.1\r\nHost: t\r\nX-A: a\r\n b\r\n\r\n".into(),
            400,
        ),
        (format!("{login}Content-Length: abc\r\n\r\n{{}}"), 400),
        (
            format!("{login}Content-Length: 2\r\nContent-Length: 3\r\n\r\n{{}}"),
            400,
        ),
        (format!("{login}Transfer-Encoding: gzip\r\n\r\n{{}}"), 400),
        (many_headers, 431),
        (big_uri, 414),
    ];
    for (request, status) in &parse_errors {
        let (got, content_type, body) = raw_exchange(&app.base, request.as_bytes(), false).await;
        assert_eq!(got, *status, "{:?}", &request[..request.len().min(60)]);
        assert_eq!(content_type, None);
        assert!(body.is_empty(), "{:?}", String::from_utf8_lossy(&body));
    }
    // The server is none the worse for any of it.
    assert_eq!(app.get("/health", None).await.status(), StatusCode::OK);
}
