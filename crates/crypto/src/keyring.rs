//! The keyring: named key-encryption keys with versions, wrapped under the root key and
//! kept by a [`KeyringBackend`] (the database, through the store), used through envelope
//! encryption (see `envelope.rs`).
//!
//! Nodes share the keyring through the backend. Each node caches unwrapped versions for
//! [`CACHE_TTL`]; a value sealed under a version this node has not seen (another node
//! rotated) makes it reload at once, so rotation needs no coordination. Retirement reaches
//! every node within the TTL.
//!
//! Invariant: unwrapped key material lives only inside this module's cache.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::envelope::{self, Context, EnvelopeError, KeyVersions};
use crate::RootKey;

pub const CACHE_TTL: Duration = Duration::from_secs(60);

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A key as stored: its minimum live version and its wrapped versions.
#[derive(Debug, Clone, Default)]
pub struct StoredKey {
    pub min_version: u32,
    /// `(version, material sealed under the root key)`, any order.
    pub versions: Vec<(u32, Vec<u8>)>,
}

/// Where wrapped key versions are kept. Errors are messages: the backend has already
/// logged its cause.
pub trait KeyringBackend: Send + Sync {
    /// The key, or `None` for an unknown name.
    fn load<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<StoredKey>, String>>;
    /// Adds a version; `Ok(false)` if it exists already (another node made it first).
    fn add_version<'a>(
        &'a self,
        name: &'a str,
        version: u32,
        wrapped: Vec<u8>,
    ) -> BoxFuture<'a, Result<bool, String>>;
    fn retire_below<'a>(
        &'a self,
        name: &'a str,
        min_version: u32,
    ) -> BoxFuture<'a, Result<(), String>>;
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    Root(#[from] crate::SealError),
    #[error("keyring storage: {0}")]
    Storage(String),
    #[error("key {name} version {version} does not open with this root key")]
    Unwrap { name: String, version: u32 },
    #[error("key name {0:?} is not allowed (1-64 characters of a-z, 0-9, _, -, .)")]
    BadName(String),
}

pub struct Keyring {
    root: RootKey,
    backend: Arc<dyn KeyringBackend>,
    cache: Mutex<HashMap<String, (Instant, Arc<KeyVersions>)>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").finish_non_exhaustive()
    }
}

fn wrap_context(name: &str, version: u32) -> Vec<u8> {
    format!("rampart/keyring/{name}/{version}").into_bytes()
}

pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b))
}

