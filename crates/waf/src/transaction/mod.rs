//! One request/response exchange evaluated against a `RuleSet`: the public
//! feeding/result API, the per-phase evaluation loop (skips, chains,
//! captures, setvar, ctl) and the interruption decision. Variable storage
//! and lookup live in `variables`. A transaction borrows the rule set
//! read-only, so any number of them can run at once.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::body;
use crate::operator::Captures;
use crate::rule::{
    Action, Coll, Ctl, Disruptive, EngineMode, IdRange, KeySel, Rule, SetOp, Target,
};
use crate::ruleset::{Entry, RuleSet};

mod variables;

/// A rule that matched, as ModSecurity would log it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedRule {
    pub id: u64,
    pub phase: u8,
    pub msg: String,
    pub logdata: String,
    pub tags: Vec<String>,
    pub severity: Option<u8>,
    /// False for `nolog` rules: they matched but would not be logged.
    pub logged: bool,
    /// The variable that matched last (for example `ARGS:q`).
    pub matched_var_name: String,
}

impl MatchedRule {
    /// The rule in ModSecurity's error-log shape, for log scraping tools.
    pub fn log_line(&self) -> String {
        let mut s = format!(
            "[id \"{}\"] [msg \"{}\"] [data \"{}\"]",
            self.id,
            log_escape(&self.msg),
            log_escape(&self.logdata)
        );
        if let Some(sev) = self.severity {
            s.push_str(&format!(" [severity \"{sev}\"]"));
        }
        for t in &self.tags {
            s.push_str(&format!(" [tag \"{t}\"]"));
        }
        s
    }
}

/// The decision to stop the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interruption {
    pub status: u16,
    pub rule_id: u64,
    pub action: Disruptive,
}

/// Where runtime `ctl` target removals apply.
#[derive(Debug, Clone)]
enum RemoveScope {
    Ids(Vec<IdRange>),
    Tag(String),
}

