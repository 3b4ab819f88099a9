//! The notification routes: the tenant's delivery log and manual resend
//! (`notifications:read`, `notifications:write`), and each user's choices
//! (`GET/PUT /api/v1/users/me/notifications`).
//!
//! Here rather than in `crates/notify` because they are access-control questions and the
//! notify crate sits below identity (identity sends its mail through it), as the audit
//! log's read API does.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_notify::Channel;
use rampart_store::notify::{LogFilter, Notification};
use rampart_store::{Role, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::request_meta;
use crate::{rfc3339, Identity, IdentityError, Principal};

pub const NOTIFICATIONS_READ: &str = "notifications:read";
pub const NOTIFICATIONS_WRITE: &str = "notifications:write";

/// The kind of every security notice (password change, MFA, API keys, new devices).
pub const SECURITY: &str = "security";
/// The kinds a user can choose channels for, and the channels each may use.
pub const KINDS: &[(&str, &[&str])] = &[(SECURITY, &["email", "sms"])];

pub fn register_permissions(rbac: &mut crate::rbac::RbacBuilder) {
    rbac.grant(
        Role::TenantAdmin,
        &[NOTIFICATIONS_READ, NOTIFICATIONS_WRITE],
    );
    rbac.grant(
        Role::PlatformAdmin,
        &[NOTIFICATIONS_READ, NOTIFICATIONS_WRITE],
    );
    rbac.grant(Role::Auditor, &[NOTIFICATIONS_READ]);
}

pub(crate) fn router() -> OpenApiRouter<Identity> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(resend))
        .routes(routes!(get_preferences, put_preferences))
        .routes(routes!(sms_status))
}

fn channel_schema() -> utoipa::openapi::Object {
    rampart_edge::string_enum_schema(&["email", "sms", "webhook"])
}

