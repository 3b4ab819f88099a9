//! The notification outbox (`notifications`): one table for every channel (e-mail, SMS,
//! webhooks). A notification and the job that delivers it are written inside the
//! transaction of the change that caused it, so it exists if and only if that change
//! committed; the job queue then delivers it at least once, and the row is its delivery
//! log (status, attempts, last status code and error).
//!
//! The runtime that renders, signs and sends is `crates/notify`; this module owns only
//! the SQL. `webhooks` holds the endpoints and the fan-out of an event to them.

pub mod webhooks;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::jobs::NewJob;
use crate::{now_ms, Store, StoreError, TenantScope, Tx};

/// The job kind and queue that deliver one notification.
pub const DELIVER_KIND: &str = "notify.deliver";
pub const QUEUE: &str = "notify";

/// A notification to write. `sealed_data` is the template data already sealed by the
/// caller (crypto lives above the store).
#[derive(Clone)]
pub struct NewNotification {
    pub id: String,
    pub tenant_id: String,
    pub channel: String,
    pub recipient: String,
    pub template: String,
    pub locale: String,
    pub sealed_data: Option<Vec<u8>>,
    pub body: Option<String>,
    pub subject_id: Option<String>,
    pub dedupe_key: Option<String>,
    /// Attempts of its delivery job before it is dead.
    pub max_attempts: i64,
}

impl std::fmt::Debug for NewNotification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewNotification")
            .field("id", &self.id)
            .field("channel", &self.channel)
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

/// One stored notification: what was asked and what happened to it.
#[derive(Clone, serde::Serialize)]
pub struct Notification {
    pub id: String,
    pub tenant_id: String,
    pub channel: String,
    /// An e-mail address, a user id (SMS) or a webhook endpoint id.
    pub recipient: String,
    pub template: String,
    pub locale: String,
    #[serde(skip)]
    pub sealed_data: Option<Vec<u8>>,
    #[serde(skip)]
    pub body: Option<String>,
    pub subject_id: Option<String>,
    #[serde(skip)]
    pub dedupe_key: Option<String>,
    /// `queued`, `sent`, `failed` (will be retried) or `dead`.
    pub status: String,
    pub attempts: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub sent_at: Option<i64>,
}

impl std::fmt::Debug for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notification")
            .field("id", &self.id)
            .field("channel", &self.channel)
            .field("template", &self.template)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

pub(crate) const COLUMNS: &str = "id, tenant_id, channel, recipient, template, locale, \
    sealed_data, body, subject_id, dedupe_key, status, attempts, last_status_code, \
    last_error, created_at, updated_at, sent_at";

pub(crate) fn from_row(r: &AnyRow) -> Result<Notification, StoreError> {
    Ok(Notification {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        channel: r.try_get("channel")?,
        recipient: r.try_get("recipient")?,
        template: r.try_get("template")?,
        locale: r.try_get("locale")?,
        sealed_data: r.try_get("sealed_data")?,
        body: r.try_get("body")?,
        subject_id: r.try_get("subject_id")?,
        dedupe_key: r.try_get("dedupe_key")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        last_status_code: r.try_get("last_status_code")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        sent_at: r.try_get("sent_at")?,
    })
}

pub(crate) fn deliver_job(id: &str, tenant_id: &str, max_attempts: i64) -> NewJob {
    NewJob {
        queue: QUEUE.to_string(),
        kind: DELIVER_KIND.to_string(),
        payload: serde_json::json!({ "notification_id": id, "tenant_id": tenant_id }).to_string(),
        priority: 0,
        run_at: now_ms(),
        max_attempts,
        unique_key: Some(id.to_string()),
    }
}

/// Writes `n` and its delivery job on `conn` (inside the caller's transaction). `None`
/// when the tenant already has a notification with the same dedupe key: nothing is
/// written, and the caller's transaction goes on (`ON CONFLICT DO NOTHING`, so a
/// PostgreSQL transaction is not aborted).
pub(crate) async fn insert(
    conn: &mut AnyConnection,
    n: &NewNotification,
) -> Result<Option<String>, StoreError> {
    let now = now_ms();
    let id: Option<String> = sqlx::query_scalar(&format!(
        "INSERT INTO notifications ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
         'queued', 0, NULL, NULL, $11, $11, NULL) ON CONFLICT DO NOTHING RETURNING id"
    ))
    .bind(&n.id)
    .bind(&n.tenant_id)
    .bind(&n.channel)
    .bind(&n.recipient)
    .bind(&n.template)
    .bind(&n.locale)
    .bind(n.sealed_data.clone())
    .bind(n.body.clone())
    .bind(n.subject_id.clone())
    .bind(n.dedupe_key.clone())
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = &id {
        crate::jobs::insert(&mut *conn, &deliver_job(id, &n.tenant_id, n.max_attempts)).await?;
    }
    Ok(id)
}

impl<S> Tx<S> {
    /// Writes a notification and its delivery job in this transaction (the outbox).
    /// `None`: a notification with the same dedupe key exists; nothing was written.
    pub async fn insert_notification(
        &mut self,
        n: &NewNotification,
    ) -> Result<Option<String>, StoreError> {
        insert(self.conn(), n).await
    }
}

