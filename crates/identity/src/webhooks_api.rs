//! Webhook endpoints and their delivery log, for every app: a tenant registers endpoints
//! and chooses event types from the registry the apps filled at start
//! ([`rampart_notify::webhook::EventTypes`]: payments contributes `payment.*`); each event
//! an app publishes in its transaction (`Tx::publish_webhook_events`) becomes one
//! delivery per subscribed endpoint, signed and sent by `rampart_notify` (Standard
//! Webhooks headers, and `Rampart-Signature` as payment endpoints have always had).
//!
//! An endpoint answering `410 Gone` is disabled (Standard Webhooks): no new deliveries,
//! queued ones not sent, listed as `disabled` with the reason until a `PATCH` with
//! `{"enabled": true}`. A tenant can disable one the same way.
//!
//! Here rather than in `crates/notify` for the reason `notify_api` is: the routes are
//! access-control questions, and notify sits below identity. Permission:
//! `webhooks:write` (tenant and platform admins).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_notify::webhook::{check_url, EventType};
use rampart_notify::{endpoint_secret_context, endpoint_secret_key};
use rampart_store::notify::webhooks::{Delivery, Endpoint, EndpointChange, ENDPOINT_LIMIT};
use rampart_store::{Role, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::request_meta;
use crate::{rfc3339, Identity, IdentityError, Principal};

pub const WEBHOOKS_WRITE: &str = "webhooks:write";

pub fn register_permissions(rbac: &mut crate::rbac::RbacBuilder) {
    rbac.grant(Role::TenantAdmin, &[WEBHOOKS_WRITE]);
    rbac.grant(Role::PlatformAdmin, &[WEBHOOKS_WRITE]);
}

pub(crate) fn router() -> OpenApiRouter<Identity> {
    OpenApiRouter::new()
        .routes(routes!(event_types))
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(update_endpoint, delete_endpoint))
        .routes(routes!(list_deliveries))
        .routes(routes!(resend_delivery))
}

#[derive(Deserialize, ToSchema)]
pub struct EndpointRequest {
    /// `https://…` (plain `http://` only to private addresses when
    /// `notify.webhook_allow_private_targets` is on, for development).
    url: String,
    /// Event types from `GET /api/v1/webhooks/event-types` (e.g. `payment.captured`).
    events: Vec<String>,
}

/// A change to an endpoint; absent fields stay as they are. Unknown fields are ignored
/// like everywhere else, so another tenant's endpoint is a 404 whatever the body.
#[derive(Deserialize, ToSchema)]
pub struct EndpointPatch {
    url: Option<String>,
    events: Option<Vec<String>>,
    /// `true` re-enables an endpoint (one that answered 410 Gone, say); `false` disables
    /// it: no deliveries until enabled again.
    enabled: Option<bool>,
}

#[derive(Serialize, ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    /// `enabled` or `disabled`.
    pub status: &'static str,
    /// Why it is disabled: `the endpoint answered 410 Gone`, or `disabled by the tenant`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<String>,
    /// Shown once, when the endpoint is made: verify signatures with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl From<&Endpoint> for EndpointView {
    fn from(e: &Endpoint) -> EndpointView {
        EndpointView {
            id: e.id.clone(),
            url: e.url.clone(),
            events: e.events.clone(),
            status: if e.suspended_at.is_some() {
                "disabled"
            } else {
                "enabled"
            },
            disabled_reason: e.suspended_reason.clone(),
            disabled_at: e.suspended_at.map(rfc3339),
            secret: None,
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> IdentityError {
    IdentityError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn not_found(e: StoreError) -> IdentityError {
    match e {
        StoreError::NotFound => IdentityError::NotFound,
        other => IdentityError::Store(other),
    }
}

fn checked_url(identity: &Identity, url: &str) -> Result<(), IdentityError> {
    check_url(url, identity.notify().settings().webhook_allow_private)
        .map_err(|e| invalid("url", e))
}

/// The events, checked against the registry, without repeats.
fn checked_events(identity: &Identity, asked: &[String]) -> Result<Vec<String>, IdentityError> {
    if asked.is_empty() {
        return Err(invalid("events", "name at least one event"));
    }
    let registry = identity.notify().event_types();
    let mut events = Vec::new();
    for e in asked {
        let known = registry.find(e).ok_or_else(|| {
            let names: Vec<&str> = registry.all().iter().map(|t| t.name).collect();
            invalid("events", format!("must be among {}", names.join(", ")))
        })?;
        if !events.iter().any(|x: &String| x == known.name) {
            events.push(known.name.to_string());
        }
    }
    Ok(events)
}

#[utoipa::path(
    get,
    path = "/api/v1/webhooks/event-types",
    tag = "webhooks",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The event types endpoints can subscribe to, by app", body = [Object]),
        (status = 403, description = "No webhooks:write", body = ErrorBody),
    )
)]
pub async fn event_types(
    State(identity): State<Identity>,
    principal: Principal,
) -> Result<Json<Vec<EventType>>, ApiError> {
    principal.require(WEBHOOKS_WRITE)?;
    Ok(Json(identity.notify().event_types().all().to_vec()))
}

