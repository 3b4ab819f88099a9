//! Webhook endpoints, and the fan-out of an event to them: one notification of the
//! `webhook` channel per subscribed endpoint, written in the same transaction as the
//! change that caused the event, so an event is sent if and only if its change committed.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::NewNotification;
use crate::{new_id, now_ms, Store, StoreError, TenantScope, Tx};

/// Attempts of a webhook delivery: with the queue's exponential backoff (full jitter,
/// capped at 6 h by default), 25 attempts spread over roughly two to four days.
pub const MAX_ATTEMPTS: i64 = 25;

#[derive(Clone)]
pub struct Endpoint {
    pub id: String,
    pub tenant_id: String,
    pub url: String,
    pub events: Vec<String>,
    pub sealed_secret: Vec<u8>,
    pub created_at: i64,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// A webhook notification as the webhooks API has always shown it: `pending` (queued or
/// failed, more attempts to come), `delivered` or `failed` (dead).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delivery {
    pub id: String,
    pub tenant_id: String,
    pub endpoint_id: String,
    pub event: String,
    pub payment_id: Option<String>,
    pub body: String,
    pub status: String,
    pub attempts: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An event to send to every endpoint of the tenant that subscribed to it.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub event: &'static str,
    /// What the event is about (a payment id), for the log's filters.
    pub payment_id: String,
    /// The JSON body, rendered when the event happened.
    pub body: String,
}

fn endpoint_from(r: &AnyRow) -> Result<Endpoint, StoreError> {
    let events: String = r.try_get("events")?;
    Ok(Endpoint {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        url: r.try_get("url")?,
        events: events.split(',').map(str::to_string).collect(),
        sealed_secret: r.try_get("sealed_secret")?,
        created_at: r.try_get("created_at")?,
    })
}

impl From<super::Notification> for Delivery {
    fn from(n: super::Notification) -> Delivery {
        Delivery {
            status: match n.status.as_str() {
                "sent" => "delivered",
                "dead" => "failed",
                _ => "pending",
            }
            .to_string(),
            id: n.id,
            tenant_id: n.tenant_id,
            endpoint_id: n.recipient,
            event: n.template,
            payment_id: n.subject_id,
            body: n.body.unwrap_or_default(),
            attempts: n.attempts,
            last_status_code: n.last_status_code,
            last_error: n.last_error,
            created_at: n.created_at,
            updated_at: n.updated_at,
        }
    }
}

