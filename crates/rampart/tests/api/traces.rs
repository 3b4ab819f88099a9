//! Traces over OTLP: a real receiver decodes what the exporter sends, HTTP/protobuf (an
//! axum `POST /v1/traces` in this process) and gRPC (a tonic `TraceService`, fed by a
//! `rampart serve` process).
//!
//! Tracing has one global subscriber per process, so this binary installs the OTLP
//! pipeline once ([`collector`]), on a runtime of its own that outlives every test, and
//! from then on every app of every test in the binary exports to the same receiver. Each
//! test therefore picks its spans by a trace id of its own (sent in `traceparent`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::{any, post};
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use rampart_config::Config;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, TestApp, STRONG_PASSWORD};
use crate::proxy::spawn_proxy;
use crate::vault::{key, merchant};

/// One span as the receiver got it: ids in lower-case hex, attributes as strings.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: i32,
    attributes: HashMap<String, String>,
}

impl Received {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// What a receiver has collected: the decoded spans and the raw request bodies.
#[derive(Default, Clone)]
struct Inbox {
    spans: Arc<Mutex<Vec<Received>>>,
    raw: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Inbox {
    fn take(&self, body: &[u8], request: ExportTraceServiceRequest) {
        self.raw.lock().unwrap().push(body.to_vec());
        let mut spans = self.spans.lock().unwrap();
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .map(|kv| any_to_string(kv.value.as_ref().and_then(|v| v.value.as_ref())))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.push(Received {
                        service: service.clone(),
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                        kind: span.kind,
                        attributes: span
                            .attributes
                            .into_iter()
                            .map(|kv| {
                                let value =
                                    any_to_string(kv.value.as_ref().and_then(|v| v.value.as_ref()));
                                (kv.key, value)
                            })
                            .collect(),
                    });
                }
            }
        }
    }

    fn of_trace(&self, trace_id: &str) -> Vec<Received> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn any_to_string(value: Option<&AnyValue>) -> String {
    match value {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// The HTTP receiver and the process's OTLP pipeline pointing at it.
struct Collector {
    inbox: Inbox,
    telemetry: rampart::telemetry::Telemetry,
    endpoint: String,
    /// Runs the receiver and the exporter's requests, for the life of the process (a
    /// test's own runtime ends with the test).
    _runtime: tokio::runtime::Runtime,
}

fn collector() -> &'static Collector {
    static COLLECTOR: OnceLock<Collector> = OnceLock::new();
    COLLECTOR.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("the collector's runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let inbox = Inbox::default();
        let receiver = inbox.clone();
        let receive = move |headers: HeaderMap, body: Bytes| {
            let receiver = receiver.clone();
            async move {
                assert_eq!(
                    headers.get("content-type").and_then(|v| v.to_str().ok()),
                    Some("application/x-protobuf")
                );
                match ExportTraceServiceRequest::decode(body.as_ref()) {
                    Ok(request) => {
                        receiver.take(&body, request);
                        (
                            StatusCode::OK,
                            [("content-type", "application/x-protobuf")],
                            ExportTraceServiceResponse::default().encode_to_vec(),
                        )
                    }
                    Err(_) => (
                        StatusCode::BAD_REQUEST,
                        [("content-type", "text/plain")],
                        b"not an ExportTraceServiceRequest".to_vec(),
                    ),
                }
            }
        };
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = Router::new().route("/v1/traces", post(receive));
            axum::serve(listener, app).await.ok();
        });
        let endpoint = format!("http://{addr}");
        let mut config = Config::default();
        // The suite's output stays the test runner's: no log lines from the subscriber.
        config.log.level = "off".into();
        config.telemetry.otlp_endpoint = endpoint.clone();
        config.telemetry.service_name = "rampart-api-tests".into();
        let telemetry = {
            let _in_runtime = runtime.enter();
            rampart::telemetry::init_with_traces(&config)
        };
        assert!(
            telemetry.exporting(),
            "the OTLP pipeline is the process's first subscriber"
        );
        Collector {
            inbox,
            telemetry,
            endpoint,
            _runtime: runtime,
        }
    })
}

