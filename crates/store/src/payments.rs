//! Payments, their refunds, idempotency keys, fraud rules and the fraud velocity counts.
//! Card numbers never arrive here: a payment holds its vault token, last 4, brand and the
//! keyed fingerprint.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::notify::webhooks::{outbox, OutboxEvent};
use crate::{now_ms, NewAuditEvent, Store, StoreError, TenantScope};

/// A stored payment.
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub id: String,
    pub tenant_id: String,
    pub status: String,
    pub amount: i64,
    pub currency: String,
    pub capture: bool,
    pub captured_amount: i64,
    pub refunded_amount: i64,
    pub card_token: String,
    pub card_last4: String,
    pub card_brand: String,
    pub card_fingerprint: String,
    pub card_country: Option<String>,
    pub fraud_score: i64,
    pub fraud_decision: String,
    /// JSON array of reason codes.
    pub fraud_reasons: String,
    pub processor: String,
    pub processor_reference: Option<String>,
    pub decline_code: Option<String>,
    pub simulated: bool,
    pub description: Option<String>,
    pub reference: Option<String>,
    pub customer_email: Option<String>,
    pub customer_ip: Option<String>,
    pub customer_country: Option<String>,
    /// JSON object.
    pub metadata: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, tenant_id, status, amount, currency, capture, captured_amount, \
    refunded_amount, card_token, card_last4, card_brand, card_fingerprint, card_country, \
    fraud_score, fraud_decision, fraud_reasons, processor, processor_reference, decline_code, \
    simulated, description, reference, customer_email, customer_ip, customer_country, \
    metadata, created_at, updated_at";

fn from_row(r: &AnyRow) -> Result<Payment, StoreError> {
    Ok(Payment {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        status: r.try_get("status")?,
        amount: r.try_get("amount")?,
        currency: r.try_get("currency")?,
        capture: r.try_get::<i64, _>("capture")? != 0,
        captured_amount: r.try_get("captured_amount")?,
        refunded_amount: r.try_get("refunded_amount")?,
        card_token: r.try_get("card_token")?,
        card_last4: r.try_get("card_last4")?,
        card_brand: r.try_get("card_brand")?,
        card_fingerprint: r.try_get("card_fingerprint")?,
        card_country: r.try_get("card_country")?,
        fraud_score: r.try_get("fraud_score")?,
        fraud_decision: r.try_get("fraud_decision")?,
        fraud_reasons: r.try_get("fraud_reasons")?,
        processor: r.try_get("processor")?,
        processor_reference: r.try_get("processor_reference")?,
        decline_code: r.try_get("decline_code")?,
        simulated: r.try_get::<i64, _>("simulated")? != 0,
        description: r.try_get("description")?,
        reference: r.try_get("reference")?,
        customer_email: r.try_get("customer_email")?,
        customer_ip: r.try_get("customer_ip")?,
        customer_country: r.try_get("customer_country")?,
        metadata: r.try_get("metadata")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// What the first request with an `Idempotency-Key` left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idempotency {
    /// The key is new (or its record expired): this request runs, holding the key's
    /// lease until `lease_until` (Unix ms).
    Started { lease_until: i64 },
    /// The first request finished: replay its answer.
    Replay { status: u16, response: String },
    /// The first request is still running, within its lease.
    InProgress,
    /// The first request's lease ran out without an answer (it crashed, or its client went
    /// away and took it along): this request has taken the key over, with a fresh lease,
    /// and resolves it. `payment_id` is the attempt the first request recorded before it
    /// called the processor; `None` when it never got that far (nothing was charged).
    Expired {
        payment_id: Option<String>,
        lease_until: i64,
    },
    /// The key was used with other parameters.
    Mismatch,
}

/// A key as one request holds it: the lease it was given names the holder, so a request
/// that outlived its lease (a retry took the key over) cannot write to the key any more.
#[derive(Debug, Clone, Copy)]
pub struct KeyLease<'a> {
    pub key: &'a str,
    pub lease_until: i64,
}

/// The answer to store for an `Idempotency-Key`, in the transaction that records the
/// payment's outcome, so the two cannot part.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyAnswer<'a> {
    pub key: KeyLease<'a>,
    pub status: u16,
    pub response: &'a str,
}

