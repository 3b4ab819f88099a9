//! `GET /api/v1/alerts` and `POST /api/v1/alerts/{id}/acknowledge|resolve|snooze|suppress`:
//! what the detection rules raised (`crate::detect`), and `GET/DELETE
//! /api/v1/alert-suppressions`. Platform admins see every alert, the platform's own (no
//! tenant) among them; a tenant's admins and auditors see their tenant's. Every change is
//! audited in the alert's tenant's chain.
//!
//! A snooze hides one alert from the open list until a time (new matches add to it
//! quietly); a suppression keeps new matches of the alert's rule and group from raising
//! anything until it expires, with a reason, and counts what it kept quiet. Neither is a
//! global mute: both name one rule and one group of one tenant, and both end.

use axum::extract::{Path, Query, State};
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_identity::{
    page_limit, parse_cursor_param, request_meta, rfc3339, time_id_cursor, Identity, IdentityError,
    Principal,
};
use rampart_store::detection::{
    AlertQuery, AlertRow, NewSuppression, SuppressionRow, ALERT_STATUSES,
};
use rampart_store::Role;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use rampart_identity::rbac::{ALERTS_READ, ALERTS_WRITE};

/// Who reads and handles alerts: platform admins (all), tenant admins (their tenant's),
/// auditors (read).
pub fn register_permissions(b: &mut rampart_identity::rbac::RbacBuilder) {
    b.grant(Role::PlatformAdmin, &[ALERTS_READ, ALERTS_WRITE]);
    b.grant(Role::TenantAdmin, &[ALERTS_READ, ALERTS_WRITE]);
    b.grant(Role::Auditor, &[ALERTS_READ]);
}

pub(crate) fn router() -> OpenApiRouter<Identity> {
    OpenApiRouter::new()
        .routes(routes!(list_alerts))
        .routes(routes!(acknowledge))
        .routes(routes!(resolve))
        .routes(routes!(snooze))
        .routes(routes!(suppress))
        .routes(routes!(list_suppressions))
        .routes(routes!(lift_suppression))
}

/// The longest snooze: a week (longer is a suppression, which says why).
const MAX_SNOOZE_MS: i64 = 7 * 24 * 3_600_000;
/// The longest suppression: 90 days, then it is looked at again.
const MAX_SUPPRESSION_MS: i64 = 90 * 24 * 3_600_000;

const LEVELS: &[&str] = &["informational", "low", "medium", "high", "critical"];

