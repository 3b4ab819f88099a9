//! Users: `GET /api/v1/users/me`, `POST /api/v1/tenants/{tenant_id}/users`, and the
//! creation path the CLI shares (`rampart admin create`, `rampart users import`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use rampart_config::AuthConfig;
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_store::users::NewUser;
use rampart_store::{Actor, Email, RequestMeta, Role, Store, StoreError, User, PLATFORM_TENANT_ID};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::request_meta;
use crate::{password, rbac, rfc3339, Identity, IdentityError, Principal};

pub(crate) fn router() -> OpenApiRouter<Identity> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(get_phone, set_phone, delete_phone))
        .routes(routes!(create_in_tenant, list_in_tenant))
        .routes(routes!(update))
}

#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub tenant_id: String,
    pub email: String,
    pub name: String,
    /// `platform_admin`, `tenant_admin`, `member` or `auditor`.
    pub role: String,
    pub status: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> UserView {
        UserView {
            id: u.id.clone(),
            tenant_id: u.tenant_id.clone(),
            email: u.email.clone(),
            name: u.name.clone(),
            role: u.role.as_str().to_string(),
            status: u.status.clone(),
            created_at: rfc3339(u.created_at),
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/users/me",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = UserView),
        (status = 401, description = "No valid access token or session", body = ErrorBody),
    )
)]
pub async fn me(principal: Principal) -> Result<Json<UserView>, ApiError> {
    Ok(Json(UserView::from(principal.require_user()?)))
}

/// A phone number in E.164 form (`+` and 8 to 15 digits, no leading zero), as parsed
/// from what people type (spaces, dashes, dots and brackets are dropped).
#[derive(Clone, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(text: &str) -> Result<Phone, IdentityError> {
        let invalid = || IdentityError::Invalid {
            field: "phone",
            reason: "must be an international number such as +62 812 3456 7890".into(),
        };
        let compact: String = text
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let digits = compact.strip_prefix('+').ok_or_else(invalid)?;
        if !(8..=15).contains(&digits.len())
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err(invalid());
        }
        Ok(Phone(compact))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Personal data: `Debug` must not print it.
impl std::fmt::Debug for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Phone([redacted])")
    }
}

fn role_schema() -> utoipa::openapi::Object {
    rampart_edge::string_enum_schema(&["platform_admin", "tenant_admin", "member", "auditor"])
}

/// Optional in the body (`null` or absent leaves it as it is).
fn tenant_role_schema() -> utoipa::openapi::Object {
    let mut s = rampart_edge::string_enum_schema(&["tenant_admin", "member", "auditor"]);
    s.schema_type = utoipa::openapi::schema::SchemaType::from_iter([
        utoipa::openapi::schema::Type::String,
        utoipa::openapi::schema::Type::Null,
    ]);
    s.enum_values
        .get_or_insert_with(Vec::new)
        .push(serde_json::Value::Null);
    s
}

fn user_status_schema() -> utoipa::openapi::Object {
    let mut s = rampart_edge::string_enum_schema(&["active", "disabled"]);
    s.schema_type = utoipa::openapi::schema::SchemaType::from_iter([
        utoipa::openapi::schema::Type::String,
        utoipa::openapi::schema::Type::Null,
    ]);
    s.enum_values
        .get_or_insert_with(Vec::new)
        .push(serde_json::Value::Null);
    s
}

/// `PUT /api/v1/users/me/phone`: a number people type (spaces, dashes, dots and brackets
/// are dropped), `+` and 8 to 15 digits, no leading zero.
#[derive(Deserialize, ToSchema)]
pub struct SetPhoneRequest {
    #[schema(pattern = r"^[ .()-]*\+[ .()-]*[1-9]([ .()-]*[0-9]){7,14}[ .()-]*$")]
    pub phone: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct PhoneBody {
    /// E.164, e.g. `+6281234567890`; `null` when none is set.
    pub phone: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/users/me/phone",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's phone number (stored sealed)", body = PhoneBody),
        (status = 401, description = "No valid access token or session", body = ErrorBody),
        (status = 403, description = "API keys have no phone", body = ErrorBody),
    )
)]
pub async fn get_phone(
    State(identity): State<Identity>,
    principal: Principal,
) -> Result<Json<PhoneBody>, ApiError> {
    let user = principal.require_user()?;
    let sealed = identity
        .store()
        .user_phone(&principal.scope, &user.id)
        .await
        .map_err(IdentityError::from)?;
    let phone = match sealed {
        Some(sealed) => Some(identity.open_phone(user, &sealed).await?),
        None => None,
    };
    Ok(Json(PhoneBody { phone }))
}

