//! Calling the API in-process, as the browser's user.

use axum::body::Body;
use axum::Router;
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use rampart_edge::ApiError;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower::ServiceExt;

/// The API router, called with `tower::oneshot` (no socket, no second edge pass).
#[derive(Clone)]
pub struct Api {
    router: Router,
}

/// What the browser's request lends to the API calls made for it: its extensions (the
/// request id and client address the edge set, so audit and security events name the
/// real client) and the headers the API reads (`User-Agent`, `Accept-Language`).
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub(crate) extensions: http::Extensions,
    pub(crate) user_agent: Option<HeaderValue>,
    pub(crate) accept_language: Option<HeaderValue>,
}

impl Origin {
    pub(crate) fn of(parts: &http::request::Parts) -> Origin {
        // Only what the edge established about the client; never the console route's own
        // extensions (its path parameters would become the API route's).
        let mut extensions = http::Extensions::new();
        if let Some(id) = parts.extensions.get::<rampart_edge::RequestId>() {
            extensions.insert(id.clone());
        }
        if let Some(ip) = parts.extensions.get::<rampart_edge::ClientIp>() {
            extensions.insert(*ip);
        }
        Origin {
            extensions,
            user_agent: parts.headers.get(http::header::USER_AGENT).cloned(),
            accept_language: parts.headers.get(http::header::ACCEPT_LANGUAGE).cloned(),
        }
    }
}

/// An API answer: status, JSON body (`Null` when empty), and the error when it failed.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    /// `(code, message)` of a failed call, as the API's error shape has them.
    pub error: Option<(String, String)>,
    /// The body as sent, for answers that are not JSON (a CSV report).
    pub raw: axum::body::Bytes,
    pub content_type: Option<HeaderValue>,
}

impl Answer {
    /// No call made yet (a form shown for the first time).
    pub fn none() -> Answer {
        Answer {
            status: StatusCode::OK,
            body: Value::Null,
            error: None,
            raw: Default::default(),
            content_type: None,
        }
    }

    /// A failure with only a status (a page for an unknown action, say).
    pub fn none_with(status: StatusCode) -> Answer {
        Answer {
            status,
            ..Answer::none()
        }
    }

    pub fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The body as `T`, or `None` for a failure or an unexpected shape.
    pub fn json<T: DeserializeOwned>(&self) -> Option<T> {
        if !self.ok() {
            return None;
        }
        // From the bytes, not `body`: no copy of a large page.
        serde_json::from_slice(&self.raw).ok()
    }

    /// A text field of a successful answer (`secret` of a key made just now).
    pub fn created_text(&self, field: &str) -> Option<String> {
        if !self.ok() {
            return None;
        }
        self.body
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// The API's message, for a banner.
    pub fn message(&self) -> Option<&str> {
        self.error.as_ref().map(|(_, m)| m.as_str())
    }

    pub fn code(&self) -> Option<&str> {
        self.error.as_ref().map(|(c, _)| c.as_str())
    }

    /// The reason given for `field` by a 422 `invalid_field` (`"field: reason"`).
    pub fn field_error(&self, field: &str) -> Option<&str> {
        let (code, message) = self.error.as_ref()?;
        if code != "invalid_field" {
            return None;
        }
        message
            .strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(": "))
    }

    /// The session behind the call is over (logged out, revoked, user disabled).
    pub fn signed_out(&self) -> bool {
        self.status == StatusCode::UNAUTHORIZED
    }
}

impl Api {
    pub(crate) fn new(router: Router) -> Api {
        Api { router }
    }

    /// `method path` with an optional JSON body, as the caller `origin` describes (its
    /// extensions include the [`rampart_identity::ConsoleCaller`] of a signed-in user).
    pub async fn call(
        &self,
        origin: &Origin,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(ua) = &origin.user_agent {
            request = request.header(http::header::USER_AGENT, ua);
        }
        if let Some(lang) = &origin.accept_language {
            request = request.header(http::header::ACCEPT_LANGUAGE, lang);
        }
        let body = match body {
            Some(v) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let mut request = match request.body(body) {
            Ok(r) => r,
            Err(_) => return failure(StatusCode::BAD_REQUEST, "bad_request", "bad request"),
        };
        *request.extensions_mut() = origin.extensions.clone();
        let response = match self.router.clone().oneshot(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let (mut parts, body) = response.into_parts();
        // The API's errors travel as a response extension until the edge renders them
        // (rampart_edge::request_context); in-process, we read them directly.
        let api_error = parts.extensions.remove::<ApiError>();
        let bytes = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return failure(StatusCode::BAD_GATEWAY, "internal", "internal error"),
        };
        let json: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        let error = match api_error {
            Some(e) => Some((e.code.to_string(), e.message)),
            None if !parts.status.is_success() => Some((
                json.pointer("/error/code")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_string(),
                json.pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| parts.status.canonical_reason().unwrap_or("error"))
                    .to_string(),
            )),
            None => None,
        };
        Answer {
            status: parts.status,
            body: json,
            error,
            raw: bytes,
            content_type: parts.headers.get(http::header::CONTENT_TYPE).cloned(),
        }
    }

    pub async fn get(&self, origin: &Origin, path: &str) -> Answer {
        self.call(origin, Method::GET, path, None).await
    }

    pub async fn post(&self, origin: &Origin, path: &str, body: Value) -> Answer {
        self.call(origin, Method::POST, path, Some(body)).await
    }
}

fn failure(status: StatusCode, code: &str, message: &str) -> Answer {
    Answer {
        status,
        body: Value::Null,
        error: Some((code.to_string(), message.to_string())),
        raw: Default::default(),
        content_type: None,
    }
}

/// A query string from pairs, each value percent-encoded; empty values left out.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        out.push(if out.is_empty() { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&encode(v));
    }
    out
}

/// Percent-encodes everything but unreserved characters (RFC 3986), for a path segment
/// or a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_encode_and_skip_empty_values() {
        assert_eq!(
            query(&[("a", "x y&z"), ("b", ""), ("c", "é")]),
            "?a=x%20y%26z&c=%C3%A9"
        );
        assert_eq!(query(&[("a", "")]), "");
        assert_eq!(encode("../x"), "..%2Fx");
    }

    #[test]
    fn field_errors_come_from_invalid_field_only() {
        let a = Answer {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: Some(("invalid_field".into(), "email: is not an address".into())),
            ..Answer::none()
        };
        assert_eq!(a.field_error("email"), Some("is not an address"));
        assert_eq!(a.field_error("name"), None);
        assert_eq!(a.field_error("emai"), None);
    }
}