/// The spans of `trace_id` once `done` holds for them, flushing the exporter meanwhile.
async fn spans_until(
    c: &'static Collector,
    trace_id: &str,
    done: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    for _ in 0..100 {
        tokio::task::spawn_blocking(|| c.telemetry.flush())
            .await
            .unwrap();
        let spans = c.inbox.of_trace(trace_id);
        if done(&spans) {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the spans of trace {trace_id} never arrived: {:#?}",
        c.inbox.of_trace(trace_id)
    );
}

/// A fresh W3C trace context: (trace id, the caller's span id, the `traceparent`).
fn caller_context() -> (String, String, String) {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let parent = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    let header = format!("00-{trace_id}-{parent}-01");
    (trace_id, parent, header)
}

/// An app on the receiver (its config names the endpoint the process exports to).
async fn traced_app() -> (&'static Collector, TestApp) {
    let c = collector();
    let app = spawn_app_with(|config| {
        config.telemetry.otlp_endpoint = c.endpoint.clone();
    })
    .await;
    (c, app)
}

fn server_span<'a>(spans: &'a [Received], route: &str) -> Option<&'a Received> {
    spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32 && s.attr("http.route") == Some(route))
}

#[tokio::test]
async fn a_request_continues_the_callers_trace_down_to_its_transactions() {
    let (c, app) = traced_app().await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let tenant = app.create_tenant(&root, "traced", "merchant").await;

    let (trace_id, caller_span, traceparent) = caller_context();
    let res = app
        .client
        .get(app.url(&format!("/api/v1/tenants/{tenant}")))
        .bearer_auth(&root)
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();

    let route = "/api/v1/tenants/{tenant_id}";
    let spans = spans_until(c, &trace_id, |spans| {
        server_span(spans, route).is_some_and(|server| {
            spans
                .iter()
                .any(|s| s.parent_span_id == server.span_id && s.name.starts_with("transaction"))
        })
    })
    .await;
    let server = server_span(&spans, route).unwrap();
    assert_eq!(server.service, "rampart-api-tests");
    assert_eq!(
        server.parent_span_id, caller_span,
        "the caller's span is the parent"
    );
    assert_eq!(server.name, format!("GET {route}"));
    assert_eq!(server.attr("http.request.method"), Some("GET"));
    assert_eq!(server.attr("http.response.status_code"), Some("200"));
    assert_eq!(server.attr("rampart.request_id"), Some(request_id.as_str()));
    assert_eq!(
        server.attr("rampart.tenant_id"),
        Some(rampart_store::PLATFORM_TENANT_ID)
    );
    // The template, never the raw path with the tenant's id in it.
    assert!(
        !server.attributes.values().any(|v| v.contains(&tenant)),
        "{server:#?}"
    );
    let tx = spans
        .iter()
        .find(|s| s.parent_span_id == server.span_id && s.name.starts_with("transaction"))
        .unwrap();
    assert_eq!(tx.kind, SpanKind::Client as i32);
    let backend = if app.database_url.is_some() {
        "postgresql"
    } else {
        "sqlite"
    };
    assert_eq!(tx.attr("db.system.name"), Some(backend));
    assert_eq!(tx.attr("db.operation.name"), Some("transaction"));
    assert!(
        matches!(tx.attr("rampart.db.outcome"), Some("commit" | "rollback")),
        "{tx:#?}"
    );
}

