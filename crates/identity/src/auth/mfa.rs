//! Multi-factor authentication with TOTP.
//!
//! - `POST /api/v1/auth/mfa`: the second step of a login: `{mfa_token, code}` with a
//!   TOTP code or a recovery code → tokens for a session marked as having passed MFA.
//! - `POST /api/v1/auth/mfa/totp/enroll`: a new secret, as base32, `otpauth://` URI and
//!   QR code (SVG).
//! - `POST /api/v1/auth/mfa/totp/confirm`: a first code proves the authenticator works;
//!   answers the ten recovery codes, shown once, stored as digests.
//! - `POST /api/v1/auth/mfa/totp/disable`: needs a fresh code.
//!
//! Codes are single-use (the store keeps the last accepted step) and attempts are
//! throttled per user like logins.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use rampart_audit::security_log::SecurityEvent;
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_store::User;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{request_meta, start_session, TokenResponse, MFA_TOKEN_PREFIX};
use crate::{totp, Identity, IdentityError, Principal};

const RECOVERY_CODES: usize = 10;

#[derive(Deserialize, ToSchema)]
pub struct MfaLoginRequest {
    pub mfa_token: String,
    /// A 6-digit TOTP code, or a recovery code (`xxxx-xxxx-xxxx-xxxx`).
    pub code: String,
}

#[derive(Deserialize, ToSchema)]
pub struct MfaCodeRequest {
    /// A 6-digit TOTP code (disable also takes a recovery code).
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct EnrollResponse {
    /// Base32, for typing into an authenticator.
    pub secret: String,
    pub otpauth_uri: String,
    /// The URI as an SVG QR code.
    pub qr_svg: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Each works once, in place of a TOTP code. Shown only now.
    pub recovery_codes: Vec<String>,
}

fn now_secs() -> u64 {
    (rampart_store::now_ms() / 1000) as u64
}

/// Recovery codes are compared in one form: upper case, no separators.
fn normalise_recovery(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn new_recovery_code() -> String {
    // 80 bits: 16 base32 characters, grouped in fours.
    let raw = totp::base32(&totp::generate_secret()[..10]);
    raw.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).to_lowercase())
        .collect::<Vec<_>>()
        .join("-")
}

/// Checks a code for `user`: a TOTP code whose step is later than the last accepted one,
/// or (if `allow_recovery`) an unused recovery code. Throttled per user.
async fn check_code(
    identity: &Identity,
    user: &User,
    code: &str,
    allow_recovery: bool,
    info: &RequestInfo,
) -> Result<(), IdentityError> {
    let config = identity.config();
    let throttle_key = format!("mfa:{}", user.id);
    let hit = identity
        .inner
        .throttle
        .hit(&throttle_key, Duration::from_secs(config.login_window_secs))
        .await
        .map_err(|e| IdentityError::ThrottleUnavailable(e.to_string()))?;
    if hit.attempts > config.login_max_failures {
        return Err(IdentityError::Locked {
            retry_after_secs: hit.resets_in.as_secs().max(1),
        });
    }
    let factor = identity
        .store()
        .mfa_factor(user)
        .await?
        .filter(|f| f.confirmed)
        .ok_or(IdentityError::BadMfaCode)?;
    let secret = identity
        .open_mfa_secret(user, &factor.sealed_secret)
        .await?;
    let accepted = match totp::verify(&secret, code, now_secs()) {
        Some(step) => identity.store().accept_totp_step(user, step as i64).await?,
        None if allow_recovery => {
            let digest = rampart_crypto::secret_digest(&normalise_recovery(code));
            let audit = rampart_audit::event(
                rampart_store::Actor::User(user.id.clone()),
                "mfa.recovery_code_use",
                "user",
                request_meta(info),
            )
            .build();
            identity
                .store()
                .use_recovery_code(user, &digest, audit)
                .await?
        }
        None => false,
    };
    if !accepted {
        let mut event = SecurityEvent::new("mfa_failure", "warning");
        event.user_id = Some(user.id.clone());
        event.tenant_id = Some(user.tenant_id.clone());
        identity.security_event(event, info, None);
        return Err(IdentityError::BadMfaCode);
    }
    let _ = identity.inner.throttle.clear(&throttle_key).await;
    Ok(())
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/mfa",
    tag = "auth",
    request_body = MfaLoginRequest,
    responses(
        (status = 200, description = "Logged in with MFA", body = TokenResponse),
        (status = 401, description = "Wrong, used or expired code or token", body = ErrorBody),
        (status = 429, description = "Too many wrong codes", body = ErrorBody),
    )
)]
pub async fn complete(
    State(identity): State<Identity>,
    info: RequestInfo,
    Json(body): Json<MfaLoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let token = body.mfa_token.trim();
    if !token.starts_with(MFA_TOKEN_PREFIX) || token.len() > 128 {
        return Err(IdentityError::BadMfaToken.into());
    }
    let digest = rampart_crypto::secret_digest(token);
    let (challenge, user) = identity
        .store()
        .mfa_challenge(&digest)
        .await
        .map_err(IdentityError::from)?
        .ok_or(IdentityError::BadMfaToken)?;
    let limit = i64::from(identity.config().login_max_failures);
    if challenge.used
        || challenge.expires_at <= rampart_store::now_ms()
        || challenge.attempts >= limit
        || !user.is_active()
    {
        return Err(IdentityError::BadMfaToken.into());
    }
    if let Err(e) = check_code(&identity, &user, &body.code, true, &info).await {
        identity
            .store()
            .fail_mfa_challenge(&digest)
            .await
            .map_err(IdentityError::from)?;
        return Err(e.into());
    }
    let candidate = identity
        .store()
        .complete_mfa_challenge(&digest)
        .await
        .map_err(IdentityError::from)?
        .ok_or(IdentityError::BadMfaToken)?;
    let tokens = start_session(&identity, &candidate, true, &info).await?;
    Ok(Json(tokens))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/mfa/totp/enroll",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A new secret to confirm with a first code", body = EnrollResponse),
        (status = 409, description = "MFA is already on; disable it first", body = ErrorBody),
    )
)]
pub async fn enroll(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
) -> Result<Json<EnrollResponse>, ApiError> {
    let user = principal.require_user()?;
    let secret = totp::generate_secret();
    let sealed = identity.seal_mfa_secret(user, &secret).await?;
    let audit =
        rampart_audit::event(principal.actor(), "mfa.enroll", "user", request_meta(&info)).build();
    identity
        .store()
        .save_unconfirmed_factor(user, sealed, audit)
        .await
        .map_err(|e| match e {
            rampart_store::StoreError::Conflict { .. } => IdentityError::Conflict(
                "mfa_already_enabled",
                "MFA is already on; disable it first",
            ),
            other => IdentityError::Store(other),
        })?;
    let uri = totp::otpauth_uri(&identity.config().mfa_issuer, &user.email, &secret);
    Ok(Json(EnrollResponse {
        secret: totp::base32(&secret),
        qr_svg: totp::qr_svg(&uri).unwrap_or_default(),
        otpauth_uri: uri,
    }))
}

