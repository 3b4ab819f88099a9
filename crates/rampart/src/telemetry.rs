//! Logs and traces.
//!
//! Logs: JSON lines (or human-readable with `log.format = "pretty"`) on stderr, filtered
//! by `log.level`; `RUST_LOG`, when set, wins. Each request's lines carry its request id
//! (the edge opens a span per request).
//!
//! Traces: with `telemetry.otlp_endpoint` (or `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`) set,
//! `rampart serve` and `rampart edge` also export spans over OTLP, HTTP/protobuf or gRPC,
//! through a batch processor: the server span of every request, and under it the jobs,
//! database transactions and outbound calls (upstream, webhook, SMTP, SMS, processor).
//! The exporting layer takes only spans, only of Rampart's own crates, at `info` or above,
//! and never events (log lines): a span's attributes are the fields its crate declares,
//! an allow-list of route templates, status codes, methods, kinds and ids (see
//! `rampart_edge::trace`). W3C TraceContext is the propagator, so an incoming
//! `traceparent` is continued and outgoing calls carry ours.
//!
//! One exporter per process: tracing has one global subscriber, installed by the first
//! call that gets there (the test suite builds many apps in one process and installs its
//! pipeline once). A later call keeps the first subscriber and exports nothing of its own.

use std::time::Duration;

use bytes::Bytes;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use rampart_config::{Config, LogFormat, TelemetryConfig};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Logs only: for the commands that run and exit.
pub fn init(config: &Config) {
    let _ = install(vec![log_layer(config)]);
}

/// Logs, and traces when an OTLP endpoint is configured. Must run inside the Tokio
/// runtime (the exporters send from it). [`Telemetry::shutdown`] exports what is left.
pub fn init_with_traces(config: &Config) -> Telemetry {
    let Some(target) = Target::resolve(&config.telemetry, |k| std::env::var(k).ok()) else {
        init(config);
        return Telemetry::default();
    };
    let provider = match provider(&config.telemetry, &target) {
        Ok(provider) => provider,
        Err(e) => {
            init(config);
            tracing::error!(error = %e, "cannot set up the OTLP trace exporter; no traces are exported");
            return Telemetry::default();
        }
    };
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("rampart"))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(filter_fn(|meta| {
            meta.is_span()
                && meta.target().starts_with("rampart")
                && *meta.level() <= tracing::Level::INFO
        }))
        .boxed();
    if install(vec![log_layer(config), traces]).is_err() {
        // Another subscriber came first (see the module docs): this provider would never
        // see a span.
        let _ = provider.shutdown();
        return Telemetry::default();
    }
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    tracing::info!(
        protocol = target.protocol.name(),
        endpoint = target
            .endpoint
            .as_deref()
            .unwrap_or("from OTEL_EXPORTER_OTLP_*"),
        "exporting traces over OTLP"
    );
    Telemetry {
        provider: Some(provider),
    }
}

fn install(layers: Vec<BoxedLayer>) -> Result<(), tracing_subscriber::util::TryInitError> {
    // `try_init`: a second call (tests building several apps) keeps the first subscriber.
    tracing_subscriber::registry().with(layers).try_init()
}

fn log_layer(config: &Config) -> BoxedLayer {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => fmt.with_filter(filter).boxed(),
    }
}

/// The trace pipeline [`init_with_traces`] installed, if any.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports every ended span now. Blocks the thread until the collector has answered
    /// (or the export timed out): call it from a blocking thread.
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            if let Err(e) = provider.force_flush() {
                tracing::warn!(error = %e, "cannot export traces");
            }
        }
    }

    /// Exports the spans still buffered and stops the exporter. On a blocking thread: the
    /// export itself runs on the runtime, which a blocked worker could starve.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot export the last traces"),
            Err(e) => tracing::warn!(error = %e, "the trace exporter did not stop"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http,
    Grpc,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http/protobuf",
            Protocol::Grpc => "grpc",
        }
    }
}

/// Where spans go. `endpoint` is `None` when only `OTEL_EXPORTER_OTLP_*` names it: the
/// exporter then reads those variables itself (adding `/v1/traces` for HTTP, as the
/// OpenTelemetry specification says).
#[derive(Debug, PartialEq, Eq)]
struct Target {
    protocol: Protocol,
    endpoint: Option<String>,
}

