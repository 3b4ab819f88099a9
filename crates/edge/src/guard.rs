//! The edge middleware every request crosses after `request_context`: it settles the
//! client address, answers CORS preflights, applies the per-IP rate limit, and puts the
//! security headers on every response. The WAF (`waf`) runs right after it.
//! Per-API-key and per-tenant limits need to know the caller, so `identity` applies them
//! with the same [`RateLimiter`] once the caller is authenticated.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::client_ip::TrustedProxies;
use crate::cors::CorsPolicy;
use crate::rate_limit::{Quota, RateLimiter};
use crate::{ApiError, ClientIp};

/// Limits the JSON extractor reads from the request (set here, per deployment).
#[derive(Debug, Clone, Copy)]
pub struct JsonLimits {
    pub max_depth: u32,
}

/// The edge's configuration, compiled once.
#[derive(Debug)]
pub struct EdgePolicy {
    pub proxies: TrustedProxies,
    pub cors: CorsPolicy,
    /// `Strict-Transport-Security`, when enabled.
    pub hsts: Option<HeaderValue>,
    /// `None`: rate limits are off.
    pub limiter: Option<RateLimiter>,
    pub ip_quota: Quota,
    pub json: JsonLimits,
    /// `serve`: responses default to `Cache-Control: no-store` and a CSP that loads
    /// nothing (they are JSON), and CORS preflights are always answered here. The proxy
    /// turns this off: the application behind it sets its own caching and CSP, and
    /// answers preflights itself unless `edge.cors_origins` is set.
    pub api_defaults: bool,
}

#[derive(Debug, Clone)]
pub struct Edge(pub Arc<EdgePolicy>);

const CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
const PERMISSIONS: &str =
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), microphone=(), payment=(), usb=()";
const CORS_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
const CORS_HEADERS: &str = "authorization, content-type, idempotency-key, x-request-id";
const CORS_EXPOSE: &str = "x-request-id, retry-after, ratelimit, ratelimit-policy";

pub async fn edge_guard(State(edge): State<Edge>, mut req: Request, next: Next) -> Response {
    let policy = &edge.0;
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| policy.proxies.client_ip(c.0.ip(), req.headers()));
    req.extensions_mut().insert(ClientIp(client));
    req.extensions_mut().insert(policy.json);

    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let origin_allowed = origin.as_deref().is_some_and(|o| policy.cors.allows(o));
    let preflight = (policy.api_defaults || !policy.cors.is_empty())
        && req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);

    let mut response = if preflight {
        if origin_allowed {
            let mut r = StatusCode::NO_CONTENT.into_response();
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static(CORS_METHODS),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(CORS_HEADERS),
            );
            h.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("600"),
            );
            r
        } else {
            ApiError::forbidden("this origin may not call the API").into_response()
        }
    } else if policy.api_defaults && has_encoded_nul(req.uri()) {
        nul_refused().into_response()
    } else {
        match (&policy.limiter, client) {
            (Some(limiter), Some(ip)) => {
                let decision = limiter.check("ip", &ip.to_string(), policy.ip_quota).await;
                if decision.allowed {
                    let mut r = next.run(req).await;
                    for (name, value) in decision.headers() {
                        r.headers_mut().entry(name).or_insert(value);
                    }
                    r
                } else {
                    rate_limited(&decision).into_response()
                }
            }
            _ => next.run(req).await,
        }
    };

    // Defaults: a route (or the application behind the proxy) may set its own.
    let h = response.headers_mut();
    if let Some(hsts) = &policy.hsts {
        h.entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert(hsts.clone());
    }
    h.entry(header::X_FRAME_OPTIONS)
        .or_insert(HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    h.entry("permissions-policy")
        .or_insert(HeaderValue::from_static(PERMISSIONS));
    if policy.api_defaults {
        h.entry(header::CONTENT_SECURITY_POLICY)
            .or_insert(HeaderValue::from_static(CSP));
        // API answers carry tokens and personal data: no cache keeps them unless a
        // route says otherwise (the JWKS does).
        h.entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    if !policy.cors.is_empty() {
        h.append(header::VARY, HeaderValue::from_static("origin"));
    }
    if let (true, Some(origin)) = (origin_allowed, origin) {
        if let Ok(value) = HeaderValue::from_str(&origin) {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(CORS_EXPOSE),
            );
        }
    }
    response
}

/// 429 with `Retry-After`, `RateLimit-Policy` and `RateLimit`.
pub fn rate_limited(decision: &crate::rate_limit::Decision) -> ApiError {
    ApiError {
        headers: decision.headers().to_vec(),
        message: format!(
            "rate limit ({}) exceeded; try again in {} s",
            decision.policy, decision.retry_after_secs
        ),
        code: "rate_limited",
        ..ApiError::too_many_requests(decision.retry_after_secs)
    }
}

/// `%00` in the path or query. PostgreSQL refuses a NUL in text (a 500 when it reached
/// the database); no identifier, filter or cursor of the API contains one, so it is a 400
/// here, before any handler.
fn has_encoded_nul(uri: &http::Uri) -> bool {
    let nul = |s: &str| s.as_bytes().windows(3).any(|w| w == b"%00");
    nul(uri.path()) || uri.query().is_some_and(nul)
}

/// The one refusal for NUL characters, in bodies (`json.rs`) and in URLs.
pub(crate) fn nul_refused() -> ApiError {
    ApiError::bad_request(
        "invalid_text",
        "text may not contain NUL characters (\\u0000 or %00)",
    )
}
