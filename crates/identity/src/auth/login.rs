//! `POST /api/v1/auth/login`.
//!
//! Unknown e-mail and wrong password are indistinguishable: same status and body, and the
//! same work (an Argon2 verification against a dummy hash stands in for the missing user).
//! Failures count per account and per client IP; at the limit the answer is 429 with
//! `Retry-After`, before any password is checked.

use std::time::Duration;

use axum::extract::State;
use rampart_audit::security_log::SecurityEvent;
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_store::{Actor, Email};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{request_meta, TokenResponse};
use crate::{password, Identity, IdentityError};

/// Credentials. Deliberately not `Debug`: the password must not reach a log.
#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// Tokens, or (for a user with MFA) a challenge to complete at `/api/v1/auth/mfa`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginResponse {
    Tokens(TokenResponse),
    MfaRequired(MfaChallengeResponse),
}

#[derive(Serialize, ToSchema)]
pub struct MfaChallengeResponse {
    /// Always true.
    pub mfa_required: bool,
    /// Send with a TOTP or recovery code to `/api/v1/auth/mfa`.
    pub mfa_token: String,
    /// Seconds the token is valid.
    pub expires_in: u64,
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in, or an MFA challenge", body = LoginResponse),
        (status = 401, description = "E-mail or password is incorrect", body = ErrorBody),
        (status = 429, description = "Too many failed attempts; see Retry-After", body = ErrorBody),
    )
)]
pub async fn login(
    State(identity): State<Identity>,
    info: RequestInfo,
    Json(body): Json<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let outcome = attempt(&identity, &info, body).await;
    let label = match &outcome {
        Ok(LoginResponse::Tokens(_)) => "success",
        Ok(LoginResponse::MfaRequired(_)) => "mfa_required",
        Err(IdentityError::InvalidCredentials) => "invalid_credentials",
        Err(IdentityError::Locked { .. }) => "locked",
        Err(IdentityError::Busy { .. }) => "shed",
        Err(_) => "unavailable",
    };
    identity.inner.metrics.login(label);
    Ok(Json(outcome?))
}

async fn attempt(
    identity: &Identity,
    info: &RequestInfo,
    body: LoginRequest,
) -> Result<LoginResponse, IdentityError> {
    let config = identity.config();
    let throttle = &identity.inner.throttle;
    let window = Duration::from_secs(config.login_window_secs);
    // The account as the store will find it (NFKC, lowercase), so spelling one address
    // several ways (fullwidth letters, case) does not buy several lockout budgets.
    let parsed_email = Email::parse(&body.email);
    let account_name = match &parsed_email {
        Ok(email) => email.as_str().to_string(),
        Err(_) => body.email.trim().to_lowercase(),
    };
    let account_key = format!("acct:{}", rampart_crypto::secret_digest(&account_name));
    let ip_key = info.client_ip.map(|ip| format!("ip:{ip}"));

    let locked = |d: Duration| IdentityError::Locked {
        retry_after_secs: d.as_secs() + u64::from(d.subsec_nanos() > 0),
    };
    let unavailable =
        |e: crate::throttle::ThrottleUnavailable| IdentityError::ThrottleUnavailable(e.to_string());
    // Count this attempt before looking at the password (see throttle.rs).
    let account = throttle
        .hit(&account_key, window)
        .await
        .map_err(unavailable)?;
    if account.attempts > config.login_max_failures {
        identity.security_event(SecurityEvent::new("login_locked", "warning"), info, None);
        return Err(locked(account.resets_in));
    }
    if let Some(key) = &ip_key {
        let ip = throttle.hit(key, window).await.map_err(unavailable)?;
        if ip.attempts > config.login_ip_max_failures {
            // Over its failure budget an address is slowed, not shut: one attempt per
            // `login_ip_slow_interval_secs` still goes through, so an office (or everyone
            // behind a proxy we were not told to trust) is not locked out by one
            // attacker among them, while guessing from it stays bounded.
            let slow_key = format!("slow:{key}");
            let interval = Duration::from_secs(config.login_ip_slow_interval_secs);
            let slow = throttle
                .hit(&slow_key, interval)
                .await
                .map_err(unavailable)?;
            if slow.attempts > 1 {
                identity.security_event(
                    SecurityEvent::new("login_ip_locked", "warning"),
                    info,
                    None,
                );
                return Err(locked(slow.resets_in));
            }
        }
    }

    let candidate = match &parsed_email {
        Ok(email) => identity.store().find_login_candidate(email).await?,
        Err(_) => None,
    };
    let stored = candidate
        .as_ref()
        .map(|c| c.password_hash.clone())
        .unwrap_or_else(|| identity.inner.dummy_hash.clone());
    let presented: String = body
        .password
        .chars()
        .take(password::MAX_PASSWORD_CHARS)
        .collect();
    let (matches, presented) = identity
        .inner
        .hashes
        .run(move |memory| {
            let ok = password::verify_in(memory, &presented, &stored);
            (ok, presented)
        })
        .await?;

    let named_user = candidate
        .as_ref()
        .map(|c| (c.user.id.clone(), c.user.tenant_id.clone()));
    // Said only to whoever knows the password: an unverified sign-up is not a secret
    // from its own owner.
    if matches
        && candidate
            .as_ref()
            .is_some_and(|c| c.user.status == "unverified")
    {
        return Err(IdentityError::EmailNotVerified);
    }
    let Some(candidate) = candidate.filter(|c| matches && c.user.is_active()) else {
        // The user and their tenant when the e-mail names one (so detections group by
        // tenant), never the password or the e-mail.
        let mut event = SecurityEvent::new("login_failure", "warning");
        (event.user_id, event.tenant_id) = named_user.unzip();
        identity.security_event(event, info, None);
        return Err(IdentityError::InvalidCredentials);
    };
    throttle.clear(&account_key).await.map_err(unavailable)?;
    if let Some(key) = &ip_key {
        throttle.release(key).await.map_err(unavailable)?;
    }

    let user = &candidate.user;
    let meta = request_meta(info);
    if password::needs_rehash(&candidate.password_hash) {
        let hashed = identity
            .inner
            .hashes
            .run(move |memory| password::hash_in(memory, &presented))
            .await?
            .map_err(IdentityError::Keys)?;
        let audit = rampart_audit::event(
            Actor::User(user.id.clone()),
            "user.password_rehash",
            "user",
            meta.clone(),
        )
        .changes(serde_json::json!({ "algorithm": "argon2id" }))
        .build();
        identity
            .store()
            .set_password_hash(user, &hashed, audit)
            .await?;
    }

    // A confirmed second factor turns the login into a challenge.
    let has_mfa = identity
        .store()
        .mfa_factor(user)
        .await?
        .is_some_and(|f| f.confirmed);
    if has_mfa {
        let token = rampart_crypto::random_secret(super::MFA_TOKEN_PREFIX, 32);
        let expires_at = rampart_store::now_ms() + super::MFA_TOKEN_TTL_SECS as i64 * 1000;
        identity
            .store()
            .create_mfa_challenge(user, &rampart_crypto::secret_digest(&token), expires_at)
            .await?;
        return Ok(LoginResponse::MfaRequired(MfaChallengeResponse {
            mfa_required: true,
            mfa_token: token,
            expires_in: super::MFA_TOKEN_TTL_SECS,
        }));
    }
    let started = super::start_session(identity, &candidate, false, info).await?;
    Ok(LoginResponse::Tokens(started))
}