fn status_schema() -> utoipa::openapi::Object {
    rampart_edge::string_enum_schema(&["queued", "sent", "delivered", "failed", "dead"])
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// `email`, `sms` or `webhook`.
    #[param(schema_with = channel_schema, required = false)]
    pub channel: Option<String>,
    /// `queued`, `sent`, `delivered` (an SMS the gateway reported received), `failed`
    /// or `dead`.
    #[param(schema_with = status_schema, required = false)]
    pub status: Option<String>,
    /// 1 to 200; 50 by default.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

/// One notification in the log: what and where, never its data (it may hold a link
/// token) nor, for SMS, a number.
#[derive(Serialize, ToSchema)]
pub struct NotificationView {
    pub id: String,
    pub channel: String,
    /// An e-mail address, a user id (SMS) or a webhook endpoint id.
    pub recipient: String,
    pub template: String,
    pub locale: String,
    pub subject_id: Option<String>,
    pub status: String,
    pub attempts: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub sent_at: Option<String>,
}

impl From<Notification> for NotificationView {
    fn from(n: Notification) -> NotificationView {
        NotificationView {
            id: n.id,
            channel: n.channel,
            recipient: n.recipient,
            template: n.template,
            locale: n.locale,
            subject_id: n.subject_id,
            status: n.status,
            attempts: n.attempts,
            last_status_code: n.last_status_code,
            last_error: n.last_error,
            created_at: rfc3339(n.created_at),
            updated_at: rfc3339(n.updated_at),
            sent_at: n.sent_at.map(rfc3339),
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> IdentityError {
    IdentityError::Invalid {
        field,
        reason: reason.into(),
    }
}

#[utoipa::path(
    get,
    operation_id = "list_notifications",
    path = "/api/v1/notifications",
    tag = "notifications",
    security(("bearer" = [])),
    params(LogParams),
    responses(
        (status = 200, description = "The tenant's delivery log, newest first", body = [NotificationView]),
        (status = 403, description = "No notifications:read", body = ErrorBody),
    )
)]
pub async fn list(
    State(identity): State<Identity>,
    principal: Principal,
    Query(q): Query<LogParams>,
) -> Result<Json<Vec<NotificationView>>, ApiError> {
    principal.require(NOTIFICATIONS_READ)?;
    let limit = crate::page_limit(q.limit, 50, 200)?;
    if let Some(c) = &q.channel {
        Channel::parse(c).ok_or_else(|| invalid("channel", "must be email, sms or webhook"))?;
    }
    if let Some(s) = &q.status {
        if !["queued", "sent", "delivered", "failed", "dead"].contains(&s.as_str()) {
            return Err(
                invalid("status", "must be queued, sent, delivered, failed or dead").into(),
            );
        }
    }
    let filter = LogFilter {
        channel: q.channel,
        status: q.status,
        recipient: None,
        before: None,
    };
    let rows = identity
        .store()
        .notifications(&principal.scope, &filter, limit)
        .await
        .map_err(IdentityError::from)?;
    Ok(Json(rows.into_iter().map(NotificationView::from).collect()))
}

#[utoipa::path(
    post,
    path = "/api/v1/notifications/{notification_id}/resend",
    tag = "notifications",
    security(("bearer" = [])),
    params(("notification_id" = String, Path)),
    responses(
        (status = 202, description = "Queued to be sent again, with fresh attempts"),
        (status = 404, description = "No such notification", body = ErrorBody),
    )
)]
pub async fn resend(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let store = identity.store();
    let channel = store
        .notification_channel(&principal.scope, &id)
        .await
        .map_err(IdentityError::from)?
        .ok_or(IdentityError::NotFound)?;
    principal.require(NOTIFICATIONS_WRITE)?;
    let notify = identity.notify();
    let attempts = notify.max_attempts(Channel::parse(&channel).unwrap_or(Channel::Email));
    let audit = rampart_audit::event(
        principal.actor(),
        "notification.resend",
        "notification",
        request_meta(&info),
    )
    .build();
    store
        .resend_notification(&principal.scope, &id, attempts, audit)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => IdentityError::NotFound,
            other => IdentityError::Store(other),
        })?;
    notify.wake();
    Ok(StatusCode::ACCEPTED)
}

