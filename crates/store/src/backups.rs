//! Backups' database side: consistent snapshots (SQLite `VACUUM INTO`; a PostgreSQL
//! exported snapshot that `pg_dump --snapshot` reads), the row counts and audit chain
//! heads of exactly that snapshot, and the `backups` table.
//!
//! The file format, compression, encryption and targets live in the `rampart` crate's
//! `backup` module; this module only reads and records.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use crate::{Backend, NewAuditEvent, Store, StoreError, PLATFORM_TENANT_ID};

/// What a snapshot holds, read from the snapshot itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    pub schema_version: i64,
    /// Rows per table, every table in the schema.
    pub row_counts: BTreeMap<String, i64>,
    /// Each tenant's audit chain head: `(seq, hash)`.
    pub audit_heads: BTreeMap<String, (i64, String)>,
}

/// One row of the `backups` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupRecord {
    pub id: String,
    pub created_at: i64,
    pub status: String,
    pub backend: String,
    pub schema_version: i64,
    pub target: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub key_name: String,
    pub key_version: i64,
    /// JSON.
    pub manifest: String,
    pub error: Option<String>,
}

const COLUMNS: &str = "id, created_at, status, backend, schema_version, target, size_bytes, \
                       sha256, key_name, key_version, manifest, error";

fn from_row(r: &sqlx::any::AnyRow) -> Result<BackupRecord, StoreError> {
    Ok(BackupRecord {
        id: r.try_get("id")?,
        created_at: r.try_get("created_at")?,
        status: r.try_get("status")?,
        backend: r.try_get("backend")?,
        schema_version: r.try_get("schema_version")?,
        target: r.try_get("target")?,
        size_bytes: r.try_get("size_bytes")?,
        sha256: r.try_get("sha256")?,
        key_name: r.try_get("key_name")?,
        key_version: r.try_get("key_version")?,
        manifest: r.try_get("manifest")?,
        error: r.try_get("error")?,
    })
}

