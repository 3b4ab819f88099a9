//! Storage for the keyring: key names, their wrapped versions, and the minimum version
//! still in use. The material is sealed by the crypto crate before it gets here; this
//! module never sees a raw key. Platform data: system transactions only.

use sqlx::Row;

use crate::{now_ms, NewAuditEvent, Store, StoreError, PLATFORM_TENANT_ID};

#[derive(Debug, Clone)]
pub struct StoredKeyName {
    pub name: String,
    pub min_version: i64,
    pub current_version: i64,
    pub versions: i64,
    pub created_at: i64,
    /// When the newest version was made (for rotation schedules).
    pub rotated_at: i64,
}

impl Store {
    /// A key's minimum version and its wrapped versions, oldest first; `None` if the
    /// name does not exist.
    pub async fn keyring_load(
        &self,
        name: &str,
    ) -> Result<Option<(i64, Vec<(i64, Vec<u8>)>)>, StoreError> {
        let mut tx = self.system_read().await?;
        let min: Option<i64> =
            sqlx::query_scalar("SELECT min_version FROM keyring_names WHERE name = $1")
                .bind(name)
                .fetch_optional(tx.conn())
                .await?;
        let Some(min) = min else {
            tx.commit().await?;
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT version, wrapped_material FROM keyring_versions WHERE name = $1 ORDER BY version",
        )
        .bind(name)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        let versions = rows
            .iter()
            .map(|r| Ok((r.try_get("version")?, r.try_get("wrapped_material")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some((min, versions)))
    }

    /// Adds `version` of `name` (creating the name at version 1). Returns false if that
    /// version exists already (another node got there first), which is not an error.
    pub async fn keyring_add_version(
        &self,
        name: &str,
        version: i64,
        wrapped: Vec<u8>,
        mut audit: NewAuditEvent,
    ) -> Result<bool, StoreError> {
        let mut tx = self.system_write().await?;
        let now = now_ms();
        // ON CONFLICT DO NOTHING (both backends): two nodes or requests creating the same
        // name or version at once is a race one of them wins, not an error. A plain
        // insert raised a unique violation on PostgreSQL, where writers run concurrently.
        if version == 1 {
            sqlx::query(
                "INSERT INTO keyring_names (name, min_version, created_at) VALUES ($1, 1, $2) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(now)
            .execute(tx.conn())
            .await?;
        }
        let inserted = sqlx::query(
            "INSERT INTO keyring_versions (name, version, wrapped_material, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (name, version) DO NOTHING",
        )
        .bind(name)
        .bind(version)
        .bind(wrapped)
        .bind(now)
        .execute(tx.conn())
        .await?
        .rows_affected();
        if inserted == 0 {
            return Ok(false);
        }
        audit.target_id = Some(format!("{name}/v{version}"));
        tx.audit(PLATFORM_TENANT_ID, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Retires every version of `name` below `min_version`. Refuses to retire the newest
    /// version (nothing could seal any more).
    pub async fn keyring_retire_below(
        &self,
        name: &str,
        min_version: i64,
        mut audit: NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.system_write().await?;
        let newest: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM keyring_versions WHERE name = $1")
                .bind(name)
                .fetch_one(tx.conn())
                .await?;
        let Some(newest) = newest else {
            return Err(StoreError::NotFound);
        };
        if min_version > newest {
            return Err(StoreError::Constraint {
                constraint: format!(
                    "retiring below {min_version} would retire the newest version {newest}"
                ),
            });
        }
        sqlx::query(
            "UPDATE keyring_names SET min_version = $1 WHERE name = $2 AND min_version < $1",
        )
        .bind(min_version)
        .bind(name)
        .execute(tx.conn())
        .await?;
        audit.target_id = Some(name.to_string());
        tx.audit(PLATFORM_TENANT_ID, &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn keyring_names(&self) -> Result<Vec<StoredKeyName>, StoreError> {
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(
            "SELECT n.name, n.min_version, n.created_at, MAX(v.version) AS current_version, \
             COUNT(v.version) AS versions, MAX(v.created_at) AS rotated_at \
             FROM keyring_names n JOIN keyring_versions v ON v.name = n.name \
             GROUP BY n.name, n.min_version, n.created_at ORDER BY n.name",
        )
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(StoredKeyName {
                    name: r.try_get("name")?,
                    min_version: r.try_get("min_version")?,
                    created_at: r.try_get("created_at")?,
                    current_version: r.try_get("current_version")?,
                    versions: r.try_get("versions")?,
                    rotated_at: r.try_get("rotated_at")?,
                })
            })
            .collect()
    }
}

/// A column holding values sealed by the keyring: what `rampart keys rewrap NAME` walks.
#[derive(Debug, Clone, Copy)]
pub struct SealedColumn {
    /// The keyring key its values are sealed under.
    pub key: &'static str,
    pub table: &'static str,
    pub column: &'static str,
    /// The row's id column (text).
    pub id: &'static str,
}

/// Every sealed column. A feature that seals a new column adds it here, so rewrap and
/// retirement cover it.
pub const SEALED_COLUMNS: &[SealedColumn] = &[
    SealedColumn {
        key: "mfa",
        table: "mfa_factors",
        column: "sealed_secret",
        id: "user_id",
    },
    // Card numbers seal under one key per tenant (`vault-<tenant id>`); `key` here names
    // the prefix, and rewrap/retire match `vault-*` keys against it.
    SealedColumn {
        key: "pii",
        table: "users",
        column: "sealed_phone",
        id: "id",
    },
    SealedColumn {
        key: "vault-",
        table: "vault_tokens",
        column: "sealed_pan",
        id: "token",
    },
    // Observations' true locations and their photos' EXIF prefill (`obs-<tenant id>`).
    SealedColumn {
        key: "obs-",
        table: "observations",
        column: "private_location",
        id: "uuid",
    },
    SealedColumn {
        key: "obs-",
        table: "observation_photos",
        column: "prefill",
        id: "uuid",
    },
    SealedColumn {
        key: "webhook-",
        table: "webhook_endpoints",
        column: "sealed_secret",
        id: "id",
    },
    SealedColumn {
        key: "notify",
        table: "notifications",
        column: "sealed_data",
        id: "id",
    },
];

impl SealedColumn {
    /// Whether values of keyring key `name` live in this column.
    pub fn holds(&self, name: &str) -> bool {
        if self.key.ends_with('-') {
            name.starts_with(self.key)
        } else {
            name == self.key
        }
    }
}

impl Store {
    /// One page of a sealed column, in id order after `after`.
    pub async fn sealed_values(
        &self,
        col: &SealedColumn,
        after: &str,
        limit: i64,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut tx = self.system_read().await?;
        // Table and column names come from SEALED_COLUMNS, never from input.
        let rows = sqlx::query(&format!(
            "SELECT {id} AS id, {column} AS value FROM {table} \
             WHERE {id} > $1 AND {column} IS NOT NULL ORDER BY {id} LIMIT $2",
            id = col.id,
            column = col.column,
            table = col.table
        ))
        .bind(after)
        .bind(limit)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("value")?)))
            .collect()
    }

    /// Replaces a sealed value if it is still `old` (a concurrent change wins).
    pub async fn replace_sealed_value(
        &self,
        col: &SealedColumn,
        id: &str,
        old: &[u8],
        new: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.system_write().await?;
        let changed = sqlx::query(&format!(
            "UPDATE {table} SET {column} = $1 WHERE {id} = $2 AND {column} = $3",
            id = col.id,
            column = col.column,
            table = col.table
        ))
        .bind(new)
        .bind(id)
        .bind(old.to_vec())
        .execute(tx.conn())
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(changed)
    }
}
