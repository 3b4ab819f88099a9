//! Encrypted, verified backups and the restore drill (`rampart backup ...`).
//!
//! A backup is a consistent snapshot of the database taken while the server runs
//! (SQLite `VACUUM INTO`; `pg_dump --format=custom` of an exported snapshot on
//! PostgreSQL), put with its manifest into one file (`format.rs`), compressed with zstd,
//! encrypted with a fresh data key wrapped by the keyring key `backup.key_name`, written
//! to the target (a folder, or an S3 bucket: `target.rs`), read back from it and
//! re-hashed, and recorded in the `backups` table. A local object store (`objects.dir`)
//! goes into the same file as `objects/<key>` entries.
//! Every backup, failure, restore and drill writes an audit event (platform chain) and a
//! security event.
//!
//! The job queue schedules [`run_backup`], [`run_prune`] and [`run_drill`] (the config's
//! `backup.schedule` and `backup.drill_schedule`); this module has no scheduler of its own.
//!
//! Invariants: a backup file never holds a clear byte of the database (only the header,
//! which names the backup and its key, is clear); restore never writes over the live
//! database; a backup is recorded `complete` only after its file was read back and its
//! SHA-256 matched what was written.

pub mod format;
pub mod progress;
pub mod retention;
mod target;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rampart_audit::security_log::{SecurityEvent, SecurityLog};
use rampart_config::Config;
use rampart_crypto::envelope::{key_of, Context};
use rampart_store::backups::{BackupRecord, SnapshotStats};
use rampart_store::{Actor, Backend, RequestMeta, Store, StoreOptions};
use serde::{Deserialize, Serialize};

use crate::app::Crypto;
use target::Target;

const FORMAT_VERSION: u32 = 1;