impl Store {
    /// Writes one notification and its job in a transaction of its own (for work that has
    /// no other change to commit with it: an operator's message, benchmarks). `None`: its
    /// dedupe key was used.
    pub async fn enqueue_notification(
        &self,
        n: &NewNotification,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.system_write().await?;
        let id = insert(tx.conn(), n).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Publishes webhook events in a transaction of their own (see
    /// [`Tx::publish_webhook_events`] to publish with a change).
    pub async fn publish_webhook_events(
        &self,
        tenant: &str,
        events: &[webhooks::OutboxEvent],
    ) -> Result<(), StoreError> {
        let mut tx = self.system_write().await?;
        webhooks::outbox(tx.conn(), tenant, events).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Filters of the delivery log.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub channel: Option<String>,
    pub status: Option<String>,
    /// webhook: one endpoint.
    pub recipient: Option<String>,
    /// Only rows created before this `(created_at, id)`: the last row of the previous
    /// page.
    pub before: Option<(i64, String)>,
}

impl Store {
    /// A notification, for the worker (which acts for no caller: the job names it).
    pub async fn notification_for_send(&self, id: &str) -> Result<Notification, StoreError> {
        let mut tx = self.system_read().await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(tx.conn())
        .await?
        .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        from_row(&row)
    }

    /// Records one attempt: `sent`, `failed` (another attempt follows) or `dead`.
    /// `last_error` is cut to 300 characters; callers put no secret in it.
    pub async fn record_notification_attempt(
        &self,
        id: &str,
        status: &str,
        status_code: Option<i64>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.system_write().await?;
        sqlx::query(
            "UPDATE notifications SET status = $1, attempts = attempts + 1, \
             last_status_code = $2, last_error = $3, updated_at = $4, \
             sent_at = CASE WHEN $1 = 'sent' THEN $4 ELSE sent_at END WHERE id = $5",
        )
        .bind(status)
        .bind(status_code)
        .bind(error.map(|e| e.chars().take(300).collect::<String>()))
        .bind(now)
        .bind(id)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// What an SMS gateway reported about a message it accepted: `delivered`, or `dead`
    /// with `error` (the handset never got it). Only a message the gateway accepted
    /// (`sent`) moves; `false` when there is no such SMS or it is not `sent`.
    pub async fn record_sms_status(
        &self,
        id: &str,
        delivered: bool,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.system_write().await?;
        let n = sqlx::query(
            "UPDATE notifications SET status = $1, last_error = $2, updated_at = $3 \
             WHERE id = $4 AND channel = 'sms' AND status = 'sent'",
        )
        .bind(if delivered { "delivered" } else { "dead" })
        .bind(error.map(|e| e.chars().take(300).collect::<String>()))
        .bind(now_ms())
        .bind(id)
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// The tenant's delivery log, newest first, at most `limit`.
    pub async fn notifications(
        &self,
        scope: &TenantScope,
        filter: &LogFilter,
        limit: i64,
    ) -> Result<Vec<Notification>, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE tenant_id = $1 \
             AND ($2 = '' OR channel = $2) AND ($3 = '' OR status = $3) \
             AND ($4 = '' OR recipient = $4) \
             AND (created_at < $5 OR (created_at = $5 AND ($6 = '' OR id < $6))) \
             ORDER BY created_at DESC, id DESC LIMIT $7"
        ))
        .bind(scope.tenant_id())
        .bind(filter.channel.as_deref().unwrap_or(""))
        .bind(filter.status.as_deref().unwrap_or(""))
        .bind(filter.recipient.as_deref().unwrap_or(""))
        .bind(filter.before.as_ref().map_or(i64::MAX, |b| b.0))
        .bind(filter.before.as_ref().map_or("", |b| b.1.as_str()))
        .bind(limit)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }

    /// Whether the tenant has this notification (of `channel`, when given), so callers
    /// answer 404 before checking permissions.
    pub async fn notification_exists(
        &self,
        scope: &TenantScope,
        id: &str,
        channel: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let found = sqlx::query(
            "SELECT id FROM notifications WHERE tenant_id = $1 AND id = $2 \
             AND ($3 = '' OR channel = $3)",
        )
        .bind(scope.tenant_id())
        .bind(id)
        .bind(channel.unwrap_or(""))
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(found.is_some())
    }

    /// The channel of one of the tenant's notifications (`None`: it has no such one).
    pub async fn notification_channel(
        &self,
        scope: &TenantScope,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let channel: Option<String> = sqlx::query_scalar(
            "SELECT channel FROM notifications WHERE tenant_id = $1 AND id = $2",
        )
        .bind(scope.tenant_id())
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(channel)
    }

    /// Sends a notification again (a manual resend), whatever its state, with a fresh
    /// job of `max_attempts`. A job still queued for it (unique key) makes the enqueue a
    /// no-op.
    pub async fn resend_notification(
        &self,
        scope: &TenantScope,
        id: &str,
        max_attempts: i64,
        mut audit: crate::NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_write(scope).await?;
        let done = sqlx::query(
            "UPDATE notifications SET status = 'queued', updated_at = $1 \
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
        crate::jobs::insert(tx.conn(), &deliver_job(id, scope.tenant_id(), max_attempts)).await?;
        audit.target_id = Some(id.to_string());
        tx.audit(scope.tenant_id(), &audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A user's sealed phone number for an SMS, for the worker (which acts for no
    /// caller). `None`: the user has none (or no longer exists).
    pub async fn sealed_phone_for_send(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut tx = self.system_read().await?;
        let row = sqlx::query("SELECT sealed_phone FROM users WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(user_id)
            .fetch_optional(tx.conn())
            .await?;
        tx.commit().await?;
        match row {
            Some(r) => Ok(r.try_get("sealed_phone")?),
            None => Ok(None),
        }
    }

    /// How many notifications of `channel` are in each status (benchmarks and tests).
    pub async fn notification_status_counts(
        &self,
        channel: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM notifications WHERE channel = $1 GROUP BY status",
        )
        .bind(channel)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }
}
