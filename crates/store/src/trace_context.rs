//! A job's link to the request that enqueued it: the W3C `traceparent` of the span current
//! at enqueue time is stored with the job, and the worker makes the job's span its child,
//! so a webhook delivery or a mail shows in the trace of the request that caused it (and
//! the webhook receiver gets that trace id in its `traceparent`).
//!
//! Both go through the process's global propagator, which is W3C TraceContext only when
//! traces are exported; otherwise nothing is captured and nothing is continued.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

#[derive(Default)]
struct One(Option<String>);

impl Injector for One {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
    }
}

impl Extractor for One {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent")
            .then_some(self.0.as_deref())
            .flatten()
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// The current span's `traceparent`, when it is in an exported trace.
pub fn current() -> Option<String> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut out = One::default();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut out));
    out.0.filter(|v| v.len() <= 128)
}

/// Makes `span` a child of the stored `traceparent`; a malformed one is ignored.
pub fn continue_from(span: &tracing::Span, traceparent: &str) {
    let cx = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&One(Some(traceparent.to_string())))
    });
    if cx.span().span_context().is_valid() {
        span.set_parent(cx).ok();
    }
}