/// What a backup holds, recorded in the file (encrypted) and in the `backups` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub id: String,
    pub created_at: i64,
    pub rampart_version: String,
    pub backend: String,
    pub schema_version: i64,
    pub row_counts: std::collections::BTreeMap<String, i64>,
    /// Tenant id → (seq, hash) of its audit chain head in the snapshot.
    pub audit_heads: std::collections::BTreeMap<String, (i64, String)>,
    /// Every archived file but the manifest: name, size, SHA-256.
    pub files: Vec<ArchivedFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArchivedFile {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// Where progress goes: the CLI prints it to stderr; scheduled jobs log it.
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

fn data_key_context(id: &str) -> Context {
    Context::new(rampart_store::PLATFORM_TENANT_ID, "backups", "data_key", id)
}

fn meta() -> RequestMeta {
    RequestMeta {
        request_id: None,
        source_ip: None,
        user_agent: Some(format!("rampart-backup/{}", env!("CARGO_PKG_VERSION"))),
    }
}

/// The security log of this deployment (`<data_dir>/logs`).
pub fn security_log(config: &Config) -> anyhow::Result<SecurityLog> {
    Ok(SecurityLog::open(
        &config.data_dir.join("logs"),
        config.audit.security_log_retention_days,
    )?)
}

fn security(log: &SecurityLog, event: &str, severity: &'static str, detail: serde_json::Value) {
    let mut e = SecurityEvent::new(event, severity);
    e.detail = detail;
    log.record(e);
    log.sync();
}

/// Takes a backup: snapshot, archive, compress, encrypt, write, read back, record.
/// On failure the partial file is removed, and the failure is recorded (table, audit,
/// security log) before the error is returned.
pub async fn run_backup(
    config: &Config,
    store: &Store,
    crypto: &Crypto,
    log: &SecurityLog,
    progress: Progress<'_>,
) -> anyhow::Result<BackupRecord> {
    let id = rampart_store::new_id();
    let created_at = rampart_store::now_ms();
    let target = Target::open(config);
    let (path, target_url) = match &target {
        Ok(t) => (t.staging_path(config, &id), t.url(config, &id)),
        Err(_) => (
            config.backup_dir().join(format!("{id}.rbak")),
            String::new(),
        ),
    };
    let key_name = config.backup.key_name.clone();
    let result = match &target {
        Ok(t) => create(config, store, crypto, t, &id, created_at, &path, progress).await,
        Err(e) => Err(anyhow!("the backup target cannot be opened: {e:#}")),
    };
    let (record, audit, outcome) = match result {
        Ok(record) => {
            let audit = rampart_audit::event(Actor::System, "backup.create", "backup", meta())
                .target(&id)
                .changes(serde_json::json!({
                    "size_bytes": record.size_bytes,
                    "sha256": record.sha256,
                    "target": record.target,
                    "key": format!("{}/v{}", record.key_name, record.key_version),
                }))
                .build();
            (record, audit, Ok(()))
        }
        Err(e) => {
            std::fs::remove_file(&path).ok();
            std::fs::remove_file(path.with_extension("rbak.partial")).ok();
            let message = format!("{e:#}");
            let record = BackupRecord {
                id: id.clone(),
                created_at,
                status: "failed".into(),
                backend: store.backend().name().into(),
                schema_version: rampart_store::LATEST_VERSION,
                target: target_url,
                size_bytes: 0,
                sha256: String::new(),
                key_name: key_name.clone(),
                key_version: 0,
                manifest: "{}".into(),
                error: Some(message.clone()),
            };
            let audit = rampart_audit::event(Actor::System, "backup.create", "backup", meta())
                .target(&id)
                .outcome("failure")
                .changes(serde_json::json!({ "error": message }))
                .build();
            (record, audit, Err(e))
        }
    };
    let recorded = store.record_backup(&record, audit).await;
    match &outcome {
        Ok(()) => security(
            log,
            "backup_created",
            "info",
            serde_json::json!({ "backup_id": id, "size_bytes": record.size_bytes }),
        ),
        Err(e) => security(
            log,
            "backup_failed",
            "critical",
            serde_json::json!({ "backup_id": id, "error": format!("{e:#}") }),
        ),
    }
    outcome?;
    recorded.context("the backup file is written but could not be recorded")?;
    Ok(record)
}

#[allow(clippy::too_many_arguments)]
async fn create(
    config: &Config,
    store: &Store,
    crypto: &Crypto,
    target: &Target,
    id: &str,
    created_at: i64,
    path: &Path,
    progress: Progress<'_>,
) -> anyhow::Result<BackupRecord> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the backup folder {}", dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".rampart-backup-")
        .tempdir_in(dir)
        .context("cannot create a work folder beside the backups")?;
    let started = Instant::now();
    let spinner = progress::spinner("taking a consistent snapshot");
    let (stats, db_entry) = match store.backend() {
        Backend::Sqlite => {
            let snap = work.path().join("database.sqlite");
            let stats = store
                .sqlite_snapshot(&snap)
                .await
                .context("SQLite snapshot (VACUUM INTO) failed")?;
            (stats, ("database.sqlite", snap))
        }
        Backend::Postgres => {
            let dump = work.path().join("database.pgdump");
            let url = config.database_url();
            let out = dump.clone();
            let stats = store
                .postgres_snapshot(|snapshot| async move {
                    tokio::task::spawn_blocking(move || pg_dump(&url, &snapshot, &out))
                        .await
                        .map_err(|e| e.to_string())?
                })
                .await
                .context("PostgreSQL snapshot failed")?;
            (stats, ("database.pgdump", dump))
        }
    };
    let db_size = std::fs::metadata(&db_entry.1)?.len();
    progress(&format!(
        "snapshot: {} bytes, {} tables, {} ms",
        db_size,
        stats.row_counts.len(),
        started.elapsed().as_millis()
    ));
    spinner.set_message("hashing the snapshot");
    let mut entries = vec![format::Entry {
        name: db_entry.0.to_string(),
        path: db_entry.1.clone(),
    }];
    entries.extend(object_store_files(config)?);
    let hashed = {
        let paths: Vec<(String, PathBuf)> = entries
            .iter()
            .map(|e| (e.name.clone(), e.path.clone()))
            .collect();
        tokio::task::spawn_blocking(move || -> std::io::Result<Vec<ArchivedFile>> {
            paths
                .into_iter()
                .map(|(name, path)| {
                    Ok(ArchivedFile {
                        size: std::fs::metadata(&path)?.len(),
                        sha256: format::sha256_file(&path)?,
                        name,
                    })
                })
                .collect()
        })
        .await??
    };
    let manifest = Manifest {
        format: FORMAT_VERSION,
        id: id.to_string(),
        created_at,
        rampart_version: env!("CARGO_PKG_VERSION").into(),
        backend: store.backend().name().into(),
        schema_version: stats.schema_version,
        row_counts: stats.row_counts.clone(),
        audit_heads: stats.audit_heads.clone(),
        files: hashed,
    };
    let manifest_json = serde_json::to_vec(&manifest)?;

    let key_name = &config.backup.key_name;
    let (key, sealed) = crypto
        .keyring
        .new_stream_key(key_name, &data_key_context(id))
        .await
        .with_context(|| format!("cannot make a data key under keyring key {key_name}"))?;
    let (_, key_version) = key_of(&sealed)?;
    let carried = crypto.keyring.sealed_version(key_name, key_version).await?;
    let header = format::Header {
        id: id.to_string(),
        created_at,
        key_name: key_name.clone(),
        key_version,
        sealed_key: STANDARD.encode(&sealed),
        compression: "zstd".into(),
        chunk_bytes: rampart_crypto::stream::CHUNK,
        backend: store.backend().name().into(),
        carried_key: STANDARD.encode(&carried),
    };
    let partial = path.with_extension("rbak.partial");
    drop(spinner);
    let meter = progress::meter("compressing and encrypting");
    let written = {
        let partial = partial.clone();
        tokio::task::spawn_blocking(move || {
            format::write(&partial, &header, key, &manifest_json, &entries, &meter)
        })
        .await?
        .context("writing the backup file failed")?
    };
    std::fs::rename(&partial, path)?;
    progress(&format!(
        "written: {} bytes (compressed, encrypted), {} ms",
        written.0,
        started.elapsed().as_millis()
    ));
    // Read back what the target holds, not what we meant to write.
    let (url, reread) = target.store(path, id).await?;
    if reread != written.1 {
        bail!(
            "the backup file read back does not match what was written \
             (SHA-256 {reread}, expected {})",
            written.1
        );
    }
    progress(&format!("read back and verified: sha256 {reread}"));
    Ok(BackupRecord {
        id: id.to_string(),
        created_at,
        status: "complete".into(),
        backend: store.backend().name().into(),
        schema_version: stats.schema_version,
        target: url,
        size_bytes: written.0 as i64,
        sha256: written.1,
        key_name: key_name.clone(),
        key_version: i64::from(key_version),
        manifest: serde_json::to_string(&manifest)?,
        error: None,
    })
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The local object store's files as `objects/<key>` entries (none when the object store
/// is a bucket, whose own versioning protects it). Objects are written once under fresh
/// keys (through a temp file and a rename), so a file listed here is whole; one written
/// after the database snapshot is an orphan in the backup, harmless. Files still being
/// written (`object_store` names them `…#n`) are skipped.
fn object_store_files(config: &Config) -> anyhow::Result<Vec<format::Entry>> {
    let rampart_config::ObjectLocation::Dir(root) = config.objects_location() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut folders = vec![root.clone()];
    while let Some(folder) = folders.pop() {
        let listing = match std::fs::read_dir(&folder) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).context(format!("cannot list {}", folder.display())),
        };
        for entry in listing {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                folders.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(&root)?
                .to_string_lossy()
                .replace('\\', "/");
            if rel.contains('#') {
                continue;
            }
            out.push(format::Entry {
                name: format!("objects/{rel}"),
                path,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A PostgreSQL client tool for `url`. The password travels in `PGPASSWORD`, not in the
/// arguments, which every local user can read in the process list.
fn pg_tool(name: &str, url: &str) -> (Command, String) {
    let (url, password) = split_password(url);
    let mut cmd = Command::new(name);
    if let Some(password) = password {
        cmd.env("PGPASSWORD", password);
    }
    (cmd, url)
}

/// `postgres://user:secret@host/db` → (`postgres://user@host/db`, `Some("secret")`),
/// the password percent-decoded.
fn split_password(url: &str) -> (String, Option<String>) {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return (url.to_string(), None);
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (url.to_string(), None);
    };
    let Some(colon) = rest[..at].find(':') else {
        return (url.to_string(), None);
    };
    let encoded = &rest[colon + 1..at];
    let mut bytes = Vec::with_capacity(encoded.len());
    let raw = encoded.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        let hex = raw
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (raw[i], hex) {
            (b'%', Some(b)) => {
                bytes.push(b);
                i += 3;
            }
            (b, _) => {
                bytes.push(b);
                i += 1;
            }
        }
    }
    let stripped = format!("{}{}{}", &url[..scheme_end], &rest[..colon], &rest[at..]);
    (stripped, Some(String::from_utf8_lossy(&bytes).into_owned()))
}

fn run_tool(mut cmd: Command, name: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{name} is not on PATH: install the PostgreSQL client tools \
                 (Debian: apt-get install postgresql-client)"
            )
        } else {
            format!("cannot run {name}: {e}")
        }
    })?;
    if !out.status.success() {
        return Err(format!(
            "{name} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn pg_dump(url: &str, snapshot: &str, out: &Path) -> Result<(), String> {
    let (mut cmd, url) = pg_tool("pg_dump", url);
    cmd.arg("--format=custom")
        .arg("--no-owner")
        .arg(format!("--snapshot={snapshot}"))
        .arg(format!("--file={}", out.display()))
        .arg(format!("--dbname={url}"));
    run_tool(cmd, "pg_dump")
}

fn pg_restore(url: &str, dump: &Path) -> Result<(), String> {
    let (mut cmd, url) = pg_tool("pg_restore", url);
    cmd.arg("--no-owner")
        .arg("--no-acl")
        .arg("--exit-on-error")
        .arg(format!("--dbname={url}"))
        .arg(dump);
    run_tool(cmd, "pg_restore")
}

/// The result of `verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub id: String,
    pub ok: bool,
    pub size_bytes: u64,
    pub sha256: String,
    pub problems: Vec<String>,
}

/// Re-hashes the file against the recorded SHA-256, then decrypts and decompresses all
/// of it and checks every archived file against the manifest.
pub async fn verify(
    config: &Config,
    store: &Store,
    crypto: &Crypto,
    id: &str,
) -> anyhow::Result<VerifyReport> {
    let record = find(store, id).await?;
    let local = Target::open(config)?.fetch(config, &record).await?;
    let path = local.path.clone();
    let mut report = VerifyReport {
        id: record.id.clone(),
        ok: false,
        size_bytes: 0,
        sha256: local.sha256.clone(),
        problems: Vec::new(),
    };
    report.size_bytes = std::fs::metadata(&path)
        .with_context(|| format!("backup file {} is missing", path.display()))?
        .len();
    if report.sha256 != record.sha256 {
        report.problems.push(format!(
            "SHA-256 mismatch: recorded {}, the file has {} (altered or damaged)",
            record.sha256, report.sha256
        ));
    }
    if let Err(e) = open_and_check(crypto, Some(&record), &path, None).await {
        report.problems.push(format!("{e:#}"));
    }
    report.ok = report.problems.is_empty();
    Ok(report)
}

async fn find(store: &Store, id: &str) -> anyhow::Result<BackupRecord> {
    let record = store.get_backup(id).await.map_err(|e| match e {
        rampart_store::StoreError::NotFound => anyhow!("no backup {id}"),
        other => anyhow!(other),
    })?;
    if record.status != "complete" {
        bail!("backup {id} is {}, not complete", record.status);
    }
    Ok(record)
}

/// Opens the data key, reads the whole stream (extracting into `into` if given), and
/// checks the archived files against the file's own manifest and the recorded one.
async fn open_and_check(
    crypto: &Crypto,
    record: Option<&BackupRecord>,
    path: &Path,
    into: Option<PathBuf>,
) -> anyhow::Result<Manifest> {
    let p = path.to_path_buf();
    let (header, prefix, reader) =
        tokio::task::spawn_blocking(move || format::read_header(&p)).await??;
    if let Some(record) = record {
        if header.id != record.id {
            bail!("the file holds backup {}, not {}", header.id, record.id);
        }
    }
    let sealed = STANDARD
        .decode(&header.sealed_key)
        .context("the header's sealed key is not base64")?;
    let context = data_key_context(&header.id);
    let key = match crypto.keyring.open_stream_key(&context, &sealed).await {
        // This deployment's keyring never had the key, or not that version (a restore
        // onto a new database): the version carried in the header, under the root key.
        // A version this keyring has retired stays refused.
        Err(rampart_crypto::keyring::KeyringError::Envelope(
            rampart_crypto::envelope::EnvelopeError::UnknownKey(_)
            | rampart_crypto::envelope::EnvelopeError::UnknownVersion { .. },
        )) => {
            let carried = STANDARD
                .decode(&header.carried_key)
                .context("the header's carried key is not base64")?;
            crypto
                .keyring
                .open_stream_key_carried(&context, &sealed, &carried)
        }
        other => other,
    }
    .with_context(|| {
        format!(
            "cannot open the backup's data key (keyring key {} version {})",
            header.key_name, header.key_version
        )
    })?;
    let meter = progress::meter("decrypting and decompressing");
    let contents = tokio::task::spawn_blocking(move || {
        format::read(reader, &prefix, key, into.as_deref(), &meter)
    })
    .await?
    .context("the backup does not decrypt and decompress")?;
    let manifest: Manifest = serde_json::from_slice(&contents.manifest)
        .context("the backup's manifest is unreadable")?;
    let found: Vec<ArchivedFile> = contents
        .entries
        .into_iter()
        .map(|(name, size, sha256)| ArchivedFile { name, size, sha256 })
        .collect();
    if found != manifest.files {
        bail!("the archived files do not match the manifest");
    }
    if let Some(record) = record {
        let recorded: Manifest = serde_json::from_str(&record.manifest)
            .context("the recorded manifest is unreadable")?;
        if manifest.files != recorded.files
            || manifest.row_counts != recorded.row_counts
            || manifest.audit_heads != recorded.audit_heads
        {
            bail!("the file's manifest differs from the recorded one");
        }
    }
    Ok(manifest)
}

/// Where a restore went.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub id: String,
    pub backend: String,
    /// A data dir (SQLite) or a database URL without its password (PostgreSQL).
    pub restored_to: String,
    pub elapsed_ms: u128,
    /// Where the backup's local object store files went, if it held any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects_restored_to: Option<String>,
    #[serde(skip)]
    pub database_url: String,
    #[serde(skip)]
    pub manifest: Option<Manifest>,
}