/// Counts over sliding windows for one payment about to be scored (the payment itself not
/// included: the caller adds it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VelocityCounts {
    pub card: i64,
    pub ip: i64,
    pub email: i64,
    /// Distinct cards from the IP.
    pub cards_from_ip: i64,
    /// Payments below `small_amount` from the IP.
    pub small_from_ip: i64,
}

/// What to count, and over which windows (milliseconds back from now).
#[derive(Debug, Clone)]
pub struct VelocityProbe<'a> {
    pub fingerprint: &'a str,
    pub ip: Option<&'a str>,
    pub email: Option<&'a str>,
    pub small_amount: i64,
    pub card_window_ms: i64,
    pub ip_window_ms: i64,
    pub email_window_ms: i64,
    pub cards_per_ip_window_ms: i64,
    pub card_testing_window_ms: i64,
}

/// Filters for the payment list.
#[derive(Debug, Clone, Default)]
pub struct PaymentFilter {
    pub status: Option<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// `(created_at, id)` of the last payment of the previous page.
    pub after: Option<(i64, String)>,
    pub limit: i64,
}

/// How long an idempotency record is kept (Stripe's 24 hours).
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;

impl Store {
    /// Claims an idempotency key for a request whose parameters hash to `request_hash`,
    /// for `lease_ms`: a key still running after that may be taken over (see
    /// [`Idempotency::Expired`]).
    pub async fn idempotency_begin(
        &self,
        scope: &TenantScope,
        key: &str,
        request_hash: &str,
        lease_ms: i64,
    ) -> Result<Idempotency, StoreError> {
        let now = now_ms();
        let mut tx = self.tenant_write(scope).await?;
        let tenant = tx.tenant_id().to_string();
        // An expired record is gone, as if it never was.
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND created_at < $3",
        )
        .bind(&tenant)
        .bind(key)
        .bind(now - IDEMPOTENCY_TTL_MS)
        .execute(tx.conn())
        .await?;
        let existing = sqlx::query(
            "SELECT request_hash, status, response, payment_id, lease_until \
             FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
        )
        .bind(&tenant)
        .bind(key)
        .fetch_optional(tx.conn())
        .await?;
        let state = match existing {
            Some(row) => {
                let hash: String = row.try_get("request_hash")?;
                let status: i64 = row.try_get("status")?;
                let lease_until: i64 = row.try_get("lease_until")?;
                if hash != request_hash {
                    Idempotency::Mismatch
                } else if status == 0 && lease_until >= now {
                    Idempotency::InProgress
                } else if status == 0 {
                    // Taken over by one request only: the UPDATE names the lease it saw, so
                    // of two retries racing here the second changes nothing.
                    let taken = sqlx::query(
                        "UPDATE idempotency_keys SET lease_until = $1 \
                         WHERE tenant_id = $2 AND key = $3 AND status = 0 AND lease_until = $4",
                    )
                    .bind(now + lease_ms)
                    .bind(&tenant)
                    .bind(key)
                    .bind(lease_until)
                    .execute(tx.conn())
                    .await?;
                    if taken.rows_affected() == 1 {
                        Idempotency::Expired {
                            payment_id: row.try_get("payment_id")?,
                            lease_until: now + lease_ms,
                        }
                    } else {
                        Idempotency::InProgress
                    }
                } else {
                    Idempotency::Replay {
                        status: u16::try_from(status).unwrap_or(500),
                        response: row
                            .try_get::<Option<String>, _>("response")?
                            .unwrap_or_default(),
                    }
                }
            }
            None => {
                // Two requests racing here: the primary key lets one insert; the other
                // gets a conflict and answers InProgress.
                let inserted = sqlx::query(
                    "INSERT INTO idempotency_keys \
                     (tenant_id, key, request_hash, status, created_at, lease_until) \
                     VALUES ($1, $2, $3, 0, $4, $5)",
                )
                .bind(&tenant)
                .bind(key)
                .bind(request_hash)
                .bind(now)
                .bind(now + lease_ms)
                .execute(tx.conn())
                .await;
                match inserted.map_err(StoreError::from) {
                    Ok(_) => Idempotency::Started {
                        lease_until: now + lease_ms,
                    },
                    Err(StoreError::Conflict { .. }) => Idempotency::InProgress,
                    Err(e) => return Err(e),
                }
            }
        };
        tx.commit().await?;
        Ok(state)
    }

    /// Stores the answer to replay for `key`.
    pub async fn idempotency_finish(
        &self,
        scope: &TenantScope,
        key: &str,
        status: u16,
        response: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_write(scope).await?;
        sqlx::query(
            "UPDATE idempotency_keys SET status = $1, response = $2 WHERE tenant_id = $3 AND key = $4",
        )
        .bind(i64::from(status))
        .bind(response)
        .bind(tx.tenant_id().to_string())
        .bind(key)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets a key whose request failed before it changed anything (a server error), so
    /// the client's retry runs again. A key whose request recorded a payment attempt is
    /// never forgotten: the processor may have seen it, so a retry must reconcile it.
    pub async fn idempotency_abandon(
        &self,
        scope: &TenantScope,
        held: KeyLease<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_write(scope).await?;
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND status = 0 \
             AND payment_id IS NULL AND lease_until = $3",
        )
        .bind(tx.tenant_id().to_string())
        .bind(held.key)
        .bind(held.lease_until)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The fraud velocity counts: recent payments of this tenant by card, IP and e-mail.
    /// They live in the payments table, so they survive restarts and every node sees them.
    pub async fn velocity_counts(
        &self,
        scope: &TenantScope,
        p: &VelocityProbe<'_>,
    ) -> Result<VelocityCounts, StoreError> {
        let now = now_ms();
        let mut tx = self.tenant_read(scope).await?;
        let tenant = tx.tenant_id().to_string();
        let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
        let card = count("SELECT COUNT(*) FROM payments WHERE tenant_id = $1 AND card_fingerprint = $2 AND created_at > $3")
            .bind(&tenant)
            .bind(p.fingerprint)
            .bind(now - p.card_window_ms)
            .fetch_one(tx.conn())
            .await?;
        let mut counts = VelocityCounts {
            card,
            ..VelocityCounts::default()
        };
        if let Some(ip) = p.ip {
            counts.ip = count("SELECT COUNT(*) FROM payments WHERE tenant_id = $1 AND customer_ip = $2 AND created_at > $3")
                .bind(&tenant)
                .bind(ip)
                .bind(now - p.ip_window_ms)
                .fetch_one(tx.conn())
                .await?;
            counts.cards_from_ip = count(
                "SELECT COUNT(DISTINCT card_fingerprint) FROM payments \
                 WHERE tenant_id = $1 AND customer_ip = $2 AND created_at > $3 AND card_fingerprint <> $4",
            )
            .bind(&tenant)
            .bind(ip)
            .bind(now - p.cards_per_ip_window_ms)
            .bind(p.fingerprint)
            .fetch_one(tx.conn())
            .await?;
            counts.small_from_ip = count(
                "SELECT COUNT(*) FROM payments WHERE tenant_id = $1 AND customer_ip = $2 \
                 AND created_at > $3 AND amount < $4",
            )
            .bind(&tenant)
            .bind(ip)
            .bind(now - p.card_testing_window_ms)
            .bind(p.small_amount)
            .fetch_one(tx.conn())
            .await?;
        }
        if let Some(email) = p.email {
            counts.email = count("SELECT COUNT(*) FROM payments WHERE tenant_id = $1 AND customer_email = $2 AND created_at > $3")
                .bind(&tenant)
                .bind(email)
                .bind(now - p.email_window_ms)
                .fetch_one(tx.conn())
                .await?;
        }
        tx.commit().await?;
        Ok(counts)
    }

    /// Records a new payment with its audit event and its webhook events, and the answer
    /// to its `Idempotency-Key`, in one transaction. `created_at` is kept when set (the
    /// event bodies carry it).
    pub async fn insert_payment(
        &self,
        scope: &TenantScope,
        mut p: Payment,
        mut audit: NewAuditEvent,
        events: &[OutboxEvent],
        answer: Option<IdempotencyAnswer<'_>>,
    ) -> Result<Payment, StoreError> {
        p.tenant_id = scope.tenant_id().to_string();
        if p.created_at == 0 {
            p.created_at = now_ms();
        }
        p.updated_at = p.created_at;
        let mut tx = self.tenant_write(scope).await?;
        insert_row(&mut tx, &p).await?;
        audit.target_id = Some(p.id.clone());
        tx.audit(scope.tenant_id(), &audit).await?;
        outbox(tx.conn(), scope.tenant_id(), events).await?;
        if let Some(answer) = answer {
            let stored = store_answer(
                &mut tx,
                KeyRef::Key(answer.key),
                answer.status,
                answer.response,
            )
            .await?;
            if stored == 0 {
                // A retry took the key over (this request outlived its lease) and answered
                // it: this payment is not recorded a second time.
                return Err(key_taken_over());
            }
        }
        tx.commit().await?;
        Ok(p)
    }

    /// Records a payment about to go to the processor as `pending`, with its audit event,
    /// linked to the request's `Idempotency-Key`, and commits it before the processor is
    /// called: whatever happens next (a crash, the client gone), the attempt is on record
    /// and is reconciled, never sent again.
    pub async fn record_payment_attempt(
        &self,
        scope: &TenantScope,
        mut p: Payment,
        mut audit: NewAuditEvent,
        key: Option<KeyLease<'_>>,
    ) -> Result<Payment, StoreError> {
        p.tenant_id = scope.tenant_id().to_string();
        p.status = PENDING.to_string();
        if p.created_at == 0 {
            p.created_at = now_ms();
        }
        p.updated_at = p.created_at;
        let mut tx = self.tenant_write(scope).await?;
        insert_row(&mut tx, &p).await?;
        audit.target_id = Some(p.id.clone());
        tx.audit(scope.tenant_id(), &audit).await?;
        if let Some(key) = key {
            let linked = sqlx::query(
                "UPDATE idempotency_keys SET payment_id = $1 WHERE tenant_id = $2 AND key = $3 \
                 AND status = 0 AND payment_id IS NULL AND lease_until = $4",
            )
            .bind(&p.id)
            .bind(scope.tenant_id())
            .bind(key.key)
            .bind(key.lease_until)
            .execute(tx.conn())
            .await?;
            if linked.rows_affected() == 0 {
                // This request outlived its lease and a retry took the key over (and may
                // have recorded its own attempt): stop before the processor is called.
                return Err(key_taken_over());
            }
        }
        tx.commit().await?;
        Ok(p)
    }

    /// Writes the outcome of a `pending` payment (the processor's answer, or what
    /// reconciliation found), its audit event, its webhook events and the answer to the
    /// `Idempotency-Key` linked to it, in one transaction. `NotFound` when the payment is
    /// not pending any more: someone else (a retry, the sweep) settled it first.
    pub async fn settle_payment(
        &self,
        scope: &TenantScope,
        id: &str,
        change: &PaymentChange,
        mut audit: NewAuditEvent,
        events: impl FnOnce(&Payment) -> Vec<OutboxEvent>,
        answer: impl FnOnce(&Payment) -> Option<(u16, String)>,
    ) -> Result<Payment, StoreError> {
        let mut tx = self.tenant_write(scope).await?;
        if apply_change(&mut tx, id, &[PENDING], change).await? == 0 {
            return Err(StoreError::NotFound);
        }
        audit.target_id = Some(id.to_string());
        tx.audit(scope.tenant_id(), &audit).await?;
        let payment = reread_with_outbox(&mut tx, id, events).await?;
        if let Some((status, response)) = answer(&payment) {
            store_answer(&mut tx, KeyRef::Payment(id), status, &response).await?;
        }
        tx.commit().await?;
        Ok(payment)
    }

    /// Pending payments whose attempt started before `before_ms` (their request's lease
    /// ran out), oldest first, each with the scope of its own tenant: what the
    /// reconciliation job settles.
    pub async fn stale_payment_attempts(
        &self,
        before_ms: i64,
        limit: i64,
    ) -> Result<Vec<(TenantScope, Payment)>, StoreError> {
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM payments WHERE status = 'pending' AND updated_at < $1 \
             ORDER BY updated_at LIMIT $2"
        ))
        .bind(before_ms)
        .bind(limit)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                let p = from_row(r)?;
                // The payment row is the database's word for its tenant.
                Ok((TenantScope::mint(p.tenant_id.clone()), p))
            })
            .collect()
    }

    /// A payment of the scope's tenant; another tenant's is `NotFound`.
    pub async fn payment(&self, scope: &TenantScope, id: &str) -> Result<Payment, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM payments WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tx.tenant_id().to_string())
        .bind(id)
        .fetch_optional(tx.conn())
        .await?;
        tx.commit().await?;
        from_row(&row.ok_or(StoreError::NotFound)?)
    }

    /// Newest first, `(created_at, id)` keyset pagination.
    pub async fn list_payments(
        &self,
        scope: &TenantScope,
        f: &PaymentFilter,
    ) -> Result<Vec<Payment>, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let (after_at, after_id) = f.after.clone().unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM payments WHERE tenant_id = $1 \
             AND ($2 = '' OR status = $2) AND created_at >= $3 AND created_at < $4 \
             AND (created_at < $5 OR (created_at = $5 AND id < $6)) \
             ORDER BY created_at DESC, id DESC LIMIT $7"
        ))
        .bind(tx.tenant_id().to_string())
        .bind(f.status.clone().unwrap_or_default())
        .bind(f.from_ms.unwrap_or(0))
        .bind(f.to_ms.unwrap_or(i64::MAX))
        .bind(after_at)
        .bind(after_id)
        .bind(f.limit)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }

    /// Moves a payment from one of `from` to `to` (capture, cancel, review decisions),
    /// setting the fields given; `NotFound` if it is not in one of `from` any more (a
    /// concurrent change won). The audit event is written in the same transaction.
    pub async fn transition_payment(
        &self,
        scope: &TenantScope,
        id: &str,
        from: &[&str],
        change: &PaymentChange,
        mut audit: NewAuditEvent,
        events: impl FnOnce(&Payment) -> Vec<OutboxEvent>,
    ) -> Result<Payment, StoreError> {
        let mut tx = self.tenant_write(scope).await?;
        if apply_change(&mut tx, id, from, change).await? == 0 {
            return Err(StoreError::NotFound);
        }
        audit.target_id = Some(id.to_string());
        tx.audit(scope.tenant_id(), &audit).await?;
        let payment = reread_with_outbox(&mut tx, id, events).await?;
        tx.commit().await?;
        Ok(payment)
    }

    /// Refunds `amount` of a captured payment. The sum of refunds never exceeds the
    /// captured amount, also under concurrent requests: the check and the increment are
    /// one `UPDATE`. `Constraint` when the amount is more than what is left.
    pub async fn refund_payment(
        &self,
        scope: &TenantScope,
        id: &str,
        refund_id: &str,
        amount: i64,
        mut audit: NewAuditEvent,
        events: impl FnOnce(&Payment) -> Vec<OutboxEvent>,
    ) -> Result<Payment, StoreError> {
        let now = now_ms();
        let mut tx = self.tenant_write(scope).await?;
        let tenant = tx.tenant_id().to_string();
        let done = sqlx::query(
            "UPDATE payments SET refunded_amount = refunded_amount + $1, \
             status = CASE WHEN refunded_amount + $1 = captured_amount THEN 'refunded' \
                           ELSE 'partially_refunded' END, updated_at = $2 \
             WHERE tenant_id = $3 AND id = $4 AND status IN ('captured', 'partially_refunded') \
             AND refunded_amount + $1 <= captured_amount",
        )
        .bind(amount)
        .bind(now)
        .bind(&tenant)
        .bind(id)
        .execute(tx.conn())
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Constraint {
                constraint: "refund_exceeds_captured".into(),
            });
        }
        sqlx::query(
            "INSERT INTO payment_refunds (id, tenant_id, payment_id, amount, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(refund_id)
        .bind(&tenant)
        .bind(id)
        .bind(amount)
        .bind(now)
        .execute(tx.conn())
        .await?;
        audit.target_id = Some(id.to_string());
        tx.audit(scope.tenant_id(), &audit).await?;
        let payment = reread_with_outbox(&mut tx, id, events).await?;
        tx.commit().await?;
        Ok(payment)
    }

    /// The tenant's fraud rules as JSON, if it set any.
    pub async fn fraud_rules(&self, scope: &TenantScope) -> Result<Option<String>, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        let rules =
            sqlx::query_scalar::<_, String>("SELECT rules FROM fraud_rules WHERE tenant_id = $1")
                .bind(tx.tenant_id().to_string())
                .fetch_optional(tx.conn())
                .await?;
        tx.commit().await?;
        Ok(rules)
    }

    /// Replaces the tenant's fraud rules, audited.
    pub async fn set_fraud_rules(
        &self,
        scope: &TenantScope,
        rules: &str,
        audit: NewAuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.tenant_write(scope).await?;
        let tenant = tx.tenant_id().to_string();
        sqlx::query("DELETE FROM fraud_rules WHERE tenant_id = $1")
            .bind(&tenant)
            .execute(tx.conn())
            .await?;
        sqlx::query("INSERT INTO fraud_rules (tenant_id, rules, updated_at) VALUES ($1, $2, $3)")
            .bind(&tenant)
            .bind(rules)
            .bind(now_ms())
            .execute(tx.conn())
            .await?;
        tx.audit(scope.tenant_id(), &audit).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The payment as the transaction left it, with the webhook events it announces written
/// to the outbox in the same transaction.
async fn reread_with_outbox(
    tx: &mut crate::tx::TenantTx,
    id: &str,
    events: impl FnOnce(&Payment) -> Vec<OutboxEvent>,
) -> Result<Payment, StoreError> {
    let tenant = tx.tenant_id().to_string();
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM payments WHERE tenant_id = $1 AND id = $2"
    ))
    .bind(&tenant)
    .bind(id)
    .fetch_one(tx.conn())
    .await?;
    let payment = from_row(&row)?;
    outbox(tx.conn(), &tenant, &events(&payment)).await?;
    Ok(payment)
}

