//! Rampart's cryptography: the root key (a file, configuration, or a PKCS#11 token), the
//! keyring and envelope encryption, streaming encryption (backups), signing keys (ES256,
//! EdDSA, PS256; in a token when one is configured), access tokens, and hashing of
//! high-entropy bearer secrets.
//!
//! Other crates never touch a raw key: they ask this crate to seal, open, sign or verify.
//! It does no I/O except reading or creating the root key file.
//!
//! Invariant: no function here logs or formats key material or plaintext.
#![forbid(unsafe_code)]

pub mod envelope;
pub mod hsm;
mod jwt;
pub mod keyring;
mod root_key;
mod seal;
pub mod signing;
pub mod stream;

pub use jwt::{AccessClaims, AccessTokens, JwtError};
pub use root_key::{RootKey, RootKeyError, RootKeySource};
pub use seal::SealError;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A random bearer secret: `prefix` followed by `bytes` of OS randomness in base64url.
/// 32 bytes give 256 bits of entropy.
pub fn random_secret(prefix: &str, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(buf))
}

/// How a high-entropy bearer secret (refresh token, API key) is stored: SHA-256, hex.
/// A slow hash would add nothing: 256 random bits cannot be guessed, and a fast hash
/// lets the lookup be an index probe.
pub fn secret_digest(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}
