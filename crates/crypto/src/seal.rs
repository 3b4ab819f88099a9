//! Authenticated sealing under the root key: AES-256-GCM, a fresh random 96-bit nonce per
//! message, and associated data that binds a sealed value to where it belongs (a value
//! sealed for one key id does not open as another).
//!
//! Layout: `0x01 || nonce (12) || ciphertext || tag (16)`. The leading byte is the format
//! version, so the Crypto issue's versioned keyring can change the layout without guessing.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;

use crate::root_key::Material;
use crate::RootKey;

const FORMAT_V1: u8 = 1;
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Wrong key, wrong associated data, or altered bytes: GCM cannot tell which, and
    /// neither should the caller's user.
    #[error("sealed value does not open with this key and context")]
    Open,
    #[error("sealed value has an unknown format")]
    Format,
    #[error("the token holding the root key failed: {0}")]
    Token(String),
}

impl RootKey {
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = match &self.material {
            Material::Local(bytes) => Aes256Gcm::new(bytes.into())
                .encrypt(
                    Nonce::from_slice(&nonce),
                    Payload {
                        msg: plaintext,
                        aad: context,
                    },
                )
                // Fails only for messages over 64 GiB, which nothing here seals.
                .map_err(|_| SealError::Format)?,
            Material::Token { hsm, key } => hsm
                .encrypt_gcm(*key, &nonce, context, plaintext)
                .map_err(|e| SealError::Token(e.to_string()))?,
        };
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    pub fn open(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let (&version, rest) = sealed.split_first().ok_or(SealError::Format)?;
        if version != FORMAT_V1 || rest.len() < NONCE_LEN + 16 {
            return Err(SealError::Format);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        match &self.material {
            Material::Local(bytes) => Aes256Gcm::new(bytes.into())
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: context,
                    },
                )
                .map_err(|_| SealError::Open),
            // A failed tag check and a token fault look alike from here; the token logs
            // its own faults, and neither may open the value.
            Material::Token { hsm, key } => hsm
                .decrypt_gcm(*key, nonce, context, ciphertext)
                .map_err(|_| SealError::Open),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_context_binding() {
        let key = RootKey::from_bytes([1; 32]);
        let sealed = key.seal(b"ctx-a", b"secret").unwrap();
        assert_eq!(key.open(b"ctx-a", &sealed).unwrap(), b"secret");
        assert!(matches!(key.open(b"ctx-b", &sealed), Err(SealError::Open)));
        let other = RootKey::from_bytes([2; 32]);
        assert!(matches!(
            other.open(b"ctx-a", &sealed),
            Err(SealError::Open)
        ));
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(key.open(b"ctx-a", &flipped), Err(SealError::Open)));
        assert!(matches!(key.open(b"ctx-a", &[]), Err(SealError::Format)));
        assert!(matches!(
            key.open(b"ctx-a", &[1, 2, 3]),
            Err(SealError::Format)
        ));
    }

    #[test]
    fn nonces_differ() {
        let key = RootKey::from_bytes([1; 32]);
        assert_ne!(key.seal(b"c", b"x").unwrap(), key.seal(b"c", b"x").unwrap());
    }
}