/// Per-request evaluation state. Create with [`RuleSet::transaction`].
///
/// Its `Debug` output leaves out request and response data on purpose, so
/// logging a transaction cannot leak credentials or personal data.
pub struct Transaction<'r> {
    rs: &'r RuleSet,
    mode: EngineMode,
    started: Instant,
    unique_id: String,
    scalars: HashMap<&'static str, Vec<u8>>,
    colls: HashMap<Coll, body::Pairs>,
    stores: HashMap<String, BTreeMap<String, Vec<u8>>>,
    env: BTreeMap<String, Vec<u8>>,
    xml: Option<body::XmlDoc>,
    request_body: Vec<u8>,
    response_body: Vec<u8>,
    request_body_access: bool,
    response_body_access: bool,
    force_body_variable: bool,
    body_processor: Option<String>,
    request_content_type: String,
    response_content_type: String,
    removed_ids: Vec<IdRange>,
    removed_tags: Vec<String>,
    removed_targets: Vec<(RemoveScope, Target)>,
    matched: Vec<MatchedRule>,
    interruption: Option<Interruption>,
    allow_request: bool,
    phases_done: u8,
    /// Transformed request values by (transformation list, collection,
    /// index); see `eval_link`.
    transformed: RefCell<HashMap<TransformSlot, Arc<[u8]>>>,
    /// The rule being evaluated, for `%{rule.*}` and `RULE:`.
    cur: Option<&'r Rule>,
    matched_var: Vec<u8>,
    matched_var_name: String,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("unique_id", &self.unique_id)
            .field("mode", &self.mode)
            .field(
                "matched_ids",
                &self.matched.iter().map(|m| m.id).collect::<Vec<_>>(),
            )
            .field("interruption", &self.interruption)
            .finish_non_exhaustive()
    }
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl<'r> Transaction<'r> {
    pub(crate) fn new(rs: &'r RuleSet) -> Self {
        let n = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut stores = HashMap::new();
        stores.insert("tx".to_string(), BTreeMap::new());
        let mut t = Transaction {
            rs,
            mode: rs.config.mode,
            started: Instant::now(),
            unique_id: format!("{:x}{:08x}", nanos, n),
            scalars: HashMap::new(),
            colls: HashMap::new(),
            stores,
            env: BTreeMap::new(),
            xml: None,
            request_body: Vec::new(),
            response_body: Vec::new(),
            request_body_access: rs.config.request_body_access,
            response_body_access: rs.config.response_body_access,
            force_body_variable: false,
            body_processor: None,
            request_content_type: String::new(),
            response_content_type: String::new(),
            removed_ids: Vec::new(),
            removed_tags: Vec::new(),
            removed_targets: Vec::new(),
            matched: Vec::new(),
            interruption: None,
            allow_request: false,
            phases_done: 0,
            cur: None,
            transformed: RefCell::new(HashMap::new()),
            matched_var: Vec::new(),
            matched_var_name: String::new(),
        };
        for (k, v) in [
            ("REQBODY_ERROR", "0"),
            ("REQBODY_PROCESSOR_ERROR", "0"),
            ("ARGS_COMBINED_SIZE", "0"),
            ("FILES_COMBINED_SIZE", "0"),
            ("REQUEST_BODY_LENGTH", "0"),
            ("URLENCODED_ERROR", "0"),
            ("INBOUND_DATA_ERROR", "0"),
            ("OUTBOUND_DATA_ERROR", "0"),
        ] {
            t.scalars.insert(k, v.as_bytes().to_vec());
        }
        t
    }

    // ----- feeding data -----

    /// Sets the connection endpoints.
    pub fn process_connection(
        &mut self,
        client: &str,
        client_port: u16,
        server: &str,
        server_port: u16,
    ) {
        self.set("REMOTE_ADDR", client.as_bytes().to_vec());
        self.set("REMOTE_HOST", client.as_bytes().to_vec());
        self.set("REMOTE_PORT", client_port.to_string().into_bytes());
        self.set("SERVER_ADDR", server.as_bytes().to_vec());
        self.set("SERVER_PORT", server_port.to_string().into_bytes());
    }

    /// Sets the request line. `uri` is the request target exactly as sent.
    pub fn process_uri(&mut self, method: &[u8], uri: &[u8], protocol: &[u8]) {
        let mut line = method.to_vec();
        line.push(b' ');
        line.extend_from_slice(uri);
        if !protocol.is_empty() {
            line.push(b' ');
            line.extend_from_slice(protocol);
        }
        self.set("REQUEST_LINE", line);
        self.set("REQUEST_METHOD", method.to_vec());
        self.set("REQUEST_PROTOCOL", protocol.to_vec());
        self.set("REQUEST_URI_RAW", uri.to_vec());
        // An absolute-form target keeps only its path in REQUEST_URI.
        let mut rel = uri;
        if let Some(p) = crate::transform::find(uri, b"://") {
            if uri[..p]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
            {
                let after = &uri[p + 3..];
                rel = match after.iter().position(|&b| b == b'/' || b == b'?') {
                    Some(s) => &after[s..],
                    None => b"",
                };
            }
        }
        self.set("REQUEST_URI", rel.to_vec());
        let (path, query) = match rel.iter().position(|&b| b == b'?') {
            Some(q) => (&rel[..q], Some(&rel[q + 1..])),
            None => (rel, None),
        };
        let path = match path.iter().position(|&b| b == b'#') {
            Some(h) => &path[..h],
            None => path,
        };
        // Like the web server's decoded path: `%xx` decoded, `+` kept.
        let path = &percent_decode(path)[..];
        self.set("REQUEST_FILENAME", path.to_vec());
        let base = match path.iter().rposition(|&b| b == b'/') {
            Some(s) => &path[s + 1..],
            None => path,
        };
        self.set("REQUEST_BASENAME", base.to_vec());
        let query = query.unwrap_or(b"");
        self.set("QUERY_STRING", query.to_vec());
        let (args, bad) = body::parse_urlencoded(query, self.rs.config.arguments_limit);
        if bad {
            self.set("URLENCODED_ERROR", b"1".to_vec());
        }
        for (k, v) in args {
            self.add_arg(Coll::ArgsGet, k, v);
        }
    }

    /// Adds one request header (repeat for repeated headers).
    pub fn add_request_header(&mut self, name: &[u8], value: &[u8]) {
        let name_s = String::from_utf8_lossy(name).into_owned();
        if name_s.eq_ignore_ascii_case("cookie") {
            for c in value.split(|&b| b == b';') {
                let c = trim_start_spaces(c);
                if c.is_empty() {
                    continue;
                }
                let (k, v) = match c.iter().position(|&b| b == b'=') {
                    Some(p) => (&c[..p], &c[p + 1..]),
                    None => (c, &b""[..]),
                };
                self.push(
                    Coll::RequestCookies,
                    String::from_utf8_lossy(k).trim_end().to_string(),
                    v.to_vec(),
                );
            }
        }
        if name_s.eq_ignore_ascii_case("content-type") {
            self.request_content_type = String::from_utf8_lossy(value).into_owned();
        }
        self.push(Coll::RequestHeaders, name_s, value.to_vec());
    }

    /// Runs phase 1.
    pub fn process_request_headers(&mut self) -> Option<Interruption> {
        let ct = self.request_content_type.to_ascii_lowercase();
        let media = ct.split(';').next().unwrap_or("").trim().to_string();
        self.body_processor = if media == "application/x-www-form-urlencoded" {
            Some("URLENCODED".into())
        } else if media == "multipart/form-data" {
            Some("MULTIPART".into())
        } else if media == "application/json"
            || (media.starts_with("application/") && media.ends_with("+json"))
        {
            Some("JSON".into())
        } else if media == "text/xml"
            || media == "application/xml"
            || media.starts_with("application/soap+xml")
        {
            Some("XML".into())
        } else {
            None
        };
        self.run_phase(1);
        self.interruption
    }

    /// Appends request body bytes (kept up to the configured limit).
    pub fn append_request_body(&mut self, data: &[u8]) {
        let room = self
            .rs
            .config
            .request_body_limit
            .saturating_sub(self.request_body.len());
        if data.len() > room {
            // Like ModSecurity: the excess is not inspected, and rules can
            // see that it was cut off.
            self.set("INBOUND_DATA_ERROR", b"1".to_vec());
        }
        self.request_body
            .extend_from_slice(&data[..data.len().min(room)]);
    }

    /// Parses the request body and runs phase 2.
    pub fn process_request_body(&mut self) -> Option<Interruption> {
        if self.phases_done < 1 {
            self.process_request_headers();
        }
        self.set(
            "REQUEST_BODY_LENGTH",
            self.request_body.len().to_string().into_bytes(),
        );
        if self.request_body_access {
            self.parse_request_body();
        }
        self.run_phase(2);
        self.interruption
    }

    fn parse_request_body(&mut self) {
        let body = std::mem::take(&mut self.request_body);
        let limit = self.rs.config.arguments_limit;
        let proc_name = self.body_processor.clone().unwrap_or_default();
        let mut error: Option<String> = None;
        match proc_name.as_str() {
            "URLENCODED" => {
                let (args, bad) = body::parse_urlencoded(&body, limit);
                if bad {
                    self.set("URLENCODED_ERROR", b"1".to_vec());
                }
                for (k, v) in args {
                    self.add_arg(Coll::ArgsPost, k, v);
                }
            }
            "JSON" if !body.is_empty() => {
                match body::parse_json(&body, limit, self.rs.config.json_depth_limit) {
                    Ok(args) => {
                        for (k, v) in args {
                            self.add_arg(Coll::ArgsPost, k, v);
                        }
                    }
                    Err(e) => error = Some(e),
                }
            }
            "XML" if !body.is_empty() => match body::parse_xml(&body) {
                Ok(doc) => self.xml = Some(doc),
                Err(e) => error = Some(e),
            },
            "MULTIPART" => {
                let mp = body::parse_multipart(&self.request_content_type, &body, limit);
                let flag = |b: bool| if b { b"1".to_vec() } else { b"0".to_vec() };
                for (k, v) in [
                    ("MULTIPART_BOUNDARY_QUOTED", mp.boundary_quoted),
                    ("MULTIPART_BOUNDARY_WHITESPACE", mp.boundary_whitespace),
                    ("MULTIPART_DATA_BEFORE", mp.data_before),
                    ("MULTIPART_DATA_AFTER", mp.data_after),
                    ("MULTIPART_HEADER_FOLDING", mp.header_folding),
                    ("MULTIPART_LF_LINE", mp.lf_line),
                    ("MULTIPART_CRLF_LF_LINES", mp.lf_line && mp.crlf_line),
                    ("MULTIPART_MISSING_SEMICOLON", mp.missing_semicolon),
                    ("MULTIPART_INVALID_QUOTING", mp.invalid_quoting),
                    ("MULTIPART_INVALID_PART", mp.invalid_part),
                    (
                        "MULTIPART_INVALID_HEADER_FOLDING",
                        mp.invalid_header_folding,
                    ),
                    ("MULTIPART_UNMATCHED_BOUNDARY", mp.unmatched_boundary),
                    ("MULTIPART_FILE_LIMIT_EXCEEDED", mp.file_limit_exceeded),
                    ("MULTIPART_STRICT_ERROR", mp.strict_error()),
                ] {
                    self.set(k, flag(v));
                }
                let mut combined = 0usize;
                for (field, fname, size) in &mp.files {
                    combined += size;
                    self.push(Coll::Files, field.clone(), fname.clone().into_bytes());
                    self.push(
                        Coll::FilesSizes,
                        field.clone(),
                        size.to_string().into_bytes(),
                    );
                    self.push(Coll::FilesTmpNames, field.clone(), Vec::new());
                }
                self.set("FILES_COMBINED_SIZE", combined.to_string().into_bytes());
                for (k, v) in mp.part_headers.iter().cloned() {
                    self.push(Coll::MultipartPartHeaders, k, v);
                }
                for (k, v) in mp.args.iter().cloned() {
                    self.add_arg(Coll::ArgsPost, k, v);
                }
                error = mp.error.clone();
            }
            _ => {}
        }
        if let Some(e) = error {
            self.set("REQBODY_ERROR", b"1".to_vec());
            self.set("REQBODY_PROCESSOR_ERROR", b"1".to_vec());
            self.set("REQBODY_ERROR_MSG", e.clone().into_bytes());
            self.set("REQBODY_PROCESSOR_ERROR_MSG", e.into_bytes());
        }
        // As in ModSecurity v2: the raw body is a variable only for URL-encoded
        // bodies or when a rule forces it (CRS does for unknown types).
        if proc_name == "URLENCODED" || self.force_body_variable {
            self.set("REQUEST_BODY", body.clone());
        }
        self.request_body = body;
    }

    /// Adds one response header.
    pub fn add_response_header(&mut self, name: &[u8], value: &[u8]) {
        let name_s = String::from_utf8_lossy(name).into_owned();
        if name_s.eq_ignore_ascii_case("content-type") {
            self.response_content_type = String::from_utf8_lossy(value).into_owned();
            self.set("RESPONSE_CONTENT_TYPE", value.to_vec());
        }
        if name_s.eq_ignore_ascii_case("content-length") {
            self.set("RESPONSE_CONTENT_LENGTH", value.to_vec());
        }
        self.push(Coll::ResponseHeaders, name_s, value.to_vec());
    }

    /// Runs phase 3 (response headers).
    pub fn process_response_headers(
        &mut self,
        status: u16,
        protocol: &[u8],
    ) -> Option<Interruption> {
        self.set("RESPONSE_STATUS", status.to_string().into_bytes());
        self.set("RESPONSE_PROTOCOL", protocol.to_vec());
        let mut line = protocol.to_vec();
        line.extend_from_slice(format!(" {status}").as_bytes());
        self.set("STATUS_LINE", line);
        self.run_phase(3);
        self.interruption
    }

    /// Appends response body bytes (kept up to the configured limit).
    pub fn append_response_body(&mut self, data: &[u8]) {
        let room = self
            .rs
            .config
            .response_body_limit
            .saturating_sub(self.response_body.len());
        if data.len() > room {
            self.set("OUTBOUND_DATA_ERROR", b"1".to_vec());
        }
        self.response_body
            .extend_from_slice(&data[..data.len().min(room)]);
    }

    /// True when the response body will be inspected (body access is on
    /// and the content type is one of the configured ones).
    pub fn inspects_response_body(&self) -> bool {
        let media = self
            .response_content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        self.response_body_access && self.rs.config.response_mime_types.contains(&media)
    }

    /// Runs phase 4 (response body).
    pub fn process_response_body(&mut self) -> Option<Interruption> {
        if self.inspects_response_body() {
            let b = std::mem::take(&mut self.response_body);
            self.set("RESPONSE_BODY", b);
        }
        self.run_phase(4);
        self.interruption
    }

    /// Runs phase 5 (logging); rules there cannot interrupt.
    pub fn process_logging(&mut self) {
        self.run_phase(5);
    }

    // ----- results -----

    /// Every rule that matched, in evaluation order.
    pub fn matched_rules(&self) -> &[MatchedRule] {
        &self.matched
    }

    pub fn interruption(&self) -> Option<Interruption> {
        self.interruption
    }

    /// The engine mode in force (rules may change it with `ctl`).
    pub fn mode(&self) -> EngineMode {
        self.mode
    }

    /// A TX variable, by case-insensitive name.
    pub fn tx_var(&self, name: &str) -> Option<&[u8]> {
        self.stores
            .get("tx")
            .and_then(|m| m.get(&name.to_ascii_lowercase()))
            .map(Vec::as_slice)
    }

    /// CRS's inbound anomaly score (`tx.blocking_inbound_anomaly_score`,
    /// falling back to the sum CRS keeps before phase 2 ends).
    pub fn inbound_anomaly_score(&self) -> i64 {
        self.score("blocking_inbound_anomaly_score", "inbound_anomaly_score_pl")
    }

    pub fn outbound_anomaly_score(&self) -> i64 {
        self.score(
            "blocking_outbound_anomaly_score",
            "outbound_anomaly_score_pl",
        )
    }

    fn score(&self, total: &str, per_level: &str) -> i64 {
        if let Some(v) = self.tx_var(total) {
            return crate::operator::atoi(v);
        }
        (1..=4)
            .filter_map(|pl| self.tx_var(&format!("{per_level}{pl}")))
            .map(crate::operator::atoi)
            .sum()
    }

    // ----- evaluation -----

    fn is_removed(&self, rule: &Rule) -> bool {
        self.removed_ids
            .iter()
            .any(|&(a, b)| (a..=b).contains(&rule.id))
            || self
                .removed_tags
                .iter()
                .any(|t| rule.tags.iter().any(|rt| rt.eq_ignore_ascii_case(t)))
    }

    fn run_phase(&mut self, phase: u8) {
        self.phases_done = self.phases_done.max(phase);
        // Logging (phase 5) runs even after an interruption, as in
        // ModSecurity, so correlation rules see blocked requests too.
        if self.mode == EngineMode::Off || (self.interruption.is_some() && phase < 5) {
            return;
        }
        if self.allow_request && phase <= 2 {
            return;
        }
        let rs = self.rs;
        let mut skip_after: Option<&str> = None;
        let mut skip: u32 = 0;
        for &idx in &rs.phases[usize::from(phase - 1)] {
            let rule = match &rs.entries[idx] {
                Entry::Marker(name) => {
                    if skip_after == Some(name.as_str()) {
                        skip_after = None;
                    }
                    continue;
                }
                Entry::Rule(r) => r,
            };
            if let Some(target) = skip_after {
                if target.parse::<u64>().ok() == Some(rule.id) {
                    skip_after = None;
                }
                continue;
            }
            if skip > 0 {
                skip -= 1;
                continue;
            }
            if self.is_removed(rule) {
                continue;
            }
            if !self.eval_chain(rule) {
                continue;
            }
            if let Some(sa) = &rule.skip_after {
                skip_after = Some(sa.as_str());
            }
            if rule.skip > 0 {
                skip = rule.skip;
            }
            if self.interruption.is_some() && phase < 5 {
                return;
            }
            if self.allow_request && phase <= 2 {
                return;
            }
            if self.mode == EngineMode::Off {
                return;
            }
        }
    }

    /// Evaluates a rule and its chain; on a full match records it and
    /// applies the disruptive action. Returns whether the chain matched.
    fn eval_chain(&mut self, head: &'r Rule) -> bool {
        self.cur = Some(head);
        if let Some(mv) = self.colls.get_mut(&Coll::MatchedVars) {
            mv.clear();
        }
        let mut link = head;
        loop {
            if !self.eval_link(link, head) {
                return false;
            }
            match &link.chain {
                Some(next) => link = next,
                None => break,
            }
        }
        let msg = head
            .msg
            .as_ref()
            .map(|m| String::from_utf8_lossy(&self.expand(m)).into_owned())
            .unwrap_or_default();
        let logdata = head
            .logdata
            .as_ref()
            .map(|m| String::from_utf8_lossy(&self.expand(m)).into_owned())
            .unwrap_or_default();
        self.matched.push(MatchedRule {
            id: head.id,
            phase: head.phase,
            msg,
            logdata,
            tags: head.tags.clone(),
            severity: head.severity,
            logged: head.log.unwrap_or(true),
            matched_var_name: self.matched_var_name.clone(),
        });
        if self.mode == EngineMode::On {
            match head.disruptive {
                Some(Disruptive::Deny) | Some(Disruptive::Drop) | Some(Disruptive::Redirect)
                    if head.phase < 5 =>
                {
                    let default_status = if head.disruptive == Some(Disruptive::Redirect) {
                        302
                    } else {
                        403
                    };
                    self.interruption = Some(Interruption {
                        status: head.status.unwrap_or(default_status),
                        rule_id: head.id,
                        action: head.disruptive.unwrap_or(Disruptive::Deny),
                    });
                }
                Some(Disruptive::Allow) => self.allow_request = true,
                _ => {}
            }
        }
        true
    }

    /// Evaluates one rule of a chain, running its non-disruptive actions for
    /// each matching value, as ModSecurity v2 does.
    fn eval_link(&mut self, rule: &Rule, head: &Rule) -> bool {
        if rule.targets.is_empty() {
            self.run_actions(rule);
            return true;
        }
        let excl: Vec<&Target> = rule.targets.iter().filter(|t| t.exclude).collect();
        let mut dyn_excl: Vec<Target> = Vec::new();
        for (scope, t) in &self.removed_targets {
            let applies = match scope {
                RemoveScope::Ids(r) => r.iter().any(|&(a, b)| (a..=b).contains(&head.id)),
                RemoveScope::Tag(tag) => head.tags.iter().any(|rt| rt.eq_ignore_ascii_case(tag)),
            };
            if applies {
                dyn_excl.push(t.clone());
            }
        }
        let all_excl: Vec<&Target> = excl.into_iter().chain(dyn_excl.iter()).collect();
        let arg = rule.op.macro_arg().map(|m| self.expand(m));
        let want_caps = rule.capture && !rule.negated;
        // First pass borrows the values and only tests them; the hits are
        // then applied, which needs the transaction mutably.
        let mut hits: Vec<(String, Vec<u8>, Option<Captures>)> = Vec::new();
        {
            let mut values = Vec::new();
            for t in rule.targets.iter().filter(|t| !t.exclude) {
                if all_excl
                    .iter()
                    .any(|e| e.var == t.var && matches!(e.key, KeySel::All) && !t.count)
                {
                    continue;
                }
                self.collect(t, &all_excl, &mut values);
            }
            for cand in &values {
                let mut test = |v: &[u8]| {
                    let res = rule.op.matches(v, arg.as_deref(), want_caps);
                    if res.is_some() != rule.negated {
                        hits.push((cand.name(), v.to_vec(), res));
                    }
                };
                if rule.multi_match {
                    let mut cur: Cow<'_, [u8]> = Cow::Borrowed(&cand.value);
                    test(&cur);
                    for t in &rule.transforms {
                        let next = t.apply(&cur);
                        if next != *cur {
                            cur = Cow::Owned(next);
                            test(&cur);
                        }
                    }
                } else if rule.transforms.is_empty() {
                    test(&cand.value);
                } else if let Some(slot) = cand.slot {
                    // Request data never changes once added, so a value
                    // transformed by one rule is reused by the next rule
                    // with the same transformation list.
                    let key = (rule.transform_key, slot.0, slot.1);
                    let cached = self.transformed.borrow().get(&key).cloned();
                    let v = cached.unwrap_or_else(|| {
                        let v: Arc<[u8]> = apply_all(&rule.transforms, &cand.value).into();
                        self.transformed.borrow_mut().insert(key, Arc::clone(&v));
                        v
                    });
                    test(&v);
                } else {
                    test(&apply_all(&rule.transforms, &cand.value));
                }
            }
        }
        let matched = !hits.is_empty();
        for (name, v, caps) in hits {
            if let Some(caps) = caps.filter(|c| want_caps && !c.is_empty()) {
                let tx = self.stores.entry("tx".into()).or_default();
                for (i, c) in caps.into_iter().enumerate() {
                    tx.insert(i.to_string(), c);
                }
            }
            self.matched_var.clone_from(&v);
            self.matched_var_name.clone_from(&name);
            self.push(Coll::MatchedVars, name, v);
            self.run_actions(rule);
        }
        matched
    }

    fn run_actions(&mut self, rule: &Rule) {
        for a in &rule.actions {
            match a {
                Action::SetVar {
                    coll,
                    name,
                    op,
                    value,
                } => {
                    let key = String::from_utf8_lossy(&self.expand(name)).to_ascii_lowercase();
                    let val = self.expand(value).into_owned();
                    let store = self.stores.entry(coll.clone()).or_default();
                    match op {
                        SetOp::Set => {
                            store.insert(key, val);
                        }
                        SetOp::Delete => {
                            store.remove(&key);
                        }
                        SetOp::Add | SetOp::Sub => {
                            let cur = store.get(&key).map_or(0, |v| crate::operator::atoi(v));
                            let delta = crate::operator::atoi(&val);
                            let n = if *op == SetOp::Add {
                                cur.saturating_add(delta)
                            } else {
                                cur.saturating_sub(delta)
                            };
                            store.insert(key, n.to_string().into_bytes());
                        }
                    }
                }
                Action::Ctl(c) => self.apply_ctl(c),
                Action::SetEnv { name, value } => {
                    let k = String::from_utf8_lossy(&self.expand(name)).into_owned();
                    let v = self.expand(value).into_owned();
                    self.env.insert(k, v);
                }
                Action::Noop => {}
            }
        }
    }

    fn apply_ctl(&mut self, c: &Ctl) {
        match c {
            Ctl::RuleEngine(m) => self.mode = *m,
            Ctl::RuleRemoveById(r) => self.removed_ids.extend(r.iter().copied()),
            Ctl::RuleRemoveByTag(t) => self.removed_tags.push(t.clone()),
            Ctl::RuleRemoveTargetById(ids, targets) => {
                for t in targets {
                    self.removed_targets
                        .push((RemoveScope::Ids(ids.clone()), t.clone()));
                }
            }
            Ctl::RuleRemoveTargetByTag(tag, targets) => {
                for t in targets {
                    self.removed_targets
                        .push((RemoveScope::Tag(tag.clone()), t.clone()));
                }
            }
            Ctl::RequestBodyProcessor(p) => self.body_processor = Some(p.clone()),
            Ctl::ForceRequestBodyVariable(b) => self.force_body_variable = *b,
            Ctl::RequestBodyAccess(b) => self.request_body_access = *b,
            Ctl::ResponseBodyAccess(b) => self.response_body_access = *b,
            Ctl::Ignored => {}
        }
    }
}

/// ModSecurity's error-log escaping: one line per entry, quotes and
/// control bytes escaped, so log scrapers can match on `[data "..."]`.
fn log_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

fn percent_decode(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' && i + 2 < v.len() {
            let h = |c: u8| (c as char).to_digit(16);
            if let (Some(a), Some(b)) = (h(v[i + 1]), h(v[i + 2])) {
                out.push((a * 16 + b) as u8);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

/// (transformation list key, collection id, index in the collection)
type TransformSlot = (u32, u8, u32);

fn apply_all(transforms: &[crate::transform::Transform], v: &[u8]) -> Vec<u8> {
    let mut cur = v.to_vec();
    for t in transforms {
        cur = t.apply(&cur);
    }
    cur
}

fn trim_start_spaces(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(b.len());
    &b[s..]
}