#[derive(Serialize, ToSchema)]
pub struct AlertView {
    pub id: String,
    /// The Sigma rule's id, e.g. `rampart-password-spraying`.
    pub rule_id: String,
    pub title: String,
    /// `informational`, `low`, `medium`, `high` or `critical`.
    pub level: String,
    /// The tenant the alert is about; absent for a platform alert.
    pub tenant_id: Option<String>,
    /// The rule's group-by values (`source_ip`, `user_id`, ...).
    #[schema(value_type = Object)]
    pub group: serde_json::Value,
    /// MITRE ATT&CK technique ids.
    pub techniques: Vec<String>,
    /// Events (or distinct values) counted, the largest seen while the alert was open.
    pub event_count: i64,
    /// Ids of the newest events counted (at most ten).
    pub event_ids: Vec<String>,
    pub first_event_at: String,
    pub last_event_at: String,
    /// `open`, `acknowledged`, `snoozed` (until `snoozed_until`) or `resolved`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snoozed_until: Option<String>,
    /// How its mail went out: `none`, `immediate`, `digest` (waiting) or `digested`.
    pub mail_delivery: String,
    /// The same for its webhook event.
    pub webhook_delivery: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<AlertRow> for AlertView {
    fn from(a: AlertRow) -> AlertView {
        let now = rampart_store::now_ms();
        let status = a.shown_status(now).to_string();
        AlertView {
            snoozed_until: a
                .snoozed_until
                .filter(|u| *u > now && status == "snoozed")
                .map(rfc3339),
            mail_delivery: a.mail_delivery,
            webhook_delivery: a.webhook_delivery,
            group: serde_json::from_str(&a.group_key).unwrap_or_default(),
            techniques: a
                .techniques
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
            event_ids: serde_json::from_str(&a.event_ids).unwrap_or_default(),
            first_event_at: rfc3339(a.first_event_at),
            last_event_at: rfc3339(a.last_event_at),
            created_at: rfc3339(a.created_at),
            updated_at: rfc3339(a.updated_at),
            id: a.id,
            rule_id: a.rule_id,
            title: a.title,
            level: a.level,
            tenant_id: a.tenant_id,
            event_count: a.event_count,
            status,
        }
    }
}

fn status_schema() -> utoipa::openapi::Object {
    rampart_edge::string_enum_schema(ALERT_STATUSES)
}

fn level_schema() -> utoipa::openapi::Object {
    rampart_edge::string_enum_schema(LEVELS)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertParams {
    /// `open`, `acknowledged`, `snoozed` or `resolved`.
    #[param(schema_with = status_schema, required = false)]
    pub status: Option<String>,
    /// `informational`, `low`, `medium`, `high` or `critical`.
    #[param(schema_with = level_schema, required = false)]
    pub level: Option<String>,
    /// A rule id.
    pub rule: Option<String>,
    /// RFC 3339; alerts raised at or after.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// RFC 3339; alerts raised before.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(pattern = r"^1[0-9]{12}\.[A-Za-z0-9_-]{1,64}$")]
    pub cursor: Option<String>,
    /// 1 to 100 (default 25).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AlertPage {
    /// Newest first.
    pub items: Vec<AlertView>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> IdentityError {
    IdentityError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn one_of(field: &'static str, v: &Option<String>, allowed: &[&str]) -> Result<(), IdentityError> {
    match v {
        Some(s) if !allowed.contains(&s.as_str()) => Err(invalid(
            field,
            format!("must be one of {}", allowed.join(", ")),
        )),
        _ => Ok(()),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    security(("bearer" = [])),
    params(AlertParams),
    responses(
        (status = 200, description = "Alerts newest first: every tenant's and the platform's for platform admins, else the caller's tenant's", body = AlertPage),
        (status = 403, description = "Missing alerts:read", body = ErrorBody),
    )
)]
pub async fn list_alerts(
    State(identity): State<Identity>,
    principal: Principal,
    Query(q): Query<AlertParams>,
) -> Result<Json<AlertPage>, ApiError> {
    principal.require(ALERTS_READ)?;
    one_of("status", &q.status, ALERT_STATUSES)?;
    one_of("level", &q.level, LEVELS)?;
    let limit = page_limit(q.limit, 25, 100)?;
    let query = AlertQuery {
        status: q.status,
        level: q.level,
        rule_id: q.rule,
        from_ms: rampart_identity::time_param("from", q.from.as_deref())?,
        to_ms: rampart_identity::time_param("to", q.to.as_deref())?,
        before: parse_cursor_param(q.cursor.as_deref())?,
        limit: limit + 1,
    };
    let scope = (!principal.is_platform_admin()).then_some(&principal.scope);
    let mut rows = identity
        .store()
        .list_alerts(scope, &query)
        .await
        .map_err(IdentityError::from)?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = more
        .then(|| rows.last().map(|a| time_id_cursor(a.created_at, &a.id)))
        .flatten();
    Ok(Json(AlertPage {
        items: rows.into_iter().map(AlertView::from).collect(),
        next_cursor,
    }))
}

async fn set_status(
    identity: &Identity,
    principal: &Principal,
    info: &RequestInfo,
    id: &str,
    status: &str,
) -> Result<Json<AlertView>, ApiError> {
    // Another tenant's alert does not exist for the caller (404 before 403, as for every
    // resource).
    let scope = (!principal.is_platform_admin()).then_some(&principal.scope);
    let before = identity
        .store()
        .get_alert(scope, id)
        .await
        .map_err(IdentityError::from)?;
    principal.require(ALERTS_WRITE)?;
    let audit = rampart_audit::event(
        principal.actor(),
        &format!(
            "alert.{}",
            if status == "resolved" {
                "resolve"
            } else {
                "acknowledge"
            }
        ),
        "alert",
        request_meta(info),
    )
    .changes(json!({ "status": { "from": before.status, "to": status } }))
    .build();
    let alert = identity
        .store()
        .set_alert_status(&before.id, status, audit)
        .await
        .map_err(IdentityError::from)?;
    Ok(Json(AlertView::from(alert)))
}

#[utoipa::path(
    post,
    path = "/api/v1/alerts/{alert_id}/acknowledge",
    tag = "alerts",
    security(("bearer" = [])),
    params(("alert_id" = String, Path)),
    responses(
        (status = 200, description = "Acknowledged: someone is on it (audited)", body = AlertView),
        (status = 403, description = "Missing alerts:write", body = ErrorBody),
        (status = 404, description = "No such alert, or not the caller's tenant's", body = ErrorBody),
    )
)]
pub async fn acknowledge(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Path(alert_id): Path<String>,
) -> Result<Json<AlertView>, ApiError> {
    set_status(&identity, &principal, &info, &alert_id, "acknowledged").await
}

#[utoipa::path(
    post,
    path = "/api/v1/alerts/{alert_id}/resolve",
    tag = "alerts",
    security(("bearer" = [])),
    params(("alert_id" = String, Path)),
    responses(
        (status = 200, description = "Resolved (audited); a new match of its rule and group raises a new alert", body = AlertView),
        (status = 403, description = "Missing alerts:write", body = ErrorBody),
        (status = 404, description = "No such alert, or not the caller's tenant's", body = ErrorBody),
    )
)]
pub async fn resolve(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Path(alert_id): Path<String>,
) -> Result<Json<AlertView>, ApiError> {
    set_status(&identity, &principal, &info, &alert_id, "resolved").await
}