/// Where to restore to.
pub enum RestoreTo {
    /// SQLite: a data dir (must not already hold a database).
    Dir(PathBuf),
    /// PostgreSQL: an existing, empty database.
    DatabaseUrl(String),
    /// PostgreSQL: a new database `rampart_restore_<id>` on the configured server.
    NewDatabase,
}

/// What to restore.
pub enum RestoreFrom {
    /// A backup recorded in this deployment's `backups` table.
    Recorded(String),
    /// A backup file on its own (the database that recorded it may be gone). Checked by
    /// its authenticated encryption and its own manifest; there is no recorded hash.
    File(PathBuf),
}

/// Restores a backup, verifying it on the way (hash, every chunk, every file). Never
/// touches the live database.
pub async fn restore(
    config: &Config,
    store: &Store,
    crypto: &Crypto,
    log: &SecurityLog,
    from: RestoreFrom,
    to: RestoreTo,
) -> anyhow::Result<RestoreReport> {
    let id = match &from {
        RestoreFrom::Recorded(id) => id.clone(),
        RestoreFrom::File(path) => path.display().to_string(),
    };
    let id = id.as_str();
    let result = restore_inner(config, store, crypto, from, to).await;
    let (outcome, detail) = match &result {
        Ok(r) => (
            "success",
            serde_json::json!({ "restored_to": r.restored_to, "elapsed_ms": r.elapsed_ms as u64 }),
        ),
        Err(e) => ("failure", serde_json::json!({ "error": format!("{e:#}") })),
    };
    let audit = rampart_audit::event(Actor::System, "backup.restore", "backup", meta())
        .target(id)
        .outcome(outcome)
        .changes(detail.clone())
        .build();
    let recorded = store.record_backup_event(audit).await;
    let mut detail = detail;
    detail["backup_id"] = serde_json::json!(id);
    match &result {
        Ok(_) => security(log, "backup_restored", "warning", detail),
        Err(_) => security(log, "backup_restore_failed", "critical", detail),
    }
    let report = result?;
    recorded?;
    Ok(report)
}