/// Writes one webhook notification per endpoint of `tenant` subscribed to each of
/// `events`, with their delivery jobs, on `conn` (inside the caller's transaction).
pub(crate) async fn outbox(
    conn: &mut AnyConnection,
    tenant: &str,
    events: &[OutboxEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let rows = sqlx::query(
        "SELECT id, tenant_id, url, events, sealed_secret, created_at FROM webhook_endpoints \
         WHERE tenant_id = $1 AND disabled_at IS NULL",
    )
    .bind(tenant)
    .fetch_all(&mut *conn)
    .await?;
    let endpoints: Vec<Endpoint> = rows.iter().map(endpoint_from).collect::<Result<_, _>>()?;
    for e in events {
        for ep in endpoints
            .iter()
            .filter(|ep| ep.events.iter().any(|x| x == e.event))
        {
            super::insert(
                &mut *conn,
                &NewNotification {
                    id: format!("whd_{}", new_id()),
                    tenant_id: tenant.to_string(),
                    channel: "webhook".into(),
                    recipient: ep.id.clone(),
                    template: e.event.to_string(),
                    locale: "en".into(),
                    sealed_data: None,
                    body: Some(e.body.clone()),
                    subject_id: Some(e.payment_id.clone()),
                    dedupe_key: None,
                    max_attempts: MAX_ATTEMPTS,
                },
            )
            .await?;
        }
    }
    Ok(())
}

impl<S> Tx<S> {
    /// Publishes events of any app to the tenant's subscribed webhook endpoints, inside
    /// this transaction.
    pub async fn publish_webhook_events(
        &mut self,
        tenant: &str,
        events: &[OutboxEvent],
    ) -> Result<(), StoreError> {
        outbox(self.conn(), tenant, events).await
    }
}

impl Store {
    pub async fn create_webhook_endpoint(
        &self,
        scope: &TenantScope,
        endpoint: Endpoint,
        mut audit: crate::NewAuditEvent,
    ) -> Result<Endpoint, StoreError> {
        let mut tx = self.tenant_write(scope).await?;
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, tenant_id, url, events, sealed_secret, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&endpoint.id)
        .bind(scope.tenant_id())
        .bind(&endpoint.url)
        .bind(endpoint.events.join(","))
        .bind(endpoint.sealed_secret.clone())
        .bind(endpoint.created_at)
        .execute(tx.conn())
        .await?;
        audit.target_id = Some(endpoint.id.clone());
        tx.audit(scope.tenant_id(), &audit).await?;
        tx.commit().await?;
        Ok(endpoint)
    }

    pub async fn webhook_endpoints(
        &self,
        scope: &TenantScope,
    ) -> Result<Vec<Endpoint>, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let rows = sqlx::query(
            "SELECT id, tenant_id, url, events, sealed_secret, created_at FROM webhook_endpoints \
             WHERE tenant_id = $1 AND disabled_at IS NULL ORDER BY created_at",
        )
        .bind(scope.tenant_id())
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter().map(endpoint_from).collect()
    }

    /// Stops sending to an endpoint (its deliveries stay, for the log).
    pub async fn disable_webhook_endpoint(
        &self,
        scope: &TenantScope,
        id: &str,
        mut audit: crate::NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_write(scope).await?;
        let done = sqlx::query(
            "UPDATE webhook_endpoints SET disabled_at = $1 WHERE tenant_id = $2 AND id = $3 \
             AND disabled_at IS NULL",
        )
        .bind(now_ms())
        .bind(scope.tenant_id())
        .bind(id)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        audit.target_id = Some(id.to_string());
        tx.audit(scope.tenant_id(), &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The webhook delivery log, newest first, at most `limit`.
    pub async fn webhook_deliveries(
        &self,
        scope: &TenantScope,
        endpoint_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let filter = super::LogFilter {
            channel: Some("webhook".into()),
            status: None,
            recipient: endpoint_id.map(str::to_string),
        };
        Ok(self
            .notifications(scope, &filter, limit)
            .await?
            .into_iter()
            .map(Delivery::from)
            .collect())
    }

    /// Whether the tenant has this delivery (`delivery`) or endpoint, so callers
    /// can answer 404 before checking permissions (another tenant's resources do not
    /// exist).
    pub async fn webhook_resource_exists(
        &self,
        scope: &TenantScope,
        delivery: bool,
        id: &str,
    ) -> Result<bool, StoreError> {
        if delivery {
            return self.notification_exists(scope, id, Some("webhook")).await;
        }
        let mut tx = self.tenant_read(scope).await?;
        let found =
            sqlx::query("SELECT id FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2")
                .bind(scope.tenant_id())
                .bind(id)
                .fetch_optional(tx.conn())
                .await?;
        tx.commit().await?;
        Ok(found.is_some())
    }

    /// An endpoint, for the worker (which acts for no caller); disabled ones too (their
    /// queued deliveries are dropped by the sender).
    pub async fn webhook_endpoint_for_send(
        &self,
        id: &str,
    ) -> Result<(Endpoint, bool), StoreError> {
        let mut tx = self.system_read().await?;
        let row = sqlx::query(
            "SELECT id, tenant_id, url, events, sealed_secret, created_at, disabled_at \
             FROM webhook_endpoints WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        let disabled: Option<i64> = row.try_get("disabled_at")?;
        Ok((endpoint_from(&row)?, disabled.is_some()))
    }
}
