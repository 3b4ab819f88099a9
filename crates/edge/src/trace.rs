//! Trace context across process boundaries: the W3C `traceparent` (and `tracestate`) of
//! an incoming request continues its trace here, and outgoing calls (upstreams, webhooks)
//! carry ours on.
//!
//! Both go through the process's global propagator, which `rampart serve` sets to W3C
//! TraceContext only when traces are exported; until then the default propagator does
//! nothing, so with no collector configured no header is read or written here.
//!
//! What a span may carry is an allow-list, by construction: the exporting layer only takes
//! spans of Rampart's own crates, never events (log messages), and our spans declare only
//! route templates, status codes, methods, ids and kinds, never a header value, a query,
//! a body, a SQL parameter, a secret or a card number.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Makes `span` a child of the caller's span when `headers` carry a valid `traceparent`.
/// A missing or malformed one is ignored: the span starts a trace of its own.
pub fn continue_from(span: &tracing::Span, headers: &HeaderMap) {
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(headers)));
    if cx.span().span_context().is_valid() {
        // Fails only when the span is not exported (no OTLP layer): nothing to continue.
        span.set_parent(cx).ok();
    }
}

/// Writes `span`'s context as `traceparent` (and `tracestate`) into an outgoing request's
/// headers, replacing any there. Nothing is written while traces are not exported.
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeadersMut(headers))
    });
}

/// Records an outbound HTTP call's answer on its client span: the status code when one
/// came back, and an error status when the call `failed` (by the caller's measure: any
/// non-2xx for a webhook, a 5xx for a proxied upstream) or got no answer.
pub fn record_outcome(span: &tracing::Span, status: Option<http::StatusCode>, failed: bool) {
    if let Some(status) = status {
        span.record("http.response.status_code", status.as_u16());
    }
    if failed || status.is_none() {
        span.record("otel.status_code", "ERROR");
    }
}

/// Renames `span` in the traces it is exported to (`otel.name` is read only when the span
/// starts: a server span learns its route template after the router has run).
pub fn rename(span: &tracing::Span, name: String) {
    span.context().span().update_name(name);
}

/// The request method as OpenTelemetry's HTTP conventions name it: one of the standard
/// ones, or `_OTHER` (a method is a token of the caller's choosing).
pub fn method_name(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_exporter_nothing_is_read_or_written() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let span = tracing::info_span!("request");
        continue_from(&span, &headers);
        let mut out = HeaderMap::new();
        inject(&span, &mut out);
        assert!(out.is_empty());
        assert_eq!(method_name(&http::Method::GET), "GET");
        assert_eq!(
            method_name(&http::Method::from_bytes(b"BREW").unwrap()),
            "_OTHER"
        );
    }
}
