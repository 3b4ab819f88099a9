//! Tenants: created and listed by platform admins and operators (cross-tenant work).

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{audit_events, new_id, now_ms, NewAuditEvent, Store, StoreError, Tenant, TenantKind};

pub(crate) fn from_row(row: &AnyRow) -> Result<Tenant, StoreError> {
    let kind: String = row.try_get("kind")?;
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        kind: kind.parse().map_err(StoreError::Corrupt)?,
        status: row.try_get("status")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Creates a tenant and records `audit` (its target id is filled in here) in the new
    /// tenant's audit log, in one transaction.
    pub async fn create_tenant(
        &self,
        name: &str,
        kind: TenantKind,
        mut audit: NewAuditEvent,
    ) -> Result<Tenant, StoreError> {
        let tenant = Tenant {
            id: new_id(),
            name: name.to_string(),
            kind,
            status: "active".into(),
            created_at: now_ms(),
        };
        let mut tx = self.system_write().await?;
        sqlx::query(
            "INSERT INTO tenants (id, name, kind, status, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&tenant.id)
        .bind(&tenant.name)
        .bind(tenant.kind.as_str())
        .bind(&tenant.status)
        .bind(tenant.created_at)
        .execute(tx.conn())
        .await?;
        audit_events::create_head(tx.conn(), &tenant.id).await?;
        audit.target_id = Some(tenant.id.clone());
        tx.audit(&tenant.id, &audit).await?;
        tx.commit().await?;
        Ok(tenant)
    }

    pub async fn get_tenant(&self, id: &str) -> Result<Tenant, StoreError> {
        let mut tx = self.system_read().await?;
        let row =
            sqlx::query("SELECT id, name, kind, status, created_at FROM tenants WHERE id = $1")
                .bind(id)
                .fetch_optional(tx.conn())
                .await?;
        tx.commit().await?;
        from_row(&row.ok_or(StoreError::NotFound)?)
    }

    /// Tenants in id (creation) order, `limit` at most, after the cursor `after`.
    pub async fn list_tenants(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Tenant>, StoreError> {
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(
            "SELECT id, name, kind, status, created_at FROM tenants \
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }
}
