//! Webhooks: merchants register endpoints and choose events; each event of a payment
//! becomes one delivery per subscribed endpoint, written in the same transaction as the
//! payment change (`rampart_store::notify::webhooks::outbox`) and sent by the job queue.
//!
//! Deliveries are notifications of the `webhook` channel: `rampart_notify` signs and
//! sends them (Standard Webhooks headers, and `Rampart-Signature: t=<unix seconds>,
//! v1=<hex HMAC-SHA256 of "<t>.<body>">` under the endpoint's secret, `whsec_…`, shown
//! once when the endpoint is made, plus `Rampart-Event` and `Rampart-Delivery`). A non-2xx
//! answer or no answer within the timeout is retried with exponential backoff and full
//! jitter, 25 attempts over about two to four days; each attempt is in the delivery log,
//! and a delivery can be sent again by hand.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_identity::{IdentityError, Principal};
use rampart_notify::webhook::check_url;
use rampart_notify::{endpoint_secret_context, endpoint_secret_key};
use rampart_store::notify::webhooks::{Delivery, Endpoint, OutboxEvent};
use rampart_store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

use crate::api::Payments;

pub const WEBHOOKS_WRITE: &str = "webhooks:write";

/// The events a merchant can subscribe to.
pub const EVENTS: &[&str] = &[
    "payment.authorized",
    "payment.captured",
    "payment.declined",
    "payment.refunded",
    "payment.review",
];

/// The event a payment in `status` announces, if any (a cancel announces none).
pub fn event_for(status: &str) -> Option<&'static str> {
    match status {
        "authorized" => Some("payment.authorized"),
        "captured" => Some("payment.captured"),
        "declined" => Some("payment.declined"),
        "refunded" | "partially_refunded" => Some("payment.refunded"),
        "review" => Some("payment.review"),
        _ => None,
    }
}

/// The outbox entry for a payment that just reached its state: `{id, type, created, data}`.
pub fn outbox_for(payment: &rampart_store::payments::Payment) -> Vec<OutboxEvent> {
    let Some(event) = event_for(&payment.status) else {
        return Vec::new();
    };
    let body = json!({
        "id": format!("evt_{}", rampart_store::new_id()),
        "type": event,
        "created": payment.updated_at / 1000,
        "data": crate::api::PaymentView::from(payment),
    });
    vec![OutboxEvent {
        event,
        payment_id: payment.id.clone(),
        body: body.to_string(),
    }]
}

// ----- the API -----

#[derive(Deserialize, ToSchema)]
pub struct EndpointRequest {
    /// `https://…` (plain `http://` only to private addresses when
    /// `payments.webhook_allow_private_targets` is on, for development).
    url: String,
    /// Any of `payment.authorized`, `payment.captured`, `payment.declined`,
    /// `payment.refunded`, `payment.review`.
    events: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
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

#[utoipa::path(
    post,
    path = "/api/v1/webhooks/endpoints",
    tag = "payments",
    security(("bearer" = [])),
    request_body = EndpointRequest,
    responses(
        (status = 201, description = "Made; the secret is in this answer only", body = EndpointView),
        (status = 422, description = "Bad URL or unknown event", body = ErrorBody),
    )
)]
pub async fn create_endpoint(
    State(p): State<Payments>,
    principal: Principal,
    info: RequestInfo,
    Json(body): Json<EndpointRequest>,
) -> Result<(StatusCode, Json<EndpointView>), ApiError> {
    principal.require(WEBHOOKS_WRITE)?;
    check_url(&body.url, p.webhook_allow_private()).map_err(|e| invalid("url", e))?;
    if crate::api::holds_card_number(&body.url) {
        return Err(invalid("url", "must not hold a card number").into());
    }
    if body.events.is_empty() {
        return Err(invalid("events", "name at least one event").into());
    }
    let mut events = Vec::new();
    for e in &body.events {
        let known = EVENTS
            .iter()
            .find(|k| **k == e.as_str())
            .ok_or_else(|| invalid("events", format!("must be among {}", EVENTS.join(", "))))?;
        if !events.contains(&known.to_string()) {
            events.push(known.to_string());
        }
    }
    let tenant = principal.scope.tenant_id().to_string();
    let id = format!("whe_{}", rampart_store::new_id());
    let secret = rampart_notify::webhook::new_secret();
    let sealed_secret = p
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
        rampart_identity::request_meta(&info),
    )
    .changes(json!({ "url": body.url, "events": events }))
    .build();
    let endpoint = p
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
            },
            audit,
        )
        .await
        .map_err(IdentityError::from)?;
    let mut view = EndpointView::from(&endpoint);
    view.secret = Some(secret);
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(
    get,
    path = "/api/v1/webhooks/endpoints",
    tag = "payments",
    security(("bearer" = [])),
    responses((status = 200, description = "The tenant's endpoints (no secrets)", body = [EndpointView]))
)]
pub async fn list_endpoints(
    State(p): State<Payments>,
    principal: Principal,
) -> Result<Json<Vec<EndpointView>>, ApiError> {
    principal.require(WEBHOOKS_WRITE)?;
    let endpoints = p
        .store()
        .webhook_endpoints(&principal.scope)
        .await
        .map_err(IdentityError::from)?;
    Ok(Json(endpoints.iter().map(EndpointView::from).collect()))
}