async fn restore_inner(
    config: &Config,
    store: &Store,
    crypto: &Crypto,
    from: RestoreFrom,
    to: RestoreTo,
) -> anyhow::Result<RestoreReport> {
    let started = Instant::now();
    // Holds a downloaded copy until the restore is done.
    let mut _fetched = None;
    let (record, path) = match from {
        RestoreFrom::Recorded(id) => {
            let record = find(store, &id).await?;
            let local = Target::open(config)?.fetch(config, &record).await?;
            if local.sha256 != record.sha256 {
                bail!(
                    "backup {id}: SHA-256 mismatch (recorded {}, the file has {}); \
                     refusing to restore",
                    record.sha256,
                    local.sha256
                );
            }
            let path = local.path.clone();
            _fetched = Some(local);
            (Some(record), path)
        }
        RestoreFrom::File(path) => (None, path),
    };
    let p = path.clone();
    let (header, _, _) = tokio::task::spawn_blocking(move || format::read_header(&p))
        .await?
        .with_context(|| format!("cannot read backup file {}", path.display()))?;
    let id = header.id.as_str();
    let backend = match &record {
        Some(r) => r.backend.clone(),
        None => header.backend.clone(),
    };
    let record = record.as_ref();
    match (backend.as_str(), to) {
        ("sqlite", RestoreTo::Dir(dir)) => {
            std::fs::create_dir_all(&dir)?;
            let db = dir.join("rampart.db");
            if db.exists() {
                bail!(
                    "{} already holds a database; restore into an empty folder",
                    dir.display()
                );
            }
            let work = tempfile::Builder::new()
                .prefix(".rampart-restore-")
                .tempdir_in(&dir)?;
            let manifest =
                open_and_check(crypto, record, &path, Some(work.path().to_path_buf())).await?;
            std::fs::rename(work.path().join("database.sqlite"), &db)?;
            // `<dir>/objects` is where a server on data dir `<dir>` looks by default.
            let objects_restored_to = move_objects(work.path(), &dir.join("objects"))?;
            // The keyring and signing keys in the copy are sealed under the root key; a
            // data dir without it could not open them. Copy it when it is a file here.
            let live_root = config.data_dir.join("keys/root.key");
            let root = dir.join("keys/root.key");
            if live_root.exists() && !root.exists() && config.crypto.root_key.expose().is_empty() {
                std::fs::create_dir_all(dir.join("keys"))?;
                std::fs::copy(&live_root, &root)?;
            }
            Ok(RestoreReport {
                id: id.to_string(),
                backend: backend.clone(),
                restored_to: absolute(&dir).display().to_string(),
                objects_restored_to,
                elapsed_ms: started.elapsed().as_millis(),
                database_url: format!("sqlite://{}", absolute(&db).display()),
                manifest: Some(manifest),
            })
        }
        ("postgres", to @ (RestoreTo::DatabaseUrl(_) | RestoreTo::NewDatabase)) => {
            let url = match to {
                RestoreTo::DatabaseUrl(url) => url,
                _ => {
                    let name = format!("rampart_restore_{}", id.replace('-', "").to_lowercase());
                    store.create_database(&name).await?;
                    replace_database(&config.database_url(), &name)?
                }
            };
            std::fs::create_dir_all(config.backup_dir())?;
            let work = tempfile::Builder::new()
                .prefix(".rampart-restore-")
                .tempdir_in(config.backup_dir())?;
            let manifest =
                open_and_check(crypto, record, &path, Some(work.path().to_path_buf())).await?;
            let dump = work.path().join("database.pgdump");
            let objects_restored_to = move_objects(
                work.path(),
                &config
                    .backup_dir()
                    .join(format!("restored-{id}-{}", rampart_store::now_ms()))
                    .join("objects"),
            )?;
            let u = url.clone();
            tokio::task::spawn_blocking(move || pg_restore(&u, &dump))
                .await?
                .map_err(|e| anyhow!(e))?;
            Ok(RestoreReport {
                id: id.to_string(),
                backend: backend.clone(),
                restored_to: rampart_config::ConnectionUrl::new(url.clone()).to_string(),
                objects_restored_to,
                elapsed_ms: started.elapsed().as_millis(),
                database_url: url,
                manifest: Some(manifest),
            })
        }
        ("sqlite", _) => bail!("a SQLite backup restores into a folder: give --to DIR"),
        (_, RestoreTo::Dir(_)) => bail!(
            "a PostgreSQL backup restores into a database: give --database-url URL, or \
             nothing for a new database on the configured server"
        ),
        (other, _) => bail!("backup {id} is of an unknown backend {other}"),
    }
}