#[utoipa::path(
    post,
    operation_id = "confirm_totp",
    path = "/api/v1/auth/mfa/totp/confirm",
    tag = "auth",
    security(("bearer" = [])),
    request_body = MfaCodeRequest,
    responses(
        (status = 200, description = "MFA is on; this session counts as having passed it", body = RecoveryCodes),
        (status = 401, description = "Wrong code, or nothing to confirm", body = ErrorBody),
    )
)]
pub async fn confirm(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Json(body): Json<MfaCodeRequest>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let user = principal.require_user()?;
    let session_id = principal.session_id().ok_or(IdentityError::BadMfaCode)?;
    let factor = identity
        .store()
        .mfa_factor(user)
        .await
        .map_err(IdentityError::from)?
        .filter(|f| !f.confirmed)
        .ok_or(IdentityError::BadMfaCode)?;
    let secret = identity
        .open_mfa_secret(user, &factor.sealed_secret)
        .await?;
    let step = totp::verify(&secret, &body.code, now_secs()).ok_or(IdentityError::BadMfaCode)?;
    let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
    let digests: Vec<String> = codes
        .iter()
        .map(|c| rampart_crypto::secret_digest(&normalise_recovery(c)))
        .collect();
    let notices = crate::account::security_notices(
        &identity,
        user,
        crate::account::MFA_ENABLED,
        serde_json::json!({}),
    )
    .await?;
    let audit =
        rampart_audit::event(principal.actor(), "mfa.enable", "user", request_meta(&info)).build();
    let confirmed = identity
        .store()
        .confirm_factor(user, step as i64, &digests, session_id, &notices, audit)
        .await
        .map_err(IdentityError::from)?;
    if !confirmed {
        return Err(IdentityError::BadMfaCode.into());
    }
    identity.security_event(
        SecurityEvent::new("mfa_enabled", "info"),
        &info,
        Some(&principal),
    );
    Ok(Json(RecoveryCodes {
        recovery_codes: codes,
    }))
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/mfa/totp/disable",
    tag = "auth",
    security(("bearer" = [])),
    request_body = MfaCodeRequest,
    responses(
        (status = 204, description = "MFA is off"),
        (status = 401, description = "Wrong or used code", body = ErrorBody),
    )
)]
pub async fn disable(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Json(body): Json<MfaCodeRequest>,
) -> Result<StatusCode, ApiError> {
    let user = principal.require_user()?;
    check_code(&identity, user, &body.code, true, &info).await?;
    let notices = crate::account::security_notices(
        &identity,
        user,
        crate::account::MFA_DISABLED,
        serde_json::json!({}),
    )
    .await?;
    let audit = rampart_audit::event(
        principal.actor(),
        "mfa.disable",
        "user",
        request_meta(&info),
    )
    .build();
    identity
        .store()
        .disable_factor(user, &notices, audit)
        .await
        .map_err(IdentityError::from)?;
    // The role, so removing an admin's second factor can be told apart (T1098).
    let mut event = SecurityEvent::new("mfa_disabled", "warning");
    event.detail = serde_json::json!({ "role": user.role.as_str() });
    identity.security_event(event, &info, Some(&principal));
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_have_80_bits_and_normalise() {
        let code = new_recovery_code();
        assert_eq!(code.len(), 19, "{code}");
        assert_eq!(code.matches('-').count(), 3);
        assert_eq!(
            normalise_recovery(&code),
            normalise_recovery(&code.to_uppercase().replace('-', " "))
        );
        assert_eq!(normalise_recovery(&code).len(), 16);
    }
}