#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/endpoints/{endpoint_id}",
    tag = "payments",
    security(("bearer" = [])),
    params(("endpoint_id" = String, Path)),
    responses(
        (status = 204, description = "No more deliveries to it; its log stays"),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    )
)]
pub async fn delete_endpoint(
    State(p): State<Payments>,
    principal: Principal,
    info: RequestInfo,
    Path(endpoint_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    exists(&p, &principal, false, &endpoint_id).await?;
    principal.require(WEBHOOKS_WRITE)?;
    let audit = rampart_audit::event(
        principal.actor(),
        "webhook_endpoint.delete",
        "webhook_endpoint",
        rampart_identity::request_meta(&info),
    )
    .build();
    p.store()
        .disable_webhook_endpoint(&principal.scope, &endpoint_id, audit)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => IdentityError::NotFound,
            other => IdentityError::Store(other),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// 404 for a resource the caller's tenant does not have, before any permission check.
async fn exists(
    p: &Payments,
    principal: &Principal,
    delivery: bool,
    id: &str,
) -> Result<(), ApiError> {
    match p
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
    /// 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
}

#[utoipa::path(
    get,
    path = "/api/v1/webhooks/deliveries",
    tag = "payments",
    security(("bearer" = [])),
    params(DeliveryQuery),
    responses((status = 200, description = "The delivery log, newest first", body = [Object]))
)]
pub async fn list_deliveries(
    State(p): State<Payments>,
    principal: Principal,
    Query(q): Query<DeliveryQuery>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    principal.require(WEBHOOKS_WRITE)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(invalid("limit", "must be between 1 and 200").into());
    }
    let deliveries = p
        .store()
        .webhook_deliveries(&principal.scope, q.endpoint_id.as_deref(), limit)
        .await
        .map_err(IdentityError::from)?;
    Ok(Json(deliveries))
}

#[utoipa::path(
    post,
    path = "/api/v1/webhooks/deliveries/{delivery_id}/resend",
    tag = "payments",
    security(("bearer" = [])),
    params(("delivery_id" = String, Path)),
    responses(
        (status = 202, description = "Queued to be sent again"),
        (status = 404, description = "No such delivery", body = ErrorBody),
    )
)]
pub async fn resend_delivery(
    State(p): State<Payments>,
    principal: Principal,
    info: RequestInfo,
    Path(delivery_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    exists(&p, &principal, true, &delivery_id).await?;
    principal.require(WEBHOOKS_WRITE)?;
    let audit = rampart_audit::event(
        principal.actor(),
        "webhook_delivery.resend",
        "webhook_delivery",
        rampart_identity::request_meta(&info),
    )
    .build();
    p.store()
        .resend_notification(
            &principal.scope,
            &delivery_id,
            rampart_store::notify::webhooks::MAX_ATTEMPTS,
            audit,
        )
        .await
        .map_err(|e| match e {
            StoreError::NotFound => IdentityError::NotFound,
            other => IdentityError::Store(other),
        })?;
    Ok(StatusCode::ACCEPTED)
}
