//! Stored card tokens. The card number arrives here sealed; this module never sees it.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{now_ms, NewAuditEvent, Store, StoreError, TenantScope};

#[derive(Clone)]
pub struct VaultToken {
    pub token: String,
    pub tenant_id: String,
    pub sealed_pan: Vec<u8>,
    pub bin: String,
    pub last4: String,
    pub brand: String,
    pub fingerprint: String,
    pub exp_month: i64,
    pub exp_year: i64,
    pub created_at: i64,
}

impl std::fmt::Debug for VaultToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultToken")
            .field("token", &self.token)
            .field("last4", &self.last4)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str =
    "token, tenant_id, sealed_pan, bin, last4, brand, fingerprint, exp_month, exp_year, created_at";

fn from_row(r: &AnyRow) -> Result<VaultToken, StoreError> {
    Ok(VaultToken {
        token: r.try_get("token")?,
        tenant_id: r.try_get("tenant_id")?,
        sealed_pan: r.try_get("sealed_pan")?,
        bin: r.try_get("bin")?,
        last4: r.try_get("last4")?,
        brand: r.try_get("brand")?,
        fingerprint: r.try_get("fingerprint")?,
        exp_month: r.try_get("exp_month")?,
        exp_year: r.try_get("exp_year")?,
        created_at: r.try_get("created_at")?,
    })
}

impl Store {
    /// Stores a token of the scope's tenant, with its audit event.
    pub async fn insert_vault_token(
        &self,
        scope: &TenantScope,
        mut token: VaultToken,
        mut audit: NewAuditEvent,
    ) -> Result<VaultToken, StoreError> {
        token.tenant_id = scope.tenant_id().to_string();
        token.created_at = now_ms();
        let mut tx = self.tenant_write(scope).await?;
        sqlx::query(&format!(
            "INSERT INTO vault_tokens ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&token.token)
        .bind(&token.tenant_id)
        .bind(token.sealed_pan.clone())
        .bind(&token.bin)
        .bind(&token.last4)
        .bind(&token.brand)
        .bind(&token.fingerprint)
        .bind(token.exp_month)
        .bind(token.exp_year)
        .bind(token.created_at)
        .execute(tx.conn())
        .await?;
        audit.target_id = Some(token.token.clone());
        tx.audit(scope.tenant_id(), &audit).await?;
        tx.commit().await?;
        Ok(token)
    }

    /// A token of the scope's tenant; another tenant's token is `NotFound`.
    pub async fn vault_token(
        &self,
        scope: &TenantScope,
        token: &str,
    ) -> Result<VaultToken, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM vault_tokens WHERE tenant_id = $1 AND token = $2"
        ))
        .bind(tx.tenant_id().to_string())
        .bind(token)
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        from_row(&row.ok_or(StoreError::NotFound)?)
    }

    /// Records a detokenization in the audit log (it changes nothing, but who saw a card
    /// number is exactly what an auditor asks).
    pub async fn audit_in_tenant(
        &self,
        scope: &TenantScope,
        audit: NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_write(scope).await?;
        tx.audit(scope.tenant_id(), &audit).await?;
        tx.commit().await?;
        Ok(())
    }
}