impl Keyring {
    pub fn new(root: RootKey, backend: Arc<dyn KeyringBackend>) -> Keyring {
        Keyring {
            root,
            backend,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Seals `plaintext` for `context` under the newest version of `name`, creating the
    /// key on first use.
    pub async fn seal(
        &self,
        name: &str,
        context: &Context,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KeyringError> {
        let key = self.versions(name, true, false).await?;
        Ok(envelope::seal(name, &key, context, plaintext)?)
    }

    /// Opens a value sealed by [`Keyring::seal`] for the same context.
    pub async fn open(&self, context: &Context, sealed: &[u8]) -> Result<Vec<u8>, KeyringError> {
        let (name, version) = envelope::key_of(sealed)?;
        let mut key = self.versions(&name, false, false).await?;
        if key.current().is_none_or(|(newest, _)| newest < version) {
            key = self.versions(&name, false, true).await?;
        }
        Ok(envelope::open(&key, context, sealed)?)
    }

    /// A keyed hash (HMAC-SHA256) of `data` under key `name`, created on first use. Always
    /// the key's first version: a MAC key is never rotated, so the same input keeps the
    /// same hash (card fingerprints must stay stable for fraud checks). Use a name of its
    /// own for MACs, never one that also seals.
    pub async fn mac(&self, name: &str, data: &[u8]) -> Result<[u8; 32], KeyringError> {
        use hmac::{Hmac, Mac};
        let key = self.versions(name, true, false).await?;
        let (_, material) = key
            .oldest()
            .ok_or_else(|| KeyringError::Envelope(EnvelopeError::UnknownKey(name.to_string())))?;
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(material)
            .map_err(|_| KeyringError::BadName(name.to_string()))?;
        mac.update(b"rampart/mac/v1/");
        mac.update(data);
        Ok(mac.finalize().into_bytes().into())
    }

    /// Moves a sealed value to its key's newest version without decrypting the value.
    pub async fn rewrap(&self, sealed: &[u8]) -> Result<Vec<u8>, KeyringError> {
        let (name, _) = envelope::key_of(sealed)?;
        let key = self.versions(&name, false, true).await?;
        Ok(envelope::rewrap(&key, sealed)?)
    }

    /// Version `version` of `name` as the backend keeps it: sealed under the root key, so
    /// it can travel beside what it protects (a backup's header) and opens only where the
    /// root key is.
    pub async fn sealed_version(&self, name: &str, version: u32) -> Result<Vec<u8>, KeyringError> {
        let stored = self
            .backend
            .load(name)
            .await
            .map_err(KeyringError::Storage)?
            .ok_or_else(|| KeyringError::Envelope(EnvelopeError::UnknownKey(name.to_string())))?;
        stored
            .versions
            .into_iter()
            .find(|(v, _)| *v == version)
            .map(|(_, wrapped)| wrapped)
            .ok_or_else(|| {
                KeyringError::Envelope(EnvelopeError::UnknownVersion {
                    name: name.to_string(),
                    version,
                })
            })
    }

    /// Opens `sealed` with its key version taken from `carried` (made by
    /// [`Keyring::sealed_version`]) instead of from the backend: for a restore onto a
    /// database whose keyring never had, or lost, that key.
    pub fn open_with_carried(
        &self,
        context: &Context,
        sealed: &[u8],
        carried: &[u8],
    ) -> Result<Vec<u8>, KeyringError> {
        let (name, version) = envelope::key_of(sealed)?;
        let material = self
            .root
            .open(&wrap_context(&name, version), carried)
            .ok()
            .and_then(|m| <[u8; 32]>::try_from(m.as_slice()).ok())
            .ok_or(KeyringError::Unwrap {
                name: name.clone(),
                version,
            })?;
        let mut key = KeyVersions::default();
        key.min_version = version;
        key.insert(version, material);
        Ok(envelope::open(&key, context, sealed)?)
    }

    /// Adds a version to `name` (creating the key if new); returns the new version.
    pub async fn rotate(&self, name: &str) -> Result<u32, KeyringError> {
        let key = self.versions(name, true, true).await?;
        let next = key.current().map_or(1, |(v, _)| v + 1);
        let material = envelope::random_key();
        let wrapped = self.root.seal(&wrap_context(name, next), &material)?;
        self.backend
            .add_version(name, next, wrapped)
            .await
            .map_err(KeyringError::Storage)?;
        self.versions(name, false, true).await?;
        Ok(next)
    }

    /// Retires the versions of `name` below `min_version`: what they sealed no longer
    /// opens. Rewrap first.
    pub async fn retire_below(&self, name: &str, min_version: u32) -> Result<(), KeyringError> {
        self.backend
            .retire_below(name, min_version)
            .await
            .map_err(KeyringError::Storage)?;
        self.versions(name, false, true).await?;
        Ok(())
    }

    async fn versions(
        &self,
        name: &str,
        create: bool,
        reload: bool,
    ) -> Result<Arc<KeyVersions>, KeyringError> {
        if !valid_name(name) {
            return Err(KeyringError::BadName(name.to_string()));
        }
        if !reload {
            if let Ok(cache) = self.cache.lock() {
                if let Some((loaded, key)) = cache.get(name) {
                    if loaded.elapsed() < CACHE_TTL {
                        return Ok(key.clone());
                    }
                }
            }
        }
        let mut stored = self
            .backend
            .load(name)
            .await
            .map_err(KeyringError::Storage)?;
        if stored.is_none() && create {
            let material = envelope::random_key();
            let wrapped = self.root.seal(&wrap_context(name, 1), &material)?;
            // Another node may create it at the same moment; either way, load what won.
            self.backend
                .add_version(name, 1, wrapped)
                .await
                .map_err(KeyringError::Storage)?;
            stored = self
                .backend
                .load(name)
                .await
                .map_err(KeyringError::Storage)?;
        }
        let stored = stored
            .ok_or_else(|| KeyringError::Envelope(EnvelopeError::UnknownKey(name.to_string())))?;
        let mut key = KeyVersions::default();
        key.min_version = stored.min_version;
        for (version, wrapped) in stored.versions {
            let material = self
                .root
                .open(&wrap_context(name, version), &wrapped)
                .ok()
                .and_then(|m| <[u8; 32]>::try_from(m.as_slice()).ok())
                .ok_or_else(|| KeyringError::Unwrap {
                    name: name.to_string(),
                    version,
                })?;
            key.insert(version, material);
        }
        let key = Arc::new(key);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(name.to_string(), (Instant::now(), key.clone()));
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend in memory, for the keyring's own logic; the store's implementation is
    /// tested against the real databases by the integration suite.
    #[derive(Default)]
    struct Memory(Mutex<HashMap<String, StoredKey>>);

    impl KeyringBackend for Memory {
        fn load<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Option<StoredKey>, String>> {
            Box::pin(async move { Ok(self.0.lock().unwrap().get(name).cloned()) })
        }
        fn add_version<'a>(
            &'a self,
            name: &'a str,
            version: u32,
            wrapped: Vec<u8>,
        ) -> BoxFuture<'a, Result<bool, String>> {
            Box::pin(async move {
                let mut map = self.0.lock().unwrap();
                let entry = map.entry(name.to_string()).or_insert(StoredKey {
                    min_version: 1,
                    versions: Vec::new(),
                });
                if entry.versions.iter().any(|(v, _)| *v == version) {
                    return Ok(false);
                }
                entry.versions.push((version, wrapped));
                Ok(true)
            })
        }
        fn retire_below<'a>(
            &'a self,
            name: &'a str,
            min_version: u32,
        ) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async move {
                self.0
                    .lock()
                    .unwrap()
                    .get_mut(name)
                    .ok_or("no key")?
                    .min_version = min_version;
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn two_nodes_share_rotation_and_retirement() {
        let backend: Arc<dyn KeyringBackend> = Arc::new(Memory::default());
        let root = RootKey::from_bytes([9; 32]);
        let a = Keyring::new(root.clone(), backend.clone());
        let b = Keyring::new(root, backend);
        let ctx = Context::new("t", "users", "phone", "u1");
        let v1 = a.seal("pii", &ctx, b"secret").await.unwrap();
        assert_eq!(b.open(&ctx, &v1).await.unwrap(), b"secret");
        assert_eq!(b.rotate("pii").await.unwrap(), 2);
        // Node a has v1 cached; a v2 value makes it reload.
        let v2 = b.seal("pii", &ctx, b"newer").await.unwrap();
        assert_eq!(a.open(&ctx, &v2).await.unwrap(), b"newer");
        let moved = a.rewrap(&v1).await.unwrap();
        assert_eq!(envelope::key_of(&moved).unwrap().1, 2);
        a.retire_below("pii", 2).await.unwrap();
        assert!(matches!(
            a.open(&ctx, &v1).await,
            Err(KeyringError::Envelope(EnvelopeError::Retired { .. }))
        ));
        assert_eq!(a.open(&ctx, &moved).await.unwrap(), b"secret");
        assert!(matches!(
            a.seal("Bad Name", &ctx, b"x").await,
            Err(KeyringError::BadName(_))
        ));
    }

    #[tokio::test]
    async fn another_root_key_cannot_unwrap() {
        let backend: Arc<dyn KeyringBackend> = Arc::new(Memory::default());
        let a = Keyring::new(RootKey::from_bytes([1; 32]), backend.clone());
        a.seal("pii", &Context::new("t", "x", "y", "z"), b"s")
            .await
            .unwrap();
        let b = Keyring::new(RootKey::from_bytes([2; 32]), backend);
        assert!(matches!(
            b.seal("pii", &Context::new("t", "x", "y", "z"), b"s").await,
            Err(KeyringError::Unwrap { .. })
        ));
    }
}
