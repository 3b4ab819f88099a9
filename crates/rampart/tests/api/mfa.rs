//! TOTP multi-factor authentication, with the product default: admins must pass MFA.

use rampart_identity::totp;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{base32_decode, error_code, spawn_app_with, TestApp, STRONG_PASSWORD};

async fn mfa_app() -> TestApp {
    spawn_app_with(|c| c.auth.require_mfa_for_admins = true).await
}

fn step_now() -> u64 {
    jsonwebtoken::get_current_timestamp() / totp::STEP_SECS
}

async fn login_challenge(app: &TestApp, email: &str) -> String {
    let res = app.login(email, STRONG_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(body.get("access_token").is_none());
    body["mfa_token"].as_str().unwrap().to_string()
}

async fn complete(app: &TestApp, mfa_token: &str, code: &str) -> reqwest::Response {
    app.post(
        "/api/v1/auth/mfa",
        None,
        &json!({"mfa_token": mfa_token, "code": code}),
    )
    .await
}

#[tokio::test]
async fn admins_enrol_then_log_in_with_single_use_codes() {
    let app = mfa_app().await;
    app.create_platform_admin("root@example.id").await;
    let (plain, _) = app.tokens("root@example.id").await;

    // Without MFA an admin can see themselves but not act as an admin.
    assert_eq!(
        app.get("/api/v1/users/me", Some(&plain)).await.status(),
        StatusCode::OK
    );
    let res = app
        .post(
            "/api/v1/tenants",
            Some(&plain),
            &json!({"name": "X", "kind": "lpk"}),
        )
        .await;
    assert_eq!(error_code(res, StatusCode::FORBIDDEN).await, "mfa_required");

    let enrolment: Value = app
        .post("/api/v1/auth/mfa/totp/enroll", Some(&plain), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let uri = enrolment["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/Rampart:root%40example.id?secret="),
        "{uri}"
    );
    assert!(enrolment["qr_svg"].as_str().unwrap().contains("<svg"));
    let secret = base32_decode(enrolment["secret"].as_str().unwrap());

    let s = step_now();
    let far = totp::code_at(&secret, s + 10);
    let res = app
        .post(
            "/api/v1/auth/mfa/totp/confirm",
            Some(&plain),
            &json!({"code": far}),
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::UNAUTHORIZED).await,
        "invalid_mfa_code"
    );
    let first = totp::code_at(&secret, s);
    let res = app
        .post(
            "/api/v1/auth/mfa/totp/confirm",
            Some(&plain),
            &json!({"code": first}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let recovery: Vec<String> = res.json::<Value>().await.unwrap()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(recovery.len(), 10);
    // Confirming counts as passing MFA for this session.
    let res = app
        .post(
            "/api/v1/tenants",
            Some(&plain),
            &json!({"name": "X", "kind": "lpk"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);

    // Next login: a challenge; the code used to confirm cannot be replayed.
    let challenge = login_challenge(&app, "root@example.id").await;
    let res = complete(&app, &challenge, &first).await;
    assert_eq!(
        error_code(res, StatusCode::UNAUTHORIZED).await,
        "invalid_mfa_code"
    );
    let res = complete(&app, &challenge, &totp::code_at(&secret, s + 1)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let tokens: Value = res.json().await.unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let res = app
        .post(
            "/api/v1/tenants",
            Some(access),
            &json!({"name": "Y", "kind": "lpk"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let res = complete(&app, &challenge, &totp::code_at(&secret, s + 1)).await;
    assert_eq!(
        error_code(res, StatusCode::UNAUTHORIZED).await,
        "invalid_mfa_token",
        "a challenge is used once"
    );

    // Recovery codes work once each, in any case and grouping.
    let challenge = login_challenge(&app, "root@example.id").await;
    let res = complete(&app, &challenge, &recovery[0].to_uppercase()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let challenge = login_challenge(&app, "root@example.id").await;
    assert_eq!(
        complete(&app, &challenge, &recovery[0]).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        complete(&app, &challenge, &recovery[1]).await.status(),
        StatusCode::OK
    );

    let res = app
        .post("/api/v1/auth/mfa/totp/enroll", Some(access), &json!({}))
        .await;
    assert_eq!(
        error_code(res, StatusCode::CONFLICT).await,
        "mfa_already_enabled"
    );
    let res = app
        .post(
            "/api/v1/auth/mfa/totp/disable",
            Some(access),
            &json!({"code": "000000"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app
        .post(
            "/api/v1/auth/mfa/totp/disable",
            Some(access),
            &json!({"code": recovery[2]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.login("root@example.id", STRONG_PASSWORD).await;
    let body: Value = res.json().await.unwrap();
    assert!(body["access_token"].is_string(), "MFA is off again: {body}");

    let events: Value = app
        .get("/api/v1/security-events?event=mfa_failure", Some(access))
        .await
        .json()
        .await
        .unwrap();
    assert!(!events.as_array().unwrap().is_empty());

    // An admin's second factor removed is an alert (T1098): the event names the role.
    let disabled: Value = app
        .get("/api/v1/security-events?event=mfa_disabled", Some(access))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        disabled[0]["detail"]["role"], "platform_admin",
        "{disabled}"
    );
    let mut raised = Vec::new();
    for _ in 0..100 {
        let page: Value = app
            .get(
                "/api/v1/alerts?rule=rampart-admin-mfa-removed",
                Some(access),
            )
            .await
            .json()
            .await
            .unwrap();
        raised = page["items"].as_array().unwrap().clone();
        if !raised.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert_eq!(raised[0]["level"], "high");
}

#[tokio::test]
async fn wrong_codes_are_throttled_per_user() {
    let app = mfa_app().await;
    app.create_platform_admin("root@example.id").await;
    let (plain, _) = app.tokens("root@example.id").await;
    let enrolment: Value = app
        .post("/api/v1/auth/mfa/totp/enroll", Some(&plain), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    let secret = base32_decode(enrolment["secret"].as_str().unwrap());
    let s = step_now();
    let res = app
        .post(
            "/api/v1/auth/mfa/totp/confirm",
            Some(&plain),
            &json!({"code": totp::code_at(&secret, s)}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    let challenge = login_challenge(&app, "root@example.id").await;
    let wrong = totp::code_at(&secret, s + 20);
    for _ in 0..5 {
        assert_eq!(
            complete(&app, &challenge, &wrong).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    // The challenge is spent, and the user's next challenge is throttled too.
    let res = complete(&app, &challenge, &totp::code_at(&secret, s + 1)).await;
    assert_eq!(
        error_code(res, StatusCode::UNAUTHORIZED).await,
        "invalid_mfa_token"
    );
    let next = login_challenge(&app, "root@example.id").await;
    let res = complete(&app, &next, &totp::code_at(&secret, s + 1)).await;
    assert_eq!(
        error_code(res, StatusCode::TOO_MANY_REQUESTS).await,
        "too_many_requests"
    );
}

#[tokio::test]
async fn members_need_no_mfa_and_keys_are_unaffected() {
    let app = mfa_app().await;
    let member = app
        .create_user(
            rampart_store::PLATFORM_TENANT_ID,
            "m@example.id",
            rampart_store::Role::Member,
        )
        .await;
    let (token, _) = app.tokens("m@example.id").await;
    let me: Value = app
        .get("/api/v1/users/me", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], member);
    assert_eq!(
        app.get(
            &format!("/api/v1/tenants/{}", rampart_store::PLATFORM_TENANT_ID),
            Some(&token)
        )
        .await
        .status(),
        StatusCode::OK
    );
}