#[tokio::test]
async fn a_malformed_traceparent_is_ignored() {
    let (c, app) = traced_app().await;
    for bad in [
        "00-zzzz-0000-01",
        "00-00000000000000000000000000000000-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736",
        "",
    ] {
        let res = app
            .client
            .get(app.url("/health"))
            .header("traceparent", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "traceparent {bad:?}");
        let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
        // Its span starts a trace of its own.
        let mut found = None;
        for _ in 0..100 {
            tokio::task::spawn_blocking(|| c.telemetry.flush())
                .await
                .unwrap();
            found = c
                .inbox
                .spans
                .lock()
                .unwrap()
                .iter()
                .find(|s| s.attr("rampart.request_id") == Some(request_id.as_str()))
                .cloned();
            if found.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let span = found.expect("the request's span");
        assert_eq!(span.parent_span_id, "", "traceparent {bad:?}: {span:#?}");
        assert_ne!(span.trace_id, "00000000000000000000000000000000");
    }
}

#[tokio::test]
async fn an_upstream_behind_the_edge_proxy_gets_the_trace() {
    let c = collector();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let upstream = Router::new().route(
        "/echo",
        any(move |headers: HeaderMap| {
            let record = record.clone();
            async move {
                if let Some(v) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
                    record.lock().unwrap().push(v.to_string());
                }
                axum::Json(json!({"ok": true}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, upstream).await.ok() });
    let proxy = spawn_proxy(&format!("http://{upstream_addr}"), |_| {}).await;

    let (trace_id, caller_span, traceparent) = caller_context();
    let res = reqwest::Client::new()
        .get(format!("{}/echo", proxy.base))
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);

    let spans = spans_until(c, &trace_id, |spans| {
        spans.iter().any(|s| s.kind == SpanKind::Client as i32)
            && spans.iter().any(|s| s.kind == SpanKind::Server as i32)
    })
    .await;
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap();
    assert_eq!(server.parent_span_id, caller_span);
    let client = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .unwrap();
    assert_eq!(client.parent_span_id, server.span_id, "{spans:#?}");
    assert_eq!(client.attr("http.response.status_code"), Some("200"));

    // The upstream continues our trace, from the proxy's client span (not the caller's).
    let got = seen.lock().unwrap().clone();
    assert_eq!(
        got,
        vec![format!("00-{trace_id}-{}-01", client.span_id)],
        "the traceparent the upstream got"
    );
}

#[tokio::test]
async fn no_card_number_or_credential_in_any_exported_span() {
    let (c, app) = traced_app().await;
    app.create_platform_admin("root@example.id").await;
    let (root, _) = app.tokens("root@example.id").await;
    let (_, admin) = merchant(&app, &root, "traced-shop").await;
    let writer = key(&app, &admin, &["tokens:write"]).await;
    // A Visa test number no other test of the suite uses.
    let pan = "4000056655665556";

    let (trace_id, _, traceparent) = caller_context();
    let res = app
        .client
        .post(app.url("/api/v1/tokens"))
        .bearer_auth(&writer)
        .header("traceparent", &traceparent)
        .json(&json!({"number": pan, "exp_month": 12, "exp_year": 2030}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let token = res.json::<serde_json::Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let spans = spans_until(c, &trace_id, |spans| {
        server_span(spans, "/api/v1/tokens").is_some() && spans.len() >= 2
    })
    .await;
    let server = server_span(&spans, "/api/v1/tokens").unwrap();
    assert_eq!(server.attr("http.response.status_code"), Some("201"));

    // Everything this process exported so far, as the bytes on the wire.
    let raw = c.inbox.raw.lock().unwrap().concat();
    let contains = |needle: &str| raw.windows(needle.len()).any(|w| w == needle.as_bytes());
    // The search sees the spans: the route template of this request is there.
    assert!(contains("/api/v1/tokens"));
    for secret in [
        pan,
        writer.as_str(),
        root.as_str(),
        admin.as_str(),
        STRONG_PASSWORD,
    ] {
        assert!(!contains(secret), "{secret:?} is in an exported span");
    }
    assert!(!contains(&token), "the card token is in an exported span");
}

/// The gRPC receiver: a tonic `TraceService` keeping what it gets.
struct GrpcReceiver(Inbox);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let body = request.encode_to_vec();
        self.0.take(&body, request);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// `rampart serve` itself, exporting over gRPC: the request's span arrives with the
/// caller's parent, sent by the time the process has shut down (the batch is flushed at
/// shutdown, not left to the 5-second schedule).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rampart_serve_exports_over_grpc_and_flushes_at_shutdown() {
    let app = spawn_app().await;
    let inbox = Inbox::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(GrpcReceiver(inbox.clone()));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let endpoint = format!("http://{addr}");
    let mut node = app
        .spawn_node(&[
            ("RAMPART_TELEMETRY_OTLP_ENDPOINT", &endpoint),
            ("RAMPART_TELEMETRY_OTLP_PROTOCOL", "grpc"),
            ("RAMPART_TELEMETRY_SERVICE_NAME", "rampart-grpc-test"),
        ])
        .await;

    let (trace_id, caller_span, traceparent) = caller_context();
    let res = app
        .client
        .get(format!("{}/health", node.base))
        .header("traceparent", &traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();

    node.sigterm();
    let status = node
        .exit_within(Duration::from_secs(30))
        .await
        .expect("rampart serve stops on SIGTERM");
    assert!(status.success(), "{status:?}");

    let spans = inbox.of_trace(&trace_id);
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap_or_else(|| panic!("no server span of trace {trace_id} over gRPC: {spans:#?}"));
    assert_eq!(server.service, "rampart-grpc-test");
    assert_eq!(server.parent_span_id, caller_span);
    assert_eq!(server.attr("http.route"), Some("/health"));
    assert_eq!(server.attr("rampart.request_id"), Some(request_id.as_str()));
}

/// A webhook delivery runs as a job: its client span is a child of the job's span, and
/// the receiver gets that span as the parent in its `traceparent`.
#[tokio::test]
async fn a_webhook_delivery_carries_its_jobs_trace_to_the_receiver() {
    let c = collector();
    let app = spawn_app_with(|config| {
        config.telemetry.otlp_endpoint = c.endpoint.clone();
        config.notify.webhook_allow_private_targets = true;
        config.jobs.poll_interval_ms = 100;
    })
    .await;
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let receiver = Router::new().route(
        "/hooks",
        post(move |headers: HeaderMap| {
            let record = record.clone();
            async move {
                let traceparent = headers
                    .get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none");
                record.lock().unwrap().push(traceparent.to_string());
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, receiver).await.ok() });
    let (admin, key) = crate::payments::setup(&app).await;
    let res = app
        .post(
            "/api/v1/webhooks/endpoints",
            Some(&admin),
            &json!({"url": format!("http://127.0.0.1:{port}/hooks"), "events": ["payment.captured"]}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    // The payment request comes with a trace of the caller's; the job that delivers its
    // webhook was enqueued by it, so the delivery continues that trace.
    let caller_trace = format!("{:032x}", uuid::Uuid::new_v4().as_u128());
    crate::payments::created(
        app.client
            .post(app.url("/api/v1/payments"))
            .bearer_auth(&key)
            .header(
                "traceparent",
                format!("00-{caller_trace}-00f067aa0ba902b7-01"),
            )
            .json(&crate::payments::card_payment(
                "4242424242424242",
                5000,
                "192.0.2.30",
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;

    let mut traceparent = None;
    for _ in 0..200 {
        traceparent = seen.lock().unwrap().first().cloned();
        if traceparent.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let traceparent = traceparent.expect("the webhook is delivered");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert!(
        parts.len() == 4 && parts[1].len() == 32 && parts[2].len() == 16,
        "the receiver got traceparent {traceparent:?}"
    );
    let (trace_id, parent) = (parts[1], parts[2]);
    assert_eq!(
        trace_id, caller_trace,
        "the webhook carries the request's trace"
    );
    let spans = spans_until(c, trace_id, |spans| {
        spans
            .iter()
            .find(|s| s.span_id == parent)
            .is_some_and(|send| spans.iter().any(|s| s.span_id == send.parent_span_id))
    })
    .await;
    let send = spans.iter().find(|s| s.span_id == parent).unwrap();
    assert_eq!(send.name, "POST webhook");
    assert_eq!(send.kind, SpanKind::Client as i32);
    assert_eq!(send.attr("rampart.webhook.event"), Some("payment.captured"));
    assert_eq!(send.attr("http.response.status_code"), Some("204"));
    let job = spans
        .iter()
        .find(|s| s.span_id == send.parent_span_id)
        .unwrap();
    assert_eq!(job.kind, SpanKind::Consumer as i32, "{job:#?}");
    assert!(job.name.starts_with("job "), "{job:#?}");
    assert!(
        job.attr("job.kind").is_some_and(|k| !k.is_empty()),
        "{job:#?}"
    );
    assert_eq!(job.attr("job.outcome"), Some("completed"), "{job:#?}");
    // The job's parent is a span of the payment request (the transaction that enqueued
    // it), itself under the request's server span.
    let spans = spans_until(c, trace_id, |spans| {
        spans.iter().any(|s| s.span_id == job.parent_span_id)
    })
    .await;
    let enqueuer = spans
        .iter()
        .find(|s| s.span_id == job.parent_span_id)
        .unwrap();
    let mut at = enqueuer;
    while let Some(up) = spans.iter().find(|s| s.span_id == at.parent_span_id) {
        at = up;
    }
    assert_eq!(at.name, "POST /api/v1/payments", "{at:#?}");
    assert_eq!(at.parent_span_id, "00f067aa0ba902b7");
}
