//! `POST /api/v1/auth/refresh`: trade a refresh token for a new pair. Each refresh token
//! works once; a second use revokes the session it belongs to (see the store's
//! `sessions` module).

use axum::extract::State;
use rampart_audit::security_log::SecurityEvent;
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_store::sessions::Rotation;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{
    new_refresh_token, refresh_expiry_ms, request_meta, token_response, TokenResponse,
    REFRESH_TOKEN_PREFIX,
};
use crate::{Identity, IdentityError};

#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new access token and refresh token", body = TokenResponse),
        (status = 401, description = "Unknown, expired, already used, or its session ended", body = ErrorBody),
    )
)]
pub async fn refresh(
    State(identity): State<Identity>,
    info: RequestInfo,
    Json(body): Json<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let presented = body.refresh_token.trim();
    if !presented.starts_with(REFRESH_TOKEN_PREFIX) || presented.len() > 128 {
        return Err(IdentityError::BadRefreshToken.into());
    }
    let (next, next_digest) = new_refresh_token();
    let rotation = identity
        .store()
        .rotate_refresh_token(
            &rampart_crypto::secret_digest(presented),
            &next_digest,
            refresh_expiry_ms(&identity),
            &request_meta(&info),
        )
        .await
        .map_err(IdentityError::from)?;
    match rotation {
        Rotation::Rotated {
            scope,
            user,
            session_id,
        } => Ok(Json(
            token_response(&identity, &user.id, scope.tenant_id(), &session_id, next).await?,
        )),
        Rotation::Reused {
            session_id,
            user_id,
        } => {
            let mut event = SecurityEvent::new("refresh_token_reuse", "critical");
            event.user_id = Some(user_id);
            event.detail =
                serde_json::json!({ "session_id": session_id, "action": "session revoked" });
            identity.security_event(event, &info, None);
            Err(IdentityError::BadRefreshToken.into())
        }
        Rotation::Rejected => Err(IdentityError::BadRefreshToken.into()),
    }
}
