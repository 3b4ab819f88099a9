//! Detection's tables: `security_events` (every node's security events, in one place),
//! `alerts` (what the rules raised) and `detection_state` (the detector's cursor and
//! lease). The engine is `crates/detection`; the loop that feeds it is the `rampart`
//! crate's `detect` module; this module owns only the SQL.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{new_id, now_ms, NewAuditEvent, Store, StoreError, TenantScope, PLATFORM_TENANT_ID};

/// A security event to store (the security log's JSON, split into columns).
#[derive(Debug, Clone)]
pub struct NewSecurityEvent {
    pub occurred_at: i64,
    pub event: String,
    pub severity: String,
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    pub api_key_id: Option<String>,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
    /// JSON.
    pub detail: String,
}

/// A stored security event.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SecurityEventRow {
    pub seq: i64,
    pub id: String,
    pub occurred_at: i64,
    pub event: String,
    pub severity: String,
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    pub api_key_id: Option<String>,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
    pub detail: String,
}

const EVENT_COLUMNS: &str = "seq, id, occurred_at, event, severity, tenant_id, user_id, \
                             api_key_id, source_ip, request_id, detail";

fn event_row(r: &AnyRow) -> Result<SecurityEventRow, StoreError> {
    Ok(SecurityEventRow {
        seq: r.try_get("seq")?,
        id: r.try_get("id")?,
        occurred_at: r.try_get("occurred_at")?,
        event: r.try_get("event")?,
        severity: r.try_get("severity")?,
        tenant_id: r.try_get("tenant_id")?,
        user_id: r.try_get("user_id")?,
        api_key_id: r.try_get("api_key_id")?,
        source_ip: r.try_get("source_ip")?,
        request_id: r.try_get("request_id")?,
        detail: r.try_get("detail")?,
    })
}

/// An alert as the detector raised it, before it is stored or merged.
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// The id it gets if it is new (`alr_…`; the caller makes it, so the notifications
    /// it prepares can name it).
    pub id: String,
    pub rule_id: String,
    pub title: String,
    pub level: String,
    pub tenant_id: Option<String>,
    /// The group-by values as JSON (stable key order).
    pub group_key: String,
    pub techniques: Vec<String>,
    pub event_count: i64,
    pub event_ids: Vec<String>,
    pub first_event_at: i64,
    pub last_event_at: i64,
    /// A later alert of the same rule and group whose events began within this long of the
    /// stored one's last event is the same alert (the rule's window).
    pub merge_within_ms: i64,
    /// How its mail goes out: [`DELIVERY_NONE`], [`DELIVERY_IMMEDIATE`] (the prepared
    /// mails are written with it) or [`DELIVERY_DIGEST`].
    pub mail_delivery: &'static str,
    /// The same for its `alert.raised` webhook event.
    pub webhook_delivery: &'static str,
}

/// Nothing to send on that channel.
pub const DELIVERY_NONE: &str = "none";
/// Sent with the alert, in the transaction that stores it.
pub const DELIVERY_IMMEDIATE: &str = "immediate";
/// Waiting for the tenant's next digest.
pub const DELIVERY_DIGEST: &str = "digest";
/// Sent in a digest.
pub const DELIVERY_DIGESTED: &str = "digested";

/// A stored alert.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertRow {
    pub id: String,
    pub rule_id: String,
    pub title: String,
    pub level: String,
    pub tenant_id: Option<String>,
    pub group_key: String,
    pub techniques: String,
    pub event_count: i64,
    pub event_ids: String,
    pub first_event_at: i64,
    pub last_event_at: i64,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Hidden from the open list until then (ms), if snoozed.
    pub snoozed_until: Option<i64>,
    pub mail_delivery: String,
    pub webhook_delivery: String,
}

impl AlertRow {
    /// The status a reader sees: `snoozed` while a snooze runs on an unresolved alert.
    pub fn shown_status(&self, now_ms: i64) -> &str {
        match self.snoozed_until {
            Some(until) if until > now_ms && self.status != "resolved" => "snoozed",
            _ => &self.status,
        }
    }
}