#[utoipa::path(
    post,
    path = "/api/v1/webhooks/endpoints",
    tag = "webhooks",
    security(("bearer" = [])),
    request_body = EndpointRequest,
    responses(
        (status = 201, description = "Made; the secret is in this answer only", body = EndpointView),
        (status = 409, description = "The tenant has 16 endpoints already (`too_many_endpoints`)", body = ErrorBody),
        (status = 422, description = "Bad URL or unknown event", body = ErrorBody),
    )
)]
pub async fn create_endpoint(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Json(body): Json<EndpointRequest>,
) -> Result<(StatusCode, Json<EndpointView>), ApiError> {
    principal.require(WEBHOOKS_WRITE)?;
    checked_url(&identity, &body.url)?;
    let events = checked_events(&identity, &body.events)?;
    let tenant = principal.scope.tenant_id().to_string();
    let id = format!("whe_{}", rampart_store::new_id());
    let secret = rampart_notify::webhook::new_secret();
    let sealed_secret = identity
        .notify()
        .keyring()
        .seal(
            &endpoint_secret_key(&tenant),
            &endpoint_secret_context(&tenant, &id),
            secret.as_bytes(),
        )
        .await
        .map_err(|e| IdentityError::Keys(e.to_string()))?;
    let audit = rampart_audit::event(
        principal.actor(),
        "webhook_endpoint.create",
        "webhook_endpoint",
        request_meta(&info),
    )
    .changes(json!({ "url": body.url, "events": events }))
    .build();
    let endpoint = identity
        .store()
        .create_webhook_endpoint(
            &principal.scope,
            Endpoint {
                id,
                tenant_id: tenant,
                url: body.url.clone(),
                events,
                sealed_secret,
                created_at: rampart_store::now_ms(),
                suspended_at: None,
                suspended_reason: None,
            },
            audit,
        )
        .await
        .map_err(|e| match e {
            StoreError::Conflict { constraint } if constraint == ENDPOINT_LIMIT => {
                IdentityError::Conflict(
                    "too_many_endpoints",
                    "a tenant has at most 16 webhook endpoints; delete one first",
                )
            }
            other => IdentityError::from(other),
        })?;
    let mut view = EndpointView::from(&endpoint);
    view.secret = Some(secret);
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(
    get,
    path = "/api/v1/webhooks/endpoints",
    tag = "webhooks",
    security(("bearer" = [])),
    responses((status = 200, description = "The tenant's endpoints, enabled and disabled (no secrets)", body = [EndpointView]))
)]
pub async fn list_endpoints(
    State(identity): State<Identity>,
    principal: Principal,
) -> Result<Json<Vec<EndpointView>>, ApiError> {
    principal.require(WEBHOOKS_WRITE)?;
    let endpoints = identity
        .store()
        .webhook_endpoints(&principal.scope)
        .await
        .map_err(IdentityError::from)?;
    Ok(Json(endpoints.iter().map(EndpointView::from).collect()))
}