impl Target {
    /// The configuration wins; the standard variables count only where it is empty.
    fn resolve(t: &TelemetryConfig, env: impl Fn(&str) -> Option<String>) -> Option<Target> {
        let env = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let protocol = match t.otlp_protocol.as_str() {
            "" => env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
                .filter(|p| p.trim() == "grpc")
                .map_or(Protocol::Http, |_| Protocol::Grpc),
            "grpc" => Protocol::Grpc,
            _ => Protocol::Http,
        };
        let endpoint = if !t.otlp_endpoint.is_empty() {
            let base = t.otlp_endpoint.trim_end_matches('/');
            Some(match protocol {
                Protocol::Http if !base.ends_with("/v1/traces") => format!("{base}/v1/traces"),
                _ => base.to_string(),
            })
        } else if env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
            || env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        {
            None
        } else {
            return None;
        };
        Some(Target { protocol, endpoint })
    }
}

fn provider(
    t: &TelemetryConfig,
    target: &Target,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = match target.protocol {
        Protocol::Http => {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                opentelemetry_otlp::ExporterBuildError::InternalFailure(
                    "no Tokio runtime to send from".into(),
                )
            })?;
            let client = ExportClient::new(runtime).map_err(|e| {
                opentelemetry_otlp::ExporterBuildError::InternalFailure(e.to_string())
            })?;
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
            if let Some(endpoint) = &target.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            builder.build()?
        }
        Protocol::Grpc => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
            if let Some(endpoint) = &target.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            builder.build()?
        }
    };
    let name = match t.service_name.as_str() {
        "" => std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "rampart".into()),
        name => name.to_string(),
    };
    let resource = Resource::builder()
        .with_service_name(name)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            t.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// The OTLP/HTTP exporter's client: reqwest (already in the binary for webhooks), run on
/// the Tokio runtime. The SDK's batch processor exports from a thread of its own, where
/// an async client finds no reactor; the request is handed to the runtime and awaited.
#[derive(Debug)]
struct ExportClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

/// The collector's answer is a few bytes; more is not read.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

impl ExportClient {
    fn new(runtime: tokio::runtime::Handle) -> reqwest::Result<ExportClient> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(ExportClient { client, runtime })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let mut response = client.execute(request).await?;
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err("the collector's answer is too large".into());
                }
                body.extend_from_slice(&chunk);
            }
            let mut out = http::Response::builder()
                .status(response.status())
                .body(Bytes::from(body))?;
            *out.headers_mut() = std::mem::take(response.headers_mut());
            Ok::<_, opentelemetry_http::HttpError>(out)
        });
        sent.await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn telemetry(endpoint: &str, protocol: &str) -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: endpoint.into(),
            otlp_protocol: protocol.into(),
            ..TelemetryConfig::default()
        }
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn no_endpoint_no_traces() {
        assert_eq!(Target::resolve(&telemetry("", ""), env(&[])), None);
        assert_eq!(
            Target::resolve(
                &telemetry("", "grpc"),
                env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")])
            ),
            None
        );
    }

    #[test]
    fn the_configuration_wins_over_the_environment() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ];
        assert_eq!(
            Target::resolve(&telemetry("http://127.0.0.1:4318/", "http"), env(&vars)),
            Some(Target {
                protocol: Protocol::Http,
                endpoint: Some("http://127.0.0.1:4318/v1/traces".into()),
            })
        );
        assert_eq!(
            Target::resolve(&telemetry("http://127.0.0.1:4318/v1/traces", ""), env(&[])),
            Some(Target {
                protocol: Protocol::Http,
                endpoint: Some("http://127.0.0.1:4318/v1/traces".into()),
            })
        );
        assert_eq!(
            Target::resolve(&telemetry("http://127.0.0.1:4317", "grpc"), env(&[])),
            Some(Target {
                protocol: Protocol::Grpc,
                endpoint: Some("http://127.0.0.1:4317".into()),
            })
        );
    }

    #[test]
    fn the_environment_counts_where_the_configuration_is_empty() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ];
        assert_eq!(
            Target::resolve(&telemetry("", ""), env(&vars)),
            Some(Target {
                protocol: Protocol::Grpc,
                endpoint: None,
            })
        );
        let vars = [(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4318/v1/traces",
        )];
        assert_eq!(
            Target::resolve(&telemetry("", ""), env(&vars)),
            Some(Target {
                protocol: Protocol::Http,
                endpoint: None,
            })
        );
    }
}
