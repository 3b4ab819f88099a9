//! The edge: what every request crosses before and after its handler.
//!
//! Here: request ids (taken from a sane `X-Request-Id` or made), the one error shape
//! `{"error":{"code","message","request_id"}}` for every 4xx/5xx including the
//! framework's own (unknown route, wrong method, body too large, timeout, panic), JSON
//! access logs, HTTP metrics, the JSON body extractor (with a depth limit), the client
//! address behind trusted proxies, CORS, security headers, GCRA rate limits (in process or
//! Redis), and the WAF: our own SecLang rules (`rules/`: card numbers in URLs and
//! headers, JSON size and depth) and the OWASP Core Rule Set; and the client certificate of
//! a mutual-TLS caller.
//!
//! Invariant: no handler builds an error body by hand; they return [`ApiError`] (or an
//! error enum that converts into it) and [`request_context`] renders it.
#![forbid(unsafe_code)]

mod client_cert;
pub mod client_ip;
pub mod cors;
mod error;
pub mod guard;
mod json;
mod metrics;
pub mod rate_limit;
pub mod request;
pub mod trace;
pub mod waf;

pub use client_cert::ClientCertificate;
pub use error::{ApiError, ErrorBody};
pub use guard::{edge_guard, Edge, EdgePolicy, JsonLimits};
pub use json::Json;
pub use metrics::HttpMetrics;
pub use rampart_waf::{decimal_digit, luhn};
pub use request::{not_found, request_context, route_tag, ClientIp, RequestId, RequestInfo};

/// The OpenAPI schema of a string that must be one of `values`, for `#[param(schema_with)]`
/// and `#[schema(schema_with)]` on fields kept as `String` and checked by the handler
/// (which names the field in its 422).
pub fn string_enum_schema(values: &[&str]) -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(values.iter().copied()))
        .build()
}

/// A run of 13–19 digits (spaces and dashes between them allowed) that passes Luhn. Digits
/// of every script count as their ASCII twins (any Unicode `Nd`: fullwidth `４２４２…`,
/// Arabic-Indic, Devanagari, …; the same table as the edge's card rule), so a card number
/// cannot slip past by being typed in another width.
pub fn holds_card_number(text: &str) -> bool {
    let mut digits = Vec::new();
    for c in text.chars().chain(std::iter::once('x')) {
        match (decimal_digit(c), c) {
            (Some(d), _) => digits.push(b'0' + d),
            (None, ' ' | '-' | '\u{3000}' | '\u{FF0D}') if !digits.is_empty() => {}
            _ => {
                if (13..=19).contains(&digits.len()) && luhn(&digits) {
                    return true;
                }
                digits.clear();
            }
        }
    }
    false
}