#[utoipa::path(
    put,
    path = "/api/v1/users/me/phone",
    tag = "users",
    security(("bearer" = [])),
    request_body = SetPhoneRequest,
    responses(
        (status = 200, description = "Stored, sealed under the keyring's `pii` key", body = PhoneBody),
        (status = 401, description = "No valid access token or session", body = ErrorBody),
        (status = 422, description = "Not an E.164 number", body = ErrorBody),
    )
)]
pub async fn set_phone(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Json(body): Json<SetPhoneRequest>,
) -> Result<Json<PhoneBody>, ApiError> {
    let user = principal.require_user()?;
    let phone = Phone::parse(&body.phone)?;
    let sealed = identity.seal_phone(user, phone.as_str()).await?;
    // The audit log says that it changed, never what it is.
    let audit = rampart_audit::event(
        principal.actor(),
        "user.phone_set",
        "user",
        request_meta(&info),
    )
    .build();
    identity
        .store()
        .set_user_phone(&principal.scope, &user.id, Some(sealed), audit)
        .await
        .map_err(IdentityError::from)?;
    Ok(Json(PhoneBody {
        phone: Some(phone.as_str().to_string()),
    }))
}

#[utoipa::path(
    delete,
    path = "/api/v1/users/me/phone",
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No valid access token or session", body = ErrorBody),
    )
)]
pub async fn delete_phone(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
) -> Result<StatusCode, ApiError> {
    let user = principal.require_user()?;
    let audit = rampart_audit::event(
        principal.actor(),
        "user.phone_delete",
        "user",
        request_meta(&info),
    )
    .build();
    identity
        .store()
        .set_user_phone(&principal.scope, &user.id, None, audit)
        .await
        .map_err(IdentityError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

/// One page of a tenant's users.
#[derive(Serialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<UserView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant_id}/users",
    tag = "users",
    security(("bearer" = [])),
    params(("tenant_id" = String, Path, description = "Tenant id"), crate::tenants::ListParams),
    responses(
        (status = 200, description = "The tenant's users, invitations included, in id order", body = UserPage),
        (status = 403, description = "Missing users:read", body = ErrorBody),
        (status = 404, description = "No such tenant (or not the caller's)", body = ErrorBody),
        (status = 422, description = "Invalid limit", body = ErrorBody),
    )
)]
pub async fn list_in_tenant(
    State(identity): State<Identity>,
    principal: Principal,
    Path(tenant_id): Path<String>,
    Query(params): Query<crate::tenants::ListParams>,
) -> Result<Json<UserPage>, ApiError> {
    let scope = scope_for(&identity, &principal, &tenant_id).await?;
    principal.require(rbac::USERS_READ)?;
    let limit = crate::page_limit(params.limit, 50, 200)?;
    let users = identity
        .store()
        .list_users(&scope, params.after.as_deref(), limit)
        .await
        .map_err(IdentityError::from)?;
    let next_cursor = (users.len() as i64 == limit)
        .then(|| users.last().map(|u| u.id.clone()))
        .flatten();
    Ok(Json(UserPage {
        items: users.iter().map(UserView::from).collect(),
        next_cursor,
    }))
}

/// A new user. Not `Debug`: it carries a password.
#[derive(Deserialize, ToSchema)]
pub struct CreateUserRequest {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    #[serde(default)]
    #[schema(max_length = 200, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub name: String,
    /// Platform admins only, and required from them: at least `auth.password_min_length`
    /// characters (12 by default) and strong enough for zxcvbn's `auth.password_min_score`.
    /// A tenant admin invites instead (leave it out): the invitee chooses a password.
    #[schema(min_length = 12, max_length = 1024)]
    pub password: Option<String>,
    /// `tenant_admin`, `member` or `auditor` (`platform_admin` only in the platform tenant).
    #[schema(schema_with = role_schema)]
    pub role: String,
}