#[utoipa::path(
    patch,
    path = "/api/v1/webhooks/endpoints/{endpoint_id}",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("endpoint_id" = String, Path)),
    request_body = EndpointPatch,
    responses(
        (status = 200, description = "Changed; the endpoint now", body = EndpointView),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 422, description = "Bad URL or unknown event", body = ErrorBody),
    )
)]
pub async fn update_endpoint(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Path(endpoint_id): Path<String>,
    Json(body): Json<EndpointPatch>,
) -> Result<Json<EndpointView>, ApiError> {
    exists(&identity, &principal, false, &endpoint_id).await?;
    principal.require(WEBHOOKS_WRITE)?;
    if let Some(url) = &body.url {
        checked_url(&identity, url)?;
    }
    let events = match &body.events {
        Some(asked) => Some(checked_events(&identity, asked)?),
        None => None,
    };
    let audit = rampart_audit::event(
        principal.actor(),
        "webhook_endpoint.update",
        "webhook_endpoint",
        request_meta(&info),
    )
    .changes(json!({ "url": body.url, "events": events, "enabled": body.enabled }))
    .build();
    let endpoint = identity
        .store()
        .update_webhook_endpoint(
            &principal.scope,
            &endpoint_id,
            EndpointChange {
                url: body.url,
                events,
                suspend: body
                    .enabled
                    .map(|on| (!on).then(|| "disabled by the tenant".to_string())),
            },
            audit,
        )
        .await
        .map_err(not_found)?;
    Ok(Json(EndpointView::from(&endpoint)))
}

#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/endpoints/{endpoint_id}",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("endpoint_id" = String, Path)),
    responses(
        (status = 204, description = "No more deliveries to it; its log stays"),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    )
)]
pub async fn delete_endpoint(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Path(endpoint_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    exists(&identity, &principal, false, &endpoint_id).await?;
    principal.require(WEBHOOKS_WRITE)?;
    let audit = rampart_audit::event(
        principal.actor(),
        "webhook_endpoint.delete",
        "webhook_endpoint",
        request_meta(&info),
    )
    .build();
    identity
        .store()
        .disable_webhook_endpoint(&principal.scope, &endpoint_id, audit)
        .await
        .map_err(not_found)?;
    Ok(StatusCode::NO_CONTENT)
}

/// 404 for a resource the caller's tenant does not have, before any permission check.
async fn exists(
    identity: &Identity,
    principal: &Principal,
    delivery: bool,
    id: &str,
) -> Result<(), ApiError> {
    match identity
        .store()
        .webhook_resource_exists(&principal.scope, delivery, id)
        .await
        .map_err(IdentityError::from)?
    {
        true => Ok(()),
        false => Err(IdentityError::NotFound.into()),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    endpoint_id: Option<String>,
    /// `<created_at>.<id>` of the last delivery of the previous page (its `created_at`
    /// and `id` fields): the deliveries before it.
    #[param(pattern = r"^1[0-9]{12}\.[A-Za-z0-9_-]{1,64}$")]
    cursor: Option<String>,
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/webhooks/deliveries",
    tag = "webhooks",
    security(("bearer" = [])),
    params(DeliveryQuery),
    responses((status = 200, description = "The delivery log, newest first", body = [Object]))
)]
pub async fn list_deliveries(
    State(identity): State<Identity>,
    principal: Principal,
    Query(q): Query<DeliveryQuery>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    principal.require(WEBHOOKS_WRITE)?;
    let limit = crate::page_limit(q.limit, 50, 200)?;
    let deliveries = identity
        .store()
        .webhook_deliveries(
            &principal.scope,
            q.endpoint_id.as_deref(),
            crate::parse_cursor_param(q.cursor.as_deref())?,
            limit,
        )
        .await
        .map_err(IdentityError::from)?;
    Ok(Json(deliveries))
}

#[utoipa::path(
    post,
    path = "/api/v1/webhooks/deliveries/{delivery_id}/resend",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("delivery_id" = String, Path)),
    responses(
        (status = 202, description = "Queued to be sent again"),
        (status = 404, description = "No such delivery", body = ErrorBody),
    )
)]
pub async fn resend_delivery(
    State(identity): State<Identity>,
    principal: Principal,
    info: RequestInfo,
    Path(delivery_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    exists(&identity, &principal, true, &delivery_id).await?;
    principal.require(WEBHOOKS_WRITE)?;
    let audit = rampart_audit::event(
        principal.actor(),
        "webhook_delivery.resend",
        "webhook_delivery",
        request_meta(&info),
    )
    .build();
    identity
        .store()
        .resend_notification(
            &principal.scope,
            &delivery_id,
            rampart_store::notify::webhooks::MAX_ATTEMPTS,
            audit,
        )
        .await
        .map_err(not_found)?;
    identity.notify().wake();
    Ok(StatusCode::ACCEPTED)
}
