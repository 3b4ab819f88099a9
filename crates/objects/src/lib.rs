//! The object store: a local folder (the embedded default) or an S3 bucket, behind one
//! type. Backup files go here (`backup.s3_*` or `backup.target_dir`), and uploads
//! (`objects.*`), sealed by the keyring before they leave the process.
//!
//! Built on the `object_store` crate: `LocalFileSystem` writes through a temp file and a
//! rename, so a reader never sees half an object; `AmazonS3` speaks the S3 protocol to
//! AWS or to any compatible server (MinIO, Ceph, moto in CI), path-style, with retries.
//! Large files go up as multipart uploads and come down as streams, hashed on the way,
//! so neither is ever held in memory whole.
//!
//! Invariant: nothing here logs an object's contents or a credential.
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectStore, PutPayload, RetryConfig, WriteMultipart};
use rampart_config::ObjectLocation;
use rampart_crypto::envelope::Context;
use rampart_crypto::keyring::{Keyring, KeyringError};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Multipart part size: S3's minimum is 5 MiB; 8 MiB keeps a 2 GB backup under 300 parts
/// (the limit is 10,000) and bounds memory to a few parts in flight.
const PART_BYTES: usize = 8 * 1024 * 1024;
/// Parts uploaded at once.
const PARTS_IN_FLIGHT: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ObjectsError {
    #[error("no object {0}")]
    NotFound(String),
    #[error("{0:?} is not a valid object key")]
    BadKey(String),
    #[error("the object store {location} cannot be opened: {reason}")]
    Open { location: String, reason: String },
    #[error("object store {location}: {source}")]
    Store {
        location: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("sealed object: {0}")]
    Crypto(#[from] KeyringError),
}

/// One object store.
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// `file:///abs/dir` or `s3://bucket`, for messages and recorded locations.
    base: String,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Objects").field("base", &self.base).finish()
    }
}

/// Size and SHA-256 (hex) of an object or a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digested {
    pub size: u64,
    pub sha256: String,
}

