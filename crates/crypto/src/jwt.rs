//! Access tokens: ES256 JWTs (RFC 9068 profile: header `typ: at+jwt`, `kid` naming the
//! key) and the JWKS that lets any standard JWT library verify them.
//!
//! Signing keys are P-256 keys stored sealed under the root key (see `seal.rs`); the
//! Crypto issue moves them into the versioned keyring and optionally a PKCS#11 token.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::RootKey;

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
    #[error("stored signing key {kid} does not open with this root key")]
    KeyUnsealable { kid: String },
    #[error("signing failed: {0}")]
    Sign(String),
}

/// One ES256 key pair.
pub struct SigningKey {
    kid: String,
    secret: p256::SecretKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn generate() -> SigningKey {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let kid = thumbprint(&secret);
        SigningKey { kid, secret }
    }

    /// The RFC 7638 thumbprint of the public key: stable, and names the key in `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private key as PKCS#8, sealed under the root key and bound to this kid.
    pub fn seal(&self, root: &RootKey) -> Result<Vec<u8>, JwtError> {
        let der = self
            .secret
            .to_pkcs8_der()
            .map_err(|e| JwtError::Sign(e.to_string()))?;
        Ok(root.seal(&seal_context(&self.kid), der.as_bytes()))
    }

    pub fn open(root: &RootKey, kid: &str, sealed: &[u8]) -> Result<SigningKey, JwtError> {
        let unsealable = || JwtError::KeyUnsealable {
            kid: kid.to_string(),
        };
        let der = root
            .open(&seal_context(kid), sealed)
            .map_err(|_| unsealable())?;
        let secret = p256::SecretKey::from_pkcs8_der(&der).map_err(|_| unsealable())?;
        if thumbprint(&secret) != kid {
            return Err(unsealable());
        }
        Ok(SigningKey {
            kid: kid.to_string(),
            secret,
        })
    }

    /// The public half as a JWK, as published in `/.well-known/jwks.json`.
    pub fn public_jwk(&self) -> serde_json::Value {
        let (x, y) = public_coordinates(&self.secret);
        serde_json::json!({
            "kty": "EC",
            "crv": "P-256",
            "x": x,
            "y": y,
            "kid": self.kid,
            "alg": "ES256",
            "use": "sig",
        })
    }

    fn encoding_key(&self) -> Result<EncodingKey, JwtError> {
        let der = self
            .secret
            .to_pkcs8_der()
            .map_err(|e| JwtError::Sign(e.to_string()))?;
        Ok(EncodingKey::from_ec_der(der.as_bytes()))
    }

    fn decoding_key(&self) -> Result<DecodingKey, JwtError> {
        let (x, y) = public_coordinates(&self.secret);
        DecodingKey::from_ec_components(&x, &y).map_err(|e| JwtError::Sign(e.to_string()))
    }
}

fn seal_context(kid: &str) -> Vec<u8> {
    format!("rampart/signing-key/ES256/{kid}").into_bytes()
}

fn public_coordinates(secret: &p256::SecretKey) -> (String, String) {
    let point = secret.public_key().to_encoded_point(false);
    // An uncompressed point of a valid key always has both coordinates.
    let x = point
        .x()
        .map(|x| URL_SAFE_NO_PAD.encode(x))
        .unwrap_or_default();
    let y = point
        .y()
        .map(|y| URL_SAFE_NO_PAD.encode(y))
        .unwrap_or_default();
    (x, y)
}