/// Fields a state change sets (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct PaymentChange {
    pub status: String,
    pub captured_amount: Option<i64>,
    pub processor_reference: Option<String>,
    pub decline_code: Option<String>,
    pub card_country: Option<String>,
    pub simulated: Option<bool>,
}

/// The status of a payment recorded before its processor call, until its outcome is in.
pub const PENDING: &str = "pending";

async fn insert_row(tx: &mut crate::tx::TenantTx, p: &Payment) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO payments ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
         $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)"
    ))
    .bind(&p.id)
    .bind(&p.tenant_id)
    .bind(&p.status)
    .bind(p.amount)
    .bind(&p.currency)
    .bind(i64::from(p.capture))
    .bind(p.captured_amount)
    .bind(p.refunded_amount)
    .bind(&p.card_token)
    .bind(&p.card_last4)
    .bind(&p.card_brand)
    .bind(&p.card_fingerprint)
    .bind(&p.card_country)
    .bind(p.fraud_score)
    .bind(&p.fraud_decision)
    .bind(&p.fraud_reasons)
    .bind(&p.processor)
    .bind(&p.processor_reference)
    .bind(&p.decline_code)
    .bind(i64::from(p.simulated))
    .bind(&p.description)
    .bind(&p.reference)
    .bind(&p.customer_email)
    .bind(&p.customer_ip)
    .bind(&p.customer_country)
    .bind(&p.metadata)
    .bind(p.created_at)
    .bind(p.updated_at)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Which idempotency record an answer is for.
