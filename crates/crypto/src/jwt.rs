//! Access tokens: JWTs in the RFC 9068 profile (header `typ: at+jwt`, `kid` naming the
//! key), signed with ES256, EdDSA or PS256 by a key from `signing.rs` (in a PKCS#11 token
//! when one is configured), verifiable by any standard JWT library from the JWKS.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm as JwsAlgorithm, Validation};
use ring::signature::UnparsedPublicKey;
use serde::{Deserialize, Serialize};

use crate::signing::{Algorithm, LoadedKey, Purpose, TokenVerifier};

/// The media type of access tokens (RFC 9068), checked on every verification so that a
/// different kind of JWT signed by the same key is never taken as an access token.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// User id.
    pub sub: String,
    /// Tenant id of the user.
    pub tenant: String,
    /// Session id: logout and refresh-token reuse end the session, and every request
    /// checks it is still live.
    pub sid: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
}

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("token is malformed")]
    Malformed,
    #[error("token is signed by an unknown key")]
    UnknownKey { kid: String },
    #[error("token is invalid: {0}")]
    Invalid(String),
    #[error("token has expired")]
    Expired,
    #[error("signing failed: {0}")]
    Sign(String),
}

fn jws_alg(alg: Algorithm) -> JwsAlgorithm {
    match alg {
        Algorithm::Es256 => JwsAlgorithm::ES256,
        Algorithm::EdDsa => JwsAlgorithm::EdDSA,
        Algorithm::Ps256 => JwsAlgorithm::PS256,
    }
}

/// How far past `exp` a token is still accepted, in seconds. Nodes share a clock source
/// (NTP); a few seconds cover skew without stretching the 15-minute lifetime meaningfully.
const LEEWAY_SECS: u64 = 5;

/// Signs and checks access tokens for one issuer and audience.
#[derive(Debug, Clone)]
pub struct AccessTokens {
    issuer: String,
    audience: String,
    /// The claim checks for keys verified through `jsonwebtoken` (EdDSA, PS256); ES256
    /// tokens get the same checks from [`AccessTokens::check_claims`].
    validation: Validation,
}

impl AccessTokens {
    pub fn new(issuer: &str, audience: &str) -> AccessTokens {
        let mut validation = Validation::new(JwsAlgorithm::ES256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        AccessTokens {
            issuer: issuer.into(),
            audience: audience.into(),
            validation,
        }
    }

    /// A compact JWS over `claims`, signed by `key` (which must be an access-token key).
    pub fn sign(&self, key: &LoadedKey, claims: &AccessClaims) -> Result<String, JwtError> {
        if key.purpose != Purpose::AccessToken {
            return Err(JwtError::Sign(format!(
                "key {} is not for access tokens",
                key.kid
            )));
        }
        let header = serde_json::json!({
            "alg": key.alg.as_str(),
            "typ": ACCESS_TOKEN_TYP,
            "kid": key.kid,
        });
        let payload = serde_json::to_vec(claims).map_err(|e| JwtError::Sign(e.to_string()))?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = key
            .sign(signing_input.as_bytes())
            .map_err(|e| JwtError::Sign(e.to_string()))?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }

    /// The `kid` a token names, after checking its header is one of ours (`typ` at+jwt,
    /// a supported `alg`). The caller looks the key up and calls [`AccessTokens::verify`].
    pub fn kid_of(token: &str) -> Result<String, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        if !matches!(
            header.alg,
            JwsAlgorithm::ES256 | JwsAlgorithm::EdDSA | JwsAlgorithm::PS256
        ) {
            return Err(JwtError::Invalid(
                "algorithm is not ES256, EdDSA or PS256".into(),
            ));
        }
        if header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
            return Err(JwtError::Invalid("typ is not at+jwt".into()));
        }
        header.kid.ok_or(JwtError::Malformed)
    }

    /// Checks the signature with `key` (whose algorithm and `kid` the header must name),
    /// then `iss`, `aud` and `exp`. A key past its publication grace is refused.
    pub fn verify(&self, token: &str, key: &LoadedKey) -> Result<AccessClaims, JwtError> {
        if !key.serves(Purpose::AccessToken) {
            return Err(JwtError::Invalid("key does not sign access tokens".into()));
        }
        if !key.published() {
            return Err(JwtError::Invalid("signing key was superseded".into()));
        }
        let wrong_kid = || JwtError::Invalid("token names another key".into());
        match &key.token_verifier {
            Some(TokenVerifier::Es256(public)) => {
                let (kid, claims) = verify_es256(token, public)?;
                if kid.as_deref() != Some(key.kid.as_str()) {
                    return Err(wrong_kid());
                }
                self.check_claims(claims)
            }
            Some(TokenVerifier::Jwt(decoding)) => {
                let mut validation = self.validation.clone();
                // Only the key's own algorithm: no algorithm confusion.
                validation.algorithms = vec![jws_alg(key.alg)];
                let data = jsonwebtoken::decode::<AccessClaims>(token, decoding, &validation)
                    .map_err(|e| match e.kind() {
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature => JwtError::Expired,
                        _ => JwtError::Invalid(e.to_string()),
                    })?;
                if data.header.kid.as_deref() != Some(key.kid.as_str()) {
                    return Err(wrong_kid());
                }
                Ok(data.claims)
            }
            None => Err(JwtError::Invalid("key does not sign access tokens".into())),
        }
    }

    /// The claim checks `jsonwebtoken` makes with [`AccessTokens::validation`], for
    /// tokens whose signature ring checked: `exp` (with [`LEEWAY_SECS`]), `iss`, `aud`.
    /// `sub` and the rest are required by [`AccessClaims`] itself.
    fn check_claims(&self, claims: AccessClaims) -> Result<AccessClaims, JwtError> {
        let now = jsonwebtoken::get_current_timestamp();
        if claims.exp < now.saturating_sub(LEEWAY_SECS) {
            return Err(JwtError::Expired);
        }
        if claims.iss != self.issuer {
            return Err(JwtError::Invalid("issuer is not ours".into()));
        }
        if claims.aud != self.audience {
            return Err(JwtError::Invalid("audience is not ours".into()));
        }
        Ok(claims)
    }
}

