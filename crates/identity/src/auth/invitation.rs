//! Invitations: how a tenant admin adds a user, and `POST /api/v1/auth/accept-invitation`.
//!
//! E-mail addresses are unique across the platform (login names an address, not a
//! tenant), so "create this user" could tell a tenant admin that an address has an
//! account in some other tenant: a cross-tenant oracle. A tenant admin therefore invites:
//! the answer is `202 {"status":"invited"}` with the same body, the same audit event
//! (`user.invite`) and the same work (one password hash, one mail) whether the address is
//! free or taken elsewhere. A free address gets a user of status `invited`, who cannot log
//! in and is not visible to `PATCH` until they accept, and a single-use link (72 h,
//! stored as a digest) to choose their own password; the admin never knows it. An address
//! with an account in another tenant gets a notice saying so, and nothing else happens.
//! An address that is already a user of the admin's own tenant is `409`, which the admin
//! could see anyway. Platform admins, who see every tenant, still create users directly.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_notify::{Channel, Notification};
use rampart_store::account::NewToken;
use rampart_store::users::NewUser;
use rampart_store::{Actor, Email, Role, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::request_meta;
use crate::account::{INVITATION, INVITATION_ELSEWHERE, INVITATION_TTL_SECS};
use crate::{Identity, IdentityError, Principal};

const INVITATION_TOKEN_PREFIX: &str = "inv_";
/// Acceptances one client address may try per login window.
const ACCEPTS_PER_IP: u32 = 20;

/// The answer to an invitation: always the same.
#[derive(Serialize, ToSchema)]
pub struct InviteResponse {
    /// Always `invited`.
    pub status: &'static str,
}

/// Who is invited, as the admin gave it (the role already checked by the caller).
pub(crate) struct Invitee {
    pub tenant_id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
}

/// Invites `who` (see the module's documentation).
pub(crate) async fn invite(
    identity: &Identity,
    principal: &Principal,
    info: &RequestInfo,
    headers: &HeaderMap,
    who: Invitee,
) -> Result<(StatusCode, Json<InviteResponse>), ApiError> {
    let Invitee {
        tenant_id,
        email,
        name,
        role,
    } = who;
    let email = Email::parse(&email).map_err(|reason| IdentityError::Invalid {
        field: "email",
        reason,
    })?;
    let name = name.trim().to_string();
    if name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(IdentityError::Invalid {
            field: "name",
            reason: "must be at most 200 characters, without control characters".into(),
        }
        .into());
    }
    let locale = super::locale(None, headers)?;
    // An unusable password until the invitee chooses one; hashed in every case, so a free
    // and a taken address cost the same.
    let placeholder = rampart_crypto::random_secret("unusable_", 32);
    let hash = identity.hash_new_password("", "", placeholder).await?;
    let token = rampart_crypto::random_secret(INVITATION_TOKEN_PREFIX, 32);
    let notify = identity.notify();
    let greeting = if name.is_empty() {
        email.as_str().to_string()
    } else {
        name.clone()
    };
    let invite_mail = notify
        .prepare(Notification {
            tenant: tenant_id.clone(),
            channel: Channel::Email,
            to: email.as_str().to_string(),
            template: INVITATION.into(),
            locale,
            data: serde_json::json!({
                "name": greeting,
                "link": notify.link(&format!("/api/v1/auth/accept-invitation?token={token}")),
                "token": token,
            }),
            dedupe_key: None,
            subject_id: None,
        })
        .await
        .map_err(IdentityError::from)?;
    let elsewhere_mail = notify
        .prepare(Notification {
            tenant: tenant_id.clone(),
            channel: Channel::Email,
            to: email.as_str().to_string(),
            template: INVITATION_ELSEWHERE.into(),
            locale,
            data: serde_json::json!({ "name": greeting }),
            dedupe_key: None,
            subject_id: None,
        })
        .await
        .map_err(IdentityError::from)?;
    let audit = rampart_audit::event(principal.actor(), "user.invite", "user", request_meta(info))
        .changes(serde_json::json!({ "role": role.as_str() }))
        .build();
    identity
        .store()
        .invite_user(
            NewUser {
                tenant_id,
                email,
                name,
                role,
                password_hash: hash,
            },
            locale.as_str(),
            &NewToken {
                digest: rampart_crypto::secret_digest(&token),
                expires_at: rampart_store::now_ms() + INVITATION_TTL_SECS * 1000,
            },
            |_| invite_mail,
            elsewhere_mail,
            audit,
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => IdentityError::EmailTaken,
            StoreError::Constraint { .. } => IdentityError::NotFound,
            other => IdentityError::Store(other),
        })?;
    notify.wake();
    Ok((
        StatusCode::ACCEPTED,
        Json(InviteResponse { status: "invited" }),
    ))
}

/// Deliberately not `Debug`: the token and the password must not reach a log.
#[derive(Deserialize, ToSchema)]
pub struct AcceptRequest {
    /// The `inv_…` token of the invitation mail's link.
    pub token: String,
    /// The password the invitee chooses.
    #[schema(min_length = 12, max_length = 1024)]
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct AcceptResponse {
    /// Always true: log in with the e-mail address and the password chosen.
    pub accepted: bool,
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/accept-invitation",
    tag = "auth",
    request_body = AcceptRequest,
    responses(
        (status = 200, description = "The account is active", body = AcceptResponse),
        (status = 400, description = "The link is invalid, expired or already used (`invalid_link_token`)", body = ErrorBody),
        (status = 422, description = "A weak password", body = ErrorBody),
        (status = 429, description = "Too many attempts from this address", body = ErrorBody),
    )
)]
pub async fn accept(
    State(identity): State<Identity>,
    info: RequestInfo,
    Json(body): Json<AcceptRequest>,
) -> Result<Json<AcceptResponse>, ApiError> {
    super::throttle_ip(&identity, &info, "invitation_accept", ACCEPTS_PER_IP).await?;
    let digest = super::link_token_digest(&body.token, INVITATION_TOKEN_PREFIX)?;
    let user = identity
        .store()
        .invitation_token_user(&digest)
        .await
        .map_err(IdentityError::from)?
        .ok_or(IdentityError::BadLinkToken)?;
    let hash = identity
        .hash_new_password(&user.email, &user.name, body.password)
        .await?;
    let audit = rampart_audit::event(
        Actor::User(user.id.clone()),
        "user.invitation_accepted",
        "user",
        request_meta(&info),
    )
    .build();
    match identity
        .store()
        .accept_invitation(&digest, &hash, audit)
        .await
    {
        Ok(_) => Ok(Json(AcceptResponse { accepted: true })),
        Err(StoreError::NotFound) => Err(IdentityError::BadLinkToken.into()),
        Err(e) => Err(IdentityError::Store(e).into()),
    }
}
