//! `GET /api/v1/alerts` and `POST /api/v1/alerts/{id}/acknowledge|resolve`: what the
//! detection rules raised (`crate::detect`). Platform admins see every alert, the
//! platform's own (no tenant) among them; a tenant's admins and auditors see their
//! tenant's. Every change of status is audited in the alert's tenant's chain.

use axum::extract::{Path, Query, State};
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_identity::{
    page_limit, parse_cursor_param, request_meta, rfc3339, time_id_cursor, Identity, IdentityError,
    Principal,
};
use rampart_store::detection::{AlertQuery, AlertRow, ALERT_STATUSES};
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
}

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
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<AlertRow> for AlertView {
    fn from(a: AlertRow) -> AlertView {
        AlertView {
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
            status: a.status,
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
    /// `open`, `acknowledged` or `resolved`.
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