#[derive(Deserialize, ToSchema)]
pub struct SnoozeRequest {
    /// RFC 3339, in the future, at most seven days ahead.
    #[schema(format = DateTime)]
    pub until: String,
}

/// A time in `(now, now + max]`, from RFC 3339.
fn future_time(field: &'static str, value: &str, max_ms: i64) -> Result<i64, IdentityError> {
    let at = rampart_identity::time_param(field, Some(value))?
        .ok_or_else(|| invalid(field, "is required"))?;
    let now = rampart_store::now_ms();
    if at <= now {
        return Err(invalid(field, "must be in the future"));
    }
    if at > now + max_ms {
        return Err(invalid(
            field,
            format!("must be at most {} days ahead", max_ms / 86_400_000),
        ));
    }
    Ok(at)
}

/// The alert the caller may change (404 for another tenant's, before the 403 of a
/// missing `alerts:write`).
async fn writable_alert(
    identity: &Identity,
    principal: &Principal,
    id: &str,
) -> Result<AlertRow, ApiError> {
    let scope = (!principal.is_platform_admin()).then_some(&principal.scope);
    let alert = identity
        .store()
        .get_alert(scope, id)
        .await
        .map_err(IdentityError::from)?;
    principal.require(ALERTS_WRITE)?;
    Ok(alert)
}

#[utoipa::path(
    post,
    path = "/api/v1/alerts/{alert_id}/snooze",
    tag = "alerts",
    security(("bearer" = [])),
    params(("alert_id" = String, Path)),
    request_body = SnoozeRequest,
    responses(
        (status = 200, description = "Snoozed (audited): out of the open list until `until`; new matches add to it without a mail", body = AlertView),
        (status = 403, description = "Missing alerts:write", body = ErrorBody),
        (status = 404, description = "No such alert, or not the caller's tenant's", body = ErrorBody),
        (status = 409, description = "The alert is resolved", body = ErrorBody),
        (status = 422, description = "`until` is not a time within the next seven days", body = ErrorBody),
    )
)]
pub async fn snooze(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Path(alert_id): Path<String>,
    Json(body): Json<SnoozeRequest>,
) -> Result<Json<AlertView>, ApiError> {
    let before = writable_alert(&identity, &principal, &alert_id).await?;
    let until = future_time("until", &body.until, MAX_SNOOZE_MS)?;
    if before.status == "resolved" {
        return Err(ApiError::conflict(
            "alert_resolved",
            "A resolved alert cannot be snoozed.",
        ));
    }
    let audit = rampart_audit::event(principal.actor(), "alert.snooze", "alert", request_meta(&info))
        .changes(json!({ "snoozed_until": { "from": before.snoozed_until.map(rfc3339), "to": rfc3339(until) } }))
        .build();
    let alert = identity
        .store()
        .snooze_alert(&before.id, until, audit)
        .await
        .map_err(IdentityError::from)?;
    Ok(Json(AlertView::from(alert)))
}

#[derive(Deserialize, ToSchema)]
pub struct SuppressRequest {
    /// Why the matches are benign (1 to 500 characters; kept in the audit log).
    pub reason: String,
    /// RFC 3339, in the future, at most 90 days ahead.
    #[schema(format = DateTime)]
    pub until: String,
}

#[derive(Serialize, ToSchema)]
pub struct SuppressionView {
    pub id: String,
    /// Absent: a suppression of platform alerts.
    pub tenant_id: Option<String>,
    pub rule_id: String,
    /// The group whose matches are kept quiet (as in the alert).
    #[schema(value_type = Object)]
    pub group: serde_json::Value,
    pub reason: String,
    /// Who made it (`user:…`).
    pub created_by: String,
    pub created_at: String,
    pub expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifted_at: Option<String>,
    /// `active`, `expired` or `lifted`.
    pub state: String,
    /// Matches it kept quiet.
    pub suppressed_count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_suppressed_at: Option<String>,
}

