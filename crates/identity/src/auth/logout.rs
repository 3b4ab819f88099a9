//! `POST /api/v1/auth/logout`: ends the caller's session at once. Its access tokens stop
//! working on the next request (every request checks the session) and its refresh tokens
//! no longer rotate.

use axum::extract::State;
use axum::http::StatusCode;
use rampart_edge::{ApiError, ErrorBody, RequestInfo};

use super::request_meta;
use crate::{Identity, IdentityError, Principal};

#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The session has ended"),
        (status = 401, description = "No live session", body = ErrorBody),
    )
)]
pub async fn logout(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
) -> Result<StatusCode, ApiError> {
    let session_id = principal
        .session_id()
        .ok_or(IdentityError::Forbidden(
            "API keys have no session to end; revoke the key instead",
        ))?
        .to_string();
    let audit = rampart_audit::event(
        principal.actor(),
        "session.logout",
        "session",
        request_meta(&info),
    )
    .build();
    identity
        .store()
        .end_session(&principal.scope, &session_id, "logout", audit)
        .await
        .map_err(IdentityError::from)?;
    Ok(StatusCode::NO_CONTENT)
}
