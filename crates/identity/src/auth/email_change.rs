//! `POST /api/v1/users/me/email` and `POST /api/v1/auth/email-change/confirm`: changing
//! one's e-mail address, confirmed from the new address.
//!
//! The request needs the caller's current password (a stolen access token alone cannot
//! move the account to another mailbox). It sends a single-use link (24 h, stored as a
//! digest, an earlier unused one voided) to the new address and a notice to the old one.
//! Whether another account already has the new address is not looked at then: the answer
//! is the same either way (no oracle of who has an account), and confirming such a link
//! fails with `email_taken`. Confirming switches the address (normalised as every e-mail
//! is: NFKC, lower case), audited. Throttled per client address, per account (every
//! request counts, so the password cannot be guessed here) and per new address (beyond
//! the limit the mails are dropped, the answer unchanged, so nobody is mail-bombed).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_notify::{Channel, Notification};
use rampart_store::account::NewToken;
use rampart_store::{Actor, Email, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::request_meta;
use crate::account::{EMAIL_CHANGE, EMAIL_CHANGE_NOTICE, EMAIL_CHANGE_TTL_SECS};
use crate::{Identity, IdentityError, Principal};

const CHANGE_TOKEN_PREFIX: &str = "eml_";
/// Change requests one client address may make per login window.
const CHANGES_PER_IP: u32 = 20;
/// Change requests one account may make per login window (right password or not).
const CHANGES_PER_ACCOUNT: u32 = 5;
/// Confirmation mails one new address gets per login window.
const CHANGES_PER_NEW_ADDRESS: u32 = 3;

/// Deliberately not `Debug`: the password must not reach a log.
#[derive(Deserialize, ToSchema)]
pub struct EmailChangeRequest {
    /// The new address.
    pub email: String,
    /// The caller's current password.
    pub password: String,
    /// `id` or `en` for the mails; without it, from `Accept-Language`.
    pub locale: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EmailChangeResponse {
    /// Always `confirmation_sent`: open the link mailed to the new address.
    pub status: &'static str,
}

pub(super) async fn hit(
    identity: &Identity,
    key: &str,
) -> Result<crate::throttle::Hit, IdentityError> {
    let window = std::time::Duration::from_secs(identity.config().login_window_secs);
    identity
        .throttle()
        .hit(key, window)
        .await
        .map_err(|e| IdentityError::ThrottleUnavailable(e.to_string()))
}

#[utoipa::path(
    post,
    operation_id = "request_email_change",
    path = "/api/v1/users/me/email",
    tag = "users",
    security(("bearer" = [])),
    request_body = EmailChangeRequest,
    responses(
        (status = 202, description = "A confirmation link was mailed to the new address, a notice to the old", body = EmailChangeResponse),
        (status = 401, description = "Wrong current password", body = ErrorBody),
        (status = 422, description = "Not an e-mail address, the same address, or an unknown locale", body = ErrorBody),
        (status = 429, description = "Too many requests", body = ErrorBody),
    )
)]
pub async fn request(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    headers: HeaderMap,
    Json(body): Json<EmailChangeRequest>,
) -> Result<(StatusCode, Json<EmailChangeResponse>), ApiError> {
    let user = principal.require_user()?.clone();
    super::throttle_ip(&identity, &info, "email_change", CHANGES_PER_IP).await?;
    let account = hit(&identity, &format!("email_change:acct:{}", user.id)).await?;
    if account.attempts > CHANGES_PER_ACCOUNT {
        return Err(IdentityError::Locked {
            retry_after_secs: account.resets_in.as_secs().max(1),
        }
        .into());
    }
    let locale = super::locale(body.locale.as_deref(), &headers)?;
    let new_email = Email::parse(&body.email).map_err(|reason| IdentityError::Invalid {
        field: "email",
        reason,
    })?;
    if new_email.as_str() == user.email {
        return Err(IdentityError::Invalid {
            field: "email",
            reason: "is already the account's address".into(),
        }
        .into());
    }
    let matches = super::current_password_matches(&identity, &user, body.password).await?;
    if !matches {
        let mut event =
            rampart_audit::security_log::SecurityEvent::new("email_change_failure", "warning");
        event.user_id = Some(user.id.clone());
        identity.security_event(event, &info, Some(&principal));
        return Err(IdentityError::InvalidCredentials.into());
    }

    let answer = (
        StatusCode::ACCEPTED,
        Json(EmailChangeResponse {
            status: "confirmation_sent",
        }),
    );
    let to_new = hit(
        &identity,
        &format!(
            "email_change:to:{}",
            rampart_crypto::secret_digest(new_email.as_str())
        ),
    )
    .await?;
    if to_new.attempts > CHANGES_PER_NEW_ADDRESS {
        return Ok(answer);
    }
    let token = rampart_crypto::random_secret(CHANGE_TOKEN_PREFIX, 32);
    let notify = identity.notify();
    let mail = |to: &str, template: &str, data: serde_json::Value| Notification {
        tenant: user.tenant_id.clone(),
        channel: Channel::Email,
        to: to.to_string(),
        template: template.to_string(),
        locale,
        data,
        dedupe_key: None,
        subject_id: Some(user.id.clone()),
    };
    let mails = vec![
        notify
            .prepare(mail(
                new_email.as_str(),
                EMAIL_CHANGE,
                serde_json::json!({
                    "link": notify.link(&format!("/confirm-email#token={token}")),
                }),
            ))
            .await
            .map_err(IdentityError::from)?,
        notify
            .prepare(mail(
                &user.email,
                EMAIL_CHANGE_NOTICE,
                serde_json::json!({ "new_email": new_email.as_str() }),
            ))
            .await
            .map_err(IdentityError::from)?,
    ];
    let audit = rampart_audit::event(
        principal.actor(),
        "user.email_change_requested",
        "user",
        request_meta(&info),
    )
    .changes(serde_json::json!({ "new_email": new_email.as_str() }))
    .build();
    identity
        .store()
        .request_email_change(
            &user,
            &new_email,
            &NewToken {
                digest: rampart_crypto::secret_digest(&token),
                expires_at: rampart_store::now_ms() + EMAIL_CHANGE_TTL_SECS * 1000,
            },
            &mails,
            audit,
        )
        .await
        .map_err(IdentityError::from)?;
    notify.wake();
    Ok(answer)
}