const ALERT_COLUMNS: &str = "id, rule_id, title, level, tenant_id, group_key, techniques, \
                             event_count, event_ids, first_event_at, last_event_at, status, \
                             created_at, updated_at, snoozed_until, mail_delivery, \
                             webhook_delivery";

fn alert_row(r: &AnyRow) -> Result<AlertRow, StoreError> {
    Ok(AlertRow {
        id: r.try_get("id")?,
        rule_id: r.try_get("rule_id")?,
        title: r.try_get("title")?,
        level: r.try_get("level")?,
        tenant_id: r.try_get("tenant_id")?,
        group_key: r.try_get("group_key")?,
        techniques: r.try_get("techniques")?,
        event_count: r.try_get("event_count")?,
        event_ids: r.try_get("event_ids")?,
        first_event_at: r.try_get("first_event_at")?,
        last_event_at: r.try_get("last_event_at")?,
        status: r.try_get("status")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        snoozed_until: r.try_get("snoozed_until")?,
        mail_delivery: r.try_get("mail_delivery")?,
        webhook_delivery: r.try_get("webhook_delivery")?,
    })
}

/// A suppression: new matches of `rule_id` for `group_key` (in `tenant_id`; none: the
/// platform's alerts) raise nothing until `expires_at`, unless lifted first.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SuppressionRow {
    pub id: String,
    pub tenant_id: Option<String>,
    pub rule_id: String,
    pub group_key: String,
    pub reason: String,
    /// The actor who made it (`user:…`).
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub lifted_at: Option<i64>,
    pub suppressed_count: i64,
    pub last_suppressed_at: Option<i64>,
}

/// A suppression to make.
#[derive(Debug, Clone)]
pub struct NewSuppression {
    pub tenant_id: Option<String>,
    pub rule_id: String,
    pub group_key: String,
    pub reason: String,
    pub created_by: String,
    pub expires_at: i64,
}

const SUPPRESSION_COLUMNS: &str = "id, tenant_id, rule_id, group_key, reason, created_by, \
                                   created_at, expires_at, lifted_at, suppressed_count, \
                                   last_suppressed_at";

fn suppression_row(r: &AnyRow) -> Result<SuppressionRow, StoreError> {
    Ok(SuppressionRow {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        rule_id: r.try_get("rule_id")?,
        group_key: r.try_get("group_key")?,
        reason: r.try_get("reason")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        lifted_at: r.try_get("lifted_at")?,
        suppressed_count: r.try_get("suppressed_count")?,
        last_suppressed_at: r.try_get("last_suppressed_at")?,
    })
}

/// What a new alert sends, written in the transaction that stores it (nothing when the
/// alert merges into an open one: that one was announced).
#[derive(Debug, Default)]
pub struct AlertDelivery {
    /// Mails, prepared by the notification service.
    pub notifications: Vec<crate::notify::NewNotification>,
    /// The webhook event for the alert's tenant's subscribed endpoints.
    pub webhook: Option<crate::notify::webhooks::OutboxEvent>,
}

/// Whether [`Store::record_alert`] made a new alert or added to an open one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    New,
    Merged,
}

/// Filters of the alert list.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    pub status: Option<String>,
    pub level: Option<String>,
    pub rule_id: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// `(created_at, id)` of the last alert of the previous page.
    pub before: Option<(i64, String)>,
    pub limit: i64,
}

/// The alert statuses a reader sees and filters by (`snoozed` is an unresolved alert
/// whose snooze runs; stored, it is still open or acknowledged).
pub const ALERT_STATUSES: &[&str] = &["open", "acknowledged", "snoozed", "resolved"];