/// Checks an ES256 compact JWS: header `alg` ES256, a low-S signature in the fixed
/// 64-byte `r || s` form JWS uses (RFC 7518 section 3.4; a DER one is refused), valid
/// under `public`. Returns the header's `kid` and the claims, which are not checked yet.
///
/// ring rather than `jsonwebtoken`'s RustCrypto `p256`, because every authenticated
/// request runs this: on the 2-core development machine (2026-12-02) a whole verification
/// took 176-193 µs through `jsonwebtoken` + `p256` and 41 µs through ring, 4.3-4.8 times
/// less (`cargo run --release -p rampart-crypto --example verify_speed`).
fn verify_es256(
    token: &str,
    public: &UnparsedPublicKey<Vec<u8>>,
) -> Result<(Option<String>, AccessClaims), JwtError> {
    let (signing_input, signature) = token.rsplit_once('.').ok_or(JwtError::Malformed)?;
    let (header, payload) = signing_input
        .split_once('.')
        .filter(|(_, payload)| !payload.contains('.'))
        .ok_or(JwtError::Malformed)?;
    let header: jsonwebtoken::Header = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or(JwtError::Malformed)?;
    // Only the key's own algorithm: no algorithm confusion.
    if header.alg != JwsAlgorithm::ES256 {
        return Err(JwtError::Invalid(
            "algorithm is not the key's (ES256)".into(),
        ));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| JwtError::Malformed)?;
    if !low_s(&signature) {
        // (r, n - s) verifies as well as (r, s): refusing the high half keeps one valid
        // token per signing, as we only ever issue low-S ones.
        return Err(JwtError::Invalid("ECDSA signature is not low-S".into()));
    }
    public
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| JwtError::Invalid("signature does not verify".into()))?;
    // A fixed message: serde's would quote claim values, and errors get logged.
    let claims = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| JwtError::Malformed)
        .and_then(|json| {
            serde_json::from_slice(&json)
                .map_err(|_| JwtError::Invalid("claims are not an access token's".into()))
        })?;
    Ok((header.kid, claims))
}

