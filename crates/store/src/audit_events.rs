//! The audit log: one hash chain per tenant.
//!
//! Appending happens inside the transaction of the change it records (the other
//! repository functions call [`append`]), so an event exists exactly when its change does.
//! Each event stores its sequence number in the tenant's chain, the previous event's hash
//! and its own: SHA-256 over a canonical JSON encoding of every stored field (see
//! [`canonical_hash`]). The chain head is locked while an event is appended, so concurrent
//! writers queue instead of forking the chain; the unique `(tenant_id, seq)` index would
//! refuse a fork even if they did not.

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::{new_id, now_ms, Backend, NewAuditEvent, Store, StoreError, TenantScope};

/// `prev_hash` of the first event of every chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One stored event, with its place in the chain.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEventRow {
    pub id: String,
    pub seq: i64,
    pub occurred_at: i64,
    pub tenant_id: String,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub outcome: String,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    /// The changed fields as stored (JSON text, secrets already redacted).
    pub changes: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The fields a hash covers, in a fixed order. Changing this breaks every stored chain:
/// bump `v` and keep the old encoding for old events if it must ever change.
#[derive(Serialize)]
struct Canonical<'a> {
    v: u8,
    tenant_id: &'a str,
    seq: i64,
    prev_hash: &'a str,
    id: &'a str,
    occurred_at: i64,
    actor_type: &'a str,
    actor_id: Option<&'a str>,
    action: &'a str,
    target_type: &'a str,
    target_id: Option<&'a str>,
    outcome: &'a str,
    request_id: Option<&'a str>,
    source_ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    changes: &'a str,
}

/// The hash an event must carry, recomputed from its fields.
pub fn canonical_hash(e: &AuditEventRow) -> String {
    let canonical = Canonical {
        v: 1,
        tenant_id: &e.tenant_id,
        seq: e.seq,
        prev_hash: &e.prev_hash,
        id: &e.id,
        occurred_at: e.occurred_at,
        actor_type: &e.actor_type,
        actor_id: e.actor_id.as_deref(),
        action: &e.action,
        target_type: &e.target_type,
        target_id: e.target_id.as_deref(),
        outcome: &e.outcome,
        request_id: e.request_id.as_deref(),
        source_ip: e.source_ip.as_deref(),
        user_agent: e.user_agent.as_deref(),
        changes: &e.changes,
    };
    // Serialising a struct of strings and integers cannot fail.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    hex(&Sha256::digest(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const COLUMNS: &str =
    "id, seq, occurred_at, tenant_id, actor_type, actor_id, action, target_type, \
     target_id, outcome, request_id, source_ip, user_agent, changes, prev_hash, hash";

fn from_row(r: &AnyRow) -> Result<AuditEventRow, StoreError> {
    Ok(AuditEventRow {
        id: r.try_get("id")?,
        seq: r.try_get::<Option<i64>, _>("seq")?.unwrap_or(0),
        occurred_at: r.try_get("occurred_at")?,
        tenant_id: r.try_get("tenant_id")?,
        actor_type: r.try_get("actor_type")?,
        actor_id: r.try_get("actor_id")?,
        action: r.try_get("action")?,
        target_type: r.try_get("target_type")?,
        target_id: r.try_get("target_id")?,
        outcome: r.try_get("outcome")?,
        request_id: r.try_get("request_id")?,
        source_ip: r.try_get("source_ip")?,
        user_agent: r.try_get("user_agent")?,
        changes: r.try_get("changes")?,
        prev_hash: r
            .try_get::<Option<String>, _>("prev_hash")?
            .unwrap_or_default(),
        hash: r.try_get::<Option<String>, _>("hash")?.unwrap_or_default(),
    })
}

/// Locks the tenant's chain head and returns it. Every tenant gets a head row when it is
/// created, so the lock always has a row to take.
async fn lock_head(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant_id: &str,
) -> Result<(i64, String), StoreError> {
    let sql = match backend {
        Backend::Postgres => "SELECT seq, hash FROM audit_heads WHERE tenant_id = $1 FOR UPDATE",
        // SQLite writers are already serialised (one writer, BEGIN IMMEDIATE).
        Backend::Sqlite => "SELECT seq, hash FROM audit_heads WHERE tenant_id = $1",
    };
    let row = sqlx::query(sql)
        .bind(tenant_id)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => Ok((r.try_get("seq")?, r.try_get("hash")?)),
        None => Err(StoreError::Corrupt(format!(
            "tenant {tenant_id} has no audit chain head"
        ))),
    }
}

