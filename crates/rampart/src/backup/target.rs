//! Where backup files live: a local folder, or an S3 bucket under `backups/`.
//!
//! A backup is always written to a local file first (the archive is streamed through
//! zstd and the cipher into it). With a folder target that file is the backup; with a
//! bucket it is uploaded in parts, read back from the bucket and hashed, and removed.
//! Reading a backup from a bucket downloads it to a temp file beside the backups folder,
//! hashing it on the way, so verify and restore work on a local file either way.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use rampart_config::{Config, ObjectLocation};
use rampart_objects::{Objects, ObjectsError};
use rampart_store::backups::BackupRecord;

use super::format;

/// Object keys of backups in a bucket start with this.
const PREFIX: &str = "backups";

pub enum Target {
    Dir(PathBuf),
    Bucket(Objects),
}

/// A backup file on local disk, and its SHA-256 as read. Holds the temp folder of a
/// download, which goes when this is dropped.
pub struct Local {
    pub path: PathBuf,
    pub sha256: String,
    _download: Option<tempfile::TempDir>,
}

impl Target {
    pub fn open(config: &Config) -> anyhow::Result<Target> {
        Ok(match config.backup_location() {
            ObjectLocation::Dir(dir) => Target::Dir(dir),
            s3 @ ObjectLocation::S3(_) => Target::Bucket(Objects::open(&s3)?),
        })
    }

    /// Where the backup file is written: its final place in a folder, or a staging file
    /// in the local backups folder when it goes to a bucket.
    pub fn staging_path(&self, config: &Config, id: &str) -> PathBuf {
        match self {
            Target::Dir(dir) => dir.join(format!("{id}.rbak")),
            Target::Bucket(_) => config
                .backup_dir()
                .join("staging")
                .join(format!("{id}.rbak")),
        }
    }

    /// What a failed backup is recorded as having targeted.
    pub fn url(&self, config: &Config, id: &str) -> String {
        match self {
            Target::Dir(_) => format!("file://{}", absolute(&self.staging_path(config, id))),
            Target::Bucket(objects) => objects.url(&key(id)),
        }
    }

    /// Puts the written file in place and reads it back: returns where it is and the
    /// SHA-256 of what the target holds. A bucket copy that does not match is deleted.
    pub async fn store(&self, written: &Path, id: &str) -> anyhow::Result<(String, String)> {
        match self {
            Target::Dir(_) => {
                let path = written.to_path_buf();
                let reread =
                    tokio::task::spawn_blocking(move || format::sha256_file(&path)).await??;
                Ok((format!("file://{}", absolute(written)), reread))
            }
            Target::Bucket(objects) => {
                let key = key(id);
                let sent = objects
                    .upload_file(&key, written)
                    .await
                    .context("uploading the backup file failed")?;
                let back = objects
                    .digest(&key)
                    .await
                    .context("reading the uploaded backup back failed")?;
                std::fs::remove_file(written).ok();
                if back != sent {
                    objects.delete(&key).await.ok();
                    bail!(
                        "the bucket returned {} bytes with SHA-256 {}, but {} bytes with {} were \
                         sent",
                        back.size,
                        back.sha256,
                        sent.size,
                        sent.sha256
                    );
                }
                Ok((objects.url(&key), back.sha256))
            }
        }
    }

    /// Makes the file of `record` available locally, hashed as read.
    pub async fn fetch(&self, config: &Config, record: &BackupRecord) -> anyhow::Result<Local> {
        if let Some(path) = record.target.strip_prefix("file://") {
            let path = PathBuf::from(path);
            let p = path.clone();
            let sha256 = tokio::task::spawn_blocking(move || format::sha256_file(&p))
                .await?
                .with_context(|| format!("cannot read backup file {}", path.display()))?;
            return Ok(Local {
                path,
                sha256,
                _download: None,
            });
        }
        let (objects, key) = self.bucket_key(record)?;
        std::fs::create_dir_all(config.backup_dir())?;
        let download = tempfile::Builder::new()
            .prefix(".rampart-download-")
            .tempdir_in(config.backup_dir())
            .context("cannot make a download folder beside the backups")?;
        let path = download.path().join(format!("{}.rbak", record.id));
        let got = objects
            .download_file(key, &path)
            .await
            .map_err(|e| match e {
                ObjectsError::NotFound(url) => anyhow!("backup file {url} is missing"),
                other => anyhow!(other).context("downloading the backup failed"),
            })?;
        Ok(Local {
            path,
            sha256: got.sha256,
            _download: Some(download),
        })
    }

    /// Removes the file of `record`; one already gone is not an error.
    pub async fn remove(&self, record: &BackupRecord) -> anyhow::Result<()> {
        if let Some(path) = record.target.strip_prefix("file://") {
            return match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e).context(format!("cannot remove {path}")),
            };
        }
        let (objects, key) = self.bucket_key(record)?;
        Ok(objects.delete(key).await?)
    }

    /// The bucket and key of a backup recorded as `s3://…`, if it is in the configured
    /// bucket.
    fn bucket_key<'a>(&self, record: &'a BackupRecord) -> anyhow::Result<(&Objects, &'a str)> {
        match self {
            Target::Bucket(objects) => objects.key_of(&record.target).map(|k| (objects, k)),
            Target::Dir(_) => None,
        }
        .ok_or_else(|| {
            anyhow!(
                "backup {} is at {}, which is not the configured backup target; set \
                 backup.target_dir or backup.s3_* to reach it",
                record.id,
                record.target
            )
        })
    }
}

fn key(id: &str) -> String {
    format!("{PREFIX}/{id}.rbak")
}

fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}
