//! The edge: what every request crosses before and after its handler.
//!
//! Here: request ids (taken from a sane `X-Request-Id` or made), the one error shape
//! `{"error":{"code","message","request_id"}}` for every 4xx/5xx including the
//! framework's own (unknown route, wrong method, body too large, timeout, panic), JSON
//! access logs, HTTP metrics, and the JSON body extractor. The Edge issue adds the WAF,
//! rate limits, client-IP rules, security headers and TLS here.
//!
//! Invariant: no handler builds an error body by hand; they return [`ApiError`] (or an
//! error enum that converts into it) and [`request_context`] renders it.
#![forbid(unsafe_code)]

mod error;
mod json;
mod metrics;
pub mod request;

pub use error::{ApiError, ErrorBody};
pub use json::Json;
pub use metrics::HttpMetrics;
pub use request::{not_found, request_context, route_tag, ClientIp, RequestId, RequestInfo};
