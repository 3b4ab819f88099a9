//! Signing keys: per tenant kind, three algorithms, rotation, and a PKCS#11 token holding
//! the root key and the private keys.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rampart_config::{RootKeySourceSetting, SigningAlgSetting};
use rampart_crypto::signing::Purpose;
use rampart_crypto::AccessTokens;
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{error_code, softhsm_token, spawn_app, spawn_app_with, TestApp};
use crate::vault::{key, merchant, tokenize};

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

fn claims(token: &str) -> rampart_crypto::AccessClaims {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn jwks(app: &TestApp) -> Value {
    app.get("/.well-known/jwks.json", None)
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn each_tenant_kind_signs_with_its_own_key_and_one_cannot_vouch_for_another() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let (_, merchant_token) = merchant(&app, &root, "shop").await;
    assert_ne!(kid(&root), kid(&merchant_token));
    let published = jwks(&app).await;
    for token in [&root, &merchant_token] {
        assert!(
            published["keys"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kid"] == kid(token).as_str()),
            "{published}"
        );
    }
    assert_eq!(
        app.get("/api/v1/users/me", Some(&merchant_token))
            .await
            .status(),
        StatusCode::OK
    );

    // The merchant user's claims, signed with the platform kind's key: refused.
    let crypto = rampart::app::crypto(&app.config, &app.store).await.unwrap();
    let platform_key = crypto
        .signing
        .signer(Purpose::AccessToken, "kind:platform")
        .await
        .unwrap();
    let forged = AccessTokens::new("rampart", "rampart")
        .sign(&platform_key, &claims(&merchant_token))
        .unwrap();
    let res = app.get("/api/v1/users/me", Some(&forged)).await;
    assert_eq!(
        error_code(res, StatusCode::UNAUTHORIZED).await,
        "invalid_token"
    );

    // Audit checkpoints are signed by keys of their own, never by token keys.
    let (ok, _, err) = app.cli(&["audit", "checkpoint"]).await;
    assert!(ok, "{err}");
    let (ok, out, err) = app.cli(&["audit", "verify"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("signed checkpoints"), "{out}");
    let (ok, out, err) = app.cli(&["keys", "signing"]).await;
    assert!(ok, "{err}");
    assert!(
        out.lines().any(|l| l.contains("audit-checkpoint")
            && l.contains("kind:merchant")
            && l.contains("EdDSA")),
        "{out}"
    );
}

/// EdDSA and PS256 tokens verify with PyJWT (over `cryptography`) from the JWKS alone.
#[tokio::test]
async fn eddsa_and_ps256_tokens_verify_with_an_independent_library() {
    for alg in [SigningAlgSetting::EdDSA, SigningAlgSetting::PS256] {
        let app = spawn_app_with(|c| c.crypto.access_token_alg = alg).await;
        app.create_platform_admin("root@example.id").await;
        let (token, _) = app.tokens("root@example.id").await;
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(format!("{:?}", header.alg), alg.as_str());
        let keys = jwks(&app).await;
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import json, sys, jwt\n\
                 token, keys, alg = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]\n\
                 kid = jwt.get_unverified_header(token)['kid']\n\
                 jwk = next(k for k in keys['keys'] if k['kid'] == kid)\n\
                 key = jwt.PyJWK(jwk).key\n\
                 claims = jwt.decode(token, key, algorithms=[alg], audience='rampart', issuer='rampart')\n\
                 print(claims['sub'])\n",
                &token,
                &keys.to_string(),
                alg.as_str(),
            ])
            .output()
            .expect("python3 with PyJWT is installed");
        assert!(
            out.status.success(),
            "{alg:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            claims(&token).sub
        );
    }
}

#[tokio::test]
async fn a_key_rotated_on_another_node_signs_there_and_verifies_here() {
    let app = spawn_app().await;
    app.create_platform_admin("root@example.id").await;
    let (before, _) = app.tokens("root@example.id").await;

    let (ok, out, err) = app
        .cli(&[
            "keys",
            "rotate-signing",
            "--purpose",
            "access-token",
            "--scope",
            "kind:platform",
        ])
        .await;
    assert!(ok, "{err}");
    let new_kid = out.trim().to_string();
    assert_ne!(new_kid, kid(&before));

    // Another node (a fresh set of crypto services on the same database) signs with the
    // new key; this node has never seen it, reloads, and accepts the token.
    let other_node = rampart::app::crypto(&app.config, &app.store).await.unwrap();
    let key = other_node
        .signing
        .signer(Purpose::AccessToken, "kind:platform")
        .await
        .unwrap();
    assert_eq!(key.kid, new_kid);
    let mut fresh_claims = claims(&before);
    fresh_claims.jti = "other-node".into();
    let from_other_node = AccessTokens::new("rampart", "rampart")
        .sign(&key, &fresh_claims)
        .unwrap();
    assert_eq!(
        app.get("/api/v1/users/me", Some(&from_other_node))
            .await
            .status(),
        StatusCode::OK
    );
    // The token from before the rotation still works during the grace period, and both
    // keys are published.
    assert_eq!(
        app.get("/api/v1/users/me", Some(&before)).await.status(),
        StatusCode::OK
    );
    let published = jwks(&app).await;
    let kids: Vec<&str> = published["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(kids.contains(&new_kid.as_str()) && kids.contains(&kid(&before).as_str()));

    let (ok, _, err) = app
        .cli(&[
            "keys",
            "rotate-signing",
            "--purpose",
            "legacy",
            "--scope",
            "kind:platform",
        ])
        .await;
    assert!(!ok && err.contains("never sign"), "{err}");
}

/// With a token configured, the root key is an AES object in it and signing keys are
/// generated there: the database holds labels and public keys, no private key bytes, and
/// no root key file appears. Everything still works end to end, CLI included.
#[tokio::test]
async fn with_a_pkcs11_token_no_private_key_or_root_key_leaves_it() {
    let Some((module, token, pin)) = softhsm_token() else {
        return;
    };
    let label = format!("root-{}", uuid::Uuid::new_v4().simple());
    let app = spawn_app_with(|c| {
        c.crypto.pkcs11_module = module.clone();
        c.crypto.pkcs11_token = token.clone();
        c.crypto.pkcs11_pin = rampart_config::Secret::new(pin.clone());
        c.crypto.root_key_source = RootKeySourceSetting::Pkcs11;
        c.crypto.pkcs11_root_key_label = label.clone();
    })
    .await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let (_, shop) = merchant(&app, &root, "shop").await;
    // The keyring (its versions wrapped under the token's root key) seals card numbers.
    let writer = key(&app, &shop, &["tokens:write"]).await;
    let card = tokenize(&app, &writer, "4111111111111111").await;
    assert_eq!(card["last4"], "1111");

    assert!(
        !app.dir.path().join("keys/root.key").exists(),
        "no root key file with the root key in the token"
    );
    let stored = app.store.signing_keys().await.unwrap();
    assert!(!stored.is_empty());
    for key in &stored {
        assert!(key.sealed_private_key.is_empty(), "{}", key.kid);
        assert!(key.token_label.is_some(), "{}", key.kid);
        assert!(key.public_jwk.is_some(), "{}", key.kid);
    }

    let (ok, _, err) = app.cli(&["audit", "checkpoint"]).await;
    assert!(ok, "{err}");
    let (ok, out, err) = app.cli(&["audit", "verify"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("signed checkpoints"), "{out}");
    let (ok, out, err) = app.cli(&["keys", "signing"]).await;
    assert!(ok, "{err}");
    assert!(out.lines().skip(1).all(|l| l.contains(" token ")), "{out}");
}
