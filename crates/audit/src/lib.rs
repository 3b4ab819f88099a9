//! Audit events: what changed, who did it, from where.
//!
//! Every mutation appends an event in the same database transaction as the change (the
//! store does the writing, inside the repository function that makes the change). This
//! crate builds the events and redacts secrets from the changed fields before they are
//! stored. `chain` verifies the per-tenant hash chains the store keeps and signs
//! checkpoints of them (`rampart audit verify`, `rampart audit checkpoint`).
#![forbid(unsafe_code)]

pub mod chain;
pub mod security_log;

use rampart_store::{Actor, NewAuditEvent, RequestMeta};
use serde_json::Value;

/// Field names whose values never reach the audit log. Matched case-insensitively as
/// substrings, so `password_hash`, `refresh_token` and `api_key_secret` are all covered.
const SECRET_FIELD_PARTS: &[&str] = &[
    "password",
    "secret",
    "token",
    "hash",
    "key",
    "pan",
    "card_number",
    "cvc",
    "cvv",
    "otp",
];

pub const REDACTED: &str = "[redacted]";

/// Starts an event; `outcome` defaults to `success`.
pub fn event(actor: Actor, action: &str, target_type: &str, meta: RequestMeta) -> EventBuilder {
    EventBuilder(NewAuditEvent {
        actor,
        action: action.to_string(),
        target_type: target_type.to_string(),
        target_id: None,
        outcome: "success".into(),
        meta,
        changes: Value::Object(Default::default()),
    })
}

pub struct EventBuilder(NewAuditEvent);

impl EventBuilder {
    pub fn target(mut self, id: impl Into<String>) -> Self {
        self.0.target_id = Some(id.into());
        self
    }

    pub fn outcome(mut self, outcome: &str) -> Self {
        self.0.outcome = outcome.to_string();
        self
    }

    /// The changed fields; secret-looking fields are redacted, at any depth.
    pub fn changes(mut self, changes: Value) -> Self {
        self.0.changes = redact(changes);
        self
    }

    pub fn build(self) -> NewAuditEvent {
        self.0
    }
}

pub fn redact(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    if SECRET_FIELD_PARTS.iter().any(|p| lower.contains(p)) {
                        (k, Value::String(REDACTED.into()))
                    } else {
                        (k, redact(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let out = redact(json!({
            "email": "a@b.id",
            "password": "hunter2",
            "nested": {"refresh_token": "rft_x", "name": "Ana"},
            "list": [{"api_key_secret": "rk_1"}],
        }));
        assert_eq!(
            out,
            json!({
                "email": "a@b.id",
                "password": REDACTED,
                "nested": {"refresh_token": REDACTED, "name": "Ana"},
                "list": [{"api_key_secret": REDACTED}],
            })
        );
    }
}
