//! The WAF layer: every request runs through a SecLang rule set (`rampart-waf`) made of
//! Rampart's own rules (`crates/edge/rules/*.conf`: card numbers outside the body, JSON
//! size and depth) and, when configured, the OWASP Core Rule Set.
//!
//! Phases 1 and 2 run before the handler (or the upstream, in proxy mode); phases 3 and 4
//! run on the response when `inspect_responses` is on. The request body is read into
//! memory up to the body limit, as ModSecurity does with `SecRequestBodyAccess On`; a
//! response body is buffered only when the rules inspect its media type, and only up to
//! `SecResponseBodyLimit` (the rest streams through uninspected, like ModSecurity's
//! `ProcessPartial`).
//!
//! Every block or detection becomes one [`WafEvent`] (rule ids, messages, anomaly score,
//! client address, request id; never the matched data, which may be a card number or a
//! password) and counts in `/metrics` by rule id.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rampart_waf::{Interruption, RuleSet, RuleSetBuilder, Transaction};

use crate::{ApiError, ClientIp, RequestId};

/// Rampart's own rules, compiled into the binary so they apply on a fresh machine with no
/// rule files around; the `.conf` files in the repository are their source.
const OWN_RULES: &[(&str, &str)] = &[
    (
        "10-card-numbers.conf",
        include_str!("../rules/10-card-numbers.conf"),
    ),
    (
        "20-json-bodies.conf",
        include_str!("../rules/20-json-bodies.conf"),
    ),
];

/// Exclusions for fields of Rampart's API that Rampart validates itself (with CRS, in
/// front of Rampart's own API only).
const API_CRS_EXCLUSIONS: &str = include_str!("../rules/api-crs-exclusions.conf");

/// What the WAF does with a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WafMode {
    /// Disruptive actions take effect (`SecRuleEngine On`).
    Blocking,
    /// Rules run and are reported, nothing is blocked (`SecRuleEngine DetectionOnly`).
    Detection,
    /// No rules run at all, our own included.
    Off,
}

/// How to build the rule set (from configuration).
#[derive(Debug, Clone)]
pub struct WafSettings {
    pub mode: WafMode,
    /// A CRS release directory (`crs-setup.conf` or `crs-setup.conf.example`, and
    /// `rules/`). `None`: only Rampart's own rules.
    pub crs_dir: Option<PathBuf>,
    pub paranoia_level: u8,
    pub inbound_threshold: u32,
    pub outbound_threshold: u32,
    /// More rule files or directories, loaded after CRS (exclusions, site rules).
    pub extra_rules: Vec<PathBuf>,
    /// Run phases 3 and 4 on responses.
    pub inspect_responses: bool,
    /// Request bodies larger than this are refused with 413 (they cannot be inspected).
    pub max_body_bytes: usize,
    /// `multipart/form-data` bodies (uploads: observation photos) may be this large
    /// instead; the route's own limit is the exact one. Never below `max_body_bytes`.
    pub max_upload_bytes: usize,
    pub max_json_bytes: usize,
    pub max_json_depth: u32,
    /// A request body still arriving after this long gets 408 (the WAF reads bodies
    /// before the handler's own timeout starts).
    pub body_timeout: std::time::Duration,
    /// The HTTP methods and request content types CRS lets through.
    pub http_policy: HttpPolicy,
}

/// What CRS's protocol rules (911100 methods, 920420 content types) allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpPolicy {
    /// Rampart's own API (`rampart serve`): the methods its routes use, PUT, PATCH and
    /// DELETE included (CRS allows only GET HEAD POST OPTIONS by default, which would
    /// refuse revoking a key or changing fraud rules), and the content types it parses.
    RampartApi,
    /// CRS's own defaults (`rampart edge` in front of an application we do not know).
    CrsDefaults,
}

impl HttpPolicy {
    /// `setvar` actions for the settings rule, set before the CRS setup file so an
    /// operator's `crs-setup.conf` (rules 900200, 900220) still decides over them.
    fn setvars(self) -> &'static str {
        match self {
            HttpPolicy::RampartApi => {
                ",setvar:'tx.allowed_methods=GET HEAD POST OPTIONS PUT PATCH DELETE',\
                 setvar:'tx.allowed_request_content_type=|application/json| \
                 |application/x-www-form-urlencoded| |multipart/form-data|'"
            }
            HttpPolicy::CrsDefaults => "",
        }
    }
}