impl From<SuppressionRow> for SuppressionView {
    fn from(s: SuppressionRow) -> SuppressionView {
        let state = if s.lifted_at.is_some() {
            "lifted"
        } else if s.expires_at <= rampart_store::now_ms() {
            "expired"
        } else {
            "active"
        };
        SuppressionView {
            group: serde_json::from_str(&s.group_key).unwrap_or_default(),
            created_at: rfc3339(s.created_at),
            expires_at: rfc3339(s.expires_at),
            lifted_at: s.lifted_at.map(rfc3339),
            last_suppressed_at: s.last_suppressed_at.map(rfc3339),
            state: state.into(),
            id: s.id,
            tenant_id: s.tenant_id,
            rule_id: s.rule_id,
            reason: s.reason,
            created_by: s.created_by,
            suppressed_count: s.suppressed_count,
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/alerts/{alert_id}/suppress",
    tag = "alerts",
    security(("bearer" = [])),
    params(("alert_id" = String, Path)),
    request_body = SuppressRequest,
    responses(
        (status = 201, description = "Suppressed (audited): new matches of the alert's rule and group raise nothing until `until`", body = SuppressionView),
        (status = 403, description = "Missing alerts:write", body = ErrorBody),
        (status = 404, description = "No such alert, or not the caller's tenant's", body = ErrorBody),
        (status = 422, description = "No reason, or `until` not within the next 90 days", body = ErrorBody),
    )
)]
pub async fn suppress(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Path(alert_id): Path<String>,
    Json(body): Json<SuppressRequest>,
) -> Result<(axum::http::StatusCode, Json<SuppressionView>), ApiError> {
    let alert = writable_alert(&identity, &principal, &alert_id).await?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(invalid("reason", "must be 1 to 500 characters").into());
    }
    let until = future_time("until", &body.until, MAX_SUPPRESSION_MS)?;
    let actor = principal.actor();
    let audit = rampart_audit::event(
        actor.clone(),
        "alert.suppress",
        "alert_suppression",
        request_meta(&info),
    )
    .changes(json!({
        "alert_id": alert.id,
        "rule_id": alert.rule_id,
        "group": serde_json::from_str::<serde_json::Value>(&alert.group_key).unwrap_or_default(),
        "reason": reason,
        "expires_at": rfc3339(until),
    }))
    .build();
    let made = identity
        .store()
        .create_suppression(
            &NewSuppression {
                tenant_id: alert.tenant_id.clone(),
                rule_id: alert.rule_id.clone(),
                group_key: alert.group_key.clone(),
                reason: reason.to_string(),
                created_by: format!("{}:{}", actor.kind(), actor.id().unwrap_or("")),
                expires_at: until,
            },
            audit,
        )
        .await
        .map_err(IdentityError::from)?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(SuppressionView::from(made)),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuppressionParams {
    /// `true`: expired and lifted ones too (default: those in force).
    pub all: Option<bool>,
    /// 1 to 100 (default 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/alert-suppressions",
    tag = "alerts",
    security(("bearer" = [])),
    params(SuppressionParams),
    responses(
        (status = 200, description = "Suppressions newest first: every tenant's for platform admins, else the caller's tenant's", body = Vec<SuppressionView>),
        (status = 403, description = "Missing alerts:read", body = ErrorBody),
    )
)]
pub async fn list_suppressions(
    State(identity): State<Identity>,
    principal: Principal,
    Query(q): Query<SuppressionParams>,
) -> Result<Json<Vec<SuppressionView>>, ApiError> {
    principal.require(ALERTS_READ)?;
    let limit = page_limit(q.limit, 100, 100)?;
    let scope = (!principal.is_platform_admin()).then_some(&principal.scope);
    let rows = identity
        .store()
        .list_suppressions(scope, q.all.unwrap_or(false), limit)
        .await
        .map_err(IdentityError::from)?;
    Ok(Json(rows.into_iter().map(SuppressionView::from).collect()))
}

#[utoipa::path(
    delete,
    path = "/api/v1/alert-suppressions/{suppression_id}",
    tag = "alerts",
    security(("bearer" = [])),
    params(("suppression_id" = String, Path)),
    responses(
        (status = 200, description = "Lifted (audited): matches raise alerts again", body = SuppressionView),
        (status = 403, description = "Missing alerts:write", body = ErrorBody),
        (status = 404, description = "No suppression in force by that id for the caller", body = ErrorBody),
    )
)]
pub async fn lift_suppression(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Path(suppression_id): Path<String>,
) -> Result<Json<SuppressionView>, ApiError> {
    // Another tenant's suppression does not exist for the caller (404 before 403).
    let scope = (!principal.is_platform_admin()).then_some(&principal.scope);
    identity
        .store()
        .get_suppression(scope, &suppression_id)
        .await
        .map_err(IdentityError::from)?;
    principal.require(ALERTS_WRITE)?;
    let audit = rampart_audit::event(
        principal.actor(),
        "alert.suppression_lift",
        "alert_suppression",
        request_meta(&info),
    )
    .build();
    let lifted = identity
        .store()
        .lift_suppression(scope, &suppression_id, audit)
        .await
        .map_err(IdentityError::from)?;
    Ok(Json(SuppressionView::from(lifted)))
}
