//! API keys: long-lived bearer secrets of one tenant, with scopes. Only a digest of the
//! secret is stored; the secret is shown once, when the key is made.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{new_id, now_ms, NewAuditEvent, Store, StoreError, TenantScope};

/// `last_used_at` is written at most this often per key, so a busy key does not turn
/// every request into a write.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

#[derive(Debug, Clone, serde::Serialize)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    /// The first characters of the secret, for display.
    pub prefix: String,
    pub secret_hash: String,
    pub scopes: Vec<String>,
    pub created_by: Option<String>,
    pub expires_at: Option<i64>,
}

const COLUMNS: &str = "id, tenant_id, name, prefix, scopes, created_by, created_at, expires_at, \
     last_used_at, revoked_at";

fn from_row(r: &AnyRow) -> Result<ApiKey, StoreError> {
    let scopes: String = r.try_get("scopes")?;
    Ok(ApiKey {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        name: r.try_get("name")?,
        prefix: r.try_get("prefix")?,
        scopes: scopes.split_whitespace().map(str::to_string).collect(),
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        last_used_at: r.try_get("last_used_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

impl Store {
    /// Creates a key in the scope's tenant, with its audit event.
    /// `notices` (the creator's security notice) are written in the same transaction.
    pub async fn create_api_key(
        &self,
        scope: &TenantScope,
        new: NewApiKey,
        notices: &[crate::notify::NewNotification],
        audit: NewAuditEvent,
    ) -> Result<ApiKey, StoreError> {
        let mut tx = self.tenant_write(scope).await?;
        let key = insert(&mut tx, scope.tenant_id(), new, audit).await?;
        for n in notices {
            crate::notify::insert(tx.conn(), n).await?;
        }
        tx.commit().await?;
        Ok(key)
    }

    /// Creates a key in any tenant: the operator's `rampart api-keys create`.
    pub async fn create_api_key_for_tenant(
        &self,
        tenant_id: &str,
        new: NewApiKey,
        audit: NewAuditEvent,
    ) -> Result<ApiKey, StoreError> {
        let mut tx = self.system_write().await?;
        let key = insert(&mut tx, tenant_id, new, audit).await?;
        tx.commit().await?;
        Ok(key)
    }

    /// The tenant's keys in id (creation) order, after `after` (the last id of the
    /// previous page).
    pub async fn list_api_keys(
        &self,
        scope: &TenantScope,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ApiKey>, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(tx.tenant_id().to_string())
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }

    /// A key of the scope's tenant; `NotFound` for another tenant's.
    pub async fn get_api_key(&self, scope: &TenantScope, id: &str) -> Result<ApiKey, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM api_keys WHERE id = $1 AND tenant_id = $2"
        ))
        .bind(id)
        .bind(tx.tenant_id().to_string())
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        from_row(&row.ok_or(StoreError::NotFound)?)
    }

    /// Revokes a key of the scope's tenant at once. `NotFound` for another tenant's key.
    pub async fn revoke_api_key(
        &self,
        scope: &TenantScope,
        id: &str,
        mut audit: NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_write(scope).await?;
        let exists: Option<Option<i64>> =
            sqlx::query_scalar("SELECT revoked_at FROM api_keys WHERE id = $1 AND tenant_id = $2")
                .bind(id)
                .bind(tx.tenant_id().to_string())
                .fetch_optional(tx.conn())
                .await?;
        match exists {
            None => return Err(StoreError::NotFound),
            Some(Some(_)) => return Ok(()),
            Some(None) => {}
        }
        sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND tenant_id = $3")
            .bind(now_ms())
            .bind(id)
            .bind(tx.tenant_id().to_string())
            .execute(tx.conn())
            .await?;
        audit.target_id = Some(id.to_string());
        tx.audit(scope.tenant_id(), &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live key whose secret has this digest, and the tenant scope it acts in. Revoked
    /// and expired keys are `None`. Records the use (at most once a minute per key).
    pub async fn authenticate_api_key(
        &self,
        secret_hash: &str,
    ) -> Result<Option<(TenantScope, ApiKey)>, StoreError> {
        let now = now_ms();
        let row = {
            let mut tx = self.system_read().await?;
            let row = sqlx::query(&format!(
                "SELECT {COLUMNS} FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > $2)"
            ))
            .bind(secret_hash)
            .bind(now)
            .fetch_optional(tx.conn())
            .await?;
            tx.commit().await?;
            row
        };
        let Some(row) = row else { return Ok(None) };
        let key = from_row(&row)?;
        if key
            .last_used_at
            .is_none_or(|t| now - t >= LAST_USED_RESOLUTION_MS)
        {
            let scope = TenantScope::mint(key.tenant_id.clone());
            let mut tx = self.tenant_write(&scope).await?;
            sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND tenant_id = $3")
                .bind(now)
                .bind(&key.id)
                .bind(&key.tenant_id)
                .execute(tx.conn())
                .await?;
            tx.commit().await?;
        }
        Ok(Some((TenantScope::mint(key.tenant_id.clone()), key)))
    }

    /// Why a key secret was refused, for its security event: `(key id, tenant id,
    /// "revoked" | "expired")`, or `None` for a secret that names no key.
    pub async fn rejected_api_key(
        &self,
        secret_hash: &str,
    ) -> Result<Option<(String, String, &'static str)>, StoreError> {
        let mut tx = self.system_read().await?;
        let row =
            sqlx::query("SELECT id, tenant_id, revoked_at FROM api_keys WHERE secret_hash = $1")
                .bind(secret_hash)
                .fetch_optional(tx.conn())
                .await?;
        tx.commit().await?;
        row.map(|r| {
            let revoked: Option<i64> = r.try_get("revoked_at")?;
            let reason = if revoked.is_some() {
                "revoked"
            } else {
                "expired"
            };
            Ok((r.try_get("id")?, r.try_get("tenant_id")?, reason))
        })
        .transpose()
    }
}

async fn insert<S>(
    tx: &mut crate::Tx<S>,
    tenant_id: &str,
    new: NewApiKey,
    mut audit: NewAuditEvent,
) -> Result<ApiKey, StoreError> {
    let key = ApiKey {
        id: new_id(),
        tenant_id: tenant_id.to_string(),
        name: new.name,
        prefix: new.prefix,
        scopes: new.scopes,
        created_by: new.created_by,
        created_at: now_ms(),
        expires_at: new.expires_at,
        last_used_at: None,
        revoked_at: None,
    };
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, name, prefix, secret_hash, scopes, created_by, \
         created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&key.id)
    .bind(&key.tenant_id)
    .bind(&key.name)
    .bind(&key.prefix)
    .bind(&new.secret_hash)
    .bind(key.scopes.join(" "))
    .bind(key.created_by.clone())
    .bind(key.created_at)
    .bind(key.expires_at)
    .execute(tx.conn())
    .await?;
    audit.target_id = Some(key.id.clone());
    tx.audit(tenant_id, &audit).await?;
    Ok(key)
}