/// A block or a detection, for the security log. Holds no request data beyond the method.
#[derive(Debug, Clone)]
pub struct WafEvent {
    /// `waf_blocked` or `waf_detected`.
    pub event: &'static str,
    pub request_id: String,
    pub client_ip: Option<std::net::IpAddr>,
    pub method: String,
    /// The rule that stopped the request, if one did.
    pub blocking_rule: Option<u64>,
    pub status: Option<u16>,
    /// Every logged rule that matched, with its message.
    pub rules: Vec<(u64, String)>,
    pub inbound_anomaly_score: i64,
    pub outbound_anomaly_score: i64,
    /// The phase the verdict came from: `request` or `response`.
    pub phase: &'static str,
    /// The request's bearer credential, if it had one: only so the sink can find the
    /// caller's tenant (a refused request reaches no handler that would). Never logged.
    pub credential: Option<Credential>,
}

/// A bearer token or API key carried to the WAF's sink. Its `Debug` hides it, so no log
/// line or panic message can print it.
#[derive(Clone)]
pub struct Credential(String);

impl Credential {
    /// The `Bearer` value of an `Authorization` header.
    pub fn of(headers: &http::HeaderMap) -> Option<Credential> {
        let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= 4096)
            .then(|| Credential(token.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential([redacted])")
    }
}

/// Where [`WafEvent`]s go (the security log, in the server).
pub type WafEventSink = Arc<dyn Fn(WafEvent) + Send + Sync>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    verdict: &'static str,
}

/// The compiled rule set and where its verdicts go.
pub struct Waf {
    rules: RuleSet,
    /// The CRS directory loaded and the release it holds (`None`: our rules only).
    crs: Option<(PathBuf, Option<String>)>,
    inspect_responses: bool,
    max_body_bytes: usize,
    max_upload_bytes: usize,
    body_timeout: std::time::Duration,
    rule_matches: Family<RuleLabels, Counter>,
    verdicts: Family<VerdictLabels, Counter>,
    sink: WafEventSink,
}

impl std::fmt::Debug for Waf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waf")
            .field("rules", &self.rules.rule_count())
            .field("inspect_responses", &self.inspect_responses)
            .finish_non_exhaustive()
    }
}

/// Why the rule set could not be built: the file, line and reason come from the engine.
pub type WafLoadError = rampart_waf::LoadError;

/// The configuration directives and variables Rampart sets ahead of every rule file.
fn prelude(s: &WafSettings) -> String {
    let engine = match s.mode {
        WafMode::Blocking => "On",
        WafMode::Detection => "DetectionOnly",
        WafMode::Off => "Off",
    };
    format!(
        "SecRuleEngine {engine}\n\
         SecRequestBodyAccess On\n\
         SecRequestBodyLimit {body}\n\
         SecRequestBodyJsonDepthLimit {depth}\n\
         SecResponseBodyAccess {responses}\n\
         SecAction \"id:10001,phase:1,pass,nolog,t:none,\
         setvar:tx.rampart_json_max_bytes={json},\
         setvar:tx.blocking_paranoia_level={pl},\
         setvar:tx.inbound_anomaly_score_threshold={inbound},\
         setvar:tx.outbound_anomaly_score_threshold={outbound}{policy}\"\n",
        body = s.max_body_bytes.max(s.max_upload_bytes),
        depth = s.max_json_depth,
        responses = if s.inspect_responses { "On" } else { "Off" },
        json = s.max_json_bytes,
        pl = s.paranoia_level,
        inbound = s.inbound_threshold,
        outbound = s.outbound_threshold,
        policy = s.http_policy.setvars(),
    )
}

/// Debian's `modsecurity-crs` package keeps the rules here and the setup file in
/// [`DEBIAN_CRS_SETUP`].
pub const DEBIAN_CRS_DIR: &str = "/usr/share/modsecurity-crs";
const DEBIAN_CRS_SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";

/// The CRS setup file of a release directory: the operator's `crs-setup.conf` if there is
/// one, otherwise the shipped example, otherwise (Debian's package) the one under
/// `/etc/modsecurity/crs`.
pub fn crs_setup_file(crs_dir: &Path) -> PathBuf {
    let own = crs_dir.join("crs-setup.conf");
    let example = crs_dir.join("crs-setup.conf.example");
    if own.is_file() {
        own
    } else if !example.is_file() && crs_dir == Path::new(DEBIAN_CRS_DIR) {
        PathBuf::from(DEBIAN_CRS_SETUP)
    } else {
        example
    }
}