enum KeyRef<'a> {
    /// The key, while this request still holds its lease.
    Key(KeyLease<'a>),
    /// The key whose request recorded this payment attempt, if any.
    Payment(&'a str),
}

/// The error of a request whose `Idempotency-Key` another request took over.
fn key_taken_over() -> StoreError {
    StoreError::Conflict {
        constraint: "idempotency_key_taken_over".into(),
    }
}

/// Stores the answer to replay, on a key still running (an answer is written once);
/// how many records it answered (0: none was still running).
async fn store_answer(
    tx: &mut crate::tx::TenantTx,
    which: KeyRef<'_>,
    status: u16,
    response: &str,
) -> Result<u64, StoreError> {
    // With a key, only while this request's lease is the key's (the lease never equals
    // -1, so the payment form matches any lease).
    let (column, value, lease) = match which {
        KeyRef::Key(k) => ("key", k.key, k.lease_until),
        KeyRef::Payment(id) => ("payment_id", id, -1),
    };
    let tenant = tx.tenant_id().to_string();
    let done = sqlx::query(&format!(
        "UPDATE idempotency_keys SET status = $1, response = $2 \
         WHERE tenant_id = $3 AND {column} = $4 AND status = 0 \
         AND ($5 = -1 OR lease_until = $5)"
    ))
    .bind(i64::from(status))
    .bind(response)
    .bind(&tenant)
    .bind(value)
    .bind(lease)
    .execute(tx.conn())
    .await?;
    Ok(done.rows_affected())
}

/// `UPDATE`s a payment from one of `from` with `change`; the number of rows changed (0: it
/// was not in one of `from`, or not there at all).
async fn apply_change(
    tx: &mut crate::tx::TenantTx,
    id: &str,
    from: &[&str],
    change: &PaymentChange,
) -> Result<u64, StoreError> {
    let tenant = tx.tenant_id().to_string();
    let placeholders: Vec<String> = (0..from.len()).map(|i| format!("${}", i + 9)).collect();
    let sql = format!(
        "UPDATE payments SET status = $1, captured_amount = COALESCE($2, captured_amount), \
             processor_reference = COALESCE($3, processor_reference), \
             decline_code = COALESCE($4, decline_code), card_country = COALESCE($5, card_country), \
             simulated = COALESCE($6, simulated), updated_at = $7 \
             WHERE tenant_id = $8 AND id = ${} AND status IN ({})",
        from.len() + 9,
        placeholders.join(", ")
    );
    let mut q = sqlx::query(&sql)
        .bind(&change.status)
        .bind(change.captured_amount)
        .bind(change.processor_reference.clone())
        .bind(change.decline_code.clone())
        .bind(change.card_country.clone())
        .bind(change.simulated.map(i64::from))
        .bind(now_ms())
        .bind(&tenant);
    for s in from {
        q = q.bind(*s);
    }
    let done = q.bind(id).execute(tx.conn()).await?;
    Ok(done.rows_affected())
}
