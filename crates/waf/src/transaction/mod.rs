//! One request/response exchange evaluated against a `RuleSet`: the public
//! feeding/result API, the per-phase evaluation loop (skips, chains,
//! captures, setvar, ctl) and the interruption decision. Variable storage
//! and lookup live in `variables`. A transaction borrows the rule set
//! read-only, so any number of them can run at once.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use crate::body;
use crate::operator::Captures;
use crate::prefilter;
use crate::rule::{
    Action, Coll, Ctl, Disruptive, EngineMode, IdRange, KeySel, Rule, SetOp, Target,
};
use crate::ruleset::{Entry, RuleSet};
use crate::transform::apply_all;

mod variables;

/// A rule that matched, as ModSecurity would log it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedRule {
    pub id: u64,
    pub phase: u8,
    pub msg: String,
    pub logdata: String,
    /// Shared with the rule (a match costs no copy of its tags).
    pub tags: Arc<[String]>,
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
        for t in self.tags.iter() {
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

/// The state the setup rules at the start of phase 1 leave behind; see
/// [`crate::RuleSetBuilder::setup_snapshot`].
#[derive(Debug)]
pub(crate) struct SetupSnapshot {
    tx: BTreeMap<String, Vec<u8>>,
    matched: Vec<MatchedRule>,
    matched_var: Vec<u8>,
    matched_var_name: String,
    /// The phase-1 step to continue at, and the rules still to `skip` there.
    resume_at: usize,
    skip: u32,
}

impl SetupSnapshot {
    /// Runs the leading steps of phase 1 marked in `setup_steps` on an empty
    /// transaction. `None` when there is nothing to gain, or when the rules did more
    /// than set TX (an interruption, `allow`): then every transaction runs them itself.
    pub(crate) fn take(rs: &RuleSet, setup_steps: &[bool]) -> Option<SetupSnapshot> {
        if rs.config.mode == EngineMode::Off {
            return None;
        }
        let mut tx = Transaction::new(rs);
        let (resume_at, skip) = tx.run_steps(1, (0, 0), Some(setup_steps));
        let clean = tx.interruption.is_none() && !tx.allow_request && tx.mode == rs.config.mode;
        if resume_at == 0 || !clean {
            return None;
        }
        Some(SetupSnapshot {
            tx: tx.stores.remove("tx").unwrap_or_default(),
            matched: std::mem::take(&mut tx.matched),
            matched_var: std::mem::take(&mut tx.matched_var),
            matched_var_name: std::mem::take(&mut tx.matched_var_name),
            resume_at,
            skip,
        })
    }
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
    scalars: KeyMap<&'static str, Vec<u8>>,
    /// Indexed by `Coll::index`.
    colls: [body::Pairs; Coll::COUNT],
    stores: KeyMap<String, BTreeMap<String, Vec<u8>>>,
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
    transformed: RefCell<SlotMap<Cached>>,
    /// Lookups in `transformed` that found the value / had to compute it.
    cache_hits: Cell<u32>,
    cache_misses: Cell<u32>,
    /// The buffer `eval_link` collects a rule's values into, kept empty between rules
    /// so its allocation serves the whole transaction (see `recycle`).
    scratch: Vec<variables::Cand<'static>>,
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
        let mut stores = KeyMap::default();
        stores.insert("tx".to_string(), BTreeMap::new());
        let mut t = Transaction {
            rs,
            mode: rs.config.mode,
            started: Instant::now(),
            unique_id: format!("{:x}{:08x}", nanos, n),
            scalars: KeyMap::default(),
            colls: Default::default(),
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
            scratch: Vec::new(),
            // Room for what a typical request fills, so the table rarely grows.
            transformed: RefCell::new(SlotMap::with_capacity_and_hasher(256, Default::default())),
            cache_hits: Cell::new(0),
            cache_misses: Cell::new(0),
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

    /// How often rules found a transformed value (and its literal scan) already computed
    /// by an earlier rule with the same transformation list: `(hits, misses)`.
    pub fn transform_cache_stats(&self) -> (u32, u32) {
        (self.cache_hits.get(), self.cache_misses.get())
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
        let first = self.phases_done == 0;
        self.phases_done = self.phases_done.max(phase);
        // Logging (phase 5) runs even after an interruption, as in
        // ModSecurity, so correlation rules see blocked requests too.
        if self.mode == EngineMode::Off || (self.interruption.is_some() && phase < 5) {
            return;
        }
        if self.allow_request && phase <= 2 {
            return;
        }
        let mut start = (0, 0);
        if let (1, true, Some(setup)) = (phase, first, &self.rs.setup) {
            // Nothing has touched TX yet: the setup rules' result is the same for every
            // transaction, so it is copied instead of evaluated.
            self.stores.insert("tx".into(), setup.tx.clone());
            self.matched.extend(setup.matched.iter().cloned());
            self.matched_var.clone_from(&setup.matched_var);
            self.matched_var_name.clone_from(&setup.matched_var_name);
            start = (setup.resume_at, setup.skip);
        }
        self.run_steps(phase, start, None);
    }

    /// Runs the phase's program from step `at` with `skip` rules still to skip. With
    /// `only`, stops before the first step not marked in it. Returns where it stopped.
    fn run_steps(
        &mut self,
        phase: u8,
        (mut at, mut skip): (usize, u32),
        only: Option<&[bool]>,
    ) -> (usize, u32) {
        let rs = self.rs;
        let program = &rs.phases[usize::from(phase - 1)];
        while let Some(step) = program.get(at) {
            if only.is_some_and(|marked| !marked.get(at).copied().unwrap_or(false)) {
                break;
            }
            at += 1;
            let Entry::Rule(rule) = &rs.entries[step.entry] else {
                continue;
            };
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
            if rule.skip_after.is_some() {
                at = step.skip_after_to;
            }
            if rule.skip > 0 {
                skip = rule.skip;
            }
            if self.interruption.is_some() && phase < 5 {
                break;
            }
            if self.allow_request && phase <= 2 {
                break;
            }
            if self.mode == EngineMode::Off {
                break;
            }
        }
        (at, skip)
    }

    /// Evaluates a rule and its chain; on a full match records it and
    /// applies the disruptive action. Returns whether the chain matched.
    fn eval_chain(&mut self, head: &'r Rule) -> bool {
        self.cur = Some(head);
        self.colls[Coll::MatchedVars.index()].clear();
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
            tags: Arc::clone(&head.shared_tags),
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
        // The rule's own `!` exclusions are split out at load; `ctl` removals add to
        // them at run time (rarely: this stays an empty, unallocated Vec).
        let fixed_excl = rule.exclusions.as_slice();
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
        let rs = self.rs;
        let want_caps = rule.capture && !rule.negated;
        // First pass borrows the values and only tests them; the hits are
        // then applied, which needs the transaction mutably.
        let mut hits: Vec<(String, Vec<u8>, Option<Captures>)> = Vec::new();
        {
            let mut values = recycle(std::mem::take(&mut self.scratch));
            for t in rule.targets.iter().filter(|t| !t.exclude) {
                if fixed_excl
                    .iter()
                    .chain(&dyn_excl)
                    .any(|e| e.var == t.var && matches!(e.key, KeySel::All) && !t.count)
                {
                    continue;
                }
                self.collect(t, (fixed_excl, &dyn_excl), &mut values);
            }
            // A request without the rule's targets costs no more than this.
            if values.is_empty() {
                self.scratch = recycle(values);
                return false;
            }
            let arg = rule.op.macro_arg().map(|m| self.expand(m));
            for cand in &values {
                let mut test = |v: &[u8], literals: Option<&[u64]>| {
                    // No required literal in the value: the regex cannot match it.
                    let ruled_out = matches!((rule.prefilter, literals),
                        (Some(bit), Some(found)) if !prefilter::has(found, bit));
                    let res = if ruled_out {
                        None
                    } else {
                        rule.op.matches(v, arg.as_deref(), want_caps)
                    };
                    if res.is_some() != rule.negated {
                        hits.push((cand.name(), v.to_vec(), res));
                    }
                };
                if rule.multi_match {
                    let mut cur: Cow<'_, [u8]> = Cow::Borrowed(&cand.value);
                    test(&cur, None);
                    for t in &rule.transforms {
                        if t.leaves_unchanged(&cur) {
                            continue;
                        }
                        let next = t.apply(&cur);
                        if next != *cur {
                            cur = Cow::Owned(next);
                            test(&cur, None);
                        }
                    }
                } else if let (Some(slot), true) = (
                    cand.slot,
                    !rule.transforms.is_empty() || rule.prefilter.is_some(),
                ) {
                    // Request data never changes once added, so a value transformed by
                    // one rule (and its literal scan) is reused by the next rule with the
                    // same transformation list.
                    let key = slot_key(rule.transform_key, slot);
                    let mut cache = self.transformed.borrow_mut();
                    let counter = if cache.contains_key(&key) {
                        &self.cache_hits
                    } else {
                        &self.cache_misses
                    };
                    counter.set(counter.get().saturating_add(1));
                    let Cached { value, literals } = cache.entry(key).or_insert_with(|| Cached {
                        // `None` also when no step changed the value: no copy is kept.
                        value: match apply_all(&rule.transforms, &cand.value) {
                            Cow::Borrowed(_) => None,
                            Cow::Owned(v) => Some(v),
                        },
                        literals: None,
                    });
                    let v: &[u8] = value.as_deref().unwrap_or(&cand.value);
                    if rule.prefilter.is_some() && literals.is_none() {
                        *literals = rs
                            .scans
                            .get(rule.transform_key as usize)
                            .and_then(Option::as_ref)
                            .map(|scan| scan.scan(v));
                    }
                    test(v, literals.as_deref());
                } else if rule.transforms.is_empty() {
                    test(&cand.value, None);
                } else {
                    test(&apply_all(&rule.transforms, &cand.value), None);
                }
            }
            self.scratch = recycle(values);
        }
        let matched = !hits.is_empty();
        for (name, v, caps) in hits {
            if let Some(caps) = caps.filter(|c| want_caps && !c.is_empty()) {
                if !self.stores.contains_key("tx") {
                    self.stores.insert("tx".into(), BTreeMap::new());
                }
                if let Some(tx) = self.stores.get_mut("tx") {
                    for (c, name) in caps.into_iter().zip(CAPTURE_NAMES) {
                        tx.insert((*name).to_string(), c);
                    }
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
                    // Names and values are mostly literals in the rule: borrowed, and an
                    // existing variable's buffer is overwritten in place, so a setvar
                    // allocates only when it creates a variable.
                    let raw_name = self.expand(name);
                    let key: Cow<'_, str> = match std::str::from_utf8(&raw_name) {
                        Ok(k) if !k.bytes().any(|b| b.is_ascii_uppercase()) => Cow::Borrowed(k),
                        _ => Cow::Owned(String::from_utf8_lossy(&raw_name).to_ascii_lowercase()),
                    };
                    let val = self.expand(value);
                    if !self.stores.contains_key(coll.as_str()) {
                        self.stores.insert(coll.clone(), BTreeMap::new());
                    }
                    let Some(store) = self.stores.get_mut(coll.as_str()) else {
                        continue;
                    };
                    let number = |cur: i64| {
                        let delta = crate::operator::atoi(&val);
                        if *op == SetOp::Add {
                            cur.saturating_add(delta)
                        } else {
                            cur.saturating_sub(delta)
                        }
                    };
                    match (op, store.get_mut(key.as_ref())) {
                        (SetOp::Delete, _) => {
                            store.remove(key.as_ref());
                        }
                        (SetOp::Set, Some(slot)) => {
                            slot.clear();
                            slot.extend_from_slice(&val);
                        }
                        (SetOp::Set, None) => {
                            store.insert(key.into_owned(), val.into_owned());
                        }
                        (SetOp::Add | SetOp::Sub, Some(slot)) => {
                            let n = number(crate::operator::atoi(slot));
                            slot.clear();
                            write_int(slot, n);
                        }
                        (SetOp::Add | SetOp::Sub, None) => {
                            let mut slot = Vec::new();
                            write_int(&mut slot, number(0));
                            store.insert(key.into_owned(), slot);
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

/// The cache key of a value after a transformation list: the list's key, then the
/// collection id and the index in it (see `Cand::slot`), packed into one integer.
fn slot_key(list: u32, (coll, index): (u8, u32)) -> u64 {
    u64::from(list) << 40 | u64::from(coll) << 32 | u64::from(index)
}

/// A hash map keyed by [`slot_key`]. The keys are small integers the engine makes, not
/// request data, so a multiply-and-rotate hash is enough: SipHash's defence against
/// chosen keys buys nothing here and cost a fifth of a request's instructions.
type SlotMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<KeyHasher>>;

/// A hash map keyed by names the engine itself supplies (variable and collection names
/// from the rules), never by request data, which is why [`KeyHasher`] is safe for it.
type KeyMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<KeyHasher>>;

#[derive(Default)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // The multiplier is Fx's; hashbrown reads the top bits, which it mixes best.
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A request value after one transformation list, and which prefiltered rules'
/// literals occur in it (computed the first time a prefiltered rule asks).
struct Cached {
    /// `None` when the list left the value as it was.
    value: Option<Vec<u8>>,
    literals: Option<Box<[u64]>>,
}

/// Empties a value buffer and hands its allocation on under another lifetime: the values
/// of one rule borrow the transaction, which the next rule's actions change, so the
/// buffer cannot simply be kept; an empty one can. (Collecting a vector's `into_iter()`
/// into a vector of a type of the same size reuses its allocation.)
// `filter` would keep the item type, and the lifetime is what this changes.
#[allow(clippy::unnecessary_filter_map)]
fn recycle<'a, 'b>(values: Vec<variables::Cand<'a>>) -> Vec<variables::Cand<'b>> {
    values.into_iter().filter_map(|_| None).collect()
}

/// `TX:0` to `TX:9`, the names `capture` writes.
const CAPTURE_NAMES: &[&str] = &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// Appends `n` in decimal, without a temporary string.
fn write_int(out: &mut Vec<u8>, n: i64) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{n}");
}

fn trim_start_spaces(b: &[u8]) -> &[u8] {
    let s = b
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(b.len());
    &b[s..]
}
