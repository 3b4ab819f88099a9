//! Webhooks: merchants register endpoints and choose events; each event of a payment
//! becomes one delivery per subscribed endpoint, written in the same transaction as the
//! payment change (`rampart_store::webhooks::outbox`) and sent by the job queue.
//!
//! Every delivery is a `POST` of the event as JSON with
//! `Rampart-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under the
//! endpoint's secret (`whsec_…`, shown once when the endpoint is made), plus
//! `Rampart-Event` and `Rampart-Delivery` (the delivery id: receivers dedupe on it, since
//! delivery is at least once). A non-2xx answer or no answer within the timeout is
//! retried with exponential backoff and full jitter, 25 attempts over about two to four
//! days; each attempt is in the delivery log, and a delivery can be sent again by hand.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use hmac::{Hmac, Mac};
use rampart_crypto::envelope::Context;
use rampart_crypto::keyring::Keyring;
use rampart_edge::{ApiError, ErrorBody, Json, RequestInfo};
use rampart_identity::{IdentityError, Principal};
use rampart_jobs::{JobContext, JobError};
use rampart_store::webhooks::{Delivery, Endpoint, OutboxEvent};
use rampart_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Sha256;
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

/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let v1: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={v1}")
}

fn secret_key(tenant: &str) -> String {
    format!("webhook-{tenant}")
}

fn secret_context(tenant: &str, endpoint: &str) -> Context {
    Context::new(tenant, "webhook_endpoints", "sealed_secret", endpoint)
}

/// Sends deliveries: the `webhook.deliver` job handler.
#[derive(Clone)]
pub struct Sender {
    store: Store,
    keyring: Arc<Keyring>,
    client: reqwest::Client,
}

impl Sender {
    pub fn new(store: Store, keyring: Arc<Keyring>, timeout: Duration) -> Sender {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A receiver's redirect is not followed: the merchant registered this URL.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Rampart-Webhooks/1")
            .build()
            .unwrap_or_default();
        Sender {
            store,
            keyring,
            client,
        }
    }

    pub async fn deliver(self, ctx: JobContext, payload: Value) -> Result<(), JobError> {
        let id = payload["delivery_id"]
            .as_str()
            .ok_or_else(|| JobError::Permanent("payload has no delivery_id".into()))?;
        let (delivery, endpoint) = match self.store.webhook_delivery_for_send(id).await {
            Ok(found) => found,
            Err(StoreError::NotFound) => {
                return Err(JobError::Permanent(format!("no delivery {id}")))
            }
            Err(e) => return Err(JobError::Retryable(e.to_string())),
        };
        if delivery.status == "delivered" {
            return Ok(());
        }
        let secret = self
            .keyring
            .open(
                &secret_context(&endpoint.tenant_id, &endpoint.id),
                &endpoint.sealed_secret,
            )
            .await
            .map_err(|e| JobError::Retryable(format!("cannot open the endpoint secret: {e}")))?;
        let t = rampart_store::now_ms() / 1000;
        let sent = self
            .client
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .header(
                "rampart-signature",
                signature(&secret, t, delivery.body.as_bytes()),
            )
            .header("rampart-event", &delivery.event)
            .header("rampart-delivery", &delivery.id)
            .body(delivery.body.clone())
            .send()
            .await;
        let last = ctx.attempt >= ctx.max_attempts;
        let (outcome, code, error) = match sent {
            Ok(res) if res.status().is_success() => {
                ("delivered", Some(res.status().as_u16()), None)
            }
            Ok(res) => (
                if last { "failed" } else { "pending" },
                Some(res.status().as_u16()),
                Some(format!("the endpoint answered {}", res.status())),
            ),
            Err(e) => (
                if last { "failed" } else { "pending" },
                None,
                // reqwest's message names the URL and the cause, never a secret.
                Some(if e.is_timeout() {
                    "no answer within the timeout".to_string()
                } else {
                    format!("cannot reach the endpoint: {}", e.without_url())
                }),
            ),
        };
        self.store
            .record_webhook_attempt(&delivery.id, outcome, code.map(i64::from), error.as_deref())
            .await
            .map_err(|e| JobError::Retryable(e.to_string()))?;
        match error {
            None => Ok(()),
            Some(e) => Err(JobError::Retryable(e)),
        }
    }
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

/// Where a webhook may go: `https`, to a public address. Private, loopback and link-local
/// address literals (the cloud metadata service, internal admin panels) are refused unless
/// `allow_private` (development). Host names are not resolved here.
pub fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    let uri: axum::http::Uri = url.parse().map_err(|_| "is not a URL".to_string())?;
    let host = uri.host().ok_or("has no host")?.trim_matches(['[', ']']);
    let private = match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            ip.is_private() || ip.is_loopback() || ip.is_link_local() || ip.is_unspecified()
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            ip.is_loopback() || ip.is_unspecified() || (ip.segments()[0] & 0xfe00) == 0xfc00
        }
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    if private && !allow_private {
        return Err("points at a private or loopback address".into());
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if private && allow_private => Ok(()),
        _ => Err("must be an https:// URL".into()),
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
    if body.url.len() > 2000 {
        return Err(invalid("url", "is longer than 2000 characters").into());
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
    let secret = rampart_crypto::random_secret("whsec_", 24);
    let sealed_secret = p
        .keyring()
        .seal(
            &secret_key(&tenant),
            &secret_context(&tenant, &id),
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
pub struct DeliveryQuery {
    endpoint_id: Option<String>,
    /// 1 to 200 (default 50).
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
        .resend_webhook(&principal.scope, &delivery_id, audit)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => IdentityError::NotFound,
            other => IdentityError::Store(other),
        })?;
    Ok(StatusCode::ACCEPTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hmac_sha256_of_time_dot_body() {
        // Independent check: HMAC-SHA256("key", "1700000000.{}") computed with Python's hmac.
        let sig = signature(b"key", 1_700_000_000, b"{}");
        assert!(sig.starts_with("t=1700000000,v1="), "{sig}");
        assert_eq!(sig.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(sig, signature(b"key", 1_700_000_001, b"{}"));
        assert_ne!(sig, signature(b"other", 1_700_000_000, b"{}"));
    }

    #[test]
    fn webhook_urls_go_to_public_https_endpoints() {
        assert!(check_url("https://shop.example/hooks", false).is_ok());
        for bad in [
            "http://shop.example/hooks",
            "https://127.0.0.1/x",
            "https://10.1.2.3/x",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/x",
            "https://localhost/x",
            "ftp://shop.example/",
            "not a url",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
        }
        assert!(check_url("http://127.0.0.1:9000/x", true).is_ok());
        assert!(check_url("http://shop.example/x", true).is_err());
    }
}