pub(crate) async fn create_head(
    conn: &mut AnyConnection,
    tenant_id: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, 0, $2)")
        .bind(tenant_id)
        .bind(GENESIS_HASH)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub(crate) async fn append(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant_id: &str,
    event: &NewAuditEvent,
) -> Result<String, StoreError> {
    let (head_seq, head_hash) = lock_head(conn, backend, tenant_id).await?;
    let mut row = AuditEventRow {
        id: new_id(),
        seq: head_seq + 1,
        occurred_at: now_ms(),
        tenant_id: tenant_id.to_string(),
        actor_type: event.actor.kind().to_string(),
        actor_id: event.actor.id().map(str::to_string),
        action: event.action.clone(),
        target_type: event.target_type.clone(),
        target_id: event.target_id.clone(),
        outcome: event.outcome.clone(),
        request_id: event.meta.request_id.clone(),
        source_ip: event.meta.source_ip.clone(),
        user_agent: event.meta.user_agent.clone(),
        changes: event.changes.to_string(),
        prev_hash: head_hash,
        hash: String::new(),
    };
    row.hash = canonical_hash(&row);
    insert_row(conn, &row).await?;
    sqlx::query("UPDATE audit_heads SET seq = $1, hash = $2 WHERE tenant_id = $3")
        .bind(row.seq)
        .bind(&row.hash)
        .bind(tenant_id)
        .execute(&mut *conn)
        .await?;
    Ok(row.id)
}

async fn insert_row(conn: &mut AnyConnection, e: &AuditEventRow) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "INSERT INTO audit_events ({COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    ))
    .bind(&e.id)
    .bind(e.seq)
    .bind(e.occurred_at)
    .bind(&e.tenant_id)
    .bind(&e.actor_type)
    .bind(e.actor_id.clone())
    .bind(&e.action)
    .bind(&e.target_type)
    .bind(e.target_id.clone())
    .bind(&e.outcome)
    .bind(e.request_id.clone())
    .bind(e.source_ip.clone())
    .bind(e.user_agent.clone())
    .bind(&e.changes)
    .bind(&e.prev_hash)
    .bind(&e.hash)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Filters for listing a tenant's events; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Events with `seq` below this (the cursor of the previous page).
    pub before_seq: Option<i64>,
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// Unix milliseconds, inclusive.
    pub from_ms: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub to_ms: Option<i64>,
    pub limit: i64,
}

/// A signed checkpoint of one tenant's chain.
#[derive(Debug, Clone, Serialize)]
pub struct Checkpoint {
    pub id: String,
    pub tenant_id: String,
    pub seq: i64,
    pub head_hash: String,
    pub created_at: i64,
    pub kid: String,
    pub signature: String,
}

impl Checkpoint {
    /// The bytes the signature covers.
    pub fn signed_message(tenant_id: &str, seq: i64, head_hash: &str, created_at: i64) -> Vec<u8> {
        format!("rampart-audit-checkpoint:v1:{tenant_id}:{seq}:{head_hash}:{created_at}")
            .into_bytes()
    }
}

/// A tenant's chain head, with its newest checkpoint.
#[derive(Debug, Clone)]
pub struct ChainHead {
    pub tenant_id: String,
    pub seq: i64,
    pub hash: String,
    pub last_checkpoint_seq: Option<i64>,
    pub last_checkpoint_at: Option<i64>,
}