impl Objects {
    /// Opens the store at `location`: a folder (created if missing) or an S3 bucket
    /// (which must exist; Rampart does not create buckets, so their policy, versioning
    /// and Object Lock stay the operator's).
    pub fn open(location: &ObjectLocation) -> Result<Objects, ObjectsError> {
        match location {
            ObjectLocation::Dir(dir) => {
                let fail = |e: &dyn std::fmt::Display| ObjectsError::Open {
                    location: dir.display().to_string(),
                    reason: e.to_string(),
                };
                std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
                let dir = std::path::absolute(dir).map_err(|e| fail(&e))?;
                let store = LocalFileSystem::new_with_prefix(&dir).map_err(|e| fail(&e))?;
                Ok(Objects {
                    store: Arc::new(store),
                    base: format!("file://{}", dir.display()),
                })
            }
            ObjectLocation::S3(s3) => {
                let base = format!("s3://{}", s3.bucket);
                // Bounded waits: a request that cannot finish in these fails, and the
                // caller (a backup, an upload) reports it, rather than hanging.
                let options = ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120))
                    .with_allow_http(s3.endpoint.starts_with("http://"));
                let retry = RetryConfig {
                    max_retries: 4,
                    retry_timeout: Duration::from_secs(60),
                    ..RetryConfig::default()
                };
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_client_options(options)
                    .with_retry(retry);
                if !s3.endpoint.is_empty() {
                    builder = builder
                        .with_endpoint(&s3.endpoint)
                        .with_virtual_hosted_style_request(false);
                }
                if !s3.access_key_id.is_empty() {
                    builder = builder
                        .with_access_key_id(&s3.access_key_id)
                        .with_secret_access_key(s3.secret_access_key.expose());
                }
                let store = builder.build().map_err(|e| ObjectsError::Open {
                    location: base.clone(),
                    reason: e.to_string(),
                })?;
                Ok(Objects {
                    store: Arc::new(store),
                    base,
                })
            }
        }
    }

    /// Where `key` is, as a URL: `file:///…/key` or `s3://bucket/key`.
    pub fn url(&self, key: &str) -> String {
        format!("{}/{key}", self.base)
    }

    /// The key of `url` if it names an object in this store.
    pub fn key_of<'a>(&self, url: &'a str) -> Option<&'a str> {
        url.strip_prefix(self.base.as_str())?.strip_prefix('/')
    }

    /// `file:///abs/dir` or `s3://bucket`.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn is_local(&self) -> bool {
        self.base.starts_with("file://")
    }

    fn key(key: &str) -> Result<Key, ObjectsError> {
        Key::parse(key).map_err(|_| ObjectsError::BadKey(key.to_string()))
    }

    fn err(&self, key: &str, e: object_store::Error) -> ObjectsError {
        match e {
            object_store::Error::NotFound { .. } => ObjectsError::NotFound(self.url(key)),
            source => ObjectsError::Store {
                location: self.url(key),
                source,
            },
        }
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), ObjectsError> {
        self.store
            .put(&Self::key(key)?, PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| self.err(key, e))?;
        Ok(())
    }

    pub async fn get(&self, key: &str) -> Result<Bytes, ObjectsError> {
        let got = self
            .store
            .get(&Self::key(key)?)
            .await
            .map_err(|e| self.err(key, e))?;
        got.bytes().await.map_err(|e| self.err(key, e))
    }

    /// Removes `key`; a key that is already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), ObjectsError> {
        match self.store.delete(&Self::key(key)?).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(key, e)),
        }
    }

    /// Every object under `prefix` (a folder-like prefix, without a trailing `/`), with
    /// its size, sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, ObjectsError> {
        let prefix_key = if prefix.is_empty() {
            None
        } else {
            Some(Self::key(prefix)?)
        };
        let mut listing = self.store.list(prefix_key.as_ref());
        let mut out = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.err(prefix, e))?;
            out.push((meta.location.to_string(), meta.size));
        }
        out.sort();
        Ok(out)
    }

    /// Uploads a local file to `key` in parts, hashing it on the way; an upload that
    /// fails is aborted, so no part is left behind.
    pub async fn upload_file(&self, key: &str, file: &Path) -> Result<Digested, ObjectsError> {
        let location = Self::key(key)?;
        let mut source = tokio::fs::File::open(file).await?;
        let upload = self
            .store
            .put_multipart(&location)
            .await
            .map_err(|e| self.err(key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut tally = Tally::default();
        let mut buf = vec![0u8; 1024 * 1024];
        let result: Result<(), ObjectsError> = async {
            loop {
                let n = source.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                tally.add(&buf[..n]);
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| self.err(key, e))?;
                writer.write(&buf[..n]);
            }
        }
        .await;
        match result {
            Ok(()) => {
                writer.finish().await.map_err(|e| self.err(key, e))?;
                Ok(tally.done())
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(key, error = %abort, "cannot abort a failed multipart upload");
                }
                Err(e)
            }
        }
    }

    /// Streams `key` into a new local file (`file` is replaced), hashing it on the way.
    pub async fn download_file(&self, key: &str, file: &Path) -> Result<Digested, ObjectsError> {
        let mut out = tokio::fs::File::create(file).await?;
        let mut chunks = self.chunks(key).await?;
        let mut tally = Tally::default();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| self.err(key, e))?;
            tally.add(&chunk);
            out.write_all(&chunk).await?;
        }
        out.flush().await?;
        out.sync_all().await?;
        Ok(tally.done())
    }

    /// Reads `key` from the store and hashes it: "read back and checked".
    pub async fn digest(&self, key: &str) -> Result<Digested, ObjectsError> {
        let mut chunks = self.chunks(key).await?;
        let mut tally = Tally::default();
        while let Some(chunk) = chunks.next().await {
            tally.add(&chunk.map_err(|e| self.err(key, e))?);
        }
        Ok(tally.done())
    }

    async fn chunks(
        &self,
        key: &str,
    ) -> Result<futures_util::stream::BoxStream<'static, object_store::Result<Bytes>>, ObjectsError>
    {
        let got = self
            .store
            .get(&Self::key(key)?)
            .await
            .map_err(|e| self.err(key, e))?;
        Ok(got.into_stream())
    }

    /// Seals `plaintext` under keyring key `key_name` for `context` (which should name the
    /// tenant and the object, so a sealed object cannot be passed off as another), then
    /// stores it. The store only ever sees ciphertext.
    pub async fn put_sealed(
        &self,
        keyring: &Keyring,
        key_name: &str,
        context: &Context,
        key: &str,
        plaintext: &[u8],
    ) -> Result<(), ObjectsError> {
        let sealed = keyring.seal(key_name, context, plaintext).await?;
        self.put(key, Bytes::from(sealed)).await
    }

    /// Reads and opens an object stored by [`Objects::put_sealed`] with the same context.
    pub async fn get_sealed(
        &self,
        keyring: &Keyring,
        context: &Context,
        key: &str,
    ) -> Result<Vec<u8>, ObjectsError> {
        let sealed = self.get(key).await?;
        Ok(keyring.open(context, &sealed).await?)
    }
}

/// Counts and hashes what passes.
#[derive(Default)]
struct Tally {
    hasher: Sha256,
    size: u64,
}

impl Tally {
    fn add(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
    }

    fn done(self) -> Digested {
        Digested {
            size: self.size,
            sha256: hex(&self.hasher.finalize()),
        }
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests;