/// Where a CRS release is looked for when `waf.crs_dir` is not set, in this order: the
/// data directory's `crs/`, `/etc/rampart/crs`, and Debian's package.
pub fn crs_locations(data_dir: &Path) -> Vec<PathBuf> {
    vec![
        data_dir.join("crs"),
        PathBuf::from("/etc/rampart/crs"),
        PathBuf::from(DEBIAN_CRS_DIR),
    ]
}

/// The first of `candidates` that holds a CRS release: a `rules/` folder with `*.conf`
/// files, and a setup file.
pub fn find_crs(candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates
        .iter()
        .find(|dir| {
            let has_rules = std::fs::read_dir(dir.join("rules")).is_ok_and(|entries| {
                entries
                    .filter_map(Result::ok)
                    .any(|e| e.path().extension().is_some_and(|x| x == "conf"))
            });
            has_rules && crs_setup_file(dir).is_file()
        })
        .cloned()
}

/// The release a CRS directory holds (`4.28.0`), as its initialization rules name it
/// (`ver:'OWASP_CRS/4.28.0'`, `SecComponentSignature "OWASP_CRS/4.28.0"`), or its setup
/// file when those are missing. Only those two forms count: the files' comments name
/// other releases (the ModSecurity version a file was produced with, say).
pub fn crs_release(crs_dir: &Path) -> Option<String> {
    let sources = [
        crs_dir.join("rules/REQUEST-901-INITIALIZATION.conf"),
        crs_setup_file(crs_dir),
    ];
    let marks = ["ver:'OWASP_CRS/", "SecComponentSignature \"OWASP_CRS/"];
    sources.iter().find_map(|file| {
        let text = std::fs::read_to_string(file).ok()?;
        marks.iter().find_map(|mark| {
            let at = text.find(mark)? + mark.len();
            let version: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                .collect();
            let version = version.trim_end_matches('.');
            (!version.is_empty()).then(|| version.to_string())
        })
    })
}

/// Builds the rule set: prelude, CRS setup, our rules, CRS rules, extra rules.
pub fn build_rules(s: &WafSettings) -> Result<RuleSet, WafLoadError> {
    let mut b = RuleSetBuilder::new();
    let here = Path::new(".");
    b.add_text(&prelude(s), Path::new("<rampart settings>"), here)?;
    if let Some(crs) = &s.crs_dir {
        b.add_file(&crs_setup_file(crs))?;
        if s.http_policy == HttpPolicy::RampartApi {
            b.add_text(
                API_CRS_EXCLUSIONS,
                Path::new("<rampart rules>/api-crs-exclusions.conf"),
                here,
            )?;
        }
    }
    for (name, text) in OWN_RULES {
        b.add_text(text, &Path::new("<rampart rules>").join(name), here)?;
    }
    if let Some(crs) = &s.crs_dir {
        b.add_dir(&crs.join("rules"))?;
    }
    for extra in &s.extra_rules {
        if extra.is_dir() {
            b.add_dir(extra)?;
        } else {
            b.add_file(extra)?;
        }
    }
    b.build()
}

impl Waf {
    /// Compiles the rules (once, at start) and registers the metrics. `None` when the
    /// mode is `Off`.
    pub fn load(
        settings: &WafSettings,
        registry: &mut Registry,
        sink: WafEventSink,
    ) -> Result<Option<Waf>, WafLoadError> {
        if settings.mode == WafMode::Off {
            return Ok(None);
        }
        let rules = build_rules(settings)?;
        let rule_matches = Family::<RuleLabels, Counter>::default();
        let verdicts = Family::<VerdictLabels, Counter>::default();
        registry.register(
            "waf_rule_matches",
            "WAF rules that matched (logged rules only), by rule id",
            rule_matches.clone(),
        );
        registry.register(
            "waf_requests",
            "Requests by WAF verdict: pass, detected, blocked",
            verdicts.clone(),
        );
        Ok(Some(Waf {
            rules,
            crs: settings
                .crs_dir
                .as_ref()
                .map(|dir| (dir.clone(), crs_release(dir))),
            inspect_responses: settings.inspect_responses,
            max_body_bytes: settings.max_body_bytes,
            max_upload_bytes: settings.max_upload_bytes.max(settings.max_body_bytes),
            body_timeout: settings.body_timeout,
            rule_matches,
            verdicts,
            sink,
        }))
    }

