//! Login, tokens, refresh rotation, logout, brute-force throttling, password hashing.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_code, spawn_app, STRONG_PASSWORD};

#[tokio::test]
async fn access_token_verifies_against_the_published_jwks() {
    let app = spawn_app().await;
    let user_id = app.create_platform_admin("root@example.id").await;
    let res = app.login("root@example.id", STRONG_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let token = body["access_token"].as_str().unwrap();

    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let kid = header.kid.expect("kid");

    let jwks: JwkSet = app
        .get("/.well-known/jwks.json", None)
        .await
        .json()
        .await
        .unwrap();
    let jwk = jwks.find(&kid).expect("token's kid is published");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&["rampart"]);
    validation.set_audience(&["rampart"]);
    let claims =
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .expect("verifies with the JWKS key")
            .claims;
    assert_eq!(claims["sub"], user_id);
    assert_eq!(claims["tenant"], rampart_store::PLATFORM_TENANT_ID);
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert_eq!(lifetime, 900);
    assert!(claims["sid"].is_string() && claims["jti"].is_string());

    let me: Value = app
        .get("/api/v1/users/me", Some(token))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["id"], user_id);
    assert_eq!(me["email"], "root@example.id");
    assert_eq!(me["role"], "platform_admin");
}

#[tokio::test]
async fn tampered_missing_and_expired_tokens_get_401() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (token, _) = app.tokens("root@example.id").await;

    // Change the subject in the payload, keep the signature.
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["sub"] = json!("someone-else");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    let res = app.get("/api/v1/users/me", Some(&forged)).await;
    assert_eq!(
        error_code(res, StatusCode::UNAUTHORIZED).await,
        "invalid_token"
    );

    let res = app.get("/api/v1/users/me", None).await;
    assert_eq!(
        error_code(res, StatusCode::UNAUTHORIZED).await,
        "unauthorized"
    );
    let res = app.get("/api/v1/users/me", Some("not-a-jwt")).await;
    assert_eq!(
        error_code(res, StatusCode::UNAUTHORIZED).await,
        "invalid_token"
    );

    // An expired token signed with the deployment's real key.
    let crypto = rampart::app::crypto(&app.config, &app.store).await.unwrap();
    let key = crypto
        .signing
        .signer(
            rampart_crypto::signing::Purpose::AccessToken,
            "kind:platform",
        )
        .await
        .unwrap();
    let tokens = rampart_crypto::AccessTokens::new("rampart", "rampart");
    let mut expired: rampart_crypto::AccessClaims = serde_json::from_value(claims).unwrap();
    let now = jsonwebtoken::get_current_timestamp();
    expired.sub = app.create_platform_admin("other@example.id").await;
    expired.iat = now - 1000;
    expired.exp = now - 100;
    let res = app
        .get(
            "/api/v1/users/me",
            Some(&tokens.sign(&key, &expired).unwrap()),
        )
        .await;
    assert_eq!(
        error_code(res, StatusCode::UNAUTHORIZED).await,
        "invalid_token"
    );
}

#[tokio::test]
async fn sixth_bad_password_in_a_row_gets_429_even_with_the_right_password() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    for attempt in 1..=5 {
        let res = app.login("root@example.id", "wrong password here").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    let res = app.login("root@example.id", "wrong password here").await;
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    assert_eq!(
        error_code(res, StatusCode::TOO_MANY_REQUESTS).await,
        "too_many_requests"
    );
    let res = app.login("root@example.id", STRONG_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);

    // Another account from the same address is not locked by this one.
    app.create_platform_admin("second@example.id").await;
    let res = app.login("second@example.id", STRONG_PASSWORD).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_parallel_burst_of_guesses_gets_only_five_password_checks() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let body = json!({ "email": "root@example.id", "password": "wrong password here" });
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let request = app.client.post(app.url("/api/v1/auth/login")).json(&body);
            tokio::spawn(async move { request.send().await.unwrap().status() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, refused), (5, 7), "{statuses:?}");
}