/// A delivery receipt from the SMS gateway. Gateways send more (often the number): it is
/// read from the body and never logged.
#[derive(Deserialize, ToSchema)]
pub struct SmsStatus {
    /// The `reference` Rampart sent with the message (the notification id).
    pub reference: String,
    /// `delivered`; `failed`, `undelivered`, `rejected` or `expired` (final); or
    /// `accepted`, `queued`, `sent`, `buffered` (not final: nothing changes).
    pub status: String,
    /// The gateway's reason code for a failure, kept in the log (at most 100 characters).
    pub error_code: Option<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/notify/sms/status",
    tag = "notifications",
    request_body = SmsStatus,
    params(("X-Signature" = String, Header, description = "sha256=<hex HMAC-SHA256 of the body under sms.callback_secret>")),
    responses(
        (status = 204, description = "Recorded (or not final, or about a message not awaiting a receipt)"),
        (status = 401, description = "Missing or wrong signature", body = ErrorBody),
        (status = 404, description = "Callbacks are off (no sms.callback_secret), or no such SMS", body = ErrorBody),
        (status = 422, description = "Unknown status", body = ErrorBody),
    )
)]
pub async fn sms_status(
    State(identity): State<Identity>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let secret = identity.notify().settings().sms_callback_secret.clone();
    if secret.expose().is_empty() {
        return Err(IdentityError::NotFound.into());
    }
    let signature = headers
        .get("x-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !rampart_notify::sms::verify_callback(secret.expose(), signature, &body) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "the callback's X-Signature does not verify",
        ));
    }
    let receipt: SmsStatus = serde_json::from_slice(&body)
        .map_err(|_| invalid("body", "must be {reference, status, error_code?}"))?;
    let Some(delivered) =
        rampart_notify::sms::final_status(&receipt.status).map_err(|e| invalid("status", e))?
    else {
        return Ok(StatusCode::NO_CONTENT);
    };
    let error = (!delivered).then(|| {
        let code: String = receipt
            .error_code
            .as_deref()
            .unwrap_or("")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(100)
            .collect();
        format!("the SMS gateway reported it {} ({code})", receipt.status)
    });
    let store = identity.store();
    if !store
        .record_sms_status(&receipt.reference, delivered, error.as_deref())
        .await
        .map_err(IdentityError::from)?
        && store
            .notification_for_send(&receipt.reference)
            .await
            .map(|n| n.channel != "sms")
            .unwrap_or(true)
    {
        return Err(IdentityError::NotFound.into());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Channels by kind: `{"security": {"email": true, "sms": false}}`.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct Preferences {
    #[schema(value_type = Object)]
    pub kinds: BTreeMap<String, BTreeMap<String, bool>>,
}

/// What a user gets when they chose nothing: e-mail for every kind, no SMS.
fn default_for(channel: &str) -> bool {
    channel == "email"
}

async fn current(identity: &Identity, principal: &Principal) -> Result<Preferences, ApiError> {
    let user = principal.require_user()?;
    let chosen = identity
        .store()
        .notification_preferences(&principal.scope, &user.id)
        .await
        .map_err(IdentityError::from)?;
    let mut kinds = BTreeMap::new();
    for (kind, channels) in KINDS {
        let mut by_channel = BTreeMap::new();
        for channel in *channels {
            let enabled = chosen
                .iter()
                .find(|(k, c, _)| k == kind && c == channel)
                .map(|(_, _, e)| *e)
                .unwrap_or_else(|| default_for(channel));
            by_channel.insert(channel.to_string(), enabled);
        }
        kinds.insert(kind.to_string(), by_channel);
    }
    Ok(Preferences { kinds })
}

#[utoipa::path(
    get,
    path = "/api/v1/users/me/notifications",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Which kinds of notification the caller gets by which channel", body = Preferences),
        (status = 401, description = "No valid access token or session", body = ErrorBody),
    )
)]
pub async fn get_preferences(
    State(identity): State<Identity>,
    principal: Principal,
) -> Result<Json<Preferences>, ApiError> {
    Ok(Json(current(&identity, &principal).await?))
}

#[utoipa::path(
    put,
    path = "/api/v1/users/me/notifications",
    tag = "users",
    security(("bearer" = [])),
    request_body = Preferences,
    responses(
        (status = 200, description = "Stored; the choices now in force", body = Preferences),
        (status = 422, description = "Unknown kind or channel, or security notices by e-mail turned off", body = ErrorBody),
    )
)]
pub async fn put_preferences(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Json(body): Json<Preferences>,
) -> Result<Json<Preferences>, ApiError> {
    let user = principal.require_user()?;
    let mut choices = Vec::new();
    for (kind, channels) in &body.kinds {
        let allowed = KINDS
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, c)| *c)
            .ok_or_else(|| invalid("kinds", "names an unknown kind"))?;
        for (channel, enabled) in channels {
            if !allowed.contains(&channel.as_str()) {
                return Err(invalid("kinds", "names a channel that kind cannot use").into());
            }
            if kind == SECURITY && channel == "email" && !enabled {
                return Err(
                    invalid("kinds", "security notices by e-mail cannot be turned off").into(),
                );
            }
            choices.push((kind.clone(), channel.clone(), *enabled));
        }
    }
    let audit = rampart_audit::event(
        principal.actor(),
        "user.notification_preferences",
        "user",
        request_meta(&info),
    )
    .changes(serde_json::to_value(&body.kinds).unwrap_or_default())
    .build();
    identity
        .store()
        .set_notification_preferences(&principal.scope, &user.id, &choices, audit)
        .await
        .map_err(IdentityError::from)?;
    Ok(Json(current(&identity, &principal).await?))
}