/// Moves the `objects/` folder a restore extracted into `work` to `to` (which must not
/// exist yet); returns where, or `None` when the backup held no objects.
fn move_objects(work: &Path, to: &Path) -> anyhow::Result<Option<String>> {
    let from = work.join("objects");
    if !from.exists() {
        return Ok(None);
    }
    if to.exists() {
        bail!(
            "{} already exists; restore the objects into an empty place",
            to.display()
        );
    }
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::rename(&from, to)
        .with_context(|| format!("cannot move the restored objects to {}", to.display()))?;
    Ok(Some(absolute(to).display().to_string()))
}

/// `postgres://u:p@h:5432/live?x=y` with `name` in place of `live`.
fn replace_database(url: &str, name: &str) -> anyhow::Result<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (head, _) = base
        .rsplit_once('/')
        .filter(|(h, _)| h.contains("//") && h.len() > h.find("//").unwrap_or(0) + 2)
        .ok_or_else(|| anyhow!("the database URL has no database name"))?;
    Ok(match query {
        Some(q) => format!("{head}/{name}?{q}"),
        None => format!("{head}/{name}"),
    })
}

/// The result of a restore drill.
#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub backup_id: String,
    pub ok: bool,
    /// Recovery time: restore, open the store, verify the audit chains and count rows.
    pub rto_ms: u128,
    /// Of which the restore itself (hash check, decrypt, decompress, write or pg_restore).
    pub restore_ms: u128,
    /// Recovery point: how old the newest backup was when the drill began.
    pub rpo_ms: i64,
    pub audit_events_verified: u64,
    pub audit_chains: usize,
    pub tables_compared: usize,
    pub problems: Vec<String>,
}

