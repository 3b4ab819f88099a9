//! Login, refresh and logout: one file each, since each is security-critical.

mod email_change;
pub(crate) mod invitation;
mod login;
mod logout;
mod mfa;
mod password_change;
mod password_reset;
mod refresh;
mod signup;

use rampart_edge::RequestInfo;
use rampart_store::RequestMeta;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{Identity, IdentityError};

pub(crate) fn router() -> OpenApiRouter<Identity> {
    OpenApiRouter::new()
        .routes(routes!(login::login))
        .routes(routes!(refresh::refresh))
        .routes(routes!(logout::logout))
        .routes(routes!(mfa::complete))
        .routes(routes!(mfa::enroll))
        .routes(routes!(mfa::confirm))
        .routes(routes!(mfa::disable))
        .routes(routes!(signup::signup))
        .routes(routes!(signup::verify_email, signup::verify_email_link))
        .routes(routes!(password_reset::request))
        .routes(routes!(password_reset::confirm))
        .routes(routes!(password_change::change))
        .routes(routes!(invitation::accept))
        .routes(routes!(email_change::request))
        .routes(routes!(email_change::confirm))
}

/// The language of a request's mail: `locale` when the caller names one (an unknown
/// one is a 422), else the best of `Accept-Language`.
pub(crate) fn locale(
    explicit: Option<&str>,
    headers: &axum::http::HeaderMap,
) -> Result<rampart_notify::Locale, IdentityError> {
    match explicit {
        Some(l) => rampart_notify::Locale::parse(l).map_err(|reason| IdentityError::Invalid {
            field: "locale",
            reason,
        }),
        None => Ok(rampart_notify::Locale::from_accept_language(
            headers
                .get(axum::http::header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
        )),
    }
}

/// Counts one request of `what` from the client's address against `max` per login
/// window: 429 beyond it (failing closed, like login).
pub(crate) async fn throttle_ip(
    identity: &Identity,
    info: &RequestInfo,
    what: &str,
    max: u32,
) -> Result<(), IdentityError> {
    let Some(ip) = info.client_ip else {
        return Ok(());
    };
    let window = std::time::Duration::from_secs(identity.config().login_window_secs);
    let hit = identity
        .throttle()
        .hit(&format!("{what}:ip:{ip}"), window)
        .await
        .map_err(|e| IdentityError::ThrottleUnavailable(e.to_string()))?;
    if hit.attempts > max {
        return Err(IdentityError::Locked {
            retry_after_secs: hit.resets_in.as_secs().max(1),
        });
    }
    Ok(())
}

/// Whether `presented` is the signed-in `user`'s current password, checked as a login
/// checks one (through the hashing gate; a dummy hash when the account cannot be found,
/// so the work is the same). For changes that need the password again (e-mail, password).
pub(crate) async fn current_password_matches(
    identity: &Identity,
    user: &rampart_store::User,
    presented: String,
) -> Result<bool, IdentityError> {
    let email =
        rampart_store::Email::parse(&user.email).map_err(|reason| IdentityError::Invalid {
            field: "email",
            reason,
        })?;
    let stored = identity
        .store()
        .find_login_candidate(&email)
        .await
        .map_err(IdentityError::from)?
        .filter(|c| c.user.id == user.id)
        .map(|c| c.password_hash)
        .unwrap_or_else(|| identity.inner.dummy_hash.clone());
    let presented: String = presented
        .chars()
        .take(crate::password::MAX_PASSWORD_CHARS)
        .collect();
    identity
        .inner
        .hashes
        .run(move |memory| crate::password::verify_in(memory, &presented, &stored))
        .await
}

/// What login and refresh return.
#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// ES256 JWT, `typ: at+jwt`; send as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Opaque; use once at `/api/v1/auth/refresh` for a new pair.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Access-token lifetime in seconds.
    pub expires_in: u64,
}

pub(crate) const REFRESH_TOKEN_PREFIX: &str = "rft_";
pub(crate) const MFA_TOKEN_PREFIX: &str = "mfa_";
/// Time between password and code.
pub(crate) const MFA_TOKEN_TTL_SECS: u64 = 300;

