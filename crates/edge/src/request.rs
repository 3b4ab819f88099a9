//! Request context: id, client address, error rendering, access log and metrics.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::{ApiError, HttpMetrics};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request's id: the caller's `X-Request-Id` if it is a sane token, otherwise a new
/// UUID. Echoed in the response header, every log line and every error body.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The address the request came from: the socket peer, or what a trusted proxy says
/// (see `client_ip`).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

/// What a handler passes on to audit events and security logs about a request.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub request_id: String,
    pub client_ip: Option<IpAddr>,
    /// At most 256 bytes of the `User-Agent` header.
    pub user_agent: Option<String>,
}

/// Set by [`route_tag`] so the outer middleware can label metrics by route template
/// (never by raw path, which may carry ids or secrets).
#[derive(Debug, Clone)]
struct RouteTag(String);

/// Accept a caller's request id only if it cannot forge log lines or blow up labels.
fn sane_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    (!s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)))
    .then(|| s.to_string())
}

/// The outermost middleware. Order of work: assign the id, run the request inside a span,
/// turn any error response into the error shape with that id, add `X-Request-Id`, count
/// it, log it.
pub async fn request_context(
    State(metrics): State<HttpMetrics>,
    mut req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(sane_request_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = req.method().clone();
    let otel_method = crate::trace::method_name(&method);
    // The server span of the request. `otel.*`, `http.*` and `rampart.*` are what an OTLP
    // collector receives (the route template and status are recorded once known; the
    // tenant by the identity layer); `request_id` and `method` are for the log lines (a
    // method outside the standard ones is `_OTHER` there too: it is the caller's token).
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = otel_method,
        otel.name = otel_method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = otel_method,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        rampart.request_id = %request_id,
        rampart.tenant_id = tracing::field::Empty,
    );
    crate::trace::continue_from(&span, req.headers());

    let mut response = next.run(req).instrument(span.clone()).await;

    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let error = match response.extensions_mut().remove::<ApiError>() {
            Some(error) => Some(error),
            None => {
                // A JSON body is already the error shape; an HTML one is a console page
                // that shows its own error to a person.
                let rendered = response
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .is_some_and(|v| {
                        v.as_bytes().starts_with(b"application/json")
                            || v.as_bytes().starts_with(b"text/html")
                    });
                if rendered {
                    None
                } else {
                    let (parts, body) = response.into_parts();
                    let error = framework_error(status, body).await;
                    response = Response::from_parts(parts, Body::empty());
                    Some(error)
                }
            }
        };
        if let Some(error) = error {
            response = render(response, &error, &request_id);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    let route = response
        .extensions()
        .get::<RouteTag>()
        .map(|t| t.0.clone())
        .unwrap_or_else(|| "unmatched".to_string());
    if route != "unmatched" {
        span.record("http.route", route.as_str());
        crate::trace::rename(&span, format!("{otel_method} {route}"));
    }
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    let elapsed = started.elapsed();
    metrics.observe(method.as_str(), &route, status.as_u16(), elapsed);
    span.in_scope(|| {
        tracing::info!(
            target: "rampart::access",
            route = %route,
            status = status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        )
    });
    response
}

/// The error shape for a 4xx/5xx that no handler of ours made: the router's, a layer's,
/// or an extractor rejection of axum's. axum's rejections say in a short plain-text body
/// what failed (and quote the offending value, which is never passed on); for those a
/// 400 gets a code naming the part of the request at fault. Only a small body of known
/// length is read (a rejection's), never a proxied upstream's stream.
async fn framework_error(status: StatusCode, body: Body) -> ApiError {
    const SMALL: u64 = 1024;
    let small = http_body::Body::size_hint(&body)
        .exact()
        .is_some_and(|n| n <= SMALL);
    if status != StatusCode::BAD_REQUEST || !small {
        return ApiError::for_status(status);
    }
    let Ok(text) = axum::body::to_bytes(body, SMALL as usize).await else {
        return ApiError::for_status(status);
    };
    let (code, message) = if text.starts_with(b"Failed to deserialize query string") {
        (
            "invalid_query",
            "the query string does not fit this route: a parameter is missing or of the wrong type",
        )
    } else if text.starts_with(b"Invalid URL") || text.starts_with(b"Wrong number of path") {
        (
            "invalid_path",
            "a path parameter of this route is not valid (bad percent-encoding or type)",
        )
    } else if text.starts_with(b"Failed to buffer the request body") {
        ("bad_body", "request body could not be read")
    } else {
        return ApiError::for_status(status);
    };
    ApiError::bad_request(code, message)
}

/// Keeps the status and headers (`Retry-After`, `Allow`, ...) and replaces the body.
fn render(response: Response, error: &ApiError, request_id: &str) -> Response {
    let (mut parts, _) = response.into_parts();
    let body = serde_json::to_vec(&error.body(request_id)).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if error.status.is_server_error() {
        tracing::error!(
            code = error.code,
            status = error.status.as_u16(),
            "request failed"
        );
    }
    Response::from_parts(parts, Body::from(body))
}

/// Applied with `Router::route_layer` to every route: remembers which route matched.
pub async fn route_tag(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let mut response = next.run(req).await;
    if let Some(route) = route {
        response.extensions_mut().insert(RouteTag(route));
    }
    response
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId(uuid::Uuid::new_v4().to_string())))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Set by the edge guard (which applies the trusted-proxy rules); the socket
        // peer when the guard is not in front (tests of single layers).
        if let Some(ip) = parts.extensions.get::<ClientIp>() {
            return Ok(*ip);
        }
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestInfo {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let RequestId(request_id) = RequestId::from_request_parts(parts, state).await?;
        let ClientIp(client_ip) = ClientIp::from_request_parts(parts, state).await?;
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| {
                let mut end = s.len().min(256);
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s[..end].to_string()
            });
        Ok(RequestInfo {
            request_id,
            client_ip,
            user_agent,
        })
    }
}

/// The fallback for unknown routes.
pub async fn not_found() -> Response {
    ApiError::for_status(StatusCode::NOT_FOUND).into_response()
}