async fn stats_of(conn: &mut AnyConnection, backend: Backend) -> Result<SnapshotStats, StoreError> {
    let list = match backend {
        Backend::Sqlite => {
            "SELECT name AS t FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' ORDER BY name"
        }
        Backend::Postgres => {
            "SELECT tablename::text AS t FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        }
    };
    let tables: Vec<String> = sqlx::query_scalar(list).fetch_all(&mut *conn).await?;
    let mut row_counts = BTreeMap::new();
    for table in tables {
        // Names come from the catalogue, not from input; quoting keeps odd ones intact.
        let sql = format!("SELECT COUNT(*) FROM \"{}\"", table.replace('"', "\"\""));
        let count: i64 = sqlx::query_scalar(&sql).fetch_one(&mut *conn).await?;
        row_counts.insert(table, count);
    }
    let schema_version: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM rampart_migrations")
            .fetch_one(&mut *conn)
            .await?;
    let mut audit_heads = BTreeMap::new();
    for row in sqlx::query("SELECT tenant_id, seq, hash FROM audit_heads")
        .fetch_all(&mut *conn)
        .await?
    {
        audit_heads.insert(
            row.try_get::<String, _>("tenant_id")?,
            (row.try_get("seq")?, row.try_get("hash")?),
        );
    }
    Ok(SnapshotStats {
        schema_version: schema_version.unwrap_or(0),
        row_counts,
        audit_heads,
    })
}

impl Store {
    /// SQLite: writes a consistent copy of the live database to `dest` (`VACUUM INTO`,
    /// which reads in one transaction while writers carry on in WAL mode) and returns the
    /// statistics of that copy.
    pub async fn sqlite_snapshot(&self, dest: &Path) -> Result<SnapshotStats, StoreError> {
        if self.backend() != Backend::Sqlite {
            return Err(StoreError::Migration("not a SQLite database".into()));
        }
        let path = dest
            .to_str()
            .ok_or_else(|| StoreError::Migration("snapshot path is not UTF-8".into()))?;
        let mut conn = self.inner.pool.acquire().await?;
        sqlx::query("VACUUM INTO $1")
            .bind(path)
            .execute(&mut *conn)
            .await?;
        drop(conn);
        let mut copy = crate::connect::connect_one(&format!("sqlite://{path}?mode=ro")).await?;
        let stats = stats_of(&mut copy, Backend::Sqlite).await;
        sqlx::Connection::close(copy).await.ok();
        stats
    }

    /// PostgreSQL: opens a read-only repeatable-read transaction, exports its snapshot,
    /// reads the statistics in it, and runs `dump(snapshot_name)` (pg_dump --snapshot)
    /// while the transaction holds the snapshot, so dump and statistics see the same data.
    pub async fn postgres_snapshot<F, Fut>(&self, dump: F) -> Result<SnapshotStats, StoreError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        if self.backend() != Backend::Postgres {
            return Err(StoreError::Migration("not a PostgreSQL database".into()));
        }
        let mut tx = self
            .inner
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        sqlx::query("SELECT set_config('rampart.system', 'on', true)")
            .fetch_one(&mut *tx)
            .await?;
        let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
            .fetch_one(&mut *tx)
            .await?;
        let stats = stats_of(&mut tx, Backend::Postgres).await?;
        dump(snapshot).await.map_err(StoreError::Migration)?;
        tx.commit().await?;
        Ok(stats)
    }

    /// The statistics of the database as it is now (the drill reads a restored copy).
    pub async fn snapshot_stats(&self) -> Result<SnapshotStats, StoreError> {
        let backend = self.backend();
        let mut tx = self.system_read().await?;
        let stats = stats_of(tx.conn(), backend).await?;
        tx.commit().await?;
        Ok(stats)
    }

    /// Records a backup (complete or failed) and its audit event in the platform's chain,
    /// in one transaction.
    pub async fn record_backup(
        &self,
        b: &BackupRecord,
        audit: NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.system_write().await?;
        sqlx::query(&format!(
            "INSERT INTO backups ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(&b.id)
        .bind(b.created_at)
        .bind(&b.status)
        .bind(&b.backend)
        .bind(b.schema_version)
        .bind(&b.target)
        .bind(b.size_bytes)
        .bind(&b.sha256)
        .bind(&b.key_name)
        .bind(b.key_version)
        .bind(&b.manifest)
        .bind(&b.error)
        .execute(tx.conn())
        .await?;
        tx.audit(PLATFORM_TENANT_ID, &audit).await?;
        tx.commit().await
    }

    /// Records an audit event about backups (a restore, a drill, a pruning) in the
    /// platform's chain.
    pub async fn record_backup_event(&self, audit: NewAuditEvent) -> Result<(), StoreError> {
        let mut tx = self.system_write().await?;
        tx.audit(PLATFORM_TENANT_ID, &audit).await?;
        tx.commit().await
    }

    /// Backups, newest first.
    pub async fn list_backups(&self) -> Result<Vec<BackupRecord>, StoreError> {
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM backups ORDER BY created_at DESC, id DESC"
        ))
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }

    /// One page of backups, newest first: those created before `before` (`(created_at,
    /// id)` of the last backup of the previous page).
    pub async fn list_backups_before(
        &self,
        before: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<BackupRecord>, StoreError> {
        let (before_at, before_id) = before.unwrap_or((i64::MAX, ""));
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM backups \
             WHERE created_at < $1 OR (created_at = $1 AND ($2 = '' OR id < $2)) \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(before_at)
        .bind(before_id)
        .bind(limit)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }

    /// The newest restore drill, from the platform's audit chain where every drill is
    /// recorded (`backup.drill`): when it ran, its outcome and its report (JSON).
    pub async fn last_drill(&self) -> Result<Option<(i64, String, String)>, StoreError> {
        let mut tx = self.system_read().await?;
        let row = sqlx::query(
            "SELECT occurred_at, outcome, changes FROM audit_events \
             WHERE tenant_id = $1 AND action = 'backup.drill' ORDER BY seq DESC LIMIT 1",
        )
        .bind(PLATFORM_TENANT_ID)
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .transpose()
    }

    pub async fn get_backup(&self, id: &str) -> Result<BackupRecord, StoreError> {
        let mut tx = self.system_read().await?;
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM backups WHERE id = $1"))
            .bind(id)
            .fetch_optional(tx.conn())
            .await?;
        tx.commit().await?;
        from_row(&row.ok_or(StoreError::NotFound)?)
    }

    /// Marks a backup whose file retention removed.
    pub async fn mark_backup_pruned(
        &self,
        id: &str,
        audit: NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.system_write().await?;
        sqlx::query("UPDATE backups SET status = 'pruned' WHERE id = $1")
            .bind(id)
            .execute(tx.conn())
            .await?;
        tx.audit(PLATFORM_TENANT_ID, &audit).await?;
        tx.commit().await
    }

    /// PostgreSQL: creates an empty database `name` on the server this store uses, for a
    /// restore. `name` must be lowercase letters, digits and `_`.
    pub async fn create_database(&self, name: &str) -> Result<(), StoreError> {
        self.admin_database_statement(&format!("CREATE DATABASE \"{name}\""), name)
            .await
    }

    /// PostgreSQL: drops a database made by [`Store::create_database`].
    pub async fn drop_database(&self, name: &str) -> Result<(), StoreError> {
        self.admin_database_statement(&format!("DROP DATABASE IF EXISTS \"{name}\""), name)
            .await
    }

    async fn admin_database_statement(&self, sql: &str, name: &str) -> Result<(), StoreError> {
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(StoreError::Migration(format!("bad database name {name:?}")));
        }
        let url = self
            .inner
            .url
            .as_deref()
            .filter(|_| self.backend() == Backend::Postgres)
            .ok_or_else(|| StoreError::Migration("not a PostgreSQL database".into()))?;
        let mut conn = crate::connect::connect_one(url).await?;
        sqlx::raw_sql(sql).execute(&mut conn).await?;
        sqlx::Connection::close(conn).await.ok();
        Ok(())
    }
}
