//! Access-token verification as the identity crate does it: `AccessTokens::kid_of`, then
//! `SigningKeys::verifier`, then `AccessTokens::verify`. ES256 goes through ring; these
//! cases are what it must refuse.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rampart_crypto::keyring::BoxFuture;
use rampart_crypto::signing::{
    Algorithm, LoadedKey, Policy, Purpose, SigningKeyBackend, SigningKeyRecord, SigningKeys,
};
use rampart_crypto::{AccessClaims, AccessTokens, JwtError, RootKey};

#[derive(Default)]
struct MemoryBackend(Mutex<Vec<SigningKeyRecord>>);

impl SigningKeyBackend for MemoryBackend {
    fn list(&self) -> BoxFuture<'_, Result<Vec<SigningKeyRecord>, String>> {
        let records = self.0.lock().unwrap().clone();
        Box::pin(async move { Ok(records) })
    }
    fn insert(&self, record: SigningKeyRecord) -> BoxFuture<'_, Result<(), String>> {
        self.0.lock().unwrap().push(record);
        Box::pin(async { Ok(()) })
    }
}

async fn keys(alg: Algorithm) -> SigningKeys {
    let policy = Policy {
        access_token_alg: alg,
        audit_checkpoint_alg: alg,
        rotate_after: Duration::from_secs(90 * 24 * 3600),
        per_tenant: false,
    };
    SigningKeys::load(
        RootKey::from_bytes([3; 32]),
        None,
        Arc::new(MemoryBackend::default()),
        policy,
    )
    .await
    .unwrap()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims(exp: u64) -> AccessClaims {
    AccessClaims {
        iss: "https://id.example".into(),
        aud: "rampart".into(),
        sub: "user".into(),
        tenant: "tenant".into(),
        sid: "session".into(),
        iat: exp.saturating_sub(900),
        exp,
        jti: "jti".into(),
    }
}

fn tokens() -> AccessTokens {
    AccessTokens::new("https://id.example", "rampart")
}

/// What the identity crate does with a bearer token.
async fn check(keys: &SigningKeys, token: &str) -> Result<AccessClaims, JwtError> {
    let kid = AccessTokens::kid_of(token)?;
    let key = keys
        .verifier(&kid)
        .await
        .unwrap()
        .ok_or(JwtError::UnknownKey { kid })?;
    tokens().verify(token, &key)
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with any header, signed by `key` over exactly what it would sign for ours.
fn signed_with_header(key: &LoadedKey, header: serde_json::Value, claims: &AccessClaims) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string()),
        b64(serde_json::to_vec(claims).unwrap())
    );
    let signature = key.sign(input.as_bytes()).unwrap();
    format!("{input}.{}", b64(signature))
}

async fn es256() -> (SigningKeys, Arc<LoadedKey>) {
    let keys = keys(Algorithm::Es256).await;
    let key = keys.signer(Purpose::AccessToken, "kind:x").await.unwrap();
    (keys, key)
}

#[tokio::test]
async fn a_token_from_our_own_signer_verifies() {
    let (keys, key) = es256().await;
    let ours = claims(now() + 900);
    let token = tokens().sign(&key, &ours).unwrap();
    assert_eq!(check(&keys, &token).await.unwrap(), ours);
    // Within the leeway past `exp` it still verifies.
    let just_expired = tokens().sign(&key, &claims(now() - 2)).unwrap();
    assert!(check(&keys, &just_expired).await.is_ok());
}

#[tokio::test]
async fn a_flipped_signature_byte_fails() {
    let (keys, key) = es256().await;
    let token = tokens().sign(&key, &claims(now() + 900)).unwrap();
    let (input, signature) = token.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    for i in [0, 31, 32, 63] {
        let mut flipped = signature.clone();
        flipped[i] ^= 0x01;
        let forged = format!("{input}.{}", b64(&flipped));
        assert!(
            matches!(check(&keys, &forged).await, Err(JwtError::Invalid(_))),
            "byte {i}"
        );
    }
}

