//! Payments as one producer of webhook events among several: it contributes its
//! `payment.*` event types to the platform's registry ([`register_events`]), and each
//! event of a payment becomes one delivery per subscribed endpoint, written in the same
//! transaction as the payment change (`Tx::publish_webhook_events`) and sent by the job
//! queue. Endpoints, the delivery log and resend are the platform's
//! (`rampart_identity::webhooks_api`, same URLs as before).
//!
//! Deliveries are notifications of the `webhook` channel: `rampart_notify` signs and
//! sends them (Standard Webhooks headers, and `Rampart-Signature: t=<unix seconds>,
//! v1=<hex HMAC-SHA256 of "<t>.<body>">` under the endpoint's secret, `whsec_…`, shown
//! once when the endpoint is made, plus `Rampart-Event` and `Rampart-Delivery`). A non-2xx
//! answer or no answer within the timeout is retried with exponential backoff and full
//! jitter, 25 attempts over about two to four days; each attempt is in the delivery log,
//! and a delivery can be sent again by hand.

use rampart_store::notify::webhooks::OutboxEvent;
use serde_json::json;

/// The permission the platform's webhook routes need (kept here for older callers).
pub use rampart_identity::webhooks_api::WEBHOOKS_WRITE;

/// The events a merchant can subscribe to, with what each means.
pub const EVENTS: &[(&str, &str)] = &[
    (
        "payment.authorized",
        "A payment was authorized (funds held).",
    ),
    ("payment.captured", "A payment was captured."),
    (
        "payment.declined",
        "A payment was declined, or rejected after review.",
    ),
    (
        "payment.refunded",
        "A payment was refunded, in part or in full.",
    ),
    (
        "payment.review",
        "The fraud rules held a payment for review.",
    ),
];

/// Contributes payments' event types to the platform's webhook registry.
pub fn register_events(registry: &mut rampart_notify::webhook::EventTypes) {
    registry.register("payments", EVENTS);
}

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