    pub fn rule_count(&self) -> usize {
        self.rules.rule_count()
    }

    /// The CRS directory the rules came from and its release, if CRS was loaded.
    pub fn crs(&self) -> Option<(&Path, Option<&str>)> {
        self.crs
            .as_ref()
            .map(|(dir, release)| (dir.as_path(), release.as_deref()))
    }
}

/// The middleware. Runs inside `edge_guard`, which has settled the client address.
pub async fn waf_guard(State(waf): State<Arc<Waf>>, req: Request, next: Next) -> Response {
    let meta = Meta {
        request_id: req
            .extensions()
            .get::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default(),
        client_ip: req.extensions().get::<ClientIp>().and_then(|c| c.0),
        method: req.method().to_string(),
        credential: Credential::of(req.headers()),
    };
    let mut tx = waf.rules.transaction();
    let (parts, body) = req.into_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let client = meta
        .client_ip
        .or(peer.map(|p| p.ip()))
        .map_or_else(|| "0.0.0.0".to_string(), |ip| ip.to_string());
    tx.process_connection(&client, peer.map_or(0, |p| p.port()), "0.0.0.0", 0);
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    tx.process_uri(
        parts.method.as_str().as_bytes(),
        target.as_bytes(),
        protocol(parts.version),
    );
    feed_request_headers(&mut tx, &parts.headers, &parts.uri);
    if let Some(stop) = tx.process_request_headers() {
        return waf.refuse(&mut tx, stop, &meta, "request");
    }

    // The body, read whole (up to the limit) so phase 2 can inspect it.
    let bytes = if body.is_end_stream() {
        Bytes::new()
    } else {
        let upload = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/form-data")
            });
        let limit = if upload {
            waf.max_upload_bytes
        } else {
            waf.max_body_bytes
        };
        let read = axum::body::to_bytes(body, limit);
        match tokio::time::timeout(waf.body_timeout, read).await {
            Ok(Ok(b)) => b,
            Err(_) => {
                return ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    "the request body did not arrive in time",
                )
                .into_response()
            }
            Ok(Err(e)) if over_limit(&e) => {
                return ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body is too large",
                )
                .into_response();
            }
            Ok(Err(_)) => {
                // A broken body (a bad chunk, fewer bytes than Content-Length before the
                // client half-closed): the client's fault, not a size problem.
                return ApiError::bad_request("bad_body", "request body could not be read")
                    .into_response();
            }
        }
    };
    tx.append_request_body(&bytes);
    if let Some(stop) = tx.process_request_body() {
        return waf.refuse(&mut tx, stop, &meta, "request");
    }
    let req = Request::from_parts(parts, Body::from(bytes));
    let response = next.run(req).await;

    if !waf.inspect_responses {
        waf.report(&tx, &meta, None, "request");
        return response;
    }
    let (parts, body) = response.into_parts();
    for (name, value) in &parts.headers {
        tx.add_response_header(name.as_str().as_bytes(), value.as_bytes());
    }
    if let Some(stop) = tx.process_response_headers(parts.status.as_u16(), protocol(parts.version))
    {
        return waf.refuse(&mut tx, stop, &meta, "response");
    }
    let body = if tx.inspects_response_body() {
        let (prefix, rest) = match read_prefix(body, waf.rules.config().response_body_limit).await {
            Ok(read) => read,
            Err(_) => return ApiError::internal().into_response(),
        };
        tx.append_response_body(&prefix);
        if let Some(stop) = tx.process_response_body() {
            return waf.refuse(&mut tx, stop, &meta, "response");
        }
        match rest {
            None => Body::from(prefix),
            Some(rest) => Body::new(Prefixed {
                prefix: Some(prefix),
                rest,
            }),
        }
    } else {
        tx.process_response_body();
        body
    };
    tx.process_logging();
    waf.report(&tx, &meta, None, "response");
    Response::from_parts(parts, body)
}

struct Meta {
    request_id: String,
    client_ip: Option<std::net::IpAddr>,
    method: String,
    credential: Option<Credential>,
}

fn protocol(v: Version) -> &'static [u8] {
    match v {
        Version::HTTP_09 => b"HTTP/0.9",
        Version::HTTP_10 => b"HTTP/1.0",
        Version::HTTP_2 => b"HTTP/2.0",
        Version::HTTP_3 => b"HTTP/3.0",
        _ => b"HTTP/1.1",
    }
}

