//! Tenants and users: who may create what, and tenant boundaries.

use rampart_store::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, spawn_app, STRONG_PASSWORD};

#[tokio::test]
async fn platform_admin_creates_and_lists_tenants() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (admin, _) = app.tokens("root@example.id").await;
    let mut ids = Vec::new();
    for kind in [
        "government",
        "lpk",
        "employer",
        "merchant",
        "organization",
        "community",
    ] {
        ids.push(app.create_tenant(&admin, &format!("T {kind}"), kind).await);
    }
    for bad in [
        json!({"name": "X", "kind": "platform"}),
        json!({"name": "X", "kind": "bank"}),
        json!({"name": "  ", "kind": "lpk"}),
    ] {
        let res = app.post("/api/v1/tenants", Some(&admin), &bad).await;
        assert_eq!(
            error_code(res, StatusCode::UNPROCESSABLE_ENTITY).await,
            "invalid_field"
        );
    }
    // Pages of two, in creation order, the platform tenant first.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/tenants?limit=2&after={c}"),
            None => "/api/v1/tenants?limit=2".to_string(),
        };
        let page: Value = app.get(&path, Some(&admin)).await.json().await.unwrap();
        for item in page["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7);
    assert_eq!(seen[0], rampart_store::PLATFORM_TENANT_ID);
    assert_eq!(&seen[1..], &ids[..]);
    let res = app.get("/api/v1/tenants?limit=0", Some(&admin)).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn tenant_admins_act_only_in_their_tenant() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let a = app.create_tenant(&root, "A", "merchant").await;
    let b = app.create_tenant(&root, "B", "merchant").await;

    // The platform admin creates A's admin over the API.
    let res = app
        .post(
            &format!("/api/v1/tenants/{a}/users"),
            Some(&root),
            &json!({"email": "admin@a.example", "password": STRONG_PASSWORD, "role": "tenant_admin"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let (a_admin, _) = app.tokens("admin@a.example").await;

    // A tenant admin invites; the invitee chooses the password.
    let new_member = |email: &str| json!({"email": email, "role": "member"});
    let res = app
        .post(
            &format!("/api/v1/tenants/{a}/users"),
            Some(&a_admin),
            &new_member("m@a.example"),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, json!({"status": "invited"}));
    // Not a user until they accept: no login with any password yet.
    assert_eq!(
        app.login("m@a.example", STRONG_PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.accept_invitation("m@a.example").await;
    let (m_token, _) = app.tokens("m@a.example").await;
    let me: Value = app
        .get("/api/v1/users/me", Some(&m_token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["tenant_id"], a);
    assert_eq!(me["role"], "member");

    // Tenant B does not exist as far as A's admin can tell.
    let res = app
        .post(
            &format!("/api/v1/tenants/{b}/users"),
            Some(&a_admin),
            &new_member("m@b.example"),
        )
        .await;
    assert_eq!(error_code(res, StatusCode::NOT_FOUND).await, "not_found");
    let res = app
        .get(&format!("/api/v1/tenants/{b}"), Some(&a_admin))
        .await;
    assert_eq!(error_code(res, StatusCode::NOT_FOUND).await, "not_found");
    let res = app
        .get(&format!("/api/v1/tenants/{a}"), Some(&a_admin))
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    // Members and tenant admins cannot do platform work.
    let res = app.get("/api/v1/tenants", Some(&a_admin)).await;
    assert_eq!(error_code(res, StatusCode::FORBIDDEN).await, "forbidden");
    let res = app
        .post(
            "/api/v1/tenants",
            Some(&a_admin),
            &json!({"name": "C", "kind": "lpk"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let (member, _) = app.tokens("m@a.example").await;
    let res = app
        .post(
            &format!("/api/v1/tenants/{a}/users"),
            Some(&member),
            &new_member("x@a.example"),
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app
        .post(
            &format!("/api/v1/tenants/{a}/users"),
            Some(&a_admin),
            &json!({"email": "p@a.example", "password": STRONG_PASSWORD, "role": "platform_admin"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn weak_passwords_and_taken_emails_are_refused() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let t = app.create_tenant(&root, "A", "lpk").await;
    let path = format!("/api/v1/tenants/{t}/users");
    for weak in ["short", "password1234", "qwertyuiop12", "aaaaaaaaaaaaaaaa"] {
        let res = app
            .post(
                &path,
                Some(&root),
                &json!({"email": "w@a.example", "password": weak, "role": "member"}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{weak}");
        let body: Value = res.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("password"),
            "{body}"
        );
    }
    let long_passphrase = "a quiet river runs under the old stone bridge at dawn".repeat(3);
    let ok = json!({"email": "w@a.example", "password": long_passphrase, "role": "member"});
    assert_eq!(
        app.post(&path, Some(&root), &ok).await.status(),
        StatusCode::CREATED
    );
    let res = app
        .post(
            &path,
            Some(&root),
            &json!({"email": "W@A.example", "password": STRONG_PASSWORD, "role": "member"}),
        )
        .await;
    assert_eq!(error_code(res, StatusCode::CONFLICT).await, "email_taken");
    let res = app
        .post(
            "/api/v1/tenants/no-such-tenant/users",
            Some(&root),
            &json!({"email": "z@a.example", "password": STRONG_PASSWORD, "role": "member"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_disabled_role_change_shows_on_the_next_request() {
    // Role and status are read from the database on every request, not from the token.
    let app = spawn_app().await;
    let id = app
        .create_user(
            rampart_store::PLATFORM_TENANT_ID,
            "m@example.id",
            Role::Member,
        )
        .await;
    let (token, _) = app.tokens("m@example.id").await;
    let me: Value = app
        .get("/api/v1/users/me", Some(&token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], id);
    assert_eq!(me["role"], "member");
}
