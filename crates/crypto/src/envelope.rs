//! Envelope encryption under named, versioned keys.
//!
//! Each sealed value gets a fresh 256-bit data key. The value is encrypted with it
//! (AES-256-GCM) with the caller's [`Context`] as associated data, and the data key is
//! wrapped (AES-256-GCM) under one version of a named key-encryption key. Because every
//! data key encrypts exactly one value, a data-key nonce can never repeat; wrap nonces are
//! random 96-bit values under a KEK version, and rotation bounds how many one version sees.
//!
//! The sealed bytes carry the key name and version, so `open` knows which key to use,
//! `rewrap` can move a value to the newest version by re-wrapping only its data key (the
//! value itself is never decrypted), and retiring old versions makes what they sealed
//! unreadable with an error that says why.
//!
//! Layout (all lengths fixed or prefixed):
//! `"RSE1" | name_len u8 | name | version u32 BE | wrap_nonce 12 | wrapped_key 48 |
//!  data_nonce 12 | ciphertext+tag`.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;

const MAGIC: &[u8; 4] = b"RSE1";
const NONCE: usize = 12;
const WRAPPED_KEY: usize = 32 + 16;

/// Where a value belongs: bound into its ciphertext, so a sealed value copied to another
/// tenant, table, column or row does not open there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub tenant: String,
    pub table: String,
    pub column: String,
    pub record: String,
}

impl Context {
    pub fn new(tenant: &str, table: &str, column: &str, record: &str) -> Context {
        Context {
            tenant: tenant.into(),
            table: table.into(),
            column: column.into(),
            record: record.into(),
        }
    }

    /// Length-prefixed, so no two different contexts encode the same.
    fn encode(&self) -> Vec<u8> {
        let mut out = b"rampart/field/v1".to_vec();
        for part in [&self.tenant, &self.table, &self.column, &self.record] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not a sealed value (bad header or length)")]
    Format,
    #[error("key {name} has no version {version}")]
    UnknownVersion { name: String, version: u32 },
    #[error("key {name} version {version} is retired (versions below {min_version} no longer open); rewrap data before retiring a version")]
    Retired {
        name: String,
        version: u32,
        min_version: u32,
    },
    /// Wrong context, or altered bytes: GCM cannot tell which.
    #[error("sealed value does not open in this context (moved, or altered)")]
    Open,
    #[error("no key named {0}")]
    UnknownKey(String),
}

/// The versions of one named key, unwrapped, in memory, each with its AES key schedule
/// expanded once (a seal or open then expands only its data key's).
#[derive(Clone, Default)]
pub struct KeyVersions {
    versions: BTreeMap<u32, ([u8; 32], Aes256Gcm)>,
    /// Versions below this are retired.
    pub min_version: u32,
}

impl std::fmt::Debug for KeyVersions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVersions")
            .field("versions", &self.versions.keys().collect::<Vec<_>>())
            .field("min_version", &self.min_version)
            .finish()
    }
}

impl KeyVersions {
    pub fn insert(&mut self, version: u32, key: [u8; 32]) {
        let cipher = Aes256Gcm::new((&key).into());
        self.versions.insert(version, (key, cipher));
    }

    pub fn oldest(&self) -> Option<(u32, &[u8; 32])> {
        self.versions.iter().next().map(|(v, (k, _))| (*v, k))
    }

    pub fn current(&self) -> Option<(u32, &[u8; 32])> {
        self.versions.iter().next_back().map(|(v, (k, _))| (*v, k))
    }

    fn current_cipher(&self) -> Option<(u32, &Aes256Gcm)> {
        self.versions.iter().next_back().map(|(v, (_, c))| (*v, c))
    }

    fn get(&self, name: &str, version: u32) -> Result<&Aes256Gcm, EnvelopeError> {
        if version < self.min_version {
            return Err(EnvelopeError::Retired {
                name: name.into(),
                version,
                min_version: self.min_version,
            });
        }
        self.versions
            .get(&version)
            .map(|(_, cipher)| cipher)
            .ok_or_else(|| EnvelopeError::UnknownVersion {
                name: name.into(),
                version,
            })
    }
}

/// A new random 256-bit key (a key version's material, or a data key).
///
/// From `thread_rng`: a ChaCha12 CSPRNG per thread, seeded and periodically reseeded from
/// the OS. Asking the OS for every key and nonce costs a system call each, which made a
/// seal twenty times slower than the AES work in it (see `examples/seal_throughput.rs`).
pub fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    key
}