fn thumbprint(secret: &p256::SecretKey) -> String {
    let (x, y) = public_coordinates(secret);
    // RFC 7638: the required members, lexicographic order, no white space.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The keys one node signs and verifies with: the newest signs, all verify.
pub struct TokenKeys {
    signer_kid: String,
    signer: EncodingKey,
    /// The same newest key, for detached signatures (audit checkpoints).
    detached_signer: p256::ecdsa::SigningKey,
    detached_verifiers: HashMap<String, p256::ecdsa::VerifyingKey>,
    verifiers: HashMap<String, DecodingKey>,
    jwks: serde_json::Value,
    validation: Validation,
}

impl TokenKeys {
    /// `keys` newest last; the last one signs. Fails if `keys` is empty.
    pub fn new(keys: &[SigningKey], issuer: &str, audience: &str) -> Result<TokenKeys, JwtError> {
        let newest = keys
            .last()
            .ok_or_else(|| JwtError::Sign("no signing key".into()))?;
        let mut verifiers = HashMap::new();
        let mut detached_verifiers = HashMap::new();
        for key in keys {
            verifiers.insert(key.kid.clone(), key.decoding_key()?);
            detached_verifiers.insert(
                key.kid.clone(),
                p256::ecdsa::VerifyingKey::from(key.secret.public_key()),
            );
        }
        let jwks = serde_json::json!({
            "keys": keys.iter().rev().map(SigningKey::public_jwk).collect::<Vec<_>>()
        });
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Nodes share a clock source (NTP); a few seconds cover skew without stretching
        // the 15-minute lifetime meaningfully.
        validation.leeway = 5;
        Ok(TokenKeys {
            signer_kid: newest.kid.clone(),
            signer: newest.encoding_key()?,
            detached_signer: p256::ecdsa::SigningKey::from(&newest.secret),
            detached_verifiers,
            verifiers,
            jwks,
            validation,
        })
    }

    pub fn sign(&self, claims: &AccessClaims) -> Result<String, JwtError> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(ACCESS_TOKEN_TYP.into());
        header.kid = Some(self.signer_kid.clone());
        jsonwebtoken::encode(&header, claims, &self.signer)
            .map_err(|e| JwtError::Sign(e.to_string()))
    }

    /// Checks header (`alg` ES256, `typ` at+jwt, known `kid`), signature, `iss`, `aud`
    /// and `exp`. `UnknownKey` lets the caller reload keys another node may have added.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, JwtError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtError::Malformed)?;
        if header.alg != Algorithm::ES256 {
            return Err(JwtError::Invalid("algorithm is not ES256".into()));
        }
        if header.typ.as_deref() != Some(ACCESS_TOKEN_TYP) {
            return Err(JwtError::Invalid("typ is not at+jwt".into()));
        }
        let kid = header.kid.ok_or(JwtError::Malformed)?;
        let key = self
            .verifiers
            .get(&kid)
            .ok_or(JwtError::UnknownKey { kid })?;
        jsonwebtoken::decode::<AccessClaims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => JwtError::Expired,
                _ => JwtError::Invalid(e.to_string()),
            })
    }

    /// An ES256 signature over `message` with the newest key: `(kid, base64url(r || s))`.
    pub fn sign_detached(&self, message: &[u8]) -> (String, String) {
        use p256::ecdsa::signature::Signer;
        let signature: p256::ecdsa::Signature = self.detached_signer.sign(message);
        (
            self.signer_kid.clone(),
            URL_SAFE_NO_PAD.encode(signature.to_bytes()),
        )
    }

    /// Checks a signature made by [`TokenKeys::sign_detached`] with any key loaded here.
    pub fn verify_detached(&self, kid: &str, message: &[u8], signature: &str) -> bool {
        use p256::ecdsa::signature::Verifier;
        let Some(key) = self.detached_verifiers.get(kid) else {
            return false;
        };
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(signature) else {
            return false;
        };
        let Ok(signature) = p256::ecdsa::Signature::from_slice(&bytes) else {
            return false;
        };
        key.verify(message, &signature).is_ok()
    }

    /// `{"keys":[...]}`, newest first.
    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    pub fn signer_kid(&self) -> &str {
        &self.signer_kid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn sign_verify_and_reject() {
        let key = SigningKey::generate();
        let keys = TokenKeys::new(std::slice::from_ref(&key), "iss", "aud").unwrap();
        let token = keys.sign(&claims(now() + 900)).unwrap();
        assert_eq!(keys.verify(&token).unwrap().sub, "user");

        let expired = keys.sign(&claims(now() - 60)).unwrap();
        assert!(matches!(keys.verify(&expired), Err(JwtError::Expired)));

        // One flipped character in the payload breaks the signature.
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let mut payload = parts[1].clone().into_bytes();
        payload[5] = if payload[5] == b'A' { b'B' } else { b'A' };
        parts[1] = String::from_utf8(payload).unwrap();
        assert!(keys.verify(&parts.join(".")).is_err());

        let other = TokenKeys::new(&[SigningKey::generate()], "iss", "aud").unwrap();
        assert!(matches!(
            other.verify(&token),
            Err(JwtError::UnknownKey { .. })
        ));

        let wrong_aud = TokenKeys::new(&[key], "iss", "other").unwrap();
        assert!(matches!(
            wrong_aud.verify(&token),
            Err(JwtError::Invalid(_))
        ));
        assert!(matches!(keys.verify("garbage"), Err(JwtError::Malformed)));
    }

    #[test]
    fn detached_signatures() {
        let keys = TokenKeys::new(&[SigningKey::generate()], "iss", "aud").unwrap();
        let (kid, sig) = keys.sign_detached(b"checkpoint");
        assert!(keys.verify_detached(&kid, b"checkpoint", &sig));
        assert!(!keys.verify_detached(&kid, b"checkpoinT", &sig));
        assert!(!keys.verify_detached("other", b"checkpoint", &sig));
        assert!(!keys.verify_detached(&kid, b"checkpoint", "AAAA"));
    }

    #[test]
    fn sealed_key_round_trip_is_bound_to_kid() {
        let root = RootKey::from_bytes([3; 32]);
        let key = SigningKey::generate();
        let sealed = key.seal(&root).unwrap();
        let opened = SigningKey::open(&root, key.kid(), &sealed).unwrap();
        assert_eq!(opened.public_jwk(), key.public_jwk());
        assert!(SigningKey::open(&root, "other-kid", &sealed).is_err());
        assert!(SigningKey::open(&RootKey::from_bytes([4; 32]), key.kid(), &sealed).is_err());
    }
}
