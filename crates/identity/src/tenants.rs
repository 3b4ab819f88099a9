//! Tenants: created and listed by platform admins; a tenant's own users may read theirs.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_store::{Tenant, TenantKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::request_meta;
use crate::{rbac, rfc3339, Identity, IdentityError, Principal};

pub(crate) fn router() -> OpenApiRouter<Identity> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(get))
        .routes(routes!(set_signup))
}

#[derive(Deserialize, ToSchema)]
pub struct SignupSetting {
    /// Let anyone sign up to this tenant at `POST /api/v1/auth/signup` (with e-mail
    /// verification).
    pub allow_signup: bool,
}

#[utoipa::path(
    put,
    path = "/api/v1/tenants/{tenant_id}/signup",
    tag = "tenants",
    security(("bearer" = [])),
    params(("tenant_id" = String, Path, description = "Tenant id")),
    request_body = SignupSetting,
    responses(
        (status = 204, description = "Set"),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
        (status = 404, description = "No such tenant, or not the caller's", body = ErrorBody),
    )
)]
pub async fn set_signup(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Path(tenant_id): Path<String>,
    Json(body): Json<SignupSetting>,
) -> Result<StatusCode, ApiError> {
    if !principal.is_platform_admin() && principal.scope.tenant_id() != tenant_id {
        return Err(IdentityError::NotFound.into());
    }
    principal.require(rbac::TENANTS_WRITE)?;
    let audit = rampart_audit::event(
        principal.actor(),
        "tenant.signup",
        "tenant",
        request_meta(&info),
    )
    .changes(serde_json::json!({ "allow_signup": body.allow_signup }))
    .build();
    identity
        .store()
        .set_tenant_allow_signup(&tenant_id, body.allow_signup, audit)
        .await
        .map_err(IdentityError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub created_at: String,
}

impl From<&Tenant> for TenantView {
    fn from(t: &Tenant) -> TenantView {
        TenantView {
            id: t.id.clone(),
            name: t.name.clone(),
            kind: t.kind.as_str().to_string(),
            status: t.status.clone(),
            created_at: rfc3339(t.created_at),
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub struct CreateTenantRequest {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub name: String,
    /// `government`, `lpk`, `employer`, `merchant`, `organization` or `community`.
    #[schema(schema_with = kind_schema)]
    pub kind: String,
}

fn kind_schema() -> utoipa::openapi::Object {
    rampart_edge::string_enum_schema(&[
        "government",
        "lpk",
        "employer",
        "merchant",
        "organization",
        "community",
    ])
}

/// Checks a tenant's name and kind; shared with `rampart tenants create`.
pub fn parse_new_tenant(name: &str, kind: &str) -> Result<(String, TenantKind), IdentityError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(IdentityError::Invalid {
            field: "name",
            reason: "must be 1 to 200 characters, without control characters".into(),
        });
    }
    let kind = kind
        .parse::<TenantKind>()
        .ok()
        .filter(|k| TenantKind::CREATABLE.contains(k))
        .ok_or_else(|| IdentityError::Invalid {
            field: "kind",
            reason: "must be one of government, lpk, employer, merchant, organization, community"
                .into(),
        })?;
    Ok((name.to_string(), kind))
}

#[utoipa::path(
    post,
    operation_id = "create_tenant",
    path = "/api/v1/tenants",
    tag = "tenants",
    security(("bearer" = [])),
    request_body = CreateTenantRequest,
    responses(
        (status = 201, description = "Created", body = TenantView),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
        (status = 422, description = "Invalid name or kind", body = ErrorBody),
    )
)]
pub async fn create(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Json(body): Json<CreateTenantRequest>,
) -> Result<(StatusCode, Json<TenantView>), ApiError> {
    principal.require(rbac::TENANTS_WRITE)?;
    let (name, kind) = parse_new_tenant(&body.name, &body.kind)?;
    let audit = rampart_audit::event(
        principal.actor(),
        "tenant.create",
        "tenant",
        request_meta(&info),
    )
    .changes(serde_json::json!({ "name": name, "kind": kind.as_str() }))
    .build();
    let tenant = identity
        .store()
        .create_tenant(&name, kind, audit)
        .await
        .map_err(IdentityError::from)?;
    Ok((StatusCode::CREATED, Json(TenantView::from(&tenant))))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// The `next_cursor` of the previous page.
    pub after: Option<String>,
    /// 1 to 200; 50 by default.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct TenantPage {
    pub items: Vec<TenantView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    operation_id = "list_tenants",
    path = "/api/v1/tenants",
    tag = "tenants",
    security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of tenants, oldest first", body = TenantPage),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
    )
)]
pub async fn list(
    State(identity): State<Identity>,
    principal: Principal,
    Query(params): Query<ListParams>,
) -> Result<Json<TenantPage>, ApiError> {
    principal.require(rbac::TENANTS_LIST)?;
    let limit = crate::page_limit(params.limit, 50, 200)?;
    let tenants = identity
        .store()
        .list_tenants(params.after.as_deref(), limit)
        .await
        .map_err(IdentityError::from)?;
    let next_cursor = (tenants.len() as i64 == limit)
        .then(|| tenants.last().map(|t| t.id.clone()))
        .flatten();
    Ok(Json(TenantPage {
        items: tenants.iter().map(TenantView::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(
    get,
    path = "/api/v1/tenants/{tenant_id}",
    tag = "tenants",
    security(("bearer" = [])),
    params(("tenant_id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        (status = 404, description = "No such tenant, or not the caller's", body = ErrorBody),
    )
)]
pub async fn get(
    State(identity): State<Identity>,
    principal: Principal,
    Path(tenant_id): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    if !principal.is_platform_admin() && principal.scope.tenant_id() != tenant_id {
        return Err(IdentityError::NotFound.into());
    }
    principal.require(rbac::TENANTS_READ)?;
    let tenant = identity
        .store()
        .get_tenant(&tenant_id)
        .await
        .map_err(IdentityError::from)?;
    Ok(Json(TenantView::from(&tenant)))
}
