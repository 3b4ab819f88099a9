//! The root key: the one key that wraps every other key Rampart stores.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use rand::RngCore;

use crate::hsm::{Hsm, HsmSecretKey};
use std::sync::Arc;

/// 256 bits, used only to seal and open other keys (see `seal.rs`): either held in this
/// process, or an AES key object inside a PKCS#11 token that never leaves it.
#[derive(Clone)]
pub struct RootKey {
    pub(crate) material: Material,
    source: RootKeySource,
}

#[derive(Clone)]
pub(crate) enum Material {
    Local([u8; 32]),
    Token { hsm: Arc<Hsm>, key: HsmSecretKey },
}

/// Where the root key came from, for start-up logs and `config show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootKeySource {
    /// `crypto.root_key` / `RAMPART_CRYPTO_ROOT_KEY`.
    Config,
    /// A file in the data dir, read or created on first start.
    File(PathBuf),
    /// Created new in the data dir on this start.
    CreatedFile(PathBuf),
    /// An AES-256 object in a PKCS#11 token, found by label (or created on this start).
    Token { label: String, created: bool },
}

#[derive(Debug, thiserror::Error)]
pub enum RootKeyError {
    #[error("crypto.root_key is not base64 of 32 bytes")]
    BadConfigValue,
    #[error("root key file {path} is not base64 of 32 bytes")]
    BadFile { path: PathBuf },
    #[error("root key file {path} is readable by other users (mode {mode:o}); chmod 600 it")]
    OpenPermissions { path: PathBuf, mode: u32 },
    #[error("root key in the PKCS#11 token: {0}")]
    Token(crate::hsm::HsmError),
    #[error("root key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootKey")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl RootKey {
    /// From the configured base64 value if it is set, otherwise from `<data_dir>/keys/root.key`,
    /// creating that file (mode 0600, in a 0700 folder) on first start.
    pub fn load(configured: &str, data_dir: &Path) -> Result<RootKey, RootKeyError> {
        if !configured.is_empty() {
            let bytes = decode_key(configured).ok_or(RootKeyError::BadConfigValue)?;
            return Ok(RootKey {
                material: Material::Local(bytes),
                source: RootKeySource::Config,
            });
        }
        let dir = data_dir.join("keys");
        let path = dir.join("root.key");
        let io = |source| RootKeyError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                check_private(&path)?;
                let bytes = decode_key(text.trim())
                    .ok_or_else(|| RootKeyError::BadFile { path: path.clone() })?;
                Ok(RootKey {
                    material: Material::Local(bytes),
                    source: RootKeySource::File(path),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_private_dir(&dir).map_err(io)?;
                let mut bytes = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                // create_new: two processes starting at once must not overwrite each
                // other's key; the loser reads the winner's.
                match write_private_file(&path, STANDARD.encode(bytes).as_bytes()) {
                    Ok(()) => Ok(RootKey {
                        material: Material::Local(bytes),
                        source: RootKeySource::CreatedFile(path),
                    }),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load("", data_dir)
                    }
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A key from raw bytes, for tests and tools.
    pub fn from_bytes(bytes: [u8; 32]) -> RootKey {
        RootKey {
            material: Material::Local(bytes),
            source: RootKeySource::Config,
        }
    }

    /// The AES-256 key labelled `label` in the token, generated there (non-extractable)
    /// on first start. Every node pointed at the same token shares it.
    pub fn in_token(hsm: Arc<Hsm>, label: &str) -> Result<RootKey, RootKeyError> {
        let (key, created) = hsm.find_or_create_aes(label).map_err(RootKeyError::Token)?;
        Ok(RootKey {
            material: Material::Token { hsm, key },
            source: RootKeySource::Token {
                label: label.to_string(),
                created,
            },
        })
    }

    pub fn source(&self) -> &RootKeySource {
        &self.source
    }
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    let decoded = STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
        .ok()?;
    decoded.try_into().ok()
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), RootKeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|source| RootKeyError::Io {
            path: path.into(),
            source,
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(RootKeyError::OpenPermissions {
            path: path.into(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<(), RootKeyError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    impl RootKey {
        fn local_bytes(&self) -> Option<[u8; 32]> {
            match &self.material {
                Material::Local(bytes) => Some(*bytes),
                Material::Token { .. } => None,
            }
        }
    }

    #[test]
    fn created_once_with_private_mode_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = RootKey::load("", dir.path()).unwrap();
        assert!(matches!(first.source(), RootKeySource::CreatedFile(_)));
        let again = RootKey::load("", dir.path()).unwrap();
        assert!(matches!(again.source(), RootKeySource::File(_)));
        assert_eq!(first.local_bytes(), again.local_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("keys/root.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn configured_key_must_be_32_bytes() {
        let dir = tempfile::tempdir().unwrap();
        assert!(RootKey::load("c2hvcnQ=", dir.path()).is_err());
        let ok = RootKey::load(&STANDARD.encode([7u8; 32]), dir.path()).unwrap();
        assert_eq!(ok.local_bytes(), Some([7u8; 32]));
    }
}
