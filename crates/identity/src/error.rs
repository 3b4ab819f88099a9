//! Identity errors and how each reaches the client.

use rampart_edge::ApiError;
use rampart_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Wrong e-mail or wrong password: one error for both, so the response does not say
    /// which accounts exist.
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("too many failed attempts")]
    Locked { retry_after_secs: u64 },
    #[error("missing or malformed Authorization header")]
    MissingToken,
    #[error("access token rejected: {0}")]
    BadToken(String),
    #[error("session has ended")]
    SessionEnded,
    #[error("API key rejected")]
    BadApiKey,
    #[error("refresh token rejected")]
    BadRefreshToken,
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("MFA required")]
    MfaRequired,
    #[error("invalid MFA code")]
    BadMfaCode,
    #[error("MFA token rejected")]
    BadMfaToken,
    #[error("conflict: {0}")]
    Conflict(&'static str, &'static str),
    #[error("not found")]
    NotFound,
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("e-mail address is taken")]
    EmailTaken,
    #[error("throttle unavailable: {0}")]
    ThrottleUnavailable(String),
    #[error("key error: {0}")]
    Keys(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("background task failed: {0}")]
    Task(String),
    /// Too many password hashes queued (see `hash_gate`): shed, not failed.
    #[error("too busy to check a password now")]
    Busy { retry_after_secs: u64 },
    #[error("this tenant does not take sign-ups")]
    SignupClosed,
    #[error("link token rejected")]
    BadLinkToken,
    #[error("e-mail address not verified")]
    EmailNotVerified,
}

impl From<rampart_notify::NotifyError> for IdentityError {
    fn from(e: rampart_notify::NotifyError) -> IdentityError {
        match e {
            rampart_notify::NotifyError::Invalid { field, reason } => {
                IdentityError::Invalid { field, reason }
            }
            rampart_notify::NotifyError::Keys(cause) => IdentityError::Keys(cause),
            rampart_notify::NotifyError::Store(e) => IdentityError::Store(e),
        }
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> ApiError {
        match e {
            IdentityError::InvalidCredentials => ApiError::new(
                http::StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "e-mail or password is incorrect",
            ),
            IdentityError::Locked { retry_after_secs } => {
                ApiError::too_many_requests(retry_after_secs)
            }
            IdentityError::Busy { retry_after_secs } => {
                let mut e = ApiError::unavailable("too many logins at once; try again shortly");
                e.retry_after = Some(retry_after_secs.max(1));
                e
            }
            IdentityError::MissingToken => {
                ApiError::unauthorized("send an access token as Authorization: Bearer <token>")
            }
            IdentityError::BadToken(_) => ApiError::new(
                http::StatusCode::UNAUTHORIZED,
                "invalid_token",
                "access token is invalid or expired",
            ),
            IdentityError::SessionEnded => ApiError::new(
                http::StatusCode::UNAUTHORIZED,
                "session_ended",
                "this session has ended; log in again",
            ),
            IdentityError::BadApiKey => ApiError::new(
                http::StatusCode::UNAUTHORIZED,
                "invalid_api_key",
                "API key is invalid, expired or revoked",
            ),
            IdentityError::BadRefreshToken => ApiError::new(
                http::StatusCode::UNAUTHORIZED,
                "invalid_refresh_token",
                "refresh token is invalid, expired or already used",
            ),
            IdentityError::Forbidden(why) => ApiError::forbidden(why),
            IdentityError::MfaRequired => ApiError::new(
                http::StatusCode::FORBIDDEN,
                "mfa_required",
                "admins must sign in with MFA first: enrol at /api/v1/auth/mfa/totp/enroll, then log in again",
            ),
            IdentityError::BadMfaCode => ApiError::new(
                http::StatusCode::UNAUTHORIZED,
                "invalid_mfa_code",
                "the code is wrong, expired or already used",
            ),
            IdentityError::BadMfaToken => ApiError::new(
                http::StatusCode::UNAUTHORIZED,
                "invalid_mfa_token",
                "the MFA token is invalid or expired; log in again",
            ),
            IdentityError::Conflict(code, message) => ApiError::conflict(code, message),
            IdentityError::NotFound => ApiError::not_found("no such resource"),
            IdentityError::Invalid { field, reason } => {
                ApiError::unprocessable("invalid_field", format!("{field}: {reason}"))
            }
            IdentityError::EmailTaken => {
                ApiError::conflict("email_taken", "a user with this e-mail address exists")
            }
            IdentityError::ThrottleUnavailable(cause) => {
                tracing::error!(%cause, "login throttle unavailable; refusing logins");
                ApiError::unavailable("login is temporarily unavailable")
            }
            IdentityError::Store(StoreError::NotFound) => ApiError::not_found("no such resource"),
            IdentityError::Store(StoreError::Unavailable(cause)) => {
                tracing::error!(%cause, "database unavailable");
                ApiError::unavailable("the service is temporarily unavailable")
            }
            IdentityError::Store(cause) => {
                tracing::error!(error = %cause, "store error");
                ApiError::internal()
            }
            IdentityError::SignupClosed => ApiError::new(
                http::StatusCode::FORBIDDEN,
                "signup_closed",
                "this tenant does not take sign-ups",
            ),
            IdentityError::BadLinkToken => ApiError::bad_request(
                "invalid_link_token",
                "the link is invalid, expired or already used",
            ),
            IdentityError::EmailNotVerified => ApiError::new(
                http::StatusCode::FORBIDDEN,
                "email_not_verified",
                "confirm your e-mail address first: follow the link in the mail we sent",
            ),
            IdentityError::Keys(cause) | IdentityError::Task(cause) => {
                tracing::error!(%cause, "identity internal error");
                ApiError::internal()
            }
        }
    }
}

impl axum::response::IntoResponse for IdentityError {
    fn into_response(self) -> axum::response::Response {
        ApiError::from(self).into_response()
    }
}
