//! The keyring from the operator's side: rotate, rewrap, retire, on the real MFA secrets.

use rampart_crypto::envelope::{key_of, Context};
use rampart_identity::totp;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{base32_decode, spawn_app, TestApp};

/// Enrols MFA for a fresh user of the platform tenant; returns (user id, TOTP secret).
async fn enrolled_user(app: &TestApp, email: &str) -> (String, Vec<u8>) {
    let id = app
        .create_user(
            rampart_store::PLATFORM_TENANT_ID,
            email,
            rampart_store::Role::Member,
        )
        .await;
    let (token, _) = app.tokens(email).await;
    let enrolment: Value = app
        .post("/api/v1/auth/mfa/totp/enroll", Some(&token), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let uri = enrolment["otpauth_uri"].as_str().unwrap();
    let b32 = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let secret = base32_decode(b32);
    let step = jsonwebtoken::get_current_timestamp() / totp::STEP_SECS;
    let res = app
        .post(
            "/api/v1/auth/mfa/totp/confirm",
            Some(&token),
            &json!({"code": totp::code_at(&secret, step)}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    (id, secret)
}

async fn stored_secret(app: &TestApp, user_id: &str) -> Vec<u8> {
    let col = &rampart_store::keyring::SEALED_COLUMNS[0];
    app.store
        .sealed_values(col, "", 100)
        .await
        .unwrap()
        .into_iter()
        .find(|(id, _)| id == user_id)
        .unwrap()
        .1
}

#[tokio::test]
async fn rotate_rewrap_retire_on_live_mfa_secrets() {
    let app = spawn_app().await;
    let (ana, _) = enrolled_user(&app, "ana@example.id").await;
    let v1 = stored_secret(&app, &ana).await;
    assert_eq!(key_of(&v1).unwrap(), ("mfa".to_string(), 1));

    let (ok, out, err) = app.cli(&["keys", "rotate", "mfa"]).await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "2");
    let (ok, out, _) = app.cli(&["keys", "list"]).await;
    assert!(
        ok && out.contains("mfa")
            && out
                .lines()
                .any(|l| l.starts_with("mfa") && l.contains(" 2 ")),
        "{out}"
    );

    // v1 data still opens after the rotation: Ana can still log in with MFA.
    let keyring = rampart::app::crypto(&app.config, &app.store)
        .await
        .unwrap()
        .keyring;
    let ana_ctx = Context::new(
        rampart_store::PLATFORM_TENANT_ID,
        "mfa_factors",
        "sealed_secret",
        &ana,
    );
    let secret = keyring.open(&ana_ctx, &v1).await.unwrap();
    assert_eq!(secret.len(), totp::SECRET_BYTES);

    let (ok, _, err) = app.cli(&["keys", "retire", "mfa", "--below", "2"]).await;
    assert!(!ok, "values still on v1: retiring must be refused");
    assert!(err.contains("rewrap"), "{err}");

    let (ok, out, err) = app.cli(&["keys", "rewrap", "mfa"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("rewrapped 1"), "{out}");
    let v2 = stored_secret(&app, &ana).await;
    assert_eq!(key_of(&v2).unwrap().1, 2);
    assert_eq!(keyring.open(&ana_ctx, &v2).await.unwrap(), secret);

    let (ok, _, err) = app.cli(&["keys", "retire", "mfa", "--below", "2"]).await;
    assert!(ok, "{err}");
    let fresh = rampart::app::crypto(&app.config, &app.store)
        .await
        .unwrap()
        .keyring;
    let error = fresh.open(&ana_ctx, &v1).await.unwrap_err().to_string();
    assert!(error.contains("retired"), "the error says why: {error}");
    assert_eq!(fresh.open(&ana_ctx, &v2).await.unwrap(), secret);
}

#[tokio::test]
async fn a_sealed_secret_moved_to_another_user_does_not_open() {
    let app = spawn_app().await;
    let (ana, _) = enrolled_user(&app, "ana@example.id").await;
    let (budi, _) = enrolled_user(&app, "budi@example.id").await;
    let keyring = rampart::app::crypto(&app.config, &app.store)
        .await
        .unwrap()
        .keyring;
    let anas = stored_secret(&app, &ana).await;
    let ctx = |user: &str, tenant: &str| Context::new(tenant, "mfa_factors", "sealed_secret", user);
    assert!(keyring
        .open(&ctx(&ana, rampart_store::PLATFORM_TENANT_ID), &anas)
        .await
        .is_ok());
    assert!(keyring
        .open(&ctx(&budi, rampart_store::PLATFORM_TENANT_ID), &anas)
        .await
        .is_err());
    assert!(keyring
        .open(&ctx(&ana, "another-tenant"), &anas)
        .await
        .is_err());
    // The TOTP secret is nowhere in the database file in clear.
    if app.database_url.is_none() {
        let secret = keyring
            .open(&ctx(&ana, rampart_store::PLATFORM_TENANT_ID), &anas)
            .await
            .unwrap();
        let db = std::fs::read(app.dir.path().join("rampart.db")).unwrap();
        let wal = std::fs::read(app.dir.path().join("rampart.db-wal")).unwrap_or_default();
        for file in [&db, &wal] {
            assert!(!file.windows(secret.len()).any(|w| w == secret.as_slice()));
        }
    }
}

#[tokio::test]
async fn a_phone_number_is_stored_sealed_and_bound_to_its_user() {
    let app = spawn_app().await;
    let ana = app.create_platform_admin("ana@example.id").await;
    let budi = app.create_platform_admin("budi@example.id").await;
    let (token, _) = app.tokens("ana@example.id").await;
    let put = |phone: &str| {
        app.client
            .put(app.url("/api/v1/users/me/phone"))
            .bearer_auth(&token)
            .json(&json!({ "phone": phone }))
            .send()
    };
    let res = put("0812 3456 7890").await.unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let res = put("+62 812-3456-7890").await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let got: Value = app
        .get("/api/v1/users/me/phone", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["phone"], "+6281234567890");

    let col = rampart_store::keyring::SEALED_COLUMNS
        .iter()
        .find(|c| c.column == "sealed_phone")
        .unwrap();
    let sealed = app.store.sealed_values(col, "", 100).await.unwrap();
    assert_eq!(sealed.len(), 1, "only Ana has a phone");
    assert_eq!(sealed[0].0, ana);
    assert_eq!(key_of(&sealed[0].1).unwrap(), ("pii".to_string(), 1));
    let keyring = rampart::app::crypto(&app.config, &app.store)
        .await
        .unwrap()
        .keyring;
    let ctx = |user: &str| {
        Context::new(
            rampart_store::PLATFORM_TENANT_ID,
            "users",
            "sealed_phone",
            user,
        )
    };
    assert_eq!(
        keyring.open(&ctx(&ana), &sealed[0].1).await.unwrap(),
        b"+6281234567890"
    );
    assert!(
        keyring.open(&ctx(&budi), &sealed[0].1).await.is_err(),
        "moved to Budi's row, it does not open"
    );
    if app.database_url.is_none() {
        let db = std::fs::read(app.dir.path().join("rampart.db")).unwrap();
        let wal = std::fs::read(app.dir.path().join("rampart.db-wal")).unwrap_or_default();
        for file in [&db, &wal] {
            assert!(!file.windows(13).any(|w| w == b"6281234567890"));
        }
    }

    let res = app
        .client
        .delete(app.url("/api/v1/users/me/phone"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let got: Value = app
        .get("/api/v1/users/me/phone", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert!(got["phone"].is_null());
}