/// Past its failure budget an address is slowed to one attempt per interval across all
/// accounts, not shut: a colleague behind the same address still logs in with the right
/// password (a whole office, or everyone behind an untrusted proxy, shares one address).
#[tokio::test]
async fn per_ip_limit_spans_accounts_and_slows_rather_than_locks() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.auth.login_ip_max_failures = 3;
        c.auth.login_ip_slow_interval_secs = 2;
    })
    .await;
    app.create_platform_admin("root@example.id").await;
    for i in 0..3 {
        let res = app
            .login(&format!("nobody{i}@example.id"), "wrong password here")
            .await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // The slow lane admits one attempt now (a wrong one here), then none until the
    // interval has passed.
    let res = app.login("nobody8@example.id", "wrong password here").await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = app.login("nobody9@example.id", "wrong password here").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.headers().contains_key("retry-after"));
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let res = app
        .login("root@example.id", crate::helpers::STRONG_PASSWORD)
        .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "a correct password gets through"
    );
}

#[tokio::test]
async fn unknown_email_and_wrong_password_look_the_same() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let strip = |mut v: Value| {
        v["error"]["request_id"] = Value::Null;
        v
    };
    let wrong = app.login("root@example.id", "wrong password here").await;
    let unknown = app.login("ghost@example.id", "wrong password here").await;
    assert_eq!(wrong.status(), unknown.status());
    assert_eq!(
        strip(wrong.json().await.unwrap()),
        strip(unknown.json().await.unwrap())
    );
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (access, first) = app.tokens("root@example.id").await;

    let res = app.refresh(&first).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let second = body["refresh_token"].as_str().unwrap().to_string();
    let new_access = body["access_token"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    assert_eq!(
        app.get("/api/v1/users/me", Some(&new_access))
            .await
            .status(),
        StatusCode::OK
    );

    // The first token again: refused, and the session is over.
    let res = app.refresh(&first).await;
    assert_eq!(
        error_code(res, StatusCode::UNAUTHORIZED).await,
        "invalid_refresh_token"
    );
    let res = app.refresh(&second).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "the family is dead");
    for token in [&access, &new_access] {
        let res = app.get("/api/v1/users/me", Some(token)).await;
        assert_eq!(
            error_code(res, StatusCode::UNAUTHORIZED).await,
            "session_ended"
        );
    }
}

#[tokio::test]
async fn concurrent_uses_of_one_refresh_token_let_at_most_one_through() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (_, refresh) = app.tokens("root@example.id").await;
    let body = json!({ "refresh_token": refresh });
    let (a, b) = tokio::join!(
        app.post("/api/v1/auth/refresh", None, &body),
        app.post("/api/v1/auth/refresh", None, &body)
    );
    let ok = [a.status(), b.status()]
        .iter()
        .filter(|s| **s == StatusCode::OK)
        .count();
    assert!(ok <= 1, "{} {}", a.status(), b.status());
}

#[tokio::test]
async fn logout_ends_the_session_at_once() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (access, refresh) = app.tokens("root@example.id").await;
    let res = app
        .post("/api/v1/auth/logout", Some(&access), &json!({}))
        .await;
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let res = app.get("/api/v1/users/me", Some(&access)).await;
    assert_eq!(
        error_code(res, StatusCode::UNAUTHORIZED).await,
        "session_ended"
    );
    let res = app.refresh(&refresh).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn laravel_bcrypt_hash_logs_in_and_is_rehashed_to_argon2id() {
    let app = spawn_app().await;
    let password = "the old laravel password";
    let hash = bcrypt::hash_with_result(password, 4)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    let email = rampart_store::Email::parse("legacy@example.id").unwrap();
    rampart_identity::users::insert_user(
        &app.store,
        rampart_store::PLATFORM_TENANT_ID.to_string(),
        email.clone(),
        "Legacy".into(),
        rampart_store::Role::Member,
        hash,
        rampart_store::Actor::System,
        Default::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        app.login("legacy@example.id", password).await.status(),
        StatusCode::OK
    );
    let stored = app
        .store
        .find_login_candidate(&email)
        .await
        .unwrap()
        .unwrap();
    assert!(stored
        .password_hash
        .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    assert_eq!(
        app.login("legacy@example.id", password).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login("legacy@example.id", "not the password")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn disabled_or_unknown_refresh_tokens_are_refused_without_500() {
    let app = spawn_app().await;
    for token in ["", "rft_nope", "x".repeat(5000).as_str(), "rft_\u{0}\u{1}"] {
        let res = app.refresh(token).await;
        if token.contains('\u{0}') {
            // A NUL is refused before any handler: 400 invalid_text (or CRS's 403, 920270,
            // when CRS is in front).
            crate::helpers::error_code_or_waf_block(res, StatusCode::BAD_REQUEST, "invalid_text")
                .await;
            continue;
        }
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{token:.20}");
    }
}