fn random_nonce() -> [u8; NONCE] {
    let mut nonce = [0u8; NONCE];
    rand::thread_rng().fill_bytes(&mut nonce);
    nonce
}

fn wrap_aad(name: &str, version: u32) -> Vec<u8> {
    format!("rampart/envelope/v1/{name}/{version}").into_bytes()
}

fn encrypt(cipher: &Aes256Gcm, nonce: &[u8; NONCE], msg: &[u8], aad: &[u8]) -> Vec<u8> {
    // AES-GCM encryption fails only for messages over 64 GiB.
    cipher
        .encrypt(Nonce::from_slice(nonce), Payload { msg, aad })
        .unwrap_or_default()
}

fn decrypt(
    cipher: &Aes256Gcm,
    nonce: &[u8],
    msg: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg, aad })
        .map_err(|_| EnvelopeError::Open)
}

/// The parsed header of a sealed value.
struct Parsed<'a> {
    name: &'a str,
    version: u32,
    wrap_nonce: &'a [u8],
    wrapped_key: &'a [u8],
    rest: &'a [u8],
}

fn parse(sealed: &[u8]) -> Result<Parsed<'_>, EnvelopeError> {
    let body = sealed
        .strip_prefix(MAGIC.as_slice())
        .ok_or(EnvelopeError::Format)?;
    let (&name_len, body) = body.split_first().ok_or(EnvelopeError::Format)?;
    let name_len = name_len as usize;
    let fixed = name_len + 4 + NONCE + WRAPPED_KEY + NONCE + 16;
    if body.len() < fixed {
        return Err(EnvelopeError::Format);
    }
    let (name, body) = body.split_at(name_len);
    let name = std::str::from_utf8(name).map_err(|_| EnvelopeError::Format)?;
    let (version, body) = body.split_at(4);
    let version = u32::from_be_bytes([version[0], version[1], version[2], version[3]]);
    let (wrap_nonce, body) = body.split_at(NONCE);
    let (wrapped_key, rest) = body.split_at(WRAPPED_KEY);
    Ok(Parsed {
        name,
        version,
        wrap_nonce,
        wrapped_key,
        rest,
    })
}

/// The key name and version a sealed value was made with.
pub fn key_of(sealed: &[u8]) -> Result<(String, u32), EnvelopeError> {
    let p = parse(sealed)?;
    Ok((p.name.to_string(), p.version))
}

fn assemble(
    name: &str,
    version: u32,
    wrap_nonce: &[u8; NONCE],
    wrapped_key: &[u8],
    rest: &[u8],
) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(4 + 1 + name.len() + 4 + NONCE + wrapped_key.len() + rest.len());
    out.extend_from_slice(MAGIC);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(wrap_nonce);
    out.extend_from_slice(wrapped_key);
    out.extend_from_slice(rest);
    out
}

/// Seals `plaintext` for `context` under the newest version of `name`.
pub fn seal(
    name: &str,
    key: &KeyVersions,
    context: &Context,
    plaintext: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    if name.is_empty() || name.len() > 255 {
        return Err(EnvelopeError::UnknownKey(name.into()));
    }
    let (version, kek) = key
        .current_cipher()
        .ok_or_else(|| EnvelopeError::UnknownKey(name.into()))?;
    let data_key = random_key();
    let data_nonce = random_nonce();
    let mut rest = data_nonce.to_vec();
    let data_cipher = Aes256Gcm::new((&data_key).into());
    rest.extend_from_slice(&encrypt(
        &data_cipher,
        &data_nonce,
        plaintext,
        &context.encode(),
    ));
    let wrap_nonce = random_nonce();
    let wrapped = encrypt(kek, &wrap_nonce, &data_key, &wrap_aad(name, version));
    Ok(assemble(name, version, &wrap_nonce, &wrapped, &rest))
}

/// Opens a value sealed by [`seal`] for the same `context`.
pub fn open(key: &KeyVersions, context: &Context, sealed: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let p = parse(sealed)?;
    let kek = key.get(p.name, p.version)?;
    let data_key = decrypt(
        kek,
        p.wrap_nonce,
        p.wrapped_key,
        &wrap_aad(p.name, p.version),
    )?;
    let data_key: [u8; 32] = data_key.try_into().map_err(|_| EnvelopeError::Format)?;
    let (data_nonce, ciphertext) = p.rest.split_at(NONCE);
    decrypt(
        &Aes256Gcm::new((&data_key).into()),
        data_nonce,
        ciphertext,
        &context.encode(),
    )
}

