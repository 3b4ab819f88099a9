//! Signing keys (access tokens, audit checkpoints): sealed private keys or PKCS#11 token
//! labels, and public JWKs. Platform data: system transactions only.

use sqlx::Row;

use crate::{Store, StoreError, StoredSigningKey};

impl Store {
    /// Keys not retired, oldest first.
    pub async fn signing_keys(&self) -> Result<Vec<StoredSigningKey>, StoreError> {
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(
            "SELECT kid, purpose, scope, alg, sealed_private_key, token_label, public_jwk, \
             created_at FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at, kid",
        )
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(StoredSigningKey {
                    kid: r.try_get("kid")?,
                    purpose: r.try_get("purpose")?,
                    scope: r.try_get("scope")?,
                    alg: r.try_get("alg")?,
                    sealed_private_key: r.try_get("sealed_private_key")?,
                    token_label: r.try_get("token_label")?,
                    public_jwk: r.try_get("public_jwk")?,
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
            "INSERT INTO signing_keys (kid, purpose, scope, alg, sealed_private_key, \
             token_label, public_jwk, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&key.kid)
        .bind(&key.purpose)
        .bind(&key.scope)
        .bind(&key.alg)
        .bind(key.sealed_private_key.clone())
        .bind(key.token_label.clone())
        .bind(key.public_jwk.clone())
        .bind(key.created_at)
        .execute(tx.conn())
        .await?;
        audit.target_id = Some(key.kid.clone());
        tx.audit(crate::PLATFORM_TENANT_ID, &audit).await?;
        tx.commit().await?;
        Ok(())
    }
}
