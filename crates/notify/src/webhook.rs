//! Webhooks as a platform service: a POST of the event's JSON, signed two ways with the
//! endpoint's secret (`whsec_…`):
//!
//! - Standard Webhooks 1.0: `webhook-id` (the notification id, the same on every retry:
//!   the receiver's idempotency key), `webhook-timestamp` (Unix seconds) and
//!   `webhook-signature: v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>`, keyed with
//!   the base64 part of the secret after `whsec_`.
//! - `Rampart-Signature: t=<t>,v1=<hex HMAC-SHA256("{t}.{body}")>` keyed with the whole
//!   secret string, as payment endpoints have always been signed, with `Rampart-Event`
//!   and `Rampart-Delivery`.
//!
//! Targets are `https://` on public addresses. The name is resolved when sending, every
//! address it resolves to is checked against private, loopback, link-local and other
//! non-public ranges, and the connection goes to a checked address (no second lookup a
//! rebinding DNS server could answer differently). Redirects are not followed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tracing::Instrument;

use crate::Attempt;

/// An event type an app publishes to webhooks (`payment.captured`), with what it means.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventType {
    pub name: &'static str,
    /// The app that publishes it (`payments`).
    pub app: &'static str,
    pub description: &'static str,
}

/// The event types every app contributed at start: what an endpoint may subscribe to.
/// Apps register theirs where the application is assembled, as they do templates.
#[derive(Debug, Clone, Default)]
pub struct EventTypes {
    types: Vec<EventType>,
}

impl EventTypes {
    /// Adds an app's event types. A name registered twice is a programming error the
    /// first registration wins over (it keeps its app and description).
    pub fn register(&mut self, app: &'static str, types: &[(&'static str, &'static str)]) {
        for (name, description) in types {
            if !self.contains(name) {
                self.types.push(EventType {
                    name,
                    app,
                    description,
                });
            }
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.types.iter().any(|t| t.name == name)
    }

    /// The registered name equal to `name`, so stored names are the registry's own.
    pub fn find(&self, name: &str) -> Option<&EventType> {
        self.types.iter().find(|t| t.name == name)
    }

    pub fn all(&self) -> &[EventType] {
        &self.types
    }
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return Vec::new();
    };
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// A new endpoint secret: `whsec_` and the standard base64 of 24 random bytes (32
/// characters, no padding), as Standard Webhooks libraries expect.
pub fn new_secret() -> String {
    let raw = rampart_crypto::random_secret("", 24);
    // random_secret encodes URL-safe; re-encode the same bytes in the standard alphabet.
    let bytes = URL_SAFE_NO_PAD.decode(raw.as_bytes()).unwrap_or_default();
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// The HMAC key Standard Webhooks derives from a secret: the base64 after `whsec_`.
/// Secrets made before Standard Webhooks were URL-safe base64; they decode too.
fn standard_key(secret: &str) -> Vec<u8> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    STANDARD
        .decode(b64)
        .or_else(|_| URL_SAFE_NO_PAD.decode(b64))
        .unwrap_or_else(|_| b64.as_bytes().to_vec())
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{t}.{body}")>`.
pub fn standard_signature(secret: &str, id: &str, t: i64, body: &[u8]) -> String {
    let mac = hmac(
        &standard_key(secret),
        &[id.as_bytes(), b".", t.to_string().as_bytes(), b".", body],
    );
    format!("v1,{}", STANDARD.encode(mac))
}

/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn rampart_signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let mac = hmac(secret, &[t.to_string().as_bytes(), b".", body]);
    let v1: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={v1}")
}

/// Whether `ip` is an address a webhook must not reach: private, loopback, link-local
/// (the cloud metadata service), unspecified, CGNAT, multicast, documentation ranges, and
/// the IPv6 equivalents (IPv4-mapped addresses are judged as IPv4).
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x64 && s[1] == 0xff9b)
        }
    }
}

/// Where a webhook may go, as far as the URL alone tells: `https`, and no private
/// address literal unless `allow_private` (then `http` too). Names are checked again,
/// resolved, when sending.
pub fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    if url.len() > 2000 {
        return Err("is longer than 2000 characters".into());
    }
    let uri: http::Uri = url.parse().map_err(|_| "is not a URL".to_string())?;
    let host = uri.host().ok_or("has no host")?.trim_matches(['[', ']']);
    let private = match host.parse::<IpAddr>() {
        Ok(ip) => is_private(ip),
        Err(_) => host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost"),
    };
    if private && !allow_private {
        return Err("points at a private or loopback address".into());
    }
    if rampart_edge::holds_card_number(url) {
        return Err("must not hold a card number".into());
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if private && allow_private => Ok(()),
        _ => Err("must be an https:// URL".into()),
    }
}