/// Moves a sealed value to the newest version of its key: unwraps the data key with the
/// old version and wraps it with the new one. The value itself is not decrypted, and no
/// context is needed. A value already on the newest version comes back unchanged.
pub fn rewrap(key: &KeyVersions, sealed: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
    let p = parse(sealed)?;
    let (newest, new_kek) = key
        .current_cipher()
        .ok_or_else(|| EnvelopeError::UnknownKey(p.name.into()))?;
    if p.version == newest {
        return Ok(sealed.to_vec());
    }
    let old_kek = key.get(p.name, p.version)?;
    let data_key = decrypt(
        old_kek,
        p.wrap_nonce,
        p.wrapped_key,
        &wrap_aad(p.name, p.version),
    )?;
    let wrap_nonce = random_nonce();
    let wrapped = encrypt(new_kek, &wrap_nonce, &data_key, &wrap_aad(p.name, newest));
    Ok(assemble(p.name, newest, &wrap_nonce, &wrapped, p.rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(record: &str) -> Context {
        Context::new("tenant-a", "users", "phone", record)
    }

    fn one_version() -> KeyVersions {
        let mut k = KeyVersions::default();
        k.insert(1, random_key());
        k
    }

    #[test]
    fn round_trip_and_binding() {
        let key = one_version();
        let sealed = seal("pii", &key, &ctx("u1"), b"+62 812 0000 0000").unwrap();
        assert_eq!(key_of(&sealed).unwrap(), ("pii".to_string(), 1));
        assert_eq!(
            open(&key, &ctx("u1"), &sealed).unwrap(),
            b"+62 812 0000 0000"
        );
        // Moved to another row, column or tenant: refused.
        assert_eq!(open(&key, &ctx("u2"), &sealed), Err(EnvelopeError::Open));
        assert_eq!(
            open(
                &key,
                &Context::new("tenant-b", "users", "phone", "u1"),
                &sealed
            ),
            Err(EnvelopeError::Open)
        );
        assert_eq!(
            open(
                &key,
                &Context::new("tenant-a", "users", "email", "u1"),
                &sealed
            ),
            Err(EnvelopeError::Open)
        );
        // Context parts cannot be shifted into each other.
        let a = Context::new("t", "ab", "c", "r").encode();
        let b = Context::new("t", "a", "bc", "r").encode();
        assert_ne!(a, b);
        // Altered bytes anywhere: refused, never a panic.
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(open(&key, &ctx("u1"), &bad).is_err(), "byte {i}");
        }
        for cut in 0..sealed.len() {
            assert!(open(&key, &ctx("u1"), &sealed[..cut]).is_err());
        }
    }

    #[test]
    fn fresh_data_key_per_value() {
        let key = one_version();
        let a = seal("pii", &key, &ctx("u1"), b"same").unwrap();
        let b = seal("pii", &key, &ctx("u1"), b"same").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn rotate_rewrap_retire() {
        let mut key = one_version();
        let v1 = seal("pii", &key, &ctx("u1"), b"secret").unwrap();
        key.insert(2, random_key());
        // Old ciphertext still opens after rotation; new seals use v2.
        assert_eq!(open(&key, &ctx("u1"), &v1).unwrap(), b"secret");
        assert_eq!(
            key_of(&seal("pii", &key, &ctx("u1"), b"x").unwrap())
                .unwrap()
                .1,
            2
        );
        let v2 = rewrap(&key, &v1).unwrap();
        assert_eq!(key_of(&v2).unwrap().1, 2);
        assert_eq!(open(&key, &ctx("u1"), &v2).unwrap(), b"secret");
        assert_eq!(rewrap(&key, &v2).unwrap(), v2);
        key.min_version = 2;
        match open(&key, &ctx("u1"), &v1) {
            Err(EnvelopeError::Retired {
                version: 1,
                min_version: 2,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(open(&key, &ctx("u1"), &v1)
            .unwrap_err()
            .to_string()
            .contains("retired"));
        assert_eq!(open(&key, &ctx("u1"), &v2).unwrap(), b"secret");
    }
}
