//! `POST /api/v1/auth/password-reset` and `…/confirm`: password reset by e-mail.
//!
//! The request is answered `202` before anything about the address is looked up: the
//! lookup, the token and the mail happen in a task after the answer, so status, body and
//! timing are the same whether an account exists or not. A single-use link (30 min,
//! stored as a digest) goes to the address; at most 3 a window per address (the rest are
//! dropped silently) and the login window's IP limit per client address. Confirming sets
//! the new password, ends every session of the user (every refresh and access token stops
//! working), voids their other reset links, and mails a security notice.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_notify::{Channel, Locale, Notification};
use rampart_store::account::NewToken;
use rampart_store::{Actor, Email, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::request_meta;
use crate::account::{PASSWORD_CHANGED, PASSWORD_RESET, RESET_TTL_SECS};
use crate::{Identity, IdentityError};

const RESET_TOKEN_PREFIX: &str = "rst_";
/// Reset mails one address gets per login window.
const RESETS_PER_ADDRESS: u32 = 3;
/// Reset requests one client address may make per login window.
const RESETS_PER_IP: u32 = 20;

#[derive(Deserialize, ToSchema)]
pub struct ResetRequest {
    pub email: String,
    /// `id` or `en` for the mail (a region such as `en-GB` is ignored); without it, from
    /// `Accept-Language`.
    #[schema(pattern = r"^\s*([iI][dD]|[eE][nN])([-_][\s\S]*|\s*)$")]
    pub locale: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ResetResponse {
    /// Always `sent_if_registered`.
    pub status: &'static str,
}

#[utoipa::path(
    post,
    operation_id = "request_password_reset",
    path = "/api/v1/auth/password-reset",
    tag = "auth",
    request_body = ResetRequest,
    responses(
        (status = 202, description = "A link was mailed if the address has an account", body = ResetResponse),
        (status = 422, description = "Unknown locale", body = ErrorBody),
        (status = 429, description = "Too many requests from this address", body = ErrorBody),
    )
)]
pub async fn request(
    State(identity): State<Identity>,
    info: RequestInfo,
    headers: HeaderMap,
    Json(body): Json<ResetRequest>,
) -> Result<(StatusCode, Json<ResetResponse>), ApiError> {
    super::throttle_ip(&identity, &info, "reset", RESETS_PER_IP).await?;
    let locale = super::locale(body.locale.as_deref(), &headers)?;
    // An address that does not parse gets the same answer: it has no account.
    if let Ok(email) = Email::parse(&body.email) {
        let (identity, info) = (identity.clone(), info.clone());
        tokio::spawn(async move {
            if let Err(e) = send_reset(&identity, &info, email, locale).await {
                tracing::warn!(error = %e, "password reset mail not written");
            }
        });
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(ResetResponse {
            status: "sent_if_registered",
        }),
    ))
}

async fn send_reset(
    identity: &Identity,
    info: &RequestInfo,
    email: Email,
    fallback: Locale,
) -> Result<(), IdentityError> {
    let window = std::time::Duration::from_secs(identity.config().login_window_secs);
    let hit = identity
        .throttle()
        .hit(
            &format!(
                "reset:acct:{}",
                rampart_crypto::secret_digest(email.as_str())
            ),
            window,
        )
        .await
        .map_err(|e| IdentityError::ThrottleUnavailable(e.to_string()))?;
    if hit.attempts > RESETS_PER_ADDRESS {
        return Ok(());
    }
    let Some((user, stored_locale)) = identity.store().user_for_reset(&email).await? else {
        return Ok(());
    };
    let locale = Locale::parse(&stored_locale).unwrap_or(fallback);
    let token = rampart_crypto::random_secret(RESET_TOKEN_PREFIX, 32);
    let notify = identity.notify();
    let now = rampart_store::now_ms();
    let mail = notify
        .prepare(Notification {
            tenant: user.tenant_id.clone(),
            channel: Channel::Email,
            to: user.email.clone(),
            template: PASSWORD_RESET.into(),
            locale,
            data: serde_json::json!({
                "link": notify.link(&format!("/reset-password#token={token}")),
            }),
            // One mail per account per minute, however often the form is sent.
            dedupe_key: Some(format!("password_reset:{}:{}", user.id, now / 60_000)),
            subject_id: Some(user.id.clone()),
        })
        .await?;
    let audit = rampart_audit::event(
        Actor::System,
        "user.password_reset_requested",
        "user",
        request_meta(info),
    )
    .build();
    let written = identity
        .store()
        .request_password_reset(
            &user,
            &NewToken {
                digest: rampart_crypto::secret_digest(&token),
                expires_at: now + RESET_TTL_SECS * 1000,
            },
            &mail,
            audit,
        )
        .await?;
    if written {
        notify.wake();
    }
    Ok(())
}

/// Deliberately not `Debug`: the token and password must not reach a log.
#[derive(Deserialize, ToSchema)]
pub struct ConfirmRequest {
    pub token: String,
    #[schema(min_length = 12, max_length = 1024)]
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConfirmResponse {
    /// Always true: log in with the new password.
    pub reset: bool,
}

#[utoipa::path(
    post,
    operation_id = "confirm_password_reset",
    path = "/api/v1/auth/password-reset/confirm",
    tag = "auth",
    request_body = ConfirmRequest,
    responses(
        (status = 200, description = "Password set; every session of the user ended", body = ConfirmResponse),
        (status = 400, description = "Unknown, expired or used link", body = ErrorBody),
        (status = 422, description = "Weak password", body = ErrorBody),
    )
)]
pub async fn confirm(
    State(identity): State<Identity>,
    info: RequestInfo,
    Json(body): Json<ConfirmRequest>,
) -> Result<Json<ConfirmResponse>, ApiError> {
    super::throttle_ip(&identity, &info, "reset_confirm", RESETS_PER_IP).await?;
    let digest = super::link_token_digest(&body.token, RESET_TOKEN_PREFIX)?;
    let user = identity
        .store()
        .reset_token_user(&digest)
        .await
        .map_err(IdentityError::from)?
        .ok_or(IdentityError::BadLinkToken)?;
    let hash = identity
        .hash_new_password(&user.email, &user.name, body.password)
        .await?;
    let notify = identity.notify();
    let notices =
        crate::account::security_notices(&identity, &user, PASSWORD_CHANGED, serde_json::json!({}))
            .await?;
    let audit = rampart_audit::event(
        Actor::User(user.id.clone()),
        "user.password_reset",
        "user",
        request_meta(&info),
    )
    .build();
    match identity
        .store()
        .reset_password(&digest, &hash, &notices, audit)
        .await
    {
        Ok(_) => {}
        Err(StoreError::NotFound) => return Err(IdentityError::BadLinkToken.into()),
        Err(e) => return Err(IdentityError::Store(e).into()),
    }
    notify.wake();
    let mut event = rampart_audit::security_log::SecurityEvent::new("password_reset", "warning");
    event.user_id = Some(user.id.clone());
    event.tenant_id = Some(user.tenant_id.clone());
    identity.security_event(event, &info, None);
    Ok(Json(ConfirmResponse { reset: true }))
}
