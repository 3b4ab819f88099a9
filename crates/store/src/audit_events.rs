//! Appending audit events. Called by the other repository functions inside the
//! transaction of the change they record, so the event and the change commit together.

use sqlx::AnyConnection;

use crate::{new_id, now_ms, NewAuditEvent, StoreError};

pub(crate) async fn append(
    conn: &mut AnyConnection,
    tenant_id: &str,
    event: &NewAuditEvent,
) -> Result<String, StoreError> {
    let id = new_id();
    sqlx::query(
        "INSERT INTO audit_events (id, occurred_at, tenant_id, actor_type, actor_id, action, \
         target_type, target_id, outcome, request_id, source_ip, user_agent, changes) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&id)
    .bind(now_ms())
    .bind(tenant_id)
    .bind(event.actor.kind())
    .bind(event.actor.id().map(str::to_string))
    .bind(&event.action)
    .bind(&event.target_type)
    .bind(event.target_id.clone())
    .bind(&event.outcome)
    .bind(event.meta.request_id.clone())
    .bind(event.meta.source_ip.clone())
    .bind(event.meta.user_agent.clone())
    .bind(event.changes.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(id)
}

/// One stored event, as the audit API and tests read it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEventRow {
    pub id: String,
    pub occurred_at: i64,
    pub tenant_id: String,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub outcome: String,
    pub request_id: Option<String>,
    pub changes: serde_json::Value,
}

impl crate::Store {
    /// The newest events of a tenant, newest first.
    pub async fn recent_audit_events(
        &self,
        scope: &crate::TenantScope,
        limit: i64,
    ) -> Result<Vec<AuditEventRow>, StoreError> {
        use sqlx::Row;
        let mut tx = self.tenant_read(scope).await?;
        let rows = sqlx::query(
            "SELECT id, occurred_at, tenant_id, actor_type, actor_id, action, target_type, \
             target_id, outcome, request_id, changes FROM audit_events \
             WHERE tenant_id = $1 ORDER BY occurred_at DESC, id DESC LIMIT $2",
        )
        .bind(tx.tenant_id().to_string())
        .bind(limit)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                let changes: String = r.try_get("changes")?;
                Ok(AuditEventRow {
                    id: r.try_get("id")?,
                    occurred_at: r.try_get("occurred_at")?,
                    tenant_id: r.try_get("tenant_id")?,
                    actor_type: r.try_get("actor_type")?,
                    actor_id: r.try_get("actor_id")?,
                    action: r.try_get("action")?,
                    target_type: r.try_get("target_type")?,
                    target_id: r.try_get("target_id")?,
                    outcome: r.try_get("outcome")?,
                    request_id: r.try_get("request_id")?,
                    changes: serde_json::from_str(&changes)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                })
            })
            .collect()
    }
}
