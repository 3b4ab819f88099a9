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
    /// Set while the endpoint is disabled (a 410 Gone from it, or its tenant paused it):
    /// no new deliveries, queued ones not sent.
    pub suspended_at: Option<i64>,
    /// Why it is disabled (no secret: a status, or the tenant's choice).
    pub suspended_reason: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("suspended_at", &self.suspended_at)
            .finish_non_exhaustive()
    }
}

/// What [`Store::update_webhook_endpoint`] changes; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// `Some(None)`: enable; `Some(Some(reason))`: disable for that reason.
    pub suspend: Option<Option<String>>,
}

/// Endpoints a tenant may have (Stripe allows 16): enough for every consumer of its
/// events, few enough that the endpoint list is always one page.
pub const MAX_ENDPOINTS_PER_TENANT: i64 = 16;

/// The `Conflict` constraint name a creation past [`MAX_ENDPOINTS_PER_TENANT`] fails with.
pub const ENDPOINT_LIMIT: &str = "webhook_endpoints_per_tenant";

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
        suspended_at: r.try_get("suspended_at")?,
        suspended_reason: r.try_get("suspended_reason")?,
    })
}

const ENDPOINT_COLUMNS: &str =
    "id, tenant_id, url, events, sealed_secret, created_at, suspended_at, suspended_reason";

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
    let rows = sqlx::query(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
         WHERE tenant_id = $1 AND disabled_at IS NULL AND suspended_at IS NULL"
    ))
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
        // Counted in the writing transaction; on PostgreSQL two creations racing past the
        // count can overshoot by one, which the limit tolerates (it keeps lists short, it
        // is not a quota).
        let count: i64 = sqlx::query("SELECT COUNT(*) FROM webhook_endpoints WHERE tenant_id = $1")
            .bind(scope.tenant_id())
            .fetch_one(tx.conn())
            .await?
            .try_get(0)?;
        if count >= MAX_ENDPOINTS_PER_TENANT {
            return Err(StoreError::Conflict {
                constraint: ENDPOINT_LIMIT.into(),
            });
        }
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
        let rows = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
             WHERE tenant_id = $1 AND disabled_at IS NULL ORDER BY created_at"
        ))
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

    /// Changes an endpoint's URL, events or whether it is enabled (`suspend`: `Some(None)`
    /// re-enables, `Some(Some(reason))` disables). A deleted endpoint is not found.
    pub async fn update_webhook_endpoint(
        &self,
        scope: &TenantScope,
        id: &str,
        change: EndpointChange,
        mut audit: crate::NewAuditEvent,
    ) -> Result<Endpoint, StoreError> {
        let mut tx = self.tenant_write(scope).await?;
        let row = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
             WHERE tenant_id = $1 AND id = $2 AND disabled_at IS NULL"
        ))
        .bind(scope.tenant_id())
        .bind(id)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound)?;
        let mut e = endpoint_from(&row)?;
        if let Some(url) = change.url {
            e.url = url;
        }
        if let Some(events) = change.events {
            e.events = events;
        }
        match change.suspend {
            Some(None) => {
                e.suspended_at = None;
                e.suspended_reason = None;
            }
            Some(Some(reason)) => {
                e.suspended_at = Some(e.suspended_at.unwrap_or_else(now_ms));
                e.suspended_reason = Some(reason);
            }
            None => {}
        }
        sqlx::query(
            "UPDATE webhook_endpoints SET url = $1, events = $2, suspended_at = $3, \
             suspended_reason = $4 WHERE tenant_id = $5 AND id = $6",
        )
        .bind(&e.url)
        .bind(e.events.join(","))
        .bind(e.suspended_at)
        .bind(e.suspended_reason.clone())
        .bind(scope.tenant_id())
        .bind(id)
        .execute(tx.conn())
        .await?;
        audit.target_id = Some(id.to_string());
        tx.audit(scope.tenant_id(), &audit).await?;
        tx.commit().await?;
        Ok(e)
    }

    /// Disables an endpoint for the worker, which acts for no caller (the endpoint
    /// answered 410 Gone), audited as Rampart's own act. `false` when it already was
    /// disabled or deleted (nothing written).
    pub async fn suspend_webhook_endpoint(
        &self,
        id: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.system_write().await?;
        let Some(row) = sqlx::query(
            "SELECT tenant_id FROM webhook_endpoints WHERE id = $1 AND disabled_at IS NULL \
             AND suspended_at IS NULL",
        )
        .bind(id)
        .fetch_optional(tx.conn())
        .await?
        else {
            tx.commit().await?;
            return Ok(false);
        };
        let tenant: String = row.try_get("tenant_id")?;
        sqlx::query(
            "UPDATE webhook_endpoints SET suspended_at = $1, suspended_reason = $2 WHERE id = $3",
        )
        .bind(now_ms())
        .bind(reason)
        .bind(id)
        .execute(tx.conn())
        .await?;
        let audit = crate::NewAuditEvent {
            actor: crate::Actor::System,
            action: "webhook_endpoint.disable".into(),
            target_type: "webhook_endpoint".into(),
            target_id: Some(id.to_string()),
            outcome: "success".into(),
            meta: Default::default(),
            changes: serde_json::json!({ "reason": reason }),
        };
        tx.audit(&tenant, &audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The webhook delivery log, newest first, at most `limit`.
    pub async fn webhook_deliveries(
        &self,
        scope: &TenantScope,
        endpoint_id: Option<&str>,
        before: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let filter = super::LogFilter {
            channel: Some("webhook".into()),
            status: None,
            recipient: endpoint_id.map(str::to_string),
            before,
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
        let row = sqlx::query(&format!(
            "SELECT {ENDPOINT_COLUMNS}, disabled_at FROM webhook_endpoints WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        let disabled: Option<i64> = row.try_get("disabled_at")?;
        Ok((endpoint_from(&row)?, disabled.is_some()))
    }
}
