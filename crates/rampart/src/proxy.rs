//! `rampart edge`: the edge layer on its own, in front of any HTTP application.
//!
//! Requests cross the same layers as in `serve` (request id and error shape, client
//! address, CORS, rate limits, security headers, the WAF with our rules and CRS) and are
//! then forwarded to one upstream over pooled keep-alive connections. Bodies stream
//! through, except what the WAF must inspect: request bodies (read whole, up to
//! `http.max_body_bytes`, as ModSecurity does) and response bodies of the media types the
//! rules inspect (up to `SecResponseBodyLimit`). The proxy answers `/health` and
//! `/metrics` itself; every other path goes upstream.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use prometheus_client::registry::Registry;
use rampart_config::Config;
use rampart_edge::{ApiError, ClientIp, HttpMetrics, RequestId};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

use crate::app;

/// Where requests go: scheme, authority and an optional path prefix.
#[derive(Debug, Clone)]
pub struct Upstream {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// Without a trailing slash; empty for none.
    prefix: String,
}

impl Upstream {
    pub fn parse(url: &str) -> anyhow::Result<Upstream> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("--upstream {url:?} is not a URL"))?;
        let scheme = uri.scheme().cloned().context("--upstream needs http://")?;
        if scheme != http::uri::Scheme::HTTP {
            // TLS to the upstream is not built in: the edge runs next to the app.
            anyhow::bail!("--upstream must be an http:// URL (got {scheme})");
        }
        let authority = uri
            .authority()
            .cloned()
            .context("--upstream needs a host")?;
        if uri.query().is_some() {
            anyhow::bail!("--upstream must not have a query string");
        }
        Ok(Upstream {
            scheme,
            authority,
            prefix: uri.path().trim_end_matches('/').to_string(),
        })
    }

    fn uri_for(&self, incoming: &Uri) -> Result<Uri, http::Error> {
        let pq = incoming.path_and_query().map_or("/", |p| p.as_str());
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{pq}", self.prefix))
            .build()
    }
}

#[derive(Clone)]
struct ProxyState {
    client: Client<HttpConnector, Body>,
    upstream: Arc<Upstream>,
    registry: Arc<Registry>,
}

/// Connection-level headers that belong to one hop, never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers the Connection header names are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

async fn forward(State(state): State<ProxyState>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let uri = match state.upstream.uri_for(&parts.uri) {
        Ok(uri) => uri,
        Err(_) => {
            return ApiError::bad_request("bad_request_target", "the request target is not valid")
                .into_response()
        }
    };
    let client_ip = parts.extensions.get::<ClientIp>().and_then(|c| c.0);
    let request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone());
    strip_hop_by_hop(&mut parts.headers);
    let h = &mut parts.headers;
    if let Some(ip) = client_ip {
        // The client as the edge established it (trusted proxies applied), appended to
        // the chain the upstream may already trust.
        let chain = match h.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
            Some(prior) => format!("{prior}, {ip}"),
            None => ip.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&chain) {
            h.insert("x-forwarded-for", v);
        }
    }
    if let Some(host) = h.get(header::HOST).cloned() {
        h.insert("x-forwarded-host", host);
    }
    h.entry("x-forwarded-proto")
        .or_insert(HeaderValue::from_static("http"));
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(&id).ok()) {
        h.insert("x-request-id", id);
    }
    // The client span of the upstream call (a child of the request's); the upstream
    // continues the trace from the `traceparent` it carries.
    let method = rampart_edge::trace::method_name(&parts.method);
    let span = tracing::info_span!(
        "upstream",
        otel.name = method,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.response.status_code = tracing::field::Empty,
    );
    rampart_edge::trace::inject(&span, &mut parts.headers);
    let mut out = Request::from_parts(parts, body);
    *out.uri_mut() = uri;
    *out.version_mut() = http::Version::HTTP_11;
    let sent = state.client.request(out).instrument(span.clone()).await;
    let status = sent.as_ref().ok().map(|r| r.status());
    rampart_edge::trace::record_outcome(&span, status, status.is_some_and(|s| s.is_server_error()));
    // Ends when the response head is in: the body streams on to the client afterwards.
    drop(span);
    match sent {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => {
            tracing::warn!(error = %e, upstream = %state.upstream.authority, "upstream request failed");
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                "the upstream application did not answer",
            )
            .into_response()
        }
    }
}

async fn metrics(State(state): State<ProxyState>) -> Response {
    crate::ops::encode_metrics(&state.registry).into_response()
}

/// The proxy's router: its own `/health` and `/metrics`, everything else upstream, all
/// behind the edge layers built from `config`.
pub async fn build(config: &Config, upstream: Upstream) -> anyhow::Result<Router> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let mut registry = Registry::default();
    let http_metrics = HttpMetrics::register(&mut registry);
    let waf = app::waf(
        config,
        rampart_edge::waf::HttpPolicy::CrsDefaults,
        &mut registry,
        app::security_log(config)?,
        // The proxy in front of another app has no tenants.
        Default::default(),
    )?;
    let mut edge = app::edge_policy(config).await?;
    edge.api_defaults = false;

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(connector);
    tracing::info!(upstream = %upstream.authority, "proxying");
    let state = ProxyState {
        client,
        upstream: Arc::new(upstream),
        registry: Arc::new(registry),
    };
    let routes = Router::new()
        .route("/health", get(crate::ops::health))
        .route("/metrics", get(metrics))
        .fallback(forward)
        .with_state(state)
        .route_layer(axum::middleware::from_fn(rampart_edge::request::route_tag))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            Duration::from_secs(config.http.request_timeout_secs),
        ))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("proxy handler panicked");
            ApiError::internal().into_response()
        }));
    Ok(app::edge_layers(routes, waf, edge, http_metrics))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls() {
        let u = Upstream::parse("http://127.0.0.1:9000/app/").unwrap();
        let uri = u.uri_for(&"/x/y?q=1".parse().unwrap()).unwrap();
        assert_eq!(uri.to_string(), "http://127.0.0.1:9000/app/x/y?q=1");
        let u = Upstream::parse("http://localhost:9000").unwrap();
        let uri = u.uri_for(&"/".parse().unwrap()).unwrap();
        assert_eq!(uri.to_string(), "http://localhost:9000/");
        assert!(Upstream::parse("https://example.com").is_err());
        assert!(Upstream::parse("example.com").is_err());
        assert!(Upstream::parse("http://h/?q=1").is_err());
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            "keep-alive, x-secret-hop".parse().unwrap(),
        );
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }
}