/// Whether a 64-byte ES256 signature has `s` in the lower half. Anything else is left to
/// the verification that follows to refuse.
fn low_s(signature: &[u8]) -> bool {
    p256::ecdsa::Signature::from_slice(signature).map_or(true, |s| s.normalize_s().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::tests::{policy, MemoryBackend};
    use crate::signing::SigningKeys;
    use crate::RootKey;
    use std::sync::Arc;

    fn claims(exp: u64) -> AccessClaims {
        AccessClaims {
            iss: "iss".into(),
            aud: "aud".into(),
            sub: "user".into(),
            tenant: "tenant".into(),
            sid: "session".into(),
            iat: exp.saturating_sub(900),
            exp,
            jti: "jti".into(),
        }
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    async fn signer(alg: Algorithm) -> Arc<LoadedKey> {
        let keys = SigningKeys::load(
            RootKey::from_bytes([1; 32]),
            None,
            Arc::new(MemoryBackend::default()),
            policy(alg),
        )
        .await
        .unwrap();
        keys.signer(Purpose::AccessToken, "kind:x").await.unwrap()
    }

    /// ECDSA signatures are malleable: `(r, n - s)` verifies like `(r, s)`. Ours are always
    /// low-S, and the high-S twin of a valid token is refused.
    #[tokio::test]
    async fn a_high_s_twin_of_an_es256_token_is_refused() {
        let tokens = AccessTokens::new("iss", "aud");
        let key = signer(Algorithm::Es256).await;
        for _ in 0..16 {
            let token = tokens.sign(&key, &claims(now() + 900)).unwrap();
            let signature = token.rsplit('.').next().unwrap();
            assert!(
                low_s(&URL_SAFE_NO_PAD.decode(signature).unwrap()),
                "we sign low-S only"
            );
            assert!(tokens.verify(&token, &key).is_ok());

            let (input, signature) = token.rsplit_once('.').unwrap();
            let bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
            let low = p256::ecdsa::Signature::from_slice(&bytes).unwrap();
            let (r, s) = low.split_scalars();
            let high =
                p256::ecdsa::Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
            let twin = format!("{input}.{}", URL_SAFE_NO_PAD.encode(high.to_bytes()));
            // The twin is a valid signature to a lenient verifier...
            use p256::ecdsa::signature::Verifier;
            let jwk = key.jwk();
            let bare =
                serde_json::json!({"kty": "EC", "crv": "P-256", "x": jwk["x"], "y": jwk["y"]});
            let public = p256::PublicKey::from_jwk_str(&bare.to_string()).unwrap();
            let public = p256::ecdsa::VerifyingKey::from(public);
            assert!(public.verify(input.as_bytes(), &high).is_ok());
            // ...and refused here, by the token check and by the key's own verify.
            assert!(matches!(
                tokens.verify(&twin, &key),
                Err(JwtError::Invalid(_))
            ));
            assert!(!key.verify(input.as_bytes(), &high.to_bytes()));
        }
    }

    #[tokio::test]
    async fn sign_verify_and_reject_for_every_algorithm() {
        let tokens = AccessTokens::new("iss", "aud");
        for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Ps256] {
            let key = signer(alg).await;
            let token = tokens.sign(&key, &claims(now() + 900)).unwrap();
            assert_eq!(AccessTokens::kid_of(&token).unwrap(), key.kid);
            assert_eq!(tokens.verify(&token, &key).unwrap().sub, "user");

            let expired = tokens.sign(&key, &claims(now() - 60)).unwrap();
            assert!(matches!(
                tokens.verify(&expired, &key),
                Err(JwtError::Expired)
            ));

            // One flipped character in the payload breaks the signature.
            let mut parts: Vec<String> = token.split('.').map(String::from).collect();
            let mut payload = parts[1].clone().into_bytes();
            payload[5] = if payload[5] == b'A' { b'B' } else { b'A' };
            parts[1] = String::from_utf8(payload).unwrap();
            assert!(tokens.verify(&parts.join("."), &key).is_err());

            // Another key of the same algorithm does not verify it.
            let other = signer(alg).await;
            assert!(tokens.verify(&token, &other).is_err());

            let wrong_aud = AccessTokens::new("iss", "other");
            assert!(matches!(
                wrong_aud.verify(&token, &key),
                Err(JwtError::Invalid(_))
            ));
        }
        assert!(matches!(
            AccessTokens::kid_of("garbage"),
            Err(JwtError::Malformed)
        ));
        // HS256 with the public key as secret (algorithm confusion) is refused up front.
        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(JwsAlgorithm::HS256),
            &claims(now() + 900),
            &jsonwebtoken::EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert!(matches!(
            AccessTokens::kid_of(&hs),
            Err(JwtError::Invalid(_))
        ));
    }
}
