//! Reading the logs: `GET /api/v1/audit-events` (the caller's tenant, `audit:read`) and
//! `GET /api/v1/security-events` (platform admins, `security_events:read`).
//!
//! These live in identity rather than in the audit crate because reading them is an
//! access-control question, and the audit crate sits below identity (identity writes
//! audit and security events through it).

use axum::extract::{Query, State};
use rampart_edge::{ApiError, ErrorBody, Json};
use rampart_store::audit_events::{AuditEventRow, AuditQuery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{rbac, rfc3339, Identity, IdentityError, Principal};

pub(crate) fn router() -> OpenApiRouter<Identity> {
    OpenApiRouter::new()
        .routes(routes!(audit_events))
        .routes(routes!(audit_chain))
        .routes(routes!(security_events))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^[0-9]{1,12}$")]
    pub cursor: Option<String>,
    /// 1 to 500; 100 by default.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
    /// Actor id (a user or API key id).
    pub actor: Option<String>,
    /// e.g. `user.create`, `session.login`.
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// RFC 3339; events at or after.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// RFC 3339; events before.
    #[param(format = DateTime)]
    pub to: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEventView {
    pub id: String,
    /// Position in the tenant's hash chain.
    pub seq: i64,
    pub occurred_at: String,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub outcome: String,
    pub request_id: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

impl From<AuditEventRow> for AuditEventView {
    fn from(e: AuditEventRow) -> AuditEventView {
        AuditEventView {
            occurred_at: rfc3339(e.occurred_at),
            changes: serde_json::from_str(&e.changes).unwrap_or(serde_json::Value::Null),
            id: e.id,
            seq: e.seq,
            actor_type: e.actor_type,
            actor_id: e.actor_id,
            action: e.action,
            target_type: e.target_type,
            target_id: e.target_id,
            outcome: e.outcome,
            request_id: e.request_id,
            source_ip: e.source_ip,
            user_agent: e.user_agent,
            prev_hash: e.prev_hash,
            hash: e.hash,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEventView>,
    pub next_cursor: Option<String>,
}

/// A `cursor` that is a sequence number (the audit log's and the security events'): at
/// most twelve digits, since a longer run could read as a card number, which the edge
/// refuses in any URL.
fn seq_cursor(cursor: Option<&str>) -> Result<Option<i64>, IdentityError> {
    cursor
        .map(|c| {
            crate::digits_i64(c)
                .filter(|_| c.len() <= 12)
                .ok_or_else(|| IdentityError::Invalid {
                    field: "cursor",
                    reason: "is not a cursor this API returned".into(),
                })
        })
        .transpose()
}

#[utoipa::path(
    get,
    path = "/api/v1/audit-events",
    tag = "audit",
    security(("bearer" = [])),
    params(AuditParams),
    responses(
        (status = 200, description = "The caller's tenant's events, newest first", body = AuditPage),
        (status = 403, description = "Missing audit:read", body = ErrorBody),
        (status = 422, description = "Invalid filter", body = ErrorBody),
    )
)]
pub async fn audit_events(
    State(identity): State<Identity>,
    principal: Principal,
    Query(params): Query<AuditParams>,
) -> Result<Json<AuditPage>, ApiError> {
    principal.require(rbac::AUDIT_READ)?;
    let limit = crate::page_limit(params.limit, 100, 500)?;
    let before_seq = seq_cursor(params.cursor.as_deref())?;
    let query = AuditQuery {
        before_seq,
        actor_id: params.actor,
        action: params.action,
        target_type: params.target_type,
        target_id: params.target_id,
        from_ms: crate::time_param("from", params.from.as_deref())?,
        to_ms: crate::time_param("to", params.to.as_deref())?,
        limit,
    };
    let rows = identity
        .store()
        .list_audit_events(&principal.scope, &query)
        .await
        .map_err(IdentityError::from)?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|e| e.seq.to_string()))
        .flatten();
    Ok(Json(AuditPage {
        items: rows.into_iter().map(AuditEventView::from).collect(),
        next_cursor,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SecurityParams {
    /// A UTC day, `YYYY-MM-DD`; today by default.
    #[param(format = Date)]
    pub date: Option<String>,
    /// One event type, e.g. `login_failure`.
    pub event: Option<String>,
    /// The newest this many; 1 to 1000, 200 by default.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The `seq` of the first (oldest) event of the previous page: the events before it.
    #[param(pattern = r"^[0-9]{1,12}$")]
    pub cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/security-events",
    tag = "audit",
    security(("bearer" = [])),
    params(SecurityParams),
    responses(
        (status = 200, description = "The cluster's security events of one UTC day (the newest `limit`), oldest first", body = [Object]),
        (status = 403, description = "Missing security_events:read", body = ErrorBody),
    )
)]
pub async fn security_events(
    State(identity): State<Identity>,
    principal: Principal,
    Query(params): Query<SecurityParams>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    principal.require(rbac::SECURITY_EVENTS_READ)?;
    let limit = crate::page_limit(params.limit, 200, 1000)? as usize;
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let day = params
        .date
        .as_deref()
        .map(|d| {
            time::Date::parse(d, &format).map_err(|_| IdentityError::Invalid {
                field: "date",
                reason: "must be YYYY-MM-DD".into(),
            })
        })
        .transpose()?;
    // Every node stores its events in the database; this node's own recent ones may still
    // be on their way there, so they are waited for (a second at most).
    let log = identity.security_log().clone();
    tokio::task::spawn_blocking(move || log.wait_sink(std::time::Duration::from_secs(1)))
        .await
        .map_err(|e| IdentityError::Task(e.to_string()))?;
    let day = day.unwrap_or_else(|| time::OffsetDateTime::now_utc().date());
    let from = (day.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let mut rows = identity
        .store()
        .list_security_events(
            from,
            from + 86_400_000,
            params.event.as_deref(),
            seq_cursor(params.cursor.as_deref())?,
            limit as i64,
        )
        .await
        .map_err(IdentityError::from)?;
    rows.reverse();
    Ok(Json(rows.iter().map(security_event_json).collect()))
}

/// A stored security event in the shape the security log's lines have (`time` and the
/// event's fields; absent fields left out).
fn security_event_json(e: &rampart_store::detection::SecurityEventRow) -> serde_json::Value {
    let mut v = serde_json::json!({
        "seq": e.seq,
        "id": e.id,
        "time": rfc3339(e.occurred_at),
        "event": e.event,
        "severity": e.severity,
    });
    for (k, value) in [
        ("request_id", &e.request_id),
        ("source_ip", &e.source_ip),
        ("tenant_id", &e.tenant_id),
        ("user_id", &e.user_id),
        ("api_key_id", &e.api_key_id),
    ] {
        if let Some(value) = value {
            v[k] = serde_json::Value::String(value.clone());
        }
    }
    let detail: serde_json::Value = serde_json::from_str(&e.detail).unwrap_or_default();
    if !detail.is_null() {
        v["detail"] = detail;
    }
    v
}

/// The state of the caller's tenant's audit chain.
#[derive(Serialize, ToSchema)]
pub struct ChainStatus {
    pub tenant_id: String,
    /// Every event links to the one before, every hash matches its content, and every
    /// checkpoint's signature holds.
    pub ok: bool,
    /// What is wrong, when `ok` is false.
    pub problem: Option<String>,
    /// Events verified.
    pub events: u64,
    /// Signed checkpoints verified.
    pub checkpoints: u64,
    /// Sequence number of the newest event.
    pub head_seq: i64,
    /// The newest signed checkpoint: its sequence number and time (RFC 3339).
    pub last_checkpoint_seq: Option<i64>,
    pub last_checkpoint_at: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/audit-events/chain",
    tag = "audit",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's tenant's chain, verified now (what `rampart audit verify` checks, for one tenant)", body = ChainStatus),
        (status = 403, description = "Missing audit:read", body = ErrorBody),
    )
)]
pub async fn audit_chain(
    State(identity): State<Identity>,
    principal: Principal,
    info: rampart_edge::RequestInfo,
) -> Result<Json<ChainStatus>, ApiError> {
    principal.require(rbac::AUDIT_READ)?;
    let tenant = principal.scope.tenant_id().to_string();
    let verified =
        rampart_audit::chain::verify_tenant(identity.store(), identity.signing_keys(), &tenant)
            .await;
    let (ok, problem, report) = match verified {
        Ok(r) => (true, None, r),
        Err(rampart_audit::chain::VerifyError::Broken(b)) => {
            let mut event =
                rampart_audit::security_log::SecurityEvent::new("audit_chain_broken", "critical");
            event.detail = serde_json::json!({ "seq": b.seq, "reason": b.reason });
            identity.security_event(event, &info, Some(&principal));
            (false, Some(b.to_string()), Default::default())
        }
        Err(e) => return Err(IdentityError::Task(e.to_string()).into()),
    };
    let head = identity
        .store()
        .audit_chain_heads()
        .await
        .map_err(IdentityError::from)?
        .into_iter()
        .find(|h| h.tenant_id == tenant);
    Ok(Json(ChainStatus {
        tenant_id: tenant,
        ok,
        problem,
        events: report.events,
        checkpoints: report.checkpoints,
        head_seq: head.as_ref().map(|h| h.seq).unwrap_or(0),
        last_checkpoint_seq: head.as_ref().and_then(|h| h.last_checkpoint_seq),
        last_checkpoint_at: head.and_then(|h| h.last_checkpoint_at).map(rfc3339),
    }))
}
