//! `POST /api/v1/auth/logout`: ends the caller's session at once. Its access tokens stop
//! working on the next request (every request checks the session) and its refresh tokens
//! no longer rotate.

use axum::extract::State;
use axum::http::StatusCode;
use rampart_edge::{ApiError, ErrorBody, RequestInfo};
use rampart_store::Actor;

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
    let audit = rampart_audit::event(
        Actor::User(principal.user.id.clone()),
        "session.logout",
        "session",
        request_meta(&info),
    )
    .build();
    identity
        .store()
        .end_session(&principal.scope, &principal.session_id, "logout", audit)
        .await
        .map_err(IdentityError::from)?;
    Ok(StatusCode::NO_CONTENT)
}