/// Resolves the URL's host and picks an address to connect to: the first public one, or
/// (with `allow_private`) the first of any. An error names why none is allowed.
async fn resolve(url: &str, allow_private: bool) -> Result<(String, SocketAddr), String> {
    let uri: http::Uri = url.parse().map_err(|_| "is not a URL".to_string())?;
    let host = uri.host().ok_or("has no host")?.to_string();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("http") {
            80
        } else {
            443
        });
    let bare = host.trim_matches(['[', ']']).to_string();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare.as_str(), port))
        .await
        .map_err(|e| format!("cannot resolve the endpoint's host: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err("the endpoint's host resolves to no address".into());
    }
    // Every address must be public: a name that also resolves to a private address could
    // be answered that way on the next lookup.
    if !allow_private && addrs.iter().any(|a| is_private(a.ip())) {
        return Err("the endpoint's host resolves to a private or loopback address".into());
    }
    Ok((bare, addrs[0]))
}

type ClientKey = (String, SocketAddr, Duration);

/// HTTP clients by (host, checked address, timeout): a client pins the address it was
/// built for, and building one (TLS roots included) costs more than a delivery, so
/// clients are kept and reused while the name keeps resolving to the same address.
fn client_for(host: &str, addr: SocketAddr, timeout: Duration) -> Result<reqwest::Client, String> {
    static CLIENTS: OnceLock<Mutex<HashMap<ClientKey, reqwest::Client>>> = OnceLock::new();
    let clients = CLIENTS.get_or_init(Default::default);
    let key = (host.to_string(), addr, timeout);
    if let Ok(map) = clients.lock() {
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
    }
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        // A receiver's redirect is not followed: the tenant registered this URL.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Rampart-Webhooks/1")
        // Connect to the address just checked, not to a second lookup's answer.
        .resolve(host, addr)
        .build()
        .map_err(|e| e.to_string())?;
    if let Ok(mut map) = clients.lock() {
        if map.len() >= 1024 {
            map.clear();
        }
        map.insert(key, client.clone());
    }
    Ok(client)
}

/// One signed POST of `body`.
pub struct Delivery<'a> {
    pub id: &'a str,
    pub event: &'a str,
    pub url: &'a str,
    pub secret: &'a str,
    pub body: &'a str,
}