/// Restores the newest complete backup into a scratch place (a temp folder, or a
/// temporary PostgreSQL database), opens the store on it, verifies every audit chain,
/// and compares row counts and chain heads with the manifest. Raises a critical security
/// event when anything fails.
pub async fn run_drill(
    config: &Config,
    store: &Store,
    crypto: &Crypto,
    log: &SecurityLog,
) -> anyhow::Result<DrillReport> {
    let result = drill_inner(config, store, crypto, log).await;
    let (outcome, detail) = match &result {
        Ok(r) if r.ok => ("success", serde_json::to_value(r)?),
        Ok(r) => ("failure", serde_json::to_value(r)?),
        Err(e) => ("failure", serde_json::json!({ "error": format!("{e:#}") })),
    };
    let audit = rampart_audit::event(Actor::System, "backup.drill", "backup", meta())
        .outcome(outcome)
        .changes(detail.clone())
        .build();
    let recorded = store.record_backup_event(audit).await;
    if outcome == "success" {
        security(log, "backup_drill", "info", detail);
    } else {
        security(log, "backup_drill_failed", "critical", detail);
    }
    let report = result?;
    recorded?;
    Ok(report)
}

async fn drill_inner(
    config: &Config,
    store: &Store,
    crypto: &Crypto,
    log: &SecurityLog,
) -> anyhow::Result<DrillReport> {
    let newest = store
        .list_backups()
        .await?
        .into_iter()
        .find(|b| b.status == "complete")
        .ok_or_else(|| anyhow!("there is no complete backup to drill"))?;
    let began = rampart_store::now_ms();
    let started = Instant::now();
    let scratch = tempfile::Builder::new()
        .prefix("rampart-drill-")
        .tempdir()?;
    let to = match store.backend() {
        Backend::Sqlite => RestoreTo::Dir(scratch.path().join("data")),
        Backend::Postgres => RestoreTo::NewDatabase,
    };
    let restored = restore(
        config,
        store,
        crypto,
        log,
        RestoreFrom::Recorded(newest.id.clone()),
        to,
    )
    .await?;
    let checked = check_restored(config, &restored).await;
    if let (Backend::Postgres, Some(objects)) = (store.backend(), &restored.objects_restored_to) {
        // `<backups>/restored-<id>-<ms>/objects`: the drill's copy goes with its database.
        if let Some(parent) = Path::new(objects).parent() {
            std::fs::remove_dir_all(parent).ok();
        }
    }
    if store.backend() == Backend::Postgres {
        let name = format!(
            "rampart_restore_{}",
            newest.id.replace('-', "").to_lowercase()
        );
        if let Err(e) = store.drop_database(&name).await {
            tracing::warn!(error = %e, database = %name, "cannot drop the drill's database");
        }
    }
    let rto_ms = started.elapsed().as_millis();
    let mut report = DrillReport {
        backup_id: newest.id.clone(),
        ok: false,
        rto_ms,
        restore_ms: restored.elapsed_ms,
        rpo_ms: began - newest.created_at,
        audit_events_verified: 0,
        audit_chains: 0,
        tables_compared: 0,
        problems: Vec::new(),
    };
    match checked {
        Ok((verified, tables, problems)) => {
            report.audit_events_verified = verified.events;
            report.audit_chains = verified.chains;
            report.tables_compared = tables;
            report.problems = problems;
        }
        Err(e) => report.problems.push(format!("{e:#}")),
    }
    report.ok = report.problems.is_empty();
    Ok(report)
}

