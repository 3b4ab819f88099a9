//! `POST /api/v1/users/me/password`: a signed-in user changes their password.
//!
//! Needs the current password (a stolen session alone cannot lock the owner out), checked
//! like a login and throttled per account (every request counts) and per client address.
//! The new one must pass the same strength policy as any. Every other session of the
//! user ends (this one stays), a notice goes to the account's address, and the change is
//! audited and logged as a security event.

use axum::extract::State;
use axum::http::StatusCode;
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use serde::Deserialize;
use utoipa::ToSchema;

use super::request_meta;
use crate::account::PASSWORD_CHANGED;
use crate::{Identity, IdentityError, Principal};

/// Changes one account may try per login window (right password or not).
const CHANGES_PER_ACCOUNT: u32 = 5;
const CHANGES_PER_IP: u32 = 20;

/// Deliberately not `Debug`: it carries two passwords.
#[derive(Deserialize, ToSchema)]
pub struct PasswordChangeRequest {
    #[schema(max_length = 1024)]
    pub current_password: String,
    /// At least `auth.password_min_length` characters and strong enough for zxcvbn's
    /// `auth.password_min_score`.
    #[schema(min_length = 12, max_length = 1024)]
    pub new_password: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/users/me/password",
    tag = "users",
    security(("bearer" = [])),
    request_body = PasswordChangeRequest,
    responses(
        (status = 204, description = "Changed; the user's other sessions have ended"),
        (status = 401, description = "Wrong current password", body = ErrorBody),
        (status = 403, description = "API keys have no password", body = ErrorBody),
        (status = 422, description = "The new password is too weak (`new_password`)", body = ErrorBody),
        (status = 429, description = "Too many attempts; see Retry-After", body = ErrorBody),
    )
)]
pub async fn change(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Json(body): Json<PasswordChangeRequest>,
) -> Result<StatusCode, ApiError> {
    let user = principal.require_user()?.clone();
    let session_id = principal.session_id().unwrap_or_default().to_string();
    super::throttle_ip(&identity, &info, "password_change", CHANGES_PER_IP).await?;
    let account =
        super::email_change::hit(&identity, &format!("password_change:acct:{}", user.id)).await?;
    if account.attempts > CHANGES_PER_ACCOUNT {
        return Err(IdentityError::Locked {
            retry_after_secs: account.resets_in.as_secs().max(1),
        }
        .into());
    }
    if !super::current_password_matches(&identity, &user, body.current_password).await? {
        let mut event =
            rampart_audit::security_log::SecurityEvent::new("password_change_failure", "warning");
        event.user_id = Some(user.id.clone());
        identity.security_event(event, &info, Some(&principal));
        return Err(IdentityError::InvalidCredentials.into());
    }
    let hash = identity
        .hash_new_password(&user.email, &user.name, body.new_password)
        .await
        .map_err(|e| match e {
            IdentityError::Invalid {
                field: "password",
                reason,
            } => IdentityError::Invalid {
                field: "new_password",
                reason,
            },
            other => other,
        })?;
    let notices =
        crate::account::security_notices(&identity, &user, PASSWORD_CHANGED, serde_json::json!({}))
            .await?;
    let audit = rampart_audit::event(
        principal.actor(),
        "user.password_change",
        "user",
        request_meta(&info),
    )
    .build();
    identity
        .store()
        .change_password(&user, &hash, &session_id, &notices, audit)
        .await
        .map_err(IdentityError::from)?;
    identity.notify().wake();
    let mut event = rampart_audit::security_log::SecurityEvent::new("password_changed", "info");
    event.user_id = Some(user.id.clone());
    identity.security_event(event, &info, Some(&principal));
    Ok(StatusCode::NO_CONTENT)
}