impl Store {
    /// A tenant's events, newest first, filtered.
    pub async fn list_audit_events(
        &self,
        scope: &TenantScope,
        q: &AuditQuery,
    ) -> Result<Vec<AuditEventRow>, StoreError> {
        let mut tx = self.tenant_read(scope).await?;
        // Each filter is `($n IS NULL OR column = $n)`, so one statement serves every
        // combination and every value is a bound parameter. The target is the exception:
        // one object's history (a payment's page) must use the (tenant, target, seq)
        // index rather than walk the whole chain, and a planner cannot see through
        // `$n IS NULL OR` to it.
        let target = if q.target_id.is_some() {
            "target_id = $6"
        } else {
            "$6 IS NULL"
        };
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_events WHERE tenant_id = $1 \
             AND ($2 IS NULL OR seq < $2) \
             AND ($3 IS NULL OR actor_id = $3) \
             AND ($4 IS NULL OR action = $4) \
             AND ($5 IS NULL OR target_type = $5) \
             AND {target} \
             AND ($7 IS NULL OR occurred_at >= $7) \
             AND ($8 IS NULL OR occurred_at < $8) \
             ORDER BY seq DESC LIMIT $9"
        ))
        .bind(tx.tenant_id().to_string())
        .bind(q.before_seq)
        .bind(q.actor_id.clone())
        .bind(q.action.clone())
        .bind(q.target_type.clone())
        .bind(q.target_id.clone())
        .bind(q.from_ms)
        .bind(q.to_ms)
        .bind(q.limit)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }

    /// The newest events of a tenant, newest first.
    pub async fn recent_audit_events(
        &self,
        scope: &TenantScope,
        limit: i64,
    ) -> Result<Vec<AuditEventRow>, StoreError> {
        self.list_audit_events(
            scope,
            &AuditQuery {
                limit,
                ..AuditQuery::default()
            },
        )
        .await
    }

    /// Every chain head with its newest checkpoint (for checkpointing and verification).
    pub async fn audit_chain_heads(&self) -> Result<Vec<ChainHead>, StoreError> {
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(
            "SELECT h.tenant_id, h.seq, h.hash, \
             (SELECT MAX(c.seq) FROM audit_checkpoints c WHERE c.tenant_id = h.tenant_id) AS cseq, \
             (SELECT MAX(c.created_at) FROM audit_checkpoints c WHERE c.tenant_id = h.tenant_id) AS cat \
             FROM audit_heads h ORDER BY h.tenant_id",
        )
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(ChainHead {
                    tenant_id: r.try_get("tenant_id")?,
                    seq: r.try_get("seq")?,
                    hash: r.try_get("hash")?,
                    last_checkpoint_seq: r.try_get("cseq")?,
                    last_checkpoint_at: r.try_get("cat")?,
                })
            })
            .collect()
    }

    /// One page of a tenant's chain in order: events with `seq > after_seq`.
    pub async fn audit_chain_page(
        &self,
        tenant_id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditEventRow>, StoreError> {
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_events WHERE tenant_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3"
        ))
        .bind(tenant_id)
        .bind(after_seq)
        .bind(limit)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter().map(from_row).collect()
    }

    /// Events of a tenant that are not in the chain (no sequence number): there should be
    /// none; verification reports any.
    pub async fn unchained_audit_events(&self, tenant_id: &str) -> Result<Vec<String>, StoreError> {
        let mut tx = self.system_read().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM audit_events WHERE tenant_id = $1 AND (seq IS NULL OR hash IS NULL) ORDER BY id",
        )
        .bind(tenant_id)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(ids)
    }

    pub async fn insert_audit_checkpoint(&self, c: &Checkpoint) -> Result<(), StoreError> {
        let mut tx = self.system_write().await?;
        sqlx::query(
            "INSERT INTO audit_checkpoints (id, tenant_id, seq, head_hash, created_at, kid, signature) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&c.id)
        .bind(&c.tenant_id)
        .bind(c.seq)
        .bind(&c.head_hash)
        .bind(c.created_at)
        .bind(&c.kid)
        .bind(&c.signature)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn audit_checkpoints(&self, tenant_id: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let mut tx = self.system_read().await?;
        let rows = sqlx::query(
            "SELECT id, tenant_id, seq, head_hash, created_at, kid, signature \
             FROM audit_checkpoints WHERE tenant_id = $1 ORDER BY seq",
        )
        .bind(tenant_id)
        .fetch_all(tx.conn())
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|r| {
                Ok(Checkpoint {
                    id: r.try_get("id")?,
                    tenant_id: r.try_get("tenant_id")?,
                    seq: r.try_get("seq")?,
                    head_hash: r.try_get("head_hash")?,
                    created_at: r.try_get("created_at")?,
                    kid: r.try_get("kid")?,
                    signature: r.try_get("signature")?,
                })
            })
            .collect()
    }

    /// Chains events recorded before the chain existed (schema version 1), in their
    /// stored order, and gives every tenant a chain head. Idempotent; runs at start.
    pub(crate) async fn backfill_audit_chain(&self) -> Result<u64, StoreError> {
        let mut tx = self.system_write().await?;
        let backend = tx.backend;
        // ON CONFLICT: nodes starting together on PostgreSQL both find the head missing.
        sqlx::query(
            "INSERT INTO audit_heads (tenant_id, seq, hash) \
             SELECT t.id, 0, $1 FROM tenants t \
             WHERE NOT EXISTS (SELECT 1 FROM audit_heads h WHERE h.tenant_id = t.id) \
             ON CONFLICT (tenant_id) DO NOTHING",
        )
        .bind(GENESIS_HASH)
        .execute(tx.conn())
        .await?;
        let legacy = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_events WHERE seq IS NULL ORDER BY tenant_id, occurred_at, id"
        ))
        .fetch_all(tx.conn())
        .await?;
        let mut chained = 0;
        for r in &legacy {
            let mut row = from_row(r)?;
            let (seq, hash) = lock_head(tx.conn(), backend, &row.tenant_id).await?;
            row.seq = seq + 1;
            row.prev_hash = hash;
            row.hash = canonical_hash(&row);
            sqlx::query(
                "UPDATE audit_events SET seq = $1, prev_hash = $2, hash = $3 WHERE id = $4",
            )
            .bind(row.seq)
            .bind(&row.prev_hash)
            .bind(&row.hash)
            .bind(&row.id)
            .execute(tx.conn())
            .await?;
            sqlx::query("UPDATE audit_heads SET seq = $1, hash = $2 WHERE tenant_id = $3")
                .bind(row.seq)
                .bind(&row.hash)
                .bind(&row.tenant_id)
                .execute(tx.conn())
                .await?;
            chained += 1;
        }
        tx.commit().await?;
        Ok(chained)
    }
}