#[tokio::test]
async fn alg_none_hs256_and_another_alg_than_the_key_fail() {
    let (keys, key) = es256().await;
    let claims = claims(now() + 900);
    let payload = b64(serde_json::to_vec(&claims).unwrap());
    let header = |alg: &str| serde_json::json!({"alg": alg, "typ": "at+jwt", "kid": key.kid});

    // `alg: none` with no signature, and with our real signature left on.
    let real = tokens().sign(&key, &claims).unwrap();
    let real_signature = real.rsplit('.').next().unwrap();
    for signature in ["", real_signature] {
        let none = format!("{}.{payload}.{signature}", b64(header("none").to_string()));
        assert!(AccessTokens::kid_of(&none).is_err());
        assert!(tokens().verify(&none, &key).is_err());
    }

    // HS256 with the public key's coordinates as the HMAC secret (algorithm confusion).
    let secret = format!("{}{}", key.jwk()["x"], key.jwk()["y"]);
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.typ = Some("at+jwt".into());
    hs_header.kid = Some(key.kid.clone());
    let hs = jsonwebtoken::encode(
        &hs_header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    assert!(matches!(
        AccessTokens::kid_of(&hs),
        Err(JwtError::Invalid(_))
    ));
    assert!(matches!(
        tokens().verify(&hs, &key),
        Err(JwtError::Invalid(_))
    ));

    // A header naming another supported algorithm, with a signature that is valid under
    // the ES256 key: the key's algorithm is not the token's, so it is refused.
    for alg in ["EdDSA", "PS256", "ES384"] {
        let other = signed_with_header(&key, header(alg), &claims);
        assert!(tokens().verify(&other, &key).is_err(), "{alg}");
        assert!(check(&keys, &other).await.is_err(), "{alg}");
    }

    // An ES256 token checked against an EdDSA key (the jsonwebtoken path) fails too, and
    // an EdDSA token against the ES256 key.
    let ed_keys = self::keys(Algorithm::EdDsa).await;
    let ed = ed_keys
        .signer(Purpose::AccessToken, "kind:x")
        .await
        .unwrap();
    assert!(tokens().verify(&real, &ed).is_err());
    let ed_token = tokens().sign(&ed, &claims).unwrap();
    assert!(tokens().verify(&ed_token, &ed).is_ok());
    assert!(tokens().verify(&ed_token, &key).is_err());
}

#[tokio::test]
async fn a_wrong_kid_fails() {
    let (keys, key) = es256().await;
    let claims = claims(now() + 900);

    // A kid no node knows: no key, so no verification.
    let unknown = signed_with_header(
        &key,
        serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": "no-such-key"}),
        &claims,
    );
    assert!(matches!(
        check(&keys, &unknown).await,
        Err(JwtError::UnknownKey { .. })
    ));

    // A kid naming another of our keys: that key's signature check fails...
    let other = keys
        .signer(Purpose::AccessToken, "kind:other")
        .await
        .unwrap();
    let misnamed = signed_with_header(
        &key,
        serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": other.kid}),
        &claims,
    );
    assert!(matches!(
        check(&keys, &misnamed).await,
        Err(JwtError::Invalid(_))
    ));
    // ...and the signing key itself refuses a token whose header names another key.
    assert!(matches!(
        tokens().verify(&misnamed, &key),
        Err(JwtError::Invalid(_))
    ));
    // No kid at all.
    let kidless = signed_with_header(
        &key,
        serde_json::json!({"alg": "ES256", "typ": "at+jwt"}),
        &claims,
    );
    assert!(matches!(
        AccessTokens::kid_of(&kidless),
        Err(JwtError::Malformed)
    ));
    assert!(tokens().verify(&kidless, &key).is_err());
}

#[tokio::test]
async fn a_der_encoded_signature_fails() {
    let (keys, key) = es256().await;
    let token = tokens().sign(&key, &claims(now() + 900)).unwrap();
    let (input, signature) = token.rsplit_once('.').unwrap();
    let fixed =
        p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
    let der = format!("{input}.{}", b64(fixed.to_der().as_bytes()));
    assert!(matches!(
        check(&keys, &der).await,
        Err(JwtError::Invalid(_))
    ));
}

#[tokio::test]
async fn expired_and_foreign_claims_fail() {
    let (keys, key) = es256().await;
    let expired = tokens().sign(&key, &claims(now() - 60)).unwrap();
    assert!(matches!(
        check(&keys, &expired).await,
        Err(JwtError::Expired)
    ));

    let mut foreign_issuer = claims(now() + 900);
    foreign_issuer.iss = "https://elsewhere.example".into();
    let token = tokens().sign(&key, &foreign_issuer).unwrap();
    assert!(matches!(
        check(&keys, &token).await,
        Err(JwtError::Invalid(_))
    ));

    let mut foreign_audience = claims(now() + 900);
    foreign_audience.aud = "someone-else".into();
    let token = tokens().sign(&key, &foreign_audience).unwrap();
    assert!(matches!(
        check(&keys, &token).await,
        Err(JwtError::Invalid(_))
    ));

    // A required claim missing (`sub`), though correctly signed.
    let mut without_sub = serde_json::to_value(claims(now() + 900)).unwrap();
    without_sub.as_object_mut().unwrap().remove("sub");
    let input = format!(
        "{}.{}",
        b64(serde_json::json!({"alg": "ES256", "typ": "at+jwt", "kid": key.kid}).to_string()),
        b64(without_sub.to_string())
    );
    let token = format!("{input}.{}", b64(key.sign(input.as_bytes()).unwrap()));
    assert!(check(&keys, &token).await.is_err());

    // Garbage in any part.
    for garbage in ["", "a.b", "a.b.c", "a.b.c.d"] {
        assert!(tokens().verify(garbage, &key).is_err(), "{garbage:?}");
    }
}
