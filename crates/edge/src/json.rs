//! A JSON body extractor whose rejections use the error shape.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::ApiError;

/// Like `axum::Json`, but a bad body is `400 malformed_json`, `422 invalid_body` (with the
/// field serde complained about), `415 unsupported_media_type` or `413 payload_too_large`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

/// When no edge guard set one (tests of single handlers).
const DEFAULT_MAX_DEPTH: u32 = 32;

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let max_depth = req
            .extensions()
            .get::<crate::JsonLimits>()
            .map_or(DEFAULT_MAX_DEPTH, |l| l.max_depth);
        let json_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            })
            .unwrap_or(false);
        if !json_type {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as Content-Type: application/json",
            ));
        }
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => bytes,
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body is too large",
                ))
            }
            Err(_) => {
                return Err(ApiError::bad_request(
                    "bad_body",
                    "request body could not be read",
                ))
            }
        };
        // Counted before parsing, so a deeply nested body costs one linear scan and no
        // recursion.
        if rampart_waf::json_nesting_depth(&bytes) > max_depth as usize {
            return Err(ApiError::bad_request(
                "json_too_deep",
                format!("request body nests deeper than {max_depth} levels"),
            ));
        }
        if has_nul_escape(&bytes) {
            return Err(crate::guard::nul_refused());
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(match rejection {
                JsonRejection::JsonDataError(e) => ApiError::unprocessable(
                    "invalid_body",
                    // serde's message names the field and the expected type, and quotes
                    // no more of the input than the offending token.
                    truncate(&e.body_text(), 300),
                ),
                JsonRejection::JsonSyntaxError(_) => {
                    ApiError::bad_request("malformed_json", "request body is not valid JSON")
                }
                // Content type and size were checked above; parsing bytes fails only
                // as data or syntax.
                _ => ApiError::bad_request("malformed_json", "request body is not valid JSON"),
            }),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A `\u0000` escape in a JSON text (a raw NUL is not valid JSON and fails parsing). An
/// escaped backslash is skipped whole, so `"\\u0000"` (a backslash, then the letters) is
/// text, not a NUL.
fn has_nul_escape(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'u') && bytes.get(i + 2..i + 6) == Some(&b"0000"[..]) {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    #[test]
    fn nul_escapes_are_found_and_escaped_backslashes_are_not() {
        assert!(super::has_nul_escape(br#"{"a":"x\u0000y"}"#));
        assert!(super::has_nul_escape(br#"{"a\u0000":1}"#));
        assert!(!super::has_nul_escape(br#"{"a":"x\\u0000y"}"#));
        assert!(super::has_nul_escape(br#"{"a":"x\\\u0000y"}"#));
        assert!(super::has_nul_escape(br#"{"a":"\u00001"}"#));
        assert!(!super::has_nul_escape(br#"{"a":"\u0001"}"#));
        assert!(!super::has_nul_escape(b"{}"));
    }
}