impl Store {
    /// Appends security events in one transaction (the security log's writer batches
    /// them).
    pub async fn insert_security_events(
        &self,
        events: &[NewSecurityEvent],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.system_write().await?;
        // Many rows per statement: at a WAF's block rate, one statement per event is most
        // of the cost of appending them.
        for chunk in events.chunks(100) {
            let mut sql = String::from(
                "INSERT INTO security_events (id, occurred_at, event, severity, tenant_id, \
                 user_id, api_key_id, source_ip, request_id, detail) VALUES ",
            );
            for i in 0..chunk.len() {
                let p = i * 10;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7,
                    p + 8,
                    p + 9,
                    p + 10
                ));
            }
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = q
                    .bind(new_id())
                    .bind(e.occurred_at)
                    .bind(&e.event)
                    .bind(&e.severity)
                    .bind(&e.tenant_id)
                    .bind(&e.user_id)
                    .bind(&e.api_key_id)
                    .bind(&e.source_ip)
                    .bind(&e.request_id)
                    .bind(&e.detail);
            }
            q.execute(tx.conn()).await?;
        }
        tx.commit().await
    }

    /// Events after `seq`, in `seq` order: the detector's feed.
    pub async fn security_events_after(
        &self,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<SecurityEventRow>, StoreError> {
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM security_events WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(seq)
        .bind(limit)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter().map(event_row).collect()
    }

    /// The events with these sequence numbers that exist now (the detector's holes), in
    /// `seq` order.
    pub async fn security_events_with_seqs(
        &self,
        seqs: &[i64],
    ) -> Result<Vec<SecurityEventRow>, StoreError> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        // Integers of our own, written into the statement: no driver binds a list the
        // same way on SQLite and PostgreSQL.
        let list = seqs
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM security_events WHERE seq IN ({list}) ORDER BY seq"
        ))
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter().map(event_row).collect()
    }

    /// The first event at or after `at_ms` (a replay's start), if any.
    pub async fn security_event_seq_at(&self, at_ms: i64) -> Result<Option<i64>, StoreError> {
        let mut tx = self.system_read().await?;
        let row =
            sqlx::query("SELECT MIN(seq) AS seq FROM security_events WHERE occurred_at >= $1")
                .bind(at_ms)
                .fetch_one(tx.conn())
                .await?;
        tx.commit().await?;
        Ok(row.try_get("seq")?)
    }

    /// Events of `[from_ms, to_ms)` before `before_seq` (the previous page's cursor),
    /// newest first, optionally of one type: what `GET /api/v1/security-events` shows,
    /// for the whole cluster.
    pub async fn list_security_events(
        &self,
        from_ms: i64,
        to_ms: i64,
        event: Option<&str>,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<SecurityEventRow>, StoreError> {
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(&format!(
            "SELECT {EVENT_COLUMNS} FROM security_events \
             WHERE occurred_at >= $1 AND occurred_at < $2 AND ($3 = '' OR event = $3) \
             AND seq < $4 ORDER BY seq DESC LIMIT $5"
        ))
        .bind(from_ms)
        .bind(to_ms)
        .bind(event.unwrap_or(""))
        .bind(before_seq.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter().map(event_row).collect()
    }

    /// Deletes security events recorded before `before_ms` (retention).
    pub async fn purge_security_events(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.system_write().await?;
        let n = sqlx::query("DELETE FROM security_events WHERE occurred_at < $1")
            .bind(before_ms)
            .execute(tx.conn())
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// Takes or renews the detector's lease for `holder` until `until_ms`; returns the
    /// cursor (the last event evaluated) when this node holds it, `None` when another
    /// node's lease is still running.
    pub async fn take_detector_lease(
        &self,
        holder: &str,
        until_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.system_write().await?;
        let row = sqlx::query(
            "UPDATE detection_state SET holder = $1, lease_until = $2, updated_at = $3 \
             WHERE name = 'detector' AND (holder = $1 OR lease_until < $3) RETURNING last_seq",
        )
        .bind(holder)
        .bind(until_ms)
        .bind(now_ms())
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        row.map(|r| r.try_get("last_seq"))
            .transpose()
            .map_err(Into::into)
    }

    /// Moves the cursor, if `holder` still holds the lease; false when it lost it.
    pub async fn advance_detector(&self, holder: &str, last_seq: i64) -> Result<bool, StoreError> {
        let mut tx = self.system_write().await?;
        let n = sqlx::query(
            "UPDATE detection_state SET last_seq = $1, updated_at = $2 \
             WHERE name = 'detector' AND holder = $3",
        )
        .bind(last_seq)
        .bind(now_ms())
        .bind(holder)
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Stores an alert, or adds to the open or acknowledged alert of the same rule and
    /// group whose last event is within `merge_within_ms` of this one's first (so an
    /// attack that goes on, or a replay after a take-over, stays one alert). A new alert
    /// is audited in its tenant's chain (the platform's for platform alerts).
    pub async fn record_alert(
        &self,
        alert: &NewAlert,
        mut audit: NewAuditEvent,
        delivery: &AlertDelivery,
    ) -> Result<(AlertRow, Recorded), StoreError> {
        let mut tx = self.system_write().await?;
        let existing = sqlx::query(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE rule_id = $1 AND group_key = $2 \
             AND status <> 'resolved' AND last_event_at >= $3 \
             ORDER BY last_event_at DESC LIMIT 1"
        ))
        .bind(&alert.rule_id)
        .bind(&alert.group_key)
        .bind(alert.first_event_at - alert.merge_within_ms)
        .fetch_optional(tx.conn())
        .await?;
        let now = now_ms();
        let event_ids = serde_json::to_string(&alert.event_ids).unwrap_or_else(|_| "[]".into());
        if let Some(row) = existing {
            let id: String = row.try_get("id")?;
            let row = sqlx::query(&format!(
                "UPDATE alerts SET event_count = CASE WHEN event_count > $1 THEN event_count \
                 ELSE $1 END, last_event_at = CASE WHEN last_event_at > $2 THEN last_event_at \
                 ELSE $2 END, event_ids = $3, updated_at = $4 WHERE id = $5 \
                 RETURNING {ALERT_COLUMNS}"
            ))
            .bind(alert.event_count)
            .bind(alert.last_event_at)
            .bind(&event_ids)
            .bind(now)
            .bind(&id)
            .fetch_one(tx.conn())
            .await?;
            let stored = alert_row(&row)?;
            tx.commit().await?;
            return Ok((stored, Recorded::Merged));
        }
        let id = alert.id.clone();
        let row = sqlx::query(&format!(
            "INSERT INTO alerts ({ALERT_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'open', $12, $12, NULL, $13, $14) \
             RETURNING {ALERT_COLUMNS}"
        ))
        .bind(&id)
        .bind(&alert.rule_id)
        .bind(&alert.title)
        .bind(&alert.level)
        .bind(&alert.tenant_id)
        .bind(&alert.group_key)
        .bind(alert.techniques.join(","))
        .bind(alert.event_count)
        .bind(&event_ids)
        .bind(alert.first_event_at)
        .bind(alert.last_event_at)
        .bind(now)
        .bind(alert.mail_delivery)
        .bind(alert.webhook_delivery)
        .fetch_one(tx.conn())
        .await?;
        let stored = alert_row(&row)?;
        audit.target_id = Some(id);
        let chain = alert.tenant_id.as_deref().unwrap_or(PLATFORM_TENANT_ID);
        tx.audit(chain, &audit).await?;
        for n in &delivery.notifications {
            tx.insert_notification(n).await?;
        }
        if let (Some(event), Some(tenant)) = (&delivery.webhook, &alert.tenant_id) {
            tx.publish_webhook_events(tenant, std::slice::from_ref(event))
                .await?;
        }
        tx.commit().await?;
        Ok((stored, Recorded::New))
    }

    /// Who is told of an alert: the active admins of its tenant, or the platform admins
    /// for a platform alert; `(user id, e-mail, locale)`.
    pub async fn alert_recipients(
        &self,
        tenant_id: Option<&str>,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let (tenant, role) = match tenant_id {
            Some(t) => (t, "tenant_admin"),
            None => (PLATFORM_TENANT_ID, "platform_admin"),
        };
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(
            "SELECT id, email, locale FROM users WHERE tenant_id = $1 AND role = $2 \
             AND status = 'active' ORDER BY id LIMIT 50",
        )
        .bind(tenant)
        .bind(role)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("email")?, r.try_get("locale")?)))
            .collect()
    }

    /// Alerts newest first: a tenant's (`Some(scope)`) or every one (`None`: platform
    /// admins).
    pub async fn list_alerts(
        &self,
        scope: Option<&TenantScope>,
        q: &AlertQuery,
    ) -> Result<Vec<AlertRow>, StoreError> {
        let (before_at, before_id) = q.before.clone().unwrap_or((i64::MAX, String::new()));
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE ($1 = '' OR tenant_id = $1) \
             AND ($2 = '' \
                  OR ($2 = 'snoozed' AND status <> 'resolved' AND snoozed_until > $10) \
                  OR ($2 <> 'snoozed' AND status = $2 AND ($2 = 'resolved' \
                      OR snoozed_until IS NULL OR snoozed_until <= $10))) \
             AND ($3 = '' OR level = $3) \
             AND ($4 = '' OR rule_id = $4) AND created_at >= $5 AND created_at < $6 \
             AND (created_at < $7 OR (created_at = $7 AND ($8 = '' OR id < $8))) \
             ORDER BY created_at DESC, id DESC LIMIT $9"
        );
        let query = sqlx::query(&sql)
            .bind(scope.map(|s| s.tenant_id().to_string()).unwrap_or_default())
            .bind(q.status.clone().unwrap_or_default())
            .bind(q.level.clone().unwrap_or_default())
            .bind(q.rule_id.clone().unwrap_or_default())
            .bind(q.from_ms.unwrap_or(0))
            .bind(q.to_ms.unwrap_or(i64::MAX))
            .bind(before_at)
            .bind(before_id)
            .bind(q.limit)
            .bind(now_ms());
        let rows = match scope {
            Some(s) => {
                let mut tx = self.tenant_read(s).await?;
                let rows = query.fetch_all(tx.conn()).await?;
                tx.commit().await?;
                rows
            }
            None => {
                let mut tx = self.system_read().await?;
                let rows = query.fetch_all(tx.conn()).await?;
                tx.commit().await?;
                rows
            }
        };
        rows.iter().map(alert_row).collect()
    }

    /// One alert; `NotFound` when it is not the scope's (`None`: any).
    pub async fn get_alert(
        &self,
        scope: Option<&TenantScope>,
        id: &str,
    ) -> Result<AlertRow, StoreError> {
        let mut tx = self.system_read().await?;
        let row = sqlx::query(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"))
            .bind(id)
            .fetch_optional(tx.conn())
            .await?;
        tx.commit().await?;
        let alert = alert_row(&row.ok_or(StoreError::NotFound)?)?;
        match scope {
            Some(s) if alert.tenant_id.as_deref() != Some(s.tenant_id()) => {
                Err(StoreError::NotFound)
            }
            _ => Ok(alert),
        }
    }

    /// Moves an alert to `status`, recording `audit` in the alert's tenant's chain (the
    /// platform's for a platform alert).
    pub async fn set_alert_status(
        &self,
        id: &str,
        status: &str,
        audit: NewAuditEvent,
    ) -> Result<AlertRow, StoreError> {
        let mut tx = self.system_write().await?;
        let row = sqlx::query(&format!(
            "UPDATE alerts SET status = $1, updated_at = $2, snoozed_until = NULL \
             WHERE id = $3 RETURNING {ALERT_COLUMNS}"
        ))
        .bind(status)
        .bind(now_ms())
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
        audited_change(tx, row, audit).await
    }

    /// Snoozes an alert until `until_ms` (it keeps its status; readers see `snoozed`),
    /// recording `audit` in its tenant's chain.
    pub async fn snooze_alert(
        &self,
        id: &str,
        until_ms: i64,
        audit: NewAuditEvent,
    ) -> Result<AlertRow, StoreError> {
        let mut tx = self.system_write().await?;
        let row = sqlx::query(&format!(
            "UPDATE alerts SET snoozed_until = $1, updated_at = $2 WHERE id = $3 \
             RETURNING {ALERT_COLUMNS}"
        ))
        .bind(until_ms)
        .bind(now_ms())
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
        audited_change(tx, row, audit).await
    }

    /// Whether a suppression covers a match of `rule_id` for `group_key` in `tenant_id`
    /// at `at_ms`; when one does, it counts the match (so a suppression never hides that
    /// the rule still fires).
    pub async fn suppress_match(
        &self,
        tenant_id: Option<&str>,
        rule_id: &str,
        group_key: &str,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.system_write().await?;
        let n = sqlx::query(
            "UPDATE alert_suppressions SET suppressed_count = suppressed_count + 1, \
             last_suppressed_at = $1 WHERE id = (SELECT id FROM alert_suppressions \
             WHERE rule_id = $2 AND group_key = $3 AND COALESCE(tenant_id, '') = $4 \
             AND lifted_at IS NULL AND expires_at > $1 \
             ORDER BY expires_at DESC LIMIT 1)",
        )
        .bind(at_ms)
        .bind(rule_id)
        .bind(group_key)
        .bind(tenant_id.unwrap_or(""))
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n == 1)
    }

    /// Makes a suppression, audited in its tenant's chain (the platform's for platform
    /// alerts).
    pub async fn create_suppression(
        &self,
        s: &NewSuppression,
        mut audit: NewAuditEvent,
    ) -> Result<SuppressionRow, StoreError> {
        let mut tx = self.system_write().await?;
        let id = format!("sup_{}", new_id());
        let row = sqlx::query(&format!(
            "INSERT INTO alert_suppressions (id, tenant_id, rule_id, group_key, reason, \
             created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             RETURNING {SUPPRESSION_COLUMNS}"
        ))
        .bind(&id)
        .bind(&s.tenant_id)
        .bind(&s.rule_id)
        .bind(&s.group_key)
        .bind(&s.reason)
        .bind(&s.created_by)
        .bind(now_ms())
        .bind(s.expires_at)
        .fetch_one(tx.conn())
        .await?;
        let stored = suppression_row(&row)?;
        audit.target_id = Some(id);
        tx.audit(s.tenant_id.as_deref().unwrap_or(PLATFORM_TENANT_ID), &audit)
            .await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Suppressions newest first: a tenant's (`Some`) or every one; only those in force
    /// unless `all`.
    pub async fn list_suppressions(
        &self,
        scope: Option<&TenantScope>,
        all: bool,
        limit: i64,
    ) -> Result<Vec<SuppressionRow>, StoreError> {
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(&format!(
            "SELECT {SUPPRESSION_COLUMNS} FROM alert_suppressions \
             WHERE ($1 = '' OR tenant_id = $1) \
             AND ($2 = 1 OR (lifted_at IS NULL AND expires_at > $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .bind(scope.map(|s| s.tenant_id().to_string()).unwrap_or_default())
        .bind(i64::from(all))
        .bind(now_ms())
        .bind(limit)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter().map(suppression_row).collect()
    }

    /// One suppression; `NotFound` when it is not the scope's (`None`: any).
    pub async fn get_suppression(
        &self,
        scope: Option<&TenantScope>,
        id: &str,
    ) -> Result<SuppressionRow, StoreError> {
        let mut tx = self.system_read().await?;
        let row = sqlx::query(&format!(
            "SELECT {SUPPRESSION_COLUMNS} FROM alert_suppressions WHERE id = $1 \
             AND ($2 = '' OR tenant_id = $2)"
        ))
        .bind(id)
        .bind(scope.map(|s| s.tenant_id().to_string()).unwrap_or_default())
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        suppression_row(&row.ok_or(StoreError::NotFound)?)
    }

    /// Lifts a suppression in force (`NotFound` when it is not the scope's, or already
    /// lifted or expired), audited in its tenant's chain.
    pub async fn lift_suppression(
        &self,
        scope: Option<&TenantScope>,
        id: &str,
        mut audit: NewAuditEvent,
    ) -> Result<SuppressionRow, StoreError> {
        let mut tx = self.system_write().await?;
        let now = now_ms();
        let row = sqlx::query(&format!(
            "UPDATE alert_suppressions SET lifted_at = $1 WHERE id = $2 \
             AND ($3 = '' OR tenant_id = $3) AND lifted_at IS NULL AND expires_at > $1 \
             RETURNING {SUPPRESSION_COLUMNS}"
        ))
        .bind(now)
        .bind(id)
        .bind(scope.map(|s| s.tenant_id().to_string()).unwrap_or_default())
        .fetch_optional(tx.conn())
        .await?;
        let lifted = suppression_row(&row.ok_or(StoreError::NotFound)?)?;
        audit.target_id = Some(lifted.id.clone());
        tx.audit(
            lifted.tenant_id.as_deref().unwrap_or(PLATFORM_TENANT_ID),
            &audit,
        )
        .await?;
        tx.commit().await?;
        Ok(lifted)
    }

    /// Alerts of `tenant_id` (none: the platform's) sent at once on `channel` (`mail` or
    /// `webhook`) since `since_ms`: what the hourly limit counts.
    pub async fn alerts_sent_since(
        &self,
        tenant_id: Option<&str>,
        channel: Channel,
        since_ms: i64,
    ) -> Result<i64, StoreError> {
        let mut tx = self.system_read().await?;
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM alerts WHERE {} = 'immediate' AND created_at >= $1 \
             AND COALESCE(tenant_id, '') = $2",
            channel.column()
        ))
        .bind(since_ms)
        .bind(tenant_id.unwrap_or(""))
        .fetch_one(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(row.try_get("n")?)
    }

    /// The tenants (none: the platform) with an alert waiting for a digest since at least
    /// `created_before_ms`.
    pub async fn digests_due(
        &self,
        created_before_ms: i64,
    ) -> Result<Vec<Option<String>>, StoreError> {
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(
            "SELECT DISTINCT tenant_id FROM alerts WHERE created_at <= $1 \
             AND (mail_delivery = 'digest' OR webhook_delivery = 'digest')",
        )
        .bind(created_before_ms)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| r.try_get("tenant_id").map_err(Into::into))
            .collect()
    }

    /// The alerts of `tenant_id` (none: the platform's) waiting for a digest, oldest
    /// first (at most 1,000: the rest go in the next).
    pub async fn digest_pending(
        &self,
        tenant_id: Option<&str>,
    ) -> Result<Vec<AlertRow>, StoreError> {
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE COALESCE(tenant_id, '') = $1 \
             AND (mail_delivery = 'digest' OR webhook_delivery = 'digest') \
             ORDER BY created_at, id LIMIT 1000"
        ))
        .bind(tenant_id.unwrap_or(""))
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter().map(alert_row).collect()
    }

    /// Writes a digest's mails and webhook event and marks its alerts sent, in one
    /// transaction.
    pub async fn record_digest(
        &self,
        tenant_id: Option<&str>,
        mailed: &[String],
        hooked: &[String],
        delivery: &AlertDelivery,
    ) -> Result<(), StoreError> {
        let mut tx = self.system_write().await?;
        for (ids, channel) in [(mailed, Channel::Mail), (hooked, Channel::Webhook)] {
            for id in ids {
                sqlx::query(&format!(
                    "UPDATE alerts SET {0} = 'digested' WHERE id = $1 AND {0} = 'digest'",
                    channel.column()
                ))
                .bind(id)
                .execute(tx.conn())
                .await?;
            }
        }
        for n in &delivery.notifications {
            tx.insert_notification(n).await?;
        }
        if let (Some(event), Some(tenant)) = (&delivery.webhook, tenant_id) {
            tx.publish_webhook_events(tenant, std::slice::from_ref(event))
                .await?;
        }
        tx.commit().await
    }
}

/// The end of a change to one alert: `NotFound` when no row changed, else `audit` (about
/// the alert) in its tenant's chain (the platform's for a platform alert), committed with
/// the change.
async fn audited_change(
    mut tx: crate::tx::SystemTx,
    row: Option<AnyRow>,
    mut audit: NewAuditEvent,
) -> Result<AlertRow, StoreError> {
    let alert = alert_row(&row.ok_or(StoreError::NotFound)?)?;
    audit.target_id = Some(alert.id.clone());
    let chain = alert.tenant_id.as_deref().unwrap_or(PLATFORM_TENANT_ID);
    tx.audit(chain, &audit).await?;
    tx.commit().await?;
    Ok(alert)
}

/// A channel an alert goes out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Mail,
    Webhook,
}

impl Channel {
    fn column(self) -> &'static str {
        match self {
            Channel::Mail => "mail_delivery",
            Channel::Webhook => "webhook_delivery",
        }
    }
}
