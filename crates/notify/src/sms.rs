//! SMS behind [`SmsProvider`]: an HTTP gateway of the common shape (JSON POST with an API
//! key, the gateway's message id back, delivery status to a callback), and the default,
//! which writes each message to `data_dir/sms/` as JSON. Numbers are E.164; they reach
//! the gateway or the file, never a log or an error message.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;
use tracing::Instrument;

use crate::Attempt;

/// A phone number in E.164 (`+` and 8 to 15 digits). Its `Debug` shows the last two
/// digits only.
#[derive(Clone, PartialEq, Eq)]
pub struct E164(String);

impl E164 {
    pub fn parse(raw: &str) -> Result<E164, String> {
        let digits = raw.strip_prefix('+').ok_or("must start with +")?;
        if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(E164(raw.to_string()))
        } else {
            Err("must be + and 8 to 15 digits".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for E164 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tail = &self.0[self.0.len().saturating_sub(2)..];
        write!(f, "E164(+…{tail})")
    }
}

pub type SmsFuture<'a> = Pin<Box<dyn Future<Output = Attempt> + Send + 'a>>;

/// Where text messages go.
pub trait SmsProvider: Send + Sync {
    /// Sends `body` to `to`; `id` is the notification id (the gateway's reference).
    fn send<'a>(&'a self, id: &'a str, to: &'a E164, body: &'a str) -> SmsFuture<'a>;
    fn describe(&self) -> String;
}

/// Writes `<id>.json` (`{"to", "body"}`) to a folder: the embedded default.
pub struct FileSms {
    pub dir: PathBuf,
}

impl SmsProvider for FileSms {
    fn send<'a>(&'a self, id: &'a str, to: &'a E164, body: &'a str) -> SmsFuture<'a> {
        Box::pin(async move {
            let json = serde_json::json!({ "id": id, "to": to.as_str(), "body": body });
            match crate::mail::write_file(
                &self.dir,
                &format!("{id}.json"),
                json.to_string().as_bytes(),
            )
            .await
            {
                Ok(()) => Attempt::Sent(None),
                Err(e) => Attempt::Retry(None, format!("cannot write the SMS file: {e}")),
            }
        })
    }

    fn describe(&self) -> String {
        format!("files in {}", self.dir.display())
    }
}

/// A gateway taking `POST <url>` with `Authorization: Bearer <api key>` and
/// `{"to", "from", "text", "reference"}`; 2xx is accepted, 429 and 5xx are retried,
/// other 4xx are final.
pub struct HttpSms {
    client: reqwest::Client,
    url: String,
    api_key: String,
    sender: String,
}

impl HttpSms {
    pub fn new(url: &str, api_key: &str, sender: &str, timeout: Duration) -> HttpSms {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Rampart-SMS/1")
            .build()
            .unwrap_or_default();
        HttpSms {
            client,
            url: url.to_string(),
            api_key: api_key.to_string(),
            sender: sender.to_string(),
        }
    }
}

impl SmsProvider for HttpSms {
    fn send<'a>(&'a self, id: &'a str, to: &'a E164, body: &'a str) -> SmsFuture<'a> {
        Box::pin(async move {
            // The client span of the send: never the URL, the key, the number or the text.
            let span = tracing::info_span!(
                "sms.send",
                otel.name = "POST sms gateway",
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                http.request.method = "POST",
                http.response.status_code = tracing::field::Empty,
                rampart.notification_id = %id,
            );
            let mut trace_headers = reqwest::header::HeaderMap::new();
            rampart_edge::trace::inject(&span, &mut trace_headers);
            let sent = self
                .client
                .post(&self.url)
                .headers(trace_headers)
                .bearer_auth(&self.api_key)
                .json(&serde_json::json!({
                    "to": to.as_str(), "from": self.sender, "text": body, "reference": id,
                }))
                .send()
                .instrument(span.clone())
                .await;
            let status = sent.as_ref().ok().map(|r| r.status());
            rampart_edge::trace::record_outcome(
                &span,
                status,
                !status.is_some_and(|s| s.is_success()),
            );
            match sent {
                Ok(res) if res.status().is_success() => {
                    Attempt::Sent(Some(i64::from(res.status().as_u16())))
                }
                Ok(res) => {
                    let code = res.status().as_u16();
                    let msg = format!("the SMS gateway answered {}", res.status());
                    if code == 429 || code >= 500 {
                        Attempt::Retry(Some(i64::from(code)), msg)
                    } else {
                        Attempt::Permanent(Some(i64::from(code)), msg)
                    }
                }
                // Without the URL (it may carry a key) and never the number.
                Err(e) => Attempt::Retry(
                    None,
                    format!("cannot reach the SMS gateway: {}", e.without_url()),
                ),
            }
        })
    }

    fn describe(&self) -> String {
        "HTTP gateway".into()
    }
}

/// A delivery-status callback's signature: `sha256=<hex HMAC-SHA256(secret, body)>`.
pub fn callback_signature(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Whether `header` is the signature of `body` under `secret` (compared in constant
/// time). An empty secret verifies nothing.
pub fn verify_callback(secret: &str, header: &str, body: &[u8]) -> bool {
    use hmac::Mac;
    if secret.is_empty() {
        return false;
    }
    let Some(hex) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let Ok(given) = (0..32)
        .map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
    else {
        return false;
    };
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// What a gateway's status means for the delivery log: `Some(true)` delivered,
/// `Some(false)` failed for good, `None` not final yet (`accepted`, `sent`, `queued`).
pub fn final_status(status: &str) -> Result<Option<bool>, String> {
    match status {
        "delivered" => Ok(Some(true)),
        "failed" | "undelivered" | "rejected" | "expired" => Ok(Some(false)),
        "accepted" | "queued" | "sent" | "buffered" => Ok(None),
        _ => Err(
            "must be delivered, failed, undelivered, rejected, expired, accepted, \
                  queued, sent or buffered"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_verify_only_with_the_secret_and_the_same_body() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), RFC 4231 style
        // known value.
        let sig = callback_signature("key", b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            sig,
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        let body = b"The quick brown fox jumps over the lazy dog";
        assert!(verify_callback("key", &sig, body));
        assert!(!verify_callback("key", &sig, b"the quick brown fox"));
        assert!(!verify_callback("other", &sig, body));
        assert!(!verify_callback("", &callback_signature("", body), body));
        assert!(!verify_callback("key", "sha256=zz", body));
        assert!(!verify_callback("key", &sig.to_uppercase(), body));
    }

    #[test]
    fn numbers_are_e164_and_debug_hides_them() {
        let n = E164::parse("+6281234567890").unwrap();
        assert_eq!(format!("{n:?}"), "E164(+…90)");
        for bad in [
            "081234567890",
            "+62",
            "+62 812 3456",
            "+6281234567890123456",
        ] {
            assert!(E164::parse(bad).is_err(), "{bad}");
        }
    }
}
