//! Schema migrations, one SQL file per backend and version, embedded in the binary.
//!
//! A small runner of our own rather than `sqlx::migrate!`: it needs no macros feature, it
//! serialises concurrent starts (an advisory lock on PostgreSQL, `BEGIN IMMEDIATE` on
//! SQLite), and it refuses a database whose applied migrations were edited afterwards or
//! that a newer binary has already moved ahead.

use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Connection, Row};

use crate::{now_ms, Backend, StoreError};

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "foundation",
        sqlite: include_str!("../migrations/sqlite/0001_foundation.sql"),
        postgres: include_str!("../migrations/postgres/0001_foundation.sql"),
    },
    Migration {
        version: 2,
        name: "access_and_audit",
        sqlite: include_str!("../migrations/sqlite/0002_access_and_audit.sql"),
        postgres: include_str!("../migrations/postgres/0002_access_and_audit.sql"),
    },
    Migration {
        version: 3,
        name: "mfa",
        sqlite: include_str!("../migrations/sqlite/0003_mfa.sql"),
        postgres: include_str!("../migrations/postgres/0003_mfa.sql"),
    },
    Migration {
        version: 4,
        name: "keyring",
        sqlite: include_str!("../migrations/sqlite/0004_keyring.sql"),
        postgres: include_str!("../migrations/postgres/0004_keyring.sql"),
    },
    Migration {
        version: 5,
        name: "token_vault",
        sqlite: include_str!("../migrations/sqlite/0005_token_vault.sql"),
        postgres: include_str!("../migrations/postgres/0005_token_vault.sql"),
    },
    Migration {
        version: 6,
        name: "signing_and_pii",
        sqlite: include_str!("../migrations/sqlite/0006_signing_and_pii.sql"),
        postgres: include_str!("../migrations/postgres/0006_signing_and_pii.sql"),
    },
    Migration {
        version: 7,
        name: "jobs",
        sqlite: include_str!("../migrations/sqlite/0007_jobs.sql"),
        postgres: include_str!("../migrations/postgres/0007_jobs.sql"),
    },
    Migration {
        version: 8,
        name: "backups",
        sqlite: include_str!("../migrations/sqlite/0008_backups.sql"),
        postgres: include_str!("../migrations/postgres/0008_backups.sql"),
    },
    Migration {
        version: 9,
        name: "payments",
        sqlite: include_str!("../migrations/sqlite/0009_payments.sql"),
        postgres: include_str!("../migrations/postgres/0009_payments.sql"),
    },
    Migration {
        version: 10,
        name: "webhooks",
        sqlite: include_str!("../migrations/sqlite/0010_webhooks.sql"),
        postgres: include_str!("../migrations/postgres/0010_webhooks.sql"),
    },
    Migration {
        version: 11,
        name: "notifications",
        sqlite: include_str!("../migrations/sqlite/0011_notifications.sql"),
        postgres: include_str!("../migrations/postgres/0011_notifications.sql"),
    },
    Migration {
        version: 12,
        name: "webhook_suspension",
        sqlite: include_str!("../migrations/sqlite/0012_webhook_suspension.sql"),
        postgres: include_str!("../migrations/postgres/0012_webhook_suspension.sql"),
    },
    Migration {
        version: 13,
        name: "payment_attempts",
        sqlite: include_str!("../migrations/sqlite/0013_payment_attempts.sql"),
        postgres: include_str!("../migrations/postgres/0013_payment_attempts.sql"),
    },
    Migration {
        version: 14,
        name: "console_sessions",
        sqlite: include_str!("../migrations/sqlite/0014_console_sessions.sql"),
        postgres: include_str!("../migrations/postgres/0014_console_sessions.sql"),
    },
    Migration {
        version: 15,
        name: "detection",
        sqlite: include_str!("../migrations/sqlite/0015_detection.sql"),
        postgres: include_str!("../migrations/postgres/0015_detection.sql"),
    },
    Migration {
        version: 16,
        name: "alert_handling",
        sqlite: include_str!("../migrations/sqlite/0016_alert_handling.sql"),
        postgres: include_str!("../migrations/postgres/0016_alert_handling.sql"),
    },
    Migration {
        version: 17,
        name: "observations",
        sqlite: include_str!("../migrations/sqlite/0017_observations.sql"),
        postgres: include_str!("../migrations/postgres/0017_observations.sql"),
    },
    Migration {
        version: 18,
        name: "observation_photos",
        sqlite: include_str!("../migrations/sqlite/0018_observation_photos.sql"),
        postgres: include_str!("../migrations/postgres/0018_observation_photos.sql"),
    },
];

