//! Webhook endpoints and deliveries, and the outbox: an event's deliveries and their jobs
//! are written in the same transaction as the change that caused the event, so an event
//! is sent if and only if its change committed.

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::jobs::NewJob;
use crate::{new_id, now_ms, Store, StoreError, TenantScope};

/// The job kind and queue that deliver one webhook.
pub const DELIVER_KIND: &str = "webhook.deliver";
pub const QUEUE: &str = "webhooks";
/// With the queue's exponential backoff (full jitter, capped at 6 h by default), 25
/// attempts spread over roughly two to four days.
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

const DELIVERY_COLUMNS: &str = "id, tenant_id, endpoint_id, event, payment_id, body, status, \
    attempts, last_status_code, last_error, created_at, updated_at";

fn delivery_from(r: &AnyRow) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        endpoint_id: r.try_get("endpoint_id")?,
        event: r.try_get("event")?,
        payment_id: r.try_get("payment_id")?,
        body: r.try_get("body")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        last_status_code: r.try_get("last_status_code")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn deliver_job(delivery_id: &str, tenant_id: &str) -> NewJob {
    NewJob {
        queue: QUEUE.to_string(),
        kind: DELIVER_KIND.to_string(),
        payload: serde_json::json!({ "delivery_id": delivery_id, "tenant_id": tenant_id })
            .to_string(),
        priority: 0,
        run_at: now_ms(),
        max_attempts: MAX_ATTEMPTS,
        unique_key: Some(delivery_id.to_string()),
    }
}

/// Writes the deliveries of `events` and their jobs on `conn` (inside the caller's
/// transaction).
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
    let now = now_ms();
    for e in events {
        for ep in endpoints
            .iter()
            .filter(|ep| ep.events.iter().any(|x| x == e.event))
        {
            let id = format!("whd_{}", new_id());
            sqlx::query(&format!(
                "INSERT INTO webhook_deliveries ({DELIVERY_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, NULL, NULL, $7, $7)"
            ))
            .bind(&id)
            .bind(tenant)
            .bind(&ep.id)
            .bind(e.event)
            .bind(&e.payment_id)
            .bind(&e.body)
            .bind(now)
            .execute(&mut *conn)
            .await?;
            crate::jobs::insert(&mut *conn, &deliver_job(&id, tenant)).await?;
        }
    }
    Ok(())
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

    /// Newest first, at most `limit`.
    pub async fn webhook_deliveries(
        &self,
        scope: &TenantScope,
        endpoint_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = $1 \
             AND ($2 = '' OR endpoint_id = $2) ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(scope.tenant_id())
        .bind(endpoint_id.unwrap_or(""))
        .bind(limit)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter().map(delivery_from).collect()
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
        let table = if delivery {
            "webhook_deliveries"
        } else {
            "webhook_endpoints"
        };
        let mut tx = self.tenant_read(scope).await?;
        let found = sqlx::query(&format!(
            "SELECT id FROM {table} WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(scope.tenant_id())
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(found.is_some())
    }

    /// Sends a delivery again (a manual resend), whatever its state.
    pub async fn resend_webhook(
        &self,
        scope: &TenantScope,
        id: &str,
        mut audit: crate::NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_write(scope).await?;
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', updated_at = $1 \
             WHERE tenant_id = $2 AND id = $3",
        )
        .bind(now_ms())
        .bind(scope.tenant_id())
        .bind(id)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        // A job still queued for this delivery (unique key) makes this a no-op.
        crate::jobs::insert(tx.conn(), &deliver_job(id, scope.tenant_id())).await?;
        audit.target_id = Some(id.to_string());
        tx.audit(scope.tenant_id(), &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A delivery and its endpoint, for the worker (which acts for no caller: the job
    /// payload names the tenant).
    pub async fn webhook_delivery_for_send(
        &self,
        delivery_id: &str,
    ) -> Result<(Delivery, Endpoint), StoreError> {
        let mut tx = self.system_read().await?;
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1"
        ))
        .bind(delivery_id)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound)?;
        let delivery = delivery_from(&row)?;
        let row = sqlx::query(
            "SELECT id, tenant_id, url, events, sealed_secret, created_at FROM webhook_endpoints \
             WHERE id = $1",
        )
        .bind(&delivery.endpoint_id)
        .fetch_one(tx.conn())
        .await?;
        tx.commit().await?;
        Ok((delivery, endpoint_from(&row)?))
    }

    /// Records one attempt: `delivered`, or still `pending` (or `failed` when it was the
    /// last attempt).
    pub async fn record_webhook_attempt(
        &self,
        delivery_id: &str,
        status: &str,
        status_code: Option<i64>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.system_write().await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, \
             last_status_code = $2, last_error = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(status)
        .bind(status_code)
        .bind(error.map(|e| e.chars().take(300).collect::<String>()))
        .bind(now_ms())
        .bind(delivery_id)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