#[utoipa::path(
    post,
    path = "/api/v1/tenants/{tenant_id}/users",
    tag = "users",
    security(("bearer" = [])),
    params(("tenant_id" = String, Path, description = "Tenant id")),
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "Created (a platform admin, with the password given)", body = UserView),
        (status = 202, description = "Invited (a tenant admin): the same answer whether the address is free or has an account in another tenant", body = crate::auth::invitation::InviteResponse),
        (status = 403, description = "Caller may not create users", body = ErrorBody),
        (status = 404, description = "No such tenant (or not the caller's)", body = ErrorBody),
        (status = 409, description = "The address is a user of this tenant already (`email_taken`)", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    )
)]
pub async fn create_in_tenant(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    headers: axum::http::HeaderMap,
    Path(tenant_id): Path<String>,
    Json(body): Json<CreateUserRequest>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    scope_for(&identity, &principal, &tenant_id).await?;
    principal.require(rbac::USERS_WRITE)?;
    let role: Role = body.role.parse().map_err(|reason| IdentityError::Invalid {
        field: "role",
        reason,
    })?;
    if role == Role::PlatformAdmin
        && (tenant_id != PLATFORM_TENANT_ID || !principal.is_platform_admin())
    {
        return Err(IdentityError::Invalid {
            field: "role",
            reason: "platform_admin exists only in the platform tenant and is granted by platform admins".into(),
        }
        .into());
    }
    // Only a platform admin, who sees every tenant anyway, may learn from the answer that
    // an address has an account elsewhere; a tenant admin invites (auth/invitation.rs).
    if !principal.is_platform_admin() {
        if body.password.is_some() {
            return Err(IdentityError::Invalid {
                field: "password",
                reason: "tenant admins invite users, who choose their own password: leave it out"
                    .into(),
            }
            .into());
        }
        return Ok(crate::auth::invitation::invite(
            &identity,
            &principal,
            &info,
            &headers,
            crate::auth::invitation::Invitee {
                tenant_id,
                email: body.email,
                name: body.name,
                role,
            },
        )
        .await?
        .into_response());
    }
    let Some(password) = body.password else {
        return Err(IdentityError::Invalid {
            field: "password",
            reason: "is required".into(),
        }
        .into());
    };
    let user = create_user(
        identity.store(),
        identity.config(),
        UserInput {
            tenant_id,
            email: body.email,
            name: body.name,
            role,
            password,
        },
        principal.actor(),
        request_meta(&info),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(UserView::from(&user))).into_response())
}

/// A user to create, as given by an admin or an operator.
pub struct UserInput {
    pub tenant_id: String,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub password: String,
}

/// Validates, hashes (off the async threads) and stores a user, with its audit event.
pub async fn create_user(
    store: &Store,
    config: &AuthConfig,
    input: UserInput,
    actor: Actor,
    meta: RequestMeta,
) -> Result<User, IdentityError> {
    let email = Email::parse(&input.email).map_err(|reason| IdentityError::Invalid {
        field: "email",
        reason,
    })?;
    let name = input.name.trim().to_string();
    if name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(IdentityError::Invalid {
            field: "name",
            reason: "must be at most 200 characters, without control characters".into(),
        });
    }
    let (min_chars, min_score) = (config.password_min_length, config.password_min_score);
    let email_text = email.as_str().to_string();
    let name_for_policy = name.clone();
    let password = input.password;
    let hash = tokio::task::spawn_blocking(move || {
        let local = email_text.split('@').next().unwrap_or("").to_string();
        password::check_policy(
            &password,
            min_chars,
            min_score,
            &[&email_text, &local, &name_for_policy],
        )?;
        password::hash(&password)
    })
    .await
    .map_err(|e| IdentityError::Task(e.to_string()))?
    .map_err(|reason| IdentityError::Invalid {
        field: "password",
        reason,
    })?;
    insert_user(
        store,
        input.tenant_id,
        email,
        name,
        input.role,
        hash,
        actor,
        meta,
    )
    .await
}

/// Stores a user whose password hash is already made (an import of bcrypt hashes).
#[allow(clippy::too_many_arguments)]
pub async fn insert_user(
    store: &Store,
    tenant_id: String,
    email: Email,
    name: String,
    role: Role,
    password_hash: String,
    actor: Actor,
    meta: RequestMeta,
) -> Result<User, IdentityError> {
    let audit = rampart_audit::event(actor, "user.create", "user", meta)
        .changes(serde_json::json!({
            "email": email.as_str(),
            "name": name,
            "role": role.as_str(),
        }))
        .build();
    store
        .create_user(
            NewUser {
                tenant_id,
                email,
                name,
                role,
                password_hash,
            },
            audit,
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict { .. } => IdentityError::EmailTaken,
            // The tenant named does not exist.
            StoreError::Constraint { .. } => IdentityError::NotFound,
            other => IdentityError::Store(other),
        })
}

