//! API keys of the caller's tenant: `POST /api/v1/api-keys` (the secret is shown once),
//! `GET /api/v1/api-keys`, `DELETE /api/v1/api-keys/{key_id}` (revocation takes effect
//! on the key's next request).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use rampart_audit::security_log::SecurityEvent;
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_store::api_keys::{ApiKey, NewApiKey};
use rampart_store::{Actor, RequestMeta, Store, StoreError, TenantScope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::request_meta;
use crate::rbac::{self, Rbac};
use crate::{rfc3339, Identity, IdentityError, Principal, API_KEY_PREFIX};

pub(crate) fn router() -> OpenApiRouter<Identity> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(revoke))
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    /// The first characters of the secret, to tell keys apart.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<&ApiKey> for ApiKeyView {
    fn from(k: &ApiKey) -> ApiKeyView {
        ApiKeyView {
            id: k.id.clone(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            scopes: k.scopes.clone(),
            created_at: rfc3339(k.created_at),
            expires_at: k.expires_at.map(rfc3339),
            last_used_at: k.last_used_at.map(rfc3339),
            revoked_at: k.revoked_at.map(rfc3339),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// `rk_...`: shown this once, stored only as a digest. Send as
    /// `Authorization: Bearer rk_...`.
    pub secret: String,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateApiKeyRequest {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// Permissions, e.g. `["audit:read"]`, or narrowed to one resource
    /// (`transit:decrypt:payments`); each must be one the creator holds.
    #[schema(min_items = 1, max_items = 50)]
    pub scopes: Vec<String>,
    /// Days until the key expires; none for a key that lives until revoked.
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
}

/// A key to make: validated name and scopes. Shared with `rampart api-keys create`.
pub struct KeySpec {
    pub name: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<i64>,
}

/// Checks a key's name and scopes against the known permissions (and, for a caller, the
/// ones the caller holds: a key can never do more than the person who made it).
pub fn parse_key_spec(
    rbac: &Rbac,
    name: &str,
    scopes: &[String],
    expires_in_days: Option<u32>,
    holder: Option<&Principal>,
) -> Result<KeySpec, IdentityError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(IdentityError::Invalid {
            field: "name",
            reason: "must be 1 to 100 characters, without control characters".into(),
        });
    }
    if scopes.is_empty() || scopes.len() > 50 {
        return Err(IdentityError::Invalid {
            field: "scopes",
            reason: "name between 1 and 50 permissions".into(),
        });
    }
    let mut clean: Vec<String> = Vec::new();
    for scope in scopes {
        let scope = scope.trim();
        // A narrowed scope (`transit:decrypt:payments`) is judged by its base permission.
        let base = match scope.matches(':').count() {
            2 => scope.rsplit_once(':').map_or(scope, |(b, _)| b),
            _ => scope,
        };
        if !rbac.is_known(scope) || rbac::PLATFORM_ONLY.contains(&base) {
            return Err(IdentityError::Invalid {
                field: "scopes",
                reason: format!("{scope:?} is not a permission an API key can have"),
            });
        }
        if holder.is_some_and(|p| !p.can(base)) {
            return Err(IdentityError::Invalid {
                field: "scopes",
                reason: format!("you do not hold {scope:?}, so your keys cannot"),
            });
        }
        if !clean.iter().any(|s| s == scope) {
            clean.push(scope.to_string());
        }
    }
    let expires_at = match expires_in_days {
        Some(0) | Some(3651..) => {
            return Err(IdentityError::Invalid {
                field: "expires_in_days",
                reason: "must be between 1 and 3650".into(),
            })
        }
        Some(days) => Some(rampart_store::now_ms() + i64::from(days) * 86_400_000),
        None => None,
    };
    Ok(KeySpec {
        name: name.to_string(),
        scopes: clean,
        expires_at,
    })
}

/// Makes the secret and stores the key, in `scope`'s tenant or (operators) any tenant.
pub async fn issue_key(
    store: &Store,
    target: KeyTarget<'_>,
    spec: KeySpec,
    actor: Actor,
    meta: RequestMeta,
) -> Result<(ApiKey, String), IdentityError> {
    let secret = rampart_crypto::random_secret(API_KEY_PREFIX, 32);
    let new = NewApiKey {
        name: spec.name,
        prefix: secret.chars().take(API_KEY_PREFIX.len() + 6).collect(),
        secret_hash: rampart_crypto::secret_digest(&secret),
        scopes: spec.scopes,
        created_by: actor.id().map(str::to_string),
        expires_at: spec.expires_at,
    };
    let audit = rampart_audit::event(actor, "api_key.create", "api_key", meta)
        .changes(serde_json::json!({ "name": new.name, "scopes": new.scopes }))
        .build();
    let key = match target {
        KeyTarget::Scope(scope, notices) => store.create_api_key(scope, new, &notices, audit).await,
        KeyTarget::Tenant(tenant_id) => {
            store.create_api_key_for_tenant(tenant_id, new, audit).await
        }
    }
    .map_err(|e| match e {
        StoreError::Constraint { .. } => IdentityError::NotFound,
        other => IdentityError::Store(other),
    })?;
    Ok((key, secret))
}

pub enum KeyTarget<'a> {
    /// In a caller's tenant, with the notices to write with the key.
    Scope(&'a TenantScope, Vec<rampart_store::notify::NewNotification>),
    Tenant(&'a str),
}

#[utoipa::path(
    post,
    operation_id = "create_api_key",
    path = "/api/v1/api-keys",
    tag = "api-keys",
    security(("bearer" = [])),
    request_body = CreateApiKeyRequest,
    responses(
        (status = 201, description = "Created; the secret is in this response only", body = CreatedApiKey),
        (status = 403, description = "Missing api_keys:write", body = ErrorBody),
        (status = 422, description = "Invalid name, scopes or expiry", body = ErrorBody),
    )
)]
pub async fn create(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Json(body): Json<CreateApiKeyRequest>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    principal.require(rbac::API_KEYS_WRITE)?;
    let spec = parse_key_spec(
        identity.rbac(),
        &body.name,
        &body.scopes,
        body.expires_in_days,
        Some(&principal),
    )?;
    // The creating user hears of it (an API key is a credential); a key making a key
    // has no inbox.
    let notices = match principal.user() {
        Some(user) => {
            crate::account::security_notices(
                &identity,
                user,
                crate::account::API_KEY_CREATED,
                serde_json::json!({ "name": spec.name }),
            )
            .await?
        }
        None => Vec::new(),
    };
    let (key, secret) = issue_key(
        identity.store(),
        KeyTarget::Scope(&principal.scope, notices),
        spec,
        principal.actor(),
        request_meta(&info),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedApiKey {
            key: ApiKeyView::from(&key),
            secret,
        }),
    ))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyListParams {
    /// The `id` of the last key of the previous page: the keys after it.
    pub after: Option<String>,
    /// 1 to 200 (default 200).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

#[utoipa::path(
    get,
    operation_id = "list_api_keys",
    path = "/api/v1/api-keys",
    tag = "api-keys",
    security(("bearer" = [])),
    params(KeyListParams),
    responses(
        (status = 200, description = "The tenant's keys in id (creation) order, never their secrets", body = [ApiKeyView]),
        (status = 403, description = "Missing api_keys:read", body = ErrorBody),
    )
)]
pub async fn list(
    State(identity): State<Identity>,
    principal: Principal,
    axum::extract::Query(params): axum::extract::Query<KeyListParams>,
) -> Result<Json<Vec<ApiKeyView>>, ApiError> {
    principal.require(rbac::API_KEYS_READ)?;
    let limit = crate::page_limit(params.limit, 200, 200)?;
    let keys = identity
        .store()
        .list_api_keys(&principal.scope, params.after.as_deref(), limit)
        .await
        .map_err(IdentityError::from)?;
    Ok(Json(keys.iter().map(ApiKeyView::from).collect()))
}

#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{key_id}",
    tag = "api-keys",
    security(("bearer" = [])),
    params(("key_id" = String, Path, description = "API key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Missing api_keys:write", body = ErrorBody),
        (status = 404, description = "No such key in the caller's tenant", body = ErrorBody),
    )
)]
pub async fn revoke(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Path(key_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // The resource first: another tenant's key is 404 whatever the caller may do.
    identity
        .store()
        .get_api_key(&principal.scope, &key_id)
        .await
        .map_err(IdentityError::from)?;
    principal.require(rbac::API_KEYS_WRITE)?;
    let audit = rampart_audit::event(
        principal.actor(),
        "api_key.revoke",
        "api_key",
        request_meta(&info),
    )
    .build();
    identity
        .store()
        .revoke_api_key(&principal.scope, &key_id, audit)
        .await
        .map_err(IdentityError::from)?;
    let mut event = SecurityEvent::new("api_key_revoked", "info");
    event.detail = serde_json::json!({ "revoked_key_id": key_id });
    identity.security_event(event, &info, Some(&principal));
    Ok(StatusCode::NO_CONTENT)
}
