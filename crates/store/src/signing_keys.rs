//! Access-token signing keys, stored sealed. Platform data: system transactions only.

use sqlx::Row;

use crate::{Store, StoreError, StoredSigningKey};

impl Store {
    /// Keys not retired, oldest first (so the newest, last, signs).
    pub async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(
            "SELECT kid, alg, sealed_private_key, created_at FROM signing_keys \
             WHERE retired_at IS NULL ORDER BY created_at, kid",
        )
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(StoredSigningKey {
                    kid: r.try_get("kid")?,
                    alg: r.try_get("alg")?,
                    sealed_private_key: r.try_get("sealed_private_key")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Stores a new key, audited in the platform tenant's log.
    pub async fn insert_signing_key(
        &self,
        key: &StoredSigningKey,
        mut audit: crate::NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.system_write().await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, sealed_private_key, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(key.sealed_private_key.clone())
        .bind(key.created_at)
        .execute(tx.conn())
        .await?;
        audit.target_id = Some(key.kid.clone());
        tx.audit(crate::PLATFORM_TENANT_ID, &audit).await?;
        tx.commit().await?;
        Ok(())
    }
}