/// Sends a delivery; the outcome for the log.
pub async fn send(d: Delivery<'_>, timeout: Duration, allow_private: bool) -> Attempt {
    if let Err(e) = check_url(d.url, allow_private) {
        return Attempt::Permanent(None, format!("the endpoint URL {e}"));
    }
    let (host, addr) = match resolve(d.url, allow_private).await {
        Ok(found) => found,
        // A name that resolves to a private address today may not tomorrow; retried.
        Err(e) => return Attempt::Retry(None, e),
    };
    let client = match client_for(&host, addr, timeout) {
        Ok(c) => c,
        Err(e) => return Attempt::Retry(None, format!("cannot build the HTTP client: {e}")),
    };
    // The client span of the delivery (a child of its job's): the event type and delivery
    // id, never the URL (a tenant's may carry a token) or the body.
    let span = tracing::info_span!(
        "webhook.send",
        otel.name = "POST webhook",
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = "POST",
        http.response.status_code = tracing::field::Empty,
        rampart.webhook.event = %d.event,
        rampart.webhook.delivery_id = %d.id,
    );
    let mut trace_headers = reqwest::header::HeaderMap::new();
    rampart_edge::trace::inject(&span, &mut trace_headers);
    let t = rampart_store::now_ms() / 1000;
    let sent = client
        .post(d.url)
        .headers(trace_headers)
        .header("content-type", "application/json")
        .header("webhook-id", d.id)
        .header("webhook-timestamp", t.to_string())
        .header(
            "webhook-signature",
            standard_signature(d.secret, d.id, t, d.body.as_bytes()),
        )
        .header(
            "rampart-signature",
            rampart_signature(d.secret.as_bytes(), t, d.body.as_bytes()),
        )
        .header("rampart-event", d.event)
        .header("rampart-delivery", d.id)
        .body(d.body.to_string())
        .send()
        .instrument(span.clone())
        .await;
    let status = sent.as_ref().ok().map(|r| r.status());
    rampart_edge::trace::record_outcome(&span, status, !status.is_some_and(|s| s.is_success()));
    match sent {
        Ok(res) if res.status().is_success() => {
            Attempt::Sent(Some(i64::from(res.status().as_u16())))
        }
        Ok(res) => {
            let code = res.status().as_u16();
            let msg = format!("the endpoint answered {}", res.status());
            let retry_after = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            match (code, retry_after) {
                // The receiver asks for time: wait as long as it says (at most an hour),
                // without spending an attempt.
                (429 | 503, Some(secs)) => Attempt::Later(
                    Some(i64::from(code)),
                    msg,
                    Duration::from_secs(secs.min(3600)),
                ),
                // 410 Gone: the receiver says this endpoint no longer exists.
                (410, _) => Attempt::Permanent(Some(i64::from(code)), msg),
                _ => Attempt::Retry(Some(i64::from(code)), msg),
            }
        }
        Err(e) => Attempt::Retry(
            None,
            if e.is_timeout() {
                "no answer within the timeout".to_string()
            } else {
                // Without the URL: a tenant's URL may carry a token in its query.
                format!("cannot reach the endpoint: {}", e.without_url())
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rampart_signatures_are_hmac_sha256_of_time_dot_body() {
        let sig = rampart_signature(b"key", 1_700_000_000, b"{}");
        assert!(sig.starts_with("t=1700000000,v1="), "{sig}");
        assert_eq!(sig.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(sig, rampart_signature(b"key", 1_700_000_001, b"{}"));
    }

    #[test]
    fn standard_signature_matches_the_spec_example() {
        // The example of the Standard Webhooks specification (spec/standard-webhooks.md).
        let sig = standard_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn new_secrets_are_standard_base64_of_24_bytes() {
        let s = new_secret();
        assert!(s.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&s[6..]).unwrap().len(), 24);
    }

    #[test]
    fn webhook_urls_go_to_public_https_endpoints() {
        assert!(check_url("https://shop.example/hooks", false).is_ok());
        for bad in [
            "http://shop.example/hooks",
            "https://127.0.0.1/x",
            "https://10.1.2.3/x",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/x",
            "https://[::ffff:10.0.0.1]/x",
            "https://100.64.0.1/x",
            "https://localhost/x",
            "ftp://shop.example/",
            "not a url",
        ] {
            assert!(check_url(bad, false).is_err(), "{bad}");
        }
        assert!(check_url("http://127.0.0.1:9000/x", true).is_ok());
        assert!(check_url("https://shop.example/h?card=4242424242424242", false).is_err());
        assert!(check_url("https://shop.example/h/2026-12-01/1234", false).is_ok());
        assert!(check_url("http://shop.example/x", true).is_err());
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused_at_send_time() {
        // A name (not a literal) that resolves to loopback is caught by the resolution,
        // whatever the URL check said about the name.
        let e = resolve("https://localhost/x", false).await.unwrap_err();
        assert!(e.contains("private or loopback"), "{e}");
        assert!(resolve("http://localhost:9/x", true).await.is_ok());
    }

    /// A listener that answers every request 204 and counts them.
    async fn receiver() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                    .await;
            }
        });
        (port, hits)
    }

    #[tokio::test]
    async fn a_name_is_resolved_and_checked_when_sending_not_only_when_registered() {
        // The machine's own name: not a literal and not `localhost`, so the URL check
        // lets it through; it resolves (in /etc/hosts) to a loopback or private address.
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
            .to_string();
        let ips: Vec<IpAddr> = tokio::net::lookup_host((host.as_str(), 443))
            .await
            .unwrap()
            .map(|a| a.ip())
            .collect();
        assert!(
            !ips.is_empty() && ips.iter().all(|ip| is_private(*ip)),
            "this test needs the host name {host} to resolve to private addresses: {ips:?}"
        );
        let (port, hits) = receiver().await;
        let url = format!("https://{host}:{port}/hooks");
        assert!(check_url(&url, false).is_ok(), "{url} passes the URL check");
        let d = |url: &'static str| Delivery {
            id: "msg_1",
            event: "payment.captured",
            url,
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            body: "{}",
        };
        let url: &'static str = Box::leak(url.into_boxed_str());
        match send(d(url), Duration::from_secs(2), false).await {
            Attempt::Retry(None, e) => assert!(e.contains("private or loopback"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "nothing was sent"
        );
        // With private targets allowed (development), a name resolving to loopback is
        // delivered to.
        let local: &'static str =
            Box::leak(format!("http://localhost:{port}/hooks").into_boxed_str());
        assert_eq!(
            send(d(local), Duration::from_secs(2), true).await,
            Attempt::Sent(Some(204))
        );
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