/// Whether reading a body failed because it passed the size limit (rather than because
/// the body itself broke off or was malformed).
fn over_limit(e: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

fn feed_request_headers(tx: &mut Transaction<'_>, headers: &HeaderMap, uri: &axum::http::Uri) {
    // HTTP/2 carries the host in the URI (`:authority`); CRS expects a Host header.
    if !headers.contains_key(axum::http::header::HOST) {
        if let Some(authority) = uri.authority() {
            tx.add_request_header(b"Host", authority.as_str().as_bytes());
        }
    }
    for (name, value) in headers {
        tx.add_request_header(name.as_str().as_bytes(), value.as_bytes());
    }
}

impl Waf {
    /// The refusal the client sees, and the event and counters behind it.
    fn refuse(
        &self,
        tx: &mut Transaction<'_>,
        stop: Interruption,
        meta: &Meta,
        phase: &'static str,
    ) -> Response {
        tx.process_logging();
        self.report(tx, meta, Some(stop), phase);
        let status = StatusCode::from_u16(stop.status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .unwrap_or(StatusCode::FORBIDDEN);
        let rule = tx.matched_rules().iter().find(|m| m.id == stop.rule_id);
        let own_code = rule.and_then(|r| {
            r.tags
                .iter()
                .find_map(|t| t.strip_prefix("rampart/code:"))
                .map(static_code)
        });
        match own_code {
            Some(code) => ApiError::new(status, code, own_message(code)).into_response(),
            None => ApiError::new(
                status,
                "request_blocked",
                "the request was refused by the web application firewall",
            )
            .into_response(),
        }
    }

    fn report(
        &self,
        tx: &Transaction<'_>,
        meta: &Meta,
        stop: Option<Interruption>,
        phase: &'static str,
    ) {
        let rules: Vec<(u64, String)> = tx
            .matched_rules()
            .iter()
            .filter(|m| m.logged && m.id != 0)
            .map(|m| (m.id, m.msg.clone()))
            .collect();
        for (id, _) in &rules {
            self.rule_matches
                .get_or_create(&RuleLabels {
                    rule_id: id.to_string(),
                })
                .inc();
        }
        let verdict = match (stop, rules.is_empty()) {
            (Some(_), _) => "blocked",
            (None, false) => "detected",
            (None, true) => "pass",
        };
        self.verdicts
            .get_or_create(&VerdictLabels { verdict })
            .inc();
        if verdict == "pass" {
            return;
        }
        (self.sink)(WafEvent {
            event: if stop.is_some() {
                "waf_blocked"
            } else {
                "waf_detected"
            },
            request_id: meta.request_id.clone(),
            client_ip: meta.client_ip,
            method: meta.method.clone(),
            blocking_rule: stop.map(|s| s.rule_id),
            status: stop.map(|s| s.status),
            rules,
            inbound_anomaly_score: tx.inbound_anomaly_score(),
            outbound_anomaly_score: tx.outbound_anomaly_score(),
            phase,
            credential: meta.credential.clone(),
        });
    }
}

/// Error codes our own rules may name (`tag:'rampart/code:…'`); anything else is the
/// generic refusal.
fn static_code(tag: &str) -> &'static str {
    match tag {
        "card_number_outside_body" => "card_number_outside_body",
        "payload_too_large" => "payload_too_large",
        "json_too_deep" => "json_too_deep",
        "malformed_json" => "malformed_json",
        "malformed_body" => "malformed_body",
        _ => "request_blocked",
    }
}

fn own_message(code: &str) -> &'static str {
    match code {
        "card_number_outside_body" => {
            "card numbers go in the request body only, never in the URL or a header"
        }
        "payload_too_large" => "request body is too large",
        "json_too_deep" => "request body nests deeper than allowed",
        "malformed_json" => "request body is not valid JSON",
        "malformed_body" => "request body could not be parsed",
        _ => "the request was refused by the web application firewall",
    }
}

/// Reads up to `limit` bytes of a body. Returns them and, when the body goes on, the
/// rest of it (to stream after the prefix).
async fn read_prefix(mut body: Body, limit: usize) -> Result<(Bytes, Option<Body>), axum::Error> {
    use http_body_util::BodyExt;
    let mut buf = Vec::new();
    while buf.len() < limit {
        match body.frame().await {
            None => return Ok((Bytes::from(buf), None)),
            Some(frame) => {
                if let Ok(data) = frame?.into_data() {
                    buf.extend_from_slice(&data);
                }
                // Trailers are dropped: responses through the WAF carry none we keep.
            }
        }
    }
    Ok((Bytes::from(buf), Some(body)))
}