/// Opens a store on a restored copy; returns the audit verification, the number of
/// tables compared, and any mismatch.
async fn check_restored(
    config: &Config,
    restored: &RestoreReport,
) -> anyhow::Result<(rampart_audit::chain::VerifyReport, usize, Vec<String>)> {
    let manifest = restored
        .manifest
        .clone()
        .ok_or_else(|| anyhow!("the restore produced no manifest"))?;
    let (copy, _) = Store::open(&StoreOptions {
        url: restored.database_url.clone(),
        max_connections: 2,
        app_role: config.database.app_role.clone(),
    })
    .await
    .context("the store does not open on the restored copy")?;
    let result = async {
        // Counted before anything else touches the copy (loading the signing keys may
        // add one).
        let stats: SnapshotStats = copy.snapshot_stats().await?;
        let mut problems = compare(&manifest, &stats);
        // The copy's keyring and signing keys are sealed under this deployment's root
        // key, so the verifier is built the same way as for the live store.
        let restored_config = Config {
            database: rampart_config::DatabaseConfig {
                url: rampart_config::ConnectionUrl::new(restored.database_url.clone()),
                ..config.database.clone()
            },
            ..config.clone()
        };
        let copy_crypto = crate::app::crypto(&restored_config, &copy).await?;
        let verified = match rampart_audit::chain::verify_all(&copy, &copy_crypto.signing).await {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("audit chain verification failed: {e}"));
                Default::default()
            }
        };
        anyhow::Ok((verified, manifest.row_counts.len(), problems))
    }
    .await;
    copy.close().await;
    result
}

