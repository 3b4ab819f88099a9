//! Encryption as a service.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, spawn_app, TestApp, STRONG_PASSWORD};

async fn admin_of(app: &TestApp, root: &str, name: &str) -> (String, String) {
    let t = app.create_tenant(root, name, "organization").await;
    let email = format!("admin@{name}.example");
    app.post(
        &format!("/api/v1/tenants/{t}/users"),
        Some(root),
        &json!({"email": email, "password": STRONG_PASSWORD, "role": "tenant_admin"}),
    )
    .await;
    (t, app.tokens(&email).await.0)
}

async fn key(app: &TestApp, admin: &str, scopes: &[&str]) -> String {
    let res = app
        .post(
            "/api/v1/api-keys",
            Some(admin),
            &json!({"name": "svc", "scopes": scopes}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED, "{scopes:?}");
    res.json::<Value>().await.unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn call(app: &TestApp, token: &str, key: &str, op: &str, body: Value) -> reqwest::Response {
    app.post(&format!("/api/v1/transit/{key}/{op}"), Some(token), &body)
        .await
}

#[tokio::test]
async fn encrypt_decrypt_with_context_and_per_key_permissions() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let (_, a) = admin_of(&app, &root, "a").await;
    let (_, b) = admin_of(&app, &root, "b").await;
    let svc = key(
        &app,
        &a,
        &["transit:encrypt:payments", "transit:decrypt:payments"],
    )
    .await;
    let secret = STANDARD.encode(b"iban NL91ABNA0417164300");

    let res = call(
        &app,
        &svc,
        "payments",
        "encrypt",
        json!({"plaintext": secret, "context": "order-1"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    let ciphertext = res.json::<Value>().await.unwrap()["ciphertext"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ciphertext.starts_with("rampart:v1:"));

    let res = call(
        &app,
        &svc,
        "payments",
        "decrypt",
        json!({"ciphertext": ciphertext, "context": "order-1"}),
    )
    .await;
    assert_eq!(res.json::<Value>().await.unwrap()["plaintext"], secret);
    let res = call(
        &app,
        &svc,
        "payments",
        "decrypt",
        json!({"ciphertext": ciphertext, "context": "order-2"}),
    )
    .await;
    assert_eq!(
        res.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "another context"
    );

    // Narrowed to `payments`: no other key.
    let res = call(
        &app,
        &svc,
        "orders",
        "encrypt",
        json!({"plaintext": secret}),
    )
    .await;
    assert_eq!(error_code(res, StatusCode::FORBIDDEN).await, "forbidden");
    // A full-permission caller still cannot decrypt one key's ciphertext at another.
    let res = call(
        &app,
        &a,
        "orders",
        "decrypt",
        json!({"ciphertext": ciphertext, "context": "order-1"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Tenant B's `payments` is another key altogether.
    let res = call(
        &app,
        &b,
        "payments",
        "decrypt",
        json!({"ciphertext": ciphertext, "context": "order-1"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let encrypt_only = key(&app, &a, &["transit:encrypt"]).await;
    let res = call(
        &app,
        &encrypt_only,
        "payments",
        "decrypt",
        json!({"ciphertext": ciphertext, "context": "order-1"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    for bad in [
        json!({"plaintext": "%%%"}),
        json!({"plaintext": secret, "context": "x".repeat(300)}),
    ] {
        assert_eq!(
            call(&app, &a, "payments", "encrypt", bad).await.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
    assert_eq!(
        call(&app, &a, "Bad Key", "encrypt", json!({"plaintext": secret}))
            .await
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let res = call(
        &app,
        &a,
        "payments",
        "decrypt",
        json!({"ciphertext": "rampart:v1:AAAA"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let events: Value = app
        .get("/api/v1/audit-events?action=transit.decrypt", Some(&a))
        .await
        .json()
        .await
        .unwrap();
    assert!(!events["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn rotation_rewrap_and_data_keys() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let (tenant, a) = admin_of(&app, &root, "a").await;
    let plain = STANDARD.encode(b"record");
    let old = call(&app, &a, "records", "encrypt", json!({"plaintext": plain}))
        .await
        .json::<Value>()
        .await
        .unwrap()["ciphertext"]
        .as_str()
        .unwrap()
        .to_string();
    let version = |c: &str| {
        let bytes = STANDARD
            .decode(c.trim_start_matches("rampart:v1:"))
            .unwrap();
        rampart_crypto::envelope::key_of(&bytes).unwrap().1
    };
    assert_eq!(version(&old), 1);
    let (ok, _, err) = app
        .cli(&["keys", "rotate", &format!("tr-{tenant}-records")])
        .await;
    assert!(ok, "{err}");
    let res = call(&app, &a, "records", "decrypt", json!({"ciphertext": old})).await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["plaintext"],
        plain,
        "v1 still opens"
    );
    let res = call(&app, &a, "records", "rewrap", json!({"ciphertext": old})).await;
    let new = res.json::<Value>().await.unwrap()["ciphertext"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(version(&new), 2);
    let res = call(&app, &a, "records", "decrypt", json!({"ciphertext": new})).await;
    assert_eq!(res.json::<Value>().await.unwrap()["plaintext"], plain);

    let dk: Value = call(&app, &a, "records", "datakey", json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        STANDARD
            .decode(dk["plaintext"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    let res = call(
        &app,
        &a,
        "records",
        "decrypt",
        json!({"ciphertext": dk["ciphertext"]}),
    )
    .await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["plaintext"],
        dk["plaintext"]
    );
}
