//! `GET /.well-known/jwks.json`: the public keys that verify our access tokens.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Identity;

pub(crate) fn router() -> OpenApiRouter<Identity> {
    OpenApiRouter::new().routes(routes!(jwks))
}

#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "auth",
    responses((status = 200, description = "JSON Web Key Set (RFC 7517)", body = Object))
)]
pub async fn jwks(State(identity): State<Identity>) -> impl IntoResponse {
    (
        // Short enough that a new key reaches verifiers well before it signs much.
        [(header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(identity.jwks()),
    )
}