/// Differences between a manifest and a restored copy's statistics.
pub fn compare(manifest: &Manifest, stats: &SnapshotStats) -> Vec<String> {
    let mut problems = Vec::new();
    for (table, want) in &manifest.row_counts {
        match stats.row_counts.get(table) {
            Some(got) if got == want => {}
            Some(got) => problems.push(format!("table {table}: {got} rows, manifest says {want}")),
            None => problems.push(format!("table {table} is missing")),
        }
    }
    if stats.audit_heads != manifest.audit_heads {
        problems.push("audit chain heads differ from the manifest".into());
    }
    problems
}

/// The result of pruning.
#[derive(Debug, Clone, Serialize)]
pub struct PruneReport {
    pub pruned: Vec<String>,
    pub kept: usize,
    /// Due for pruning, but the file could not be removed; tried again next time.
    pub failed: Vec<String>,
}

/// Applies retention (`backup.keep_*_days`) to complete backups: removes the files it
/// lets go and marks them `pruned`, each with an audit event.
pub async fn run_prune(config: &Config, store: &Store) -> anyhow::Result<PruneReport> {
    let b = &config.backup;
    let policy = retention::Policy {
        daily_days: b.keep_daily_days,
        monthly_days: b.keep_monthly_days,
        yearly_days: b.keep_yearly_days,
        offset: retention::zone_offset(&b.schedule_zone)
            .ok_or_else(|| anyhow!("backup.schedule_zone {:?} is not known", b.schedule_zone))?,
    };
    let complete: Vec<BackupRecord> = store
        .list_backups()
        .await?
        .into_iter()
        .filter(|r| r.status == "complete")
        .collect();
    let ids: Vec<(String, i64)> = complete
        .iter()
        .map(|r| (r.id.clone(), r.created_at))
        .collect();
    let pruned = retention::to_prune(rampart_store::now_ms(), &ids, &policy);
    let target = Target::open(config)?;
    let mut failed = Vec::new();
    for id in &pruned {
        if let Some(record) = complete.iter().find(|r| &r.id == id) {
            // Left for the next run (and said) rather than marked pruned with its file
            // still there, or stopping the prune of every other backup.
            if let Err(e) = target.remove(record).await {
                tracing::warn!(backup_id = %id, error = %format!("{e:#}"), "cannot remove a pruned backup's file");
                failed.push(id.clone());
                continue;
            }
        }
        let audit = rampart_audit::event(Actor::System, "backup.prune", "backup", meta())
            .target(id)
            .build();
        store.mark_backup_pruned(id, audit).await?;
    }
    let pruned: Vec<String> = pruned
        .into_iter()
        .filter(|id| !failed.contains(id))
        .collect();
    Ok(PruneReport {
        kept: complete.len() - pruned.len(),
        pruned,
        failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced_in_urls() {
        assert_eq!(
            replace_database("postgres://u:p@h:5432/live?sslmode=disable", "copy").unwrap(),
            "postgres://u:p@h:5432/copy?sslmode=disable"
        );
        assert_eq!(
            replace_database("postgres://h/live", "copy").unwrap(),
            "postgres://h/copy"
        );
        assert!(replace_database("postgres://h", "copy").is_err());
    }

    #[test]
    fn passwords_leave_the_url_for_the_environment() {
        assert_eq!(
            split_password("postgres://u:p%40ss@h:5432/db?sslmode=disable"),
            (
                "postgres://u@h:5432/db?sslmode=disable".to_string(),
                Some("p@ss".to_string())
            )
        );
        assert_eq!(
            split_password("postgres://u@h/db"),
            ("postgres://u@h/db".to_string(), None)
        );
        assert_eq!(
            split_password("postgres://h/db"),
            ("postgres://h/db".to_string(), None)
        );
    }
}