/// Deliberately not `Debug`: the token must not reach a log.
#[derive(Deserialize, ToSchema)]
pub struct EmailChangeConfirm {
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct EmailChangeConfirmed {
    /// The account's address now.
    pub email: String,
}

#[utoipa::path(
    post,
    operation_id = "confirm_email_change",
    path = "/api/v1/auth/email-change/confirm",
    tag = "auth",
    request_body = EmailChangeConfirm,
    responses(
        (status = 200, description = "The account's address is the new one", body = EmailChangeConfirmed),
        (status = 400, description = "Unknown, expired or used link", body = ErrorBody),
        (status = 409, description = "Another account has the address", body = ErrorBody),
    )
)]
pub async fn confirm(
    State(identity): State<Identity>,
    info: RequestInfo,
    Json(body): Json<EmailChangeConfirm>,
) -> Result<Json<EmailChangeConfirmed>, ApiError> {
    super::throttle_ip(&identity, &info, "email_change_confirm", CHANGES_PER_IP).await?;
    let digest = super::link_token_digest(&body.token, CHANGE_TOKEN_PREFIX)?;
    let audit = rampart_audit::event(
        Actor::System,
        "user.email_change",
        "user",
        request_meta(&info),
    )
    .build();
    let user = match identity.store().confirm_email_change(&digest, audit).await {
        Ok(user) => user,
        Err(StoreError::NotFound) => return Err(IdentityError::BadLinkToken.into()),
        Err(StoreError::Conflict { .. }) => return Err(IdentityError::EmailTaken.into()),
        Err(e) => return Err(IdentityError::Store(e).into()),
    };
    let mut event = rampart_audit::security_log::SecurityEvent::new("email_changed", "warning");
    event.user_id = Some(user.id.clone());
    event.tenant_id = Some(user.tenant_id.clone());
    identity.security_event(event, &info, None);
    Ok(Json(EmailChangeConfirmed { email: user.email }))
}
