//! The authenticated caller, as an extractor.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use rampart_edge::ApiError;
use rampart_store::{Role, TenantScope, User};

use crate::{Identity, IdentityError};

/// Who is calling: a verified access token whose session is live and whose user is
/// active, checked on every request, so logout or disabling a user takes effect at once.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    pub scope: TenantScope,
    pub session_id: String,
}

impl Principal {
    pub fn has_role(&self, role: Role) -> bool {
        self.user.role == role
    }

    pub fn is_platform_admin(&self) -> bool {
        self.has_role(Role::PlatformAdmin)
    }
}

impl<S> FromRequestParts<S> for Principal
where
    Identity: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let identity = Identity::from_ref(state);
        let token = bearer_token(parts).ok_or(IdentityError::MissingToken)?;
        let claims = identity.verify(token).await?;
        let (scope, user) = identity
            .store()
            .authenticate_session(&claims.tenant, &claims.sid, &claims.sub)
            .await
            .map_err(IdentityError::from)?
            .ok_or(IdentityError::SessionEnded)?;
        Ok(Principal {
            user,
            scope,
            session_id: claims.sid,
        })
    }
}

fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
