//! `POST /api/v1/auth/signup` and `…/verify-email`: self-service sign-up, for tenants
//! that allow it (`tenants.allow_signup`, off by default).
//!
//! A sign-up makes an `unverified` user, who cannot log in, and mails a single-use link
//! (24 h, stored as a SHA-256 digest) in the same transaction. The answer is the same
//! `202` whether the address was free or taken (a taken one gets no mail), so sign-up
//! does not tell who has an account; the password is checked and hashed first either
//! way. Throttled per client address; the token never reaches a log.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_notify::{Channel, Notification};
use rampart_store::account::NewToken;
use rampart_store::{Actor, Email, Role, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::request_meta;
use crate::account::{VERIFY_EMAIL, VERIFY_TTL_SECS};
use crate::{Identity, IdentityError};

/// Sign-ups one client address may make per login window.
const SIGNUPS_PER_IP: u32 = 10;
const VERIFY_TOKEN_PREFIX: &str = "vfy_";

/// Deliberately not `Debug`: the password must not reach a log.
#[derive(Deserialize, ToSchema)]
pub struct SignupRequest {
    pub tenant_id: String,
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    #[serde(default)]
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub name: String,
    /// At least `auth.password_min_length` characters (12 by default) and strong enough
    /// for zxcvbn's `auth.password_min_score`.
    #[schema(min_length = 12, max_length = 1024)]
    pub password: String,
    /// `id` or `en` (a region such as `id-ID` is ignored); without it, from
    /// `Accept-Language`.
    #[schema(pattern = r"^\s*([iI][dD]|[eE][nN])([-_][\s\S]*|\s*)$")]
    pub locale: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SignupResponse {
    /// Always `verification_sent`.
    pub status: &'static str,
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/signup",
    tag = "auth",
    request_body = SignupRequest,
    responses(
        (status = 202, description = "A verification link was mailed (if the address was free)", body = SignupResponse),
        (status = 403, description = "The tenant does not take sign-ups", body = ErrorBody),
        (status = 422, description = "Bad e-mail, name, locale or a weak password", body = ErrorBody),
        (status = 429, description = "Too many sign-ups from this address", body = ErrorBody),
    )
)]
pub async fn signup(
    State(identity): State<Identity>,
    info: RequestInfo,
    headers: HeaderMap,
    Json(body): Json<SignupRequest>,
) -> Result<(StatusCode, Json<SignupResponse>), ApiError> {
    super::throttle_ip(&identity, &info, "signup", SIGNUPS_PER_IP).await?;
    if body.tenant_id.len() > 64
        || !identity
            .store()
            .tenant_allows_signup(&body.tenant_id)
            .await
            .map_err(IdentityError::from)?
    {
        return Err(IdentityError::SignupClosed.into());
    }
    let locale = super::locale(body.locale.as_deref(), &headers)?;
    let email = Email::parse(&body.email).map_err(|reason| IdentityError::Invalid {
        field: "email",
        reason,
    })?;
    let name = body.name.trim().to_string();
    if name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(IdentityError::Invalid {
            field: "name",
            reason: "must be at most 200 characters, without control characters".into(),
        }
        .into());
    }
    // Sign-up needs no account: its hash goes through the same bound as logins.
    let hash = identity
        .hash_new_password(email.as_str(), &name, body.password)
        .await?;

    let token = rampart_crypto::random_secret(VERIFY_TOKEN_PREFIX, 32);
    let notify = identity.notify();
    let mail = notify
        .prepare(Notification {
            tenant: body.tenant_id.clone(),
            channel: Channel::Email,
            to: email.as_str().to_string(),
            template: VERIFY_EMAIL.into(),
            locale,
            data: serde_json::json!({
                "name": if name.is_empty() { email.as_str().to_string() } else { name.clone() },
                "link": notify.link(&format!("/api/v1/auth/verify-email?token={token}")),
            }),
            dedupe_key: None,
            subject_id: None,
        })
        .await
        .map_err(IdentityError::from)?;
    let audit = rampart_audit::event(Actor::System, "user.signup", "user", request_meta(&info))
        .changes(serde_json::json!({ "role": Role::Member.as_str() }))
        .build();
    let created = identity
        .store()
        .sign_up(
            rampart_store::users::NewUser {
                tenant_id: body.tenant_id,
                email,
                name,
                role: Role::Member,
                password_hash: hash,
            },
            locale.as_str(),
            &NewToken {
                digest: rampart_crypto::secret_digest(&token),
                expires_at: rampart_store::now_ms() + VERIFY_TTL_SECS * 1000,
            },
            |_| mail,
            audit,
        )
        .await;
    match created {
        Ok(_) => notify.wake(),
        // The same answer as a new account: sign-up does not say who has one.
        Err(StoreError::Conflict { .. }) => {}
        Err(StoreError::NotFound) => return Err(IdentityError::SignupClosed.into()),
        Err(e) => return Err(IdentityError::Store(e).into()),
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(SignupResponse {
            status: "verification_sent",
        }),
    ))
}

/// Deliberately not `Debug`: the token must not reach a log.
#[derive(Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyRequest {
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct VerifyResponse {
    /// Always true: the account can log in now.
    pub verified: bool,
}

async fn verify(
    identity: &Identity,
    info: &RequestInfo,
    token: &str,
) -> Result<Json<VerifyResponse>, ApiError> {
    let digest = super::link_token_digest(token, VERIFY_TOKEN_PREFIX)?;
    let audit = rampart_audit::event(
        Actor::System,
        "user.verify_email",
        "user",
        request_meta(info),
    )
    .build();
    match identity.store().verify_email(&digest, audit).await {
        Ok(_) => Ok(Json(VerifyResponse { verified: true })),
        Err(StoreError::NotFound) => Err(IdentityError::BadLinkToken.into()),
        Err(e) => Err(IdentityError::Store(e).into()),
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/verify-email",
    tag = "auth",
    request_body = VerifyRequest,
    responses(
        (status = 200, description = "Verified", body = VerifyResponse),
        (status = 400, description = "Unknown, expired or used link", body = ErrorBody),
    )
)]
pub async fn verify_email(
    State(identity): State<Identity>,
    info: RequestInfo,
    Json(body): Json<VerifyRequest>,
) -> Result<Json<VerifyResponse>, ApiError> {
    verify(&identity, &info, &body.token).await
}

/// The link in the mail. Verifying by `GET` is safe to repeat for no one: the token
/// works once, and a mail scanner that follows it first only proves what the user would.
#[utoipa::path(
    get,
    path = "/api/v1/auth/verify-email",
    tag = "auth",
    params(VerifyRequest),
    responses(
        (status = 200, description = "Verified", body = VerifyResponse),
        (status = 400, description = "Unknown, expired or used link", body = ErrorBody),
    )
)]
pub async fn verify_email_link(
    State(identity): State<Identity>,
    info: RequestInfo,
    Query(q): Query<VerifyRequest>,
) -> Result<Json<VerifyResponse>, ApiError> {
    verify(&identity, &info, &q.token).await
}