/// The schema version this binary runs on: the last migration's.
pub const LATEST_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Arbitrary, fixed: the advisory lock id that serialises migrations across nodes.
const PG_MIGRATION_LOCK: i64 = 0x0072_616d_7061_7274; // "rampart" in ASCII

#[derive(Debug, Clone, serde::Serialize)]
pub struct MigrationReport {
    pub backend: &'static str,
    /// Versions applied by this run.
    pub applied: Vec<i64>,
    /// The schema version now.
    pub version: i64,
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS rampart_migrations (\
    version BIGINT PRIMARY KEY, \
    name TEXT NOT NULL, \
    checksum TEXT NOT NULL, \
    applied_at BIGINT NOT NULL)";

pub(crate) async fn run(
    conn: &mut AnyConnection,
    backend: Backend,
) -> Result<MigrationReport, StoreError> {
    if backend == Backend::Postgres {
        // pg_advisory_lock returns void, which the Any driver cannot decode; select a
        // constant from it instead.
        sqlx::query("SELECT 1 FROM pg_advisory_lock($1)")
            .bind(PG_MIGRATION_LOCK)
            .fetch_one(&mut *conn)
            .await?;
    }
    let result = run_locked(conn, backend).await;
    if backend == Backend::Postgres {
        sqlx::query("SELECT 1 FROM pg_advisory_unlock($1)")
            .bind(PG_MIGRATION_LOCK)
            .fetch_one(&mut *conn)
            .await?;
    }
    result
}

async fn run_locked(
    conn: &mut AnyConnection,
    backend: Backend,
) -> Result<MigrationReport, StoreError> {
    sqlx::raw_sql(CREATE_TABLE).execute(&mut *conn).await?;
    let mut applied = Vec::new();
    for migration in MIGRATIONS {
        let sql = match backend {
            Backend::Sqlite => migration.sqlite,
            Backend::Postgres => migration.postgres,
        };
        let checksum = hex_sha256(sql);
        let mut tx = match backend {
            Backend::Sqlite => conn.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => conn.begin().await?,
        };
        let existing: Option<String> =
            sqlx::query_scalar("SELECT checksum FROM rampart_migrations WHERE version = $1")
                .bind(migration.version)
                .fetch_optional(&mut *tx)
                .await?;
        match existing {
            Some(stored) if stored == checksum => continue,
            Some(_) => {
                return Err(StoreError::Migration(format!(
                    "migration {} ({}) was changed after it was applied to this database",
                    migration.version, migration.name
                )))
            }
            None => {}
        }
        sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(|e| {
            StoreError::Migration(format!(
                "migration {} ({}) failed: {e}",
                migration.version, migration.name
            ))
        })?;
        sqlx::query(
            "INSERT INTO rampart_migrations (version, name, checksum, applied_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(migration.version)
        .bind(migration.name)
        .bind(&checksum)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        applied.push(migration.version);
    }
    let row = sqlx::query("SELECT MAX(version) AS v FROM rampart_migrations")
        .fetch_one(&mut *conn)
        .await?;
    let version: i64 = row.try_get::<Option<i64>, _>("v")?.unwrap_or(0);
    if version > LATEST_VERSION {
        return Err(StoreError::Migration(format!(
            "the database is at schema version {version}, newer than this binary's \
             {LATEST_VERSION}; run the newer binary"
        )));
    }
    Ok(MigrationReport {
        backend: backend.name(),
        applied,
        version,
    })
}

pub(crate) async fn applied_version(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT MAX(version) AS v FROM rampart_migrations")
        .fetch_one(conn)
        .await?;
    Ok(row.try_get::<Option<i64>, _>("v")?.unwrap_or(0))
}

fn hex_sha256(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
