//! The authenticated caller, as an extractor.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use rampart_audit::security_log::SecurityEvent;
use rampart_edge::{ApiError, RequestInfo};
use rampart_store::api_keys::ApiKey;
use rampart_store::{Actor, Role, TenantScope, User};

use crate::{Identity, IdentityError};

/// API key secrets start with this, so they are told apart from JWTs and found by
/// secret scanners.
pub const API_KEY_PREFIX: &str = "rk_";

/// Who is calling, checked on every request: a user with a verified access token whose
/// session is live and who is active, or a live API key. Logout, revocation, disabling a
/// user and a role change all take effect on the caller's next request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub caller: Caller,
    pub scope: TenantScope,
    /// Shared with the role map (users) or built once per key lookup (API keys).
    permissions: Arc<BTreeSet<String>>,
    info: RequestInfo,
    identity: Identity,
}

#[derive(Debug, Clone)]
pub enum Caller {
    User {
        user: User,
        session_id: String,
        /// The session passed a second factor.
        mfa: bool,
    },
    ApiKey(ApiKey),
}

impl Principal {
    pub fn user(&self) -> Option<&User> {
        match &self.caller {
            Caller::User { user, .. } => Some(user),
            Caller::ApiKey(_) => None,
        }
    }

    /// The caller's user, or 403 for an API key (this endpoint is for people).
    pub fn require_user(&self) -> Result<&User, IdentityError> {
        self.user().ok_or(IdentityError::Forbidden(
            "this endpoint needs a user; API keys cannot use it",
        ))
    }

    pub fn session_id(&self) -> Option<&str> {
        match &self.caller {
            Caller::User { session_id, .. } => Some(session_id),
            Caller::ApiKey(_) => None,
        }
    }

    pub fn actor(&self) -> Actor {
        match &self.caller {
            Caller::User { user, .. } => Actor::User(user.id.clone()),
            Caller::ApiKey(key) => Actor::ApiKey(key.id.clone()),
        }
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.user().is_some_and(|u| u.role == role)
    }

    pub fn is_platform_admin(&self) -> bool {
        self.has_role(Role::PlatformAdmin)
    }

    pub fn can(&self, permission: &str) -> bool {
        self.permissions.contains(permission)
    }

    /// Holds `permission` for all resources, or narrowed to `resource`
    /// (`transit:decrypt:payments`).
    pub fn can_on(&self, permission: &str, resource: &str) -> bool {
        self.can(permission)
            || self
                .permissions
                .contains(&format!("{permission}:{resource}"))
    }

    /// `require`, satisfied by a permission narrowed to `resource` too.
    pub fn require_on(
        &self,
        permission: &'static str,
        resource: &str,
    ) -> Result<(), IdentityError> {
        if self.can_on(permission, resource) {
            return self.require_mfa_if_admin();
        }
        self.require(permission)
    }

    fn require_mfa_if_admin(&self) -> Result<(), IdentityError> {
        if let Caller::User {
            user, mfa: false, ..
        } = &self.caller
        {
            let admin = matches!(user.role, Role::PlatformAdmin | Role::TenantAdmin);
            if admin && self.identity.config().require_mfa_for_admins {
                return Err(IdentityError::MfaRequired);
            }
        }
        Ok(())
    }

    pub fn permissions(&self) -> &BTreeSet<String> {
        &self.permissions
    }

    /// The route-level check: 403, and a `permission_denied` security event, unless the
    /// caller holds `permission`. An admin whose session has not passed MFA is refused
    /// (`mfa_required`) while `auth.require_mfa_for_admins` is on.
    pub fn require(&self, permission: &'static str) -> Result<(), IdentityError> {
        self.require_mfa_if_admin()?;
        if self.can(permission) {
            return Ok(());
        }
        let mut event = SecurityEvent::new("permission_denied", "warning");
        event.detail = serde_json::json!({ "permission": permission });
        self.identity.security_event(event, &self.info, Some(self));
        Err(IdentityError::Forbidden("missing permission"))
    }
}

impl<S> FromRequestParts<S> for Principal
where
    Identity: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let principal = Principal::authenticate(parts, state).await?;
        // Into the request's span (a field it declares), for the traces it exports.
        tracing::Span::current().record("rampart.tenant_id", principal.scope.tenant_id());
        Ok(principal)
    }
}

impl Principal {
    async fn authenticate<S>(parts: &mut Parts, state: &S) -> Result<Principal, ApiError>
    where
        Identity: FromRef<S>,
        S: Send + Sync,
    {
        let identity = Identity::from_ref(state);
        let info = RequestInfo::from_request_parts(parts, state)
            .await
            .unwrap_or_default();
        if let Some(console) = parts.extensions.get::<ConsoleCaller>().cloned() {
            return Principal::of_session(
                identity,
                info,
                &console.tenant_id,
                console.session_id,
                &console.user_id,
            )
            .await;
        }
        let token = bearer_token(parts).ok_or(IdentityError::MissingToken)?;
        if token.starts_with(API_KEY_PREFIX) {
            let digest = rampart_crypto::secret_digest(token);
            let Some((scope, key)) = identity
                .store()
                .authenticate_api_key(&digest)
                .await
                .map_err(IdentityError::from)?
            else {
                // A revoked or expired key still presented is worth an alert (a leaked
                // copy in use); an unknown secret is noted without an id.
                let rejected = identity
                    .store()
                    .rejected_api_key(&digest)
                    .await
                    .map_err(IdentityError::from)?;
                let mut event = SecurityEvent::new("api_key_rejected", "warning");
                let reason = match rejected {
                    Some((key_id, tenant_id, reason)) => {
                        event.api_key_id = Some(key_id);
                        event.tenant_id = Some(tenant_id);
                        reason
                    }
                    None => "unknown",
                };
                event.detail = serde_json::json!({ "reason": reason });
                identity.security_event(event, &info, None);
                return Err(IdentityError::BadApiKey.into());
            };
            identity
                .check_rate_limits(scope.tenant_id(), Some(&key.id))
                .await?;
            let permissions = Arc::new(key.scopes.iter().cloned().collect());
            identity.note_api_key_use(&key, &info);
            return Ok(Principal {
                caller: Caller::ApiKey(key),
                scope,
                permissions,
                info,
                identity,
            });
        }
        let claims = identity.verify(token).await?;
        Principal::of_session(identity, info, &claims.tenant, claims.sid, &claims.sub).await
    }
}

/// The caller of an API request the console makes in-process for a signed-in browser:
/// the identity session its cookie is bound to. It is a request extension, which only
/// code in this process can set (no header or body becomes one), and it goes through the
/// same session check as an access token, so the console can do exactly what the API
/// lets that user do, and stops the moment the API would.
#[derive(Debug, Clone)]
pub struct ConsoleCaller {
    pub tenant_id: String,
    pub session_id: String,
    pub user_id: String,
}

impl Principal {
    /// The user of a live session (not ended, user active), rate-limited per tenant.
    async fn of_session(
        identity: Identity,
        info: RequestInfo,
        tenant_id: &str,
        session_id: String,
        user_id: &str,
    ) -> Result<Principal, ApiError> {
        let (scope, user, mfa) = identity
            .store()
            .authenticate_session(tenant_id, &session_id, user_id)
            .await
            .map_err(IdentityError::from)?
            .ok_or(IdentityError::SessionEnded)?;
        identity.check_rate_limits(scope.tenant_id(), None).await?;
        let permissions = identity.rbac().permissions_of(user.role);
        Ok(Principal {
            caller: Caller::User {
                user,
                session_id,
                mfa,
            },
            scope,
            permissions,
            info,
            identity,
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