/// The scope to act in on `tenant_id`: the caller's own, or, for a platform admin,
/// that tenant's. Another tenant's id is 404 for everyone else, exactly like an id that
/// does not exist.
pub(crate) async fn scope_for(
    identity: &Identity,
    principal: &Principal,
    tenant_id: &str,
) -> Result<rampart_store::TenantScope, IdentityError> {
    if principal.scope.tenant_id() == tenant_id {
        return Ok(principal.scope.clone());
    }
    match principal.user() {
        Some(user) if principal.is_platform_admin() => identity
            .store()
            .scope_for_platform_admin(&user.id, tenant_id)
            .await
            .map_err(|_| IdentityError::NotFound),
        _ => Err(IdentityError::NotFound),
    }
}

#[derive(Deserialize, ToSchema)]
pub struct UpdateUserRequest {
    /// `tenant_admin`, `member` or `auditor`.
    #[schema(schema_with = tenant_role_schema)]
    pub role: Option<String>,
    /// `active` or `disabled`; a disabled user's sessions stop working at once.
    #[schema(schema_with = user_status_schema)]
    pub status: Option<String>,
}

#[utoipa::path(
    patch,
    path = "/api/v1/tenants/{tenant_id}/users/{user_id}",
    tag = "users",
    security(("bearer" = [])),
    params(
        ("tenant_id" = String, Path, description = "Tenant id"),
        ("user_id" = String, Path, description = "User id"),
    ),
    request_body = UpdateUserRequest,
    responses(
        (status = 200, description = "Updated; takes effect on the user's next request", body = UserView),
        (status = 403, description = "Missing users:write", body = ErrorBody),
        (status = 404, description = "No such user in that tenant", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    )
)]
pub async fn update(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Path((tenant_id, user_id)): Path<(String, String)>,
    Json(body): Json<UpdateUserRequest>,
) -> Result<Json<UserView>, ApiError> {
    let scope = scope_for(&identity, &principal, &tenant_id).await?;
    principal.require(rbac::USERS_WRITE)?;
    let role = body
        .role
        .as_deref()
        .map(|r| {
            r.parse::<Role>()
                .ok()
                .filter(|r| *r != Role::PlatformAdmin)
                .ok_or_else(|| IdentityError::Invalid {
                    field: "role",
                    reason: "must be tenant_admin, member or auditor".into(),
                })
        })
        .transpose()?;
    let status = match body.status.as_deref() {
        None => None,
        Some(s @ ("active" | "disabled")) => Some(s.to_string()),
        Some(_) => {
            return Err(IdentityError::Invalid {
                field: "status",
                reason: "must be active or disabled".into(),
            }
            .into())
        }
    };
    if principal.user().is_some_and(|u| u.id == user_id) {
        return Err(IdentityError::Forbidden("you cannot change your own role or status").into());
    }
    let audit = rampart_audit::event(
        principal.actor(),
        "user.update",
        "user",
        request_meta(&info),
    )
    .build();
    let (before, after) = identity
        .store()
        .update_user(
            &scope,
            &user_id,
            &rampart_store::users::UserPatch { role, status },
            audit,
        )
        .await
        .map_err(IdentityError::from)?;
    if before.role != after.role || before.status != after.status {
        let mut event = rampart_audit::security_log::SecurityEvent::new("role_changed", "warning");
        event.detail = serde_json::json!({
            "target_user_id": after.id,
            "role": { "from": before.role.as_str(), "to": after.role.as_str() },
            "status": { "from": before.status, "to": after.status },
        });
        identity.security_event(event, &info, Some(&principal));
    }
    Ok(Json(UserView::from(&after)))
}

#[cfg(test)]
mod tests {
    use super::Phone;

    #[test]
    fn phones_parse_to_e164() {
        assert_eq!(
            Phone::parse("+62 812-3456-7890").unwrap().as_str(),
            "+6281234567890"
        );
        assert_eq!(
            Phone::parse("+1 (415) 555.0100").unwrap().as_str(),
            "+14155550100"
        );
        for bad in [
            "",
            "0812345678",
            "+0812345678",
            "+62",
            "+62abc45678",
            "+1234567890123456",
        ] {
            assert!(Phone::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            format!("{:?}", Phone::parse("+6281234567890").unwrap()),
            "Phone([redacted])"
        );
    }
}