/// A body that yields an already-read prefix, then the rest of the original body.
struct Prefixed {
    prefix: Option<Bytes>,
    rest: Body,
}

impl HttpBody for Prefixed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.rest.size_hint();
        if let Some(p) = &self.prefix {
            let n = p.len() as u64;
            hint.set_lower(hint.lower() + n);
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + n);
            }
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_waf::EngineMode;

    fn settings(mode: WafMode) -> WafSettings {
        WafSettings {
            mode,
            crs_dir: None,
            paranoia_level: 1,
            inbound_threshold: 5,
            outbound_threshold: 4,
            extra_rules: Vec::new(),
            inspect_responses: false,
            max_body_bytes: 1 << 20,
            max_upload_bytes: 1 << 20,
            max_json_bytes: 100,
            max_json_depth: 3,
            body_timeout: std::time::Duration::from_secs(5),
            http_policy: HttpPolicy::RampartApi,
        }
    }

    #[test]
    fn crs_is_found_where_a_release_is_and_names_its_version() {
        let root = tempfile::tempdir().expect("temp dir");
        let empty = root.path().join("empty");
        let half = root.path().join("half");
        let release = root.path().join("release");
        std::fs::create_dir_all(&empty).expect("mkdir");
        // Rules but no setup file: not a release.
        std::fs::create_dir_all(half.join("rules")).expect("mkdir");
        std::fs::write(half.join("rules/REQUEST-901-INITIALIZATION.conf"), "").expect("write");
        std::fs::create_dir_all(release.join("rules")).expect("mkdir");
        std::fs::write(release.join("crs-setup.conf.example"), "# setup").expect("write");
        std::fs::write(
            release.join("rules/REQUEST-901-INITIALIZATION.conf"),
            "# Producer: ModSecurity 2.9.1; OWASP_CRS/3.1.0.\n\
             SecAction \"id:901001,phase:1,pass,nolog,ver:'OWASP_CRS/4.28.0'\"",
        )
        .expect("write");
        let missing = root.path().join("missing");
        assert_eq!(
            find_crs(&[missing.clone(), empty.clone(), half.clone()]),
            None
        );
        assert_eq!(
            find_crs(&[missing, empty, half, release.clone()]),
            Some(release.clone())
        );
        assert_eq!(crs_release(&release).as_deref(), Some("4.28.0"));
        assert_eq!(crs_locations(root.path())[0], root.path().join("crs"));
    }

    fn own_rules_only() -> RuleSet {
        build_rules(&settings(WafMode::Blocking)).expect("our rules load")
    }

    /// The rule that stopped a GET of `target` with one extra header, if any.
    fn verdict(rules: &RuleSet, target: &str, header: Option<(&str, &str)>) -> Option<u64> {
        let mut tx = rules.transaction();
        tx.process_connection("192.0.2.1", 1, "0.0.0.0", 0);
        tx.process_uri(b"GET", target.as_bytes(), b"HTTP/1.1");
        tx.add_request_header(b"Host", b"example.com");
        if let Some((n, v)) = header {
            tx.add_request_header(n.as_bytes(), v.as_bytes());
        }
        tx.process_request_headers().map(|i| i.rule_id)
    }

    fn body_verdict(rules: &RuleSet, content_type: &str, body: &[u8]) -> Option<u64> {
        let mut tx = rules.transaction();
        tx.process_uri(b"POST", b"/api", b"HTTP/1.1");
        tx.add_request_header(b"Host", b"example.com");
        tx.add_request_header(b"Content-Type", content_type.as_bytes());
        if let Some(i) = tx.process_request_headers() {
            return Some(i.rule_id);
        }
        tx.append_request_body(body);
        tx.process_request_body().map(|i| i.rule_id)
    }

    #[test]
    fn card_numbers_in_urls_and_headers_are_refused_and_other_numbers_are_not() {
        let rules = own_rules_only();
        for hit in [
            "/4111111111111111",
            "/pay?card=4111%201111%201111%201111",
            "/pay?card=4111+1111+1111+1111",
            "/pay?n=4111-1111-1111-1111&x=1",
            "/?a=378282246310005",
            "/?a=3782%20822463%2010005",
            "/?a=5555555555554444",
            // A failed candidate right before a real one does not hide it.
            "/?a=4111111111111112,4111111111111111",
            // Digits of other scripts, URL-encoded UTF-8: fullwidth with ideographic
            // spaces, Arabic-Indic, Devanagari, mathematical bold.
            "/?email=%EF%BC%94%EF%BC%91%EF%BC%91%EF%BC%91%E3%80%80%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%E3%80%80%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91%E3%80%80%EF%BC%91%EF%BC%91%EF%BC%91%EF%BC%91",
            "/?n=%D9%A4%D9%A1%D9%A1%D9%A1%D9%A1%D9%A1%D9%A1%D9%A1%D9%A1%D9%A1%D9%A1%D9%A1%D9%A1%D9%A1%D9%A1%D9%A1",
            "/?n=%E0%A5%AA%E0%A5%A7%E0%A5%A7%E0%A5%A7%E0%A5%A7%E0%A5%A7%E0%A5%A7%E0%A5%A7%E0%A5%A7%E0%A5%A7%E0%A5%A7%E0%A5%A7%E0%A5%A7%E0%A5%A7%E0%A5%A7%E0%A5%A7",
            "/?n=%uFF14111111111111111",
        ] {
            assert_eq!(verdict(&rules, hit, None), Some(10100), "{hit}");
        }
        for miss in [
            "/?a=4111111111111112", // Luhn fails
            "/?t=1732000000000001", // a millisecond timestamp: no card starts with 1
            "/api/v1/tenants/0190a4c1-7b2e-7c3d-9e1f-0123456789ab",
            "/?a=41111111111",          // too short
            "/?a=41111111111111111111", // too long
            "/?a=4111--1111111111111",
            "/?a=41111111-1111-1111",
            "/api/v1/tenants/01934567-4111-1111-1111-111111111111/users",
            "/api/v1/tenants/0193456a-4111-1111-1111-1111abcdef12/users",
            "/?id=ab4111111111111111",
            "/?id=4111111111111111cd",
        ] {
            assert_eq!(verdict(&rules, miss, None), None, "{miss}");
        }
        assert_eq!(
            verdict(&rules, "/", Some(("X-Card", "4111 1111 1111 1111"))),
            Some(10100)
        );
        assert_eq!(
            verdict(&rules, "/", Some(("Cookie", "c=5555555555554444"))),
            Some(10100)
        );
        assert_eq!(
            verdict(
                &rules,
                "/",
                Some(("X-Email", "４１１１ １１１１ １１１１ １１１１@example.id"))
            ),
            Some(10100),
            "fullwidth digits in a header"
        );
        assert_eq!(
            verdict(
                &rules,
                "/",
                Some(("X-Note", "４１１１１１１１１１１１１１１２"))
            ),
            None,
            "Luhn still decides"
        );
    }

    #[test]
    fn json_bodies_are_bounded_in_size_and_depth() {
        let rules = own_rules_only();
        let json = "application/json";
        assert_eq!(body_verdict(&rules, json, br#"{"a":[{"b":1}]}"#), None);
        assert_eq!(
            body_verdict(&rules, json, br#"{"a":[[{"b":1}]]}"#),
            Some(10210)
        );
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(200));
        assert_eq!(body_verdict(&rules, json, big.as_bytes()), Some(10201));
        assert_eq!(
            body_verdict(&rules, "application/vnd.api+json", b"{broken"),
            Some(10220)
        );
        // Not JSON: the JSON limits do not apply.
        assert_eq!(
            body_verdict(&rules, "text/plain", big.as_bytes()),
            None,
            "a text body is not measured as JSON"
        );
        let mut tx = rules.transaction();
        tx.process_uri(b"POST", b"/api", b"HTTP/1.1");
        tx.add_request_header(b"Content-Type", b"application/json");
        tx.add_request_header(b"Content-Length", b"101");
        assert_eq!(tx.process_request_headers().map(|i| i.rule_id), Some(10200));
    }

    #[test]
    fn detection_mode_reports_without_blocking() {
        let rules = build_rules(&settings(WafMode::Detection)).unwrap();
        let mut tx = rules.transaction();
        tx.process_uri(b"GET", b"/?c=4111111111111111", b"HTTP/1.1");
        assert_eq!(tx.process_request_headers(), None);
        assert!(tx.matched_rules().iter().any(|m| m.id == 10100));
        assert_eq!(tx.mode(), EngineMode::DetectionOnly);
    }
}