/// Starts a session for a verified user, records the login, and returns its tokens.
pub(crate) async fn start_session(
    identity: &Identity,
    candidate: &rampart_store::LoginCandidate,
    mfa: bool,
    info: &RequestInfo,
) -> Result<TokenResponse, IdentityError> {
    let user = &candidate.user;
    let meta = request_meta(info);
    let (refresh_token, refresh_digest) = new_refresh_token();
    let audit = rampart_audit::event(
        rampart_store::Actor::User(user.id.clone()),
        "session.login",
        "session",
        meta.clone(),
    )
    .changes(serde_json::json!({ "mfa": mfa }))
    .build();
    let started = identity
        .store()
        .start_session(
            candidate,
            rampart_store::sessions::NewSession {
                refresh_token_hash: refresh_digest,
                expires_at: refresh_expiry_ms(identity),
                meta,
                mfa,
            },
            audit,
        )
        .await?;
    note_device(identity, user, info).await;
    let mut event = rampart_audit::security_log::SecurityEvent::new("login_success", "info");
    event.user_id = Some(user.id.clone());
    event.tenant_id = Some(user.tenant_id.clone());
    event.detail = serde_json::json!({ "mfa": mfa });
    identity.security_event(event, info, None);
    token_response(
        identity,
        &user.id,
        started.scope.tenant_id(),
        &started.session_id,
        refresh_token,
    )
    .await
}

/// Records the login's device; a new one (for a user who logged in elsewhere before)
/// gets a security notice. A failure here does not fail the login: it is logged.
async fn note_device(identity: &Identity, user: &rampart_store::User, info: &RequestInfo) {
    let (device, network) = crate::account::device_of(info);
    let store = identity.store();
    let first = match store.login_device_seen(user, &device).await {
        Ok(None) => return,
        Ok(Some(first)) => first,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the user's devices");
            return;
        }
    };
    let user_agent: String = info
        .user_agent
        .clone()
        .unwrap_or_else(|| "unknown client".into())
        .chars()
        .filter(|c| !c.is_control())
        .take(120)
        .collect();
    // The first login of an account has nothing to compare with: no notice.
    let notices = if first {
        Vec::new()
    } else {
        match crate::account::security_notices(
            identity,
            user,
            crate::account::NEW_DEVICE,
            serde_json::json!({ "user_agent": user_agent, "network": network }),
        )
        .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot prepare the new-device notice");
                Vec::new()
            }
        }
    };
    match store
        .record_login_device(user, &device, notices.first())
        .await
    {
        Ok(true) if !notices.is_empty() => identity.notify().wake(),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot record the login's device"),
    }
}

/// What an audit event records about a request.
pub fn request_meta(info: &RequestInfo) -> RequestMeta {
    RequestMeta {
        request_id: Some(info.request_id.clone()),
        source_ip: info.client_ip.map(|ip| ip.to_string()),
        user_agent: info.user_agent.clone(),
    }
}

/// A fresh refresh token and the digest the store keeps.
pub(crate) fn new_refresh_token() -> (String, String) {
    let token = rampart_crypto::random_secret(REFRESH_TOKEN_PREFIX, 32);
    let digest = rampart_crypto::secret_digest(&token);
    (token, digest)
}

pub(crate) fn refresh_expiry_ms(identity: &Identity) -> i64 {
    rampart_store::now_ms() + identity.config().refresh_token_ttl_secs as i64 * 1000
}

/// Signs an access token for a session and packs the response.
pub(crate) async fn token_response(
    identity: &Identity,
    user_id: &str,
    tenant_id: &str,
    session_id: &str,
    refresh_token: String,
) -> Result<TokenResponse, IdentityError> {
    let config = identity.config();
    let now = (rampart_store::now_ms() / 1000) as u64;
    let claims = rampart_crypto::AccessClaims {
        iss: config.issuer.clone(),
        aud: config.audience.clone(),
        sub: user_id.to_string(),
        tenant: tenant_id.to_string(),
        sid: session_id.to_string(),
        iat: now,
        exp: now + config.access_token_ttl_secs,
        jti: uuid::Uuid::new_v4().to_string(),
    };
    Ok(TokenResponse {
        access_token: identity.sign(&claims).await?,
        refresh_token,
        token_type: "Bearer",
        expires_in: config.access_token_ttl_secs,
    })
}

/// The stored digest of a mailed link token (`prefix…`, at most 100 characters), or
/// `invalid_link_token` for anything that cannot be one, before any lookup.
pub(crate) fn link_token_digest(token: &str, prefix: &str) -> Result<String, IdentityError> {
    if token.starts_with(prefix) && token.len() <= 100 {
        Ok(rampart_crypto::secret_digest(token))
    } else {
        Err(IdentityError::BadLinkToken)
    }
}
