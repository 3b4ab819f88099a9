//! Compiled rules: targets, operator, transformations and actions resolved
//! into typed values once, at load time, so evaluation does no parsing.

use regex::bytes::Regex;
use std::path::Path;

use crate::macros::Macro;
use crate::operator::{self, Op};
use crate::parser::{self, RawAction, RawKey, RawTarget};
use crate::transform::Transform;

/// Keyed collections the transaction stores as ordered name/value lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Coll {
    Args,
    ArgsGet,
    ArgsPost,
    RequestHeaders,
    RequestCookies,
    ResponseHeaders,
    Files,
    FilesSizes,
    FilesTmpNames,
    MultipartPartHeaders,
    MatchedVars,
}

impl Coll {
    /// How many there are: `MatchedVars` stays the last variant.
    pub(crate) const COUNT: usize = Coll::MatchedVars as usize + 1;

    /// Position in a transaction's table of collections.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Coll::Args => "ARGS",
            Coll::ArgsGet => "ARGS_GET",
            Coll::ArgsPost => "ARGS_POST",
            Coll::RequestHeaders => "REQUEST_HEADERS",
            Coll::RequestCookies => "REQUEST_COOKIES",
            Coll::ResponseHeaders => "RESPONSE_HEADERS",
            Coll::Files => "FILES",
            Coll::FilesSizes => "FILES_SIZES",
            Coll::FilesTmpNames => "FILES_TMPNAMES",
            Coll::MultipartPartHeaders => "MULTIPART_PART_HEADERS",
            Coll::MatchedVars => "MATCHED_VARS",
        }
    }
}

/// A variable a target can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Var {
    Coll(Coll),
    /// `X_NAMES`: the keys of a collection, as values.
    Names(Coll, &'static str),
    /// TX or a persistent-style collection (IP, GLOBAL, SESSION, ...),
    /// keyed by lower-case collection name.
    Store(String),
    Env,
    Xml,
    Rule,
    /// A single-valued variable, by upper-case name.
    Scalar(String),
}

const SCALARS: &[&str] = &[
    "ARGS_COMBINED_SIZE",
    "FILES_COMBINED_SIZE",
    "REQUEST_FILENAME",
    "REQUEST_BASENAME",
    "REQUEST_URI",
    "REQUEST_URI_RAW",
    "REQUEST_LINE",
    "REQUEST_METHOD",
    "REQUEST_PROTOCOL",
    "QUERY_STRING",
    "REQUEST_BODY",
    "REQUEST_BODY_LENGTH",
    "REQBODY_ERROR",
    "REQBODY_ERROR_MSG",
    "REQBODY_PROCESSOR",
    "REQBODY_PROCESSOR_ERROR",
    "REQBODY_PROCESSOR_ERROR_MSG",
    "MULTIPART_STRICT_ERROR",
    "MULTIPART_UNMATCHED_BOUNDARY",
    "MULTIPART_BOUNDARY_QUOTED",
    "MULTIPART_BOUNDARY_WHITESPACE",
    "MULTIPART_DATA_AFTER",
    "MULTIPART_DATA_BEFORE",
    "MULTIPART_FILE_LIMIT_EXCEEDED",
    "MULTIPART_HEADER_FOLDING",
    "MULTIPART_INVALID_HEADER_FOLDING",
    "MULTIPART_INVALID_PART",
    "MULTIPART_INVALID_QUOTING",
    "MULTIPART_LF_LINE",
    "MULTIPART_CRLF_LF_LINES",
    "MULTIPART_MISSING_SEMICOLON",
    "MULTIPART_FILENAME",
    "MULTIPART_NAME",
    "URLENCODED_ERROR",
    "INBOUND_DATA_ERROR",
    "OUTBOUND_DATA_ERROR",
    "RESPONSE_BODY",
    "RESPONSE_STATUS",
    "RESPONSE_PROTOCOL",
    "RESPONSE_CONTENT_TYPE",
    "RESPONSE_CONTENT_LENGTH",
    "REMOTE_ADDR",
    "REMOTE_PORT",
    "REMOTE_HOST",
    "REMOTE_USER",
    "SERVER_ADDR",
    "SERVER_PORT",
    "SERVER_NAME",
    "UNIQUE_ID",
    "DURATION",
    "MATCHED_VAR",
    "MATCHED_VAR_NAME",
    "FULL_REQUEST",
    "FULL_REQUEST_LENGTH",
    "STATUS_LINE",
    "HIGHEST_SEVERITY",
    "AUTH_TYPE",
    "PATH_INFO",
    "TIME",
    "TIME_EPOCH",
    "TIME_YEAR",
    "TIME_MON",
    "TIME_DAY",
    "TIME_HOUR",
    "TIME_MIN",
    "TIME_SEC",
    "TIME_WDAY",
    "WEBAPPID",
    "SESSIONID",
    "USERID",
    "STREAM_INPUT_BODY",
    "STREAM_OUTPUT_BODY",
];

pub(crate) fn var_from_name(name: &str) -> Option<Var> {
    let coll = |c| Some(Var::Coll(c));
    let names = |c, n| Some(Var::Names(c, n));
    match name {
        "ARGS" => coll(Coll::Args),
        "ARGS_GET" => coll(Coll::ArgsGet),
        "ARGS_POST" => coll(Coll::ArgsPost),
        "REQUEST_HEADERS" => coll(Coll::RequestHeaders),
        "REQUEST_COOKIES" => coll(Coll::RequestCookies),
        "RESPONSE_HEADERS" => coll(Coll::ResponseHeaders),
        "FILES" => coll(Coll::Files),
        "FILES_SIZES" => coll(Coll::FilesSizes),
        "FILES_TMPNAMES" => coll(Coll::FilesTmpNames),
        "MULTIPART_PART_HEADERS" => coll(Coll::MultipartPartHeaders),
        "MATCHED_VARS" => coll(Coll::MatchedVars),
        "ARGS_NAMES" => names(Coll::Args, "ARGS_NAMES"),
        "ARGS_GET_NAMES" => names(Coll::ArgsGet, "ARGS_GET_NAMES"),
        "ARGS_POST_NAMES" => names(Coll::ArgsPost, "ARGS_POST_NAMES"),
        "REQUEST_HEADERS_NAMES" => names(Coll::RequestHeaders, "REQUEST_HEADERS_NAMES"),
        "REQUEST_COOKIES_NAMES" => names(Coll::RequestCookies, "REQUEST_COOKIES_NAMES"),
        "RESPONSE_HEADERS_NAMES" => names(Coll::ResponseHeaders, "RESPONSE_HEADERS_NAMES"),
        "FILES_NAMES" => names(Coll::Files, "FILES_NAMES"),
        "MATCHED_VARS_NAMES" => names(Coll::MatchedVars, "MATCHED_VARS_NAMES"),
        "TX" | "IP" | "GLOBAL" | "SESSION" | "USER" | "RESOURCE" => {
            Some(Var::Store(name.to_ascii_lowercase()))
        }
        "ENV" => Some(Var::Env),
        "XML" => Some(Var::Xml),
        "RULE" => Some(Var::Rule),
        _ if SCALARS.contains(&name) => Some(Var::Scalar(name.to_string())),
        _ => None,
    }
}

/// How a target picks keys out of a collection.
#[derive(Debug, Clone)]
pub(crate) enum KeySel {
    All,
    /// Lower-case exact key.
    Exact(String),
    Regex(Regex),
}

impl KeySel {
    pub(crate) fn matches(&self, key: &str) -> bool {
        match self {
            KeySel::All => true,
            KeySel::Exact(k) => key.eq_ignore_ascii_case(k),
            KeySel::Regex(re) => re.is_match(key.as_bytes()),
        }
    }

    fn same(&self, other: &KeySel) -> bool {
        match (self, other) {
            (KeySel::All, KeySel::All) => true,
            (KeySel::Exact(a), KeySel::Exact(b)) => a == b,
            (KeySel::Regex(a), KeySel::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub var: Var,
    pub key: KeySel,
    pub count: bool,
    pub exclude: bool,
}

impl Target {
    /// True when `self` (an exclusion) removes the value `name`/`key` of `var`.
    pub(crate) fn excludes(&self, var: &Var, key: Option<&str>) -> bool {
        self.var == *var
            && match key {
                Some(k) => self.key.matches(k),
                None => matches!(self.key, KeySel::All),
            }
    }

    pub(crate) fn same_as(&self, other: &Target) -> bool {
        self.var == other.var
            && self.count == other.count
            && self.exclude == other.exclude
            && self.key.same(&other.key)
    }
}

pub(crate) fn compile_targets(text: &str) -> Result<Vec<Target>, String> {
    parser::split_targets(text)?
        .into_iter()
        .map(compile_target)
        .collect()
}

fn compile_target(raw: RawTarget) -> Result<Target, String> {
    let var = var_from_name(&raw.name).ok_or_else(|| format!("unknown variable {}", raw.name))?;
    let key = match raw.key {
        None => KeySel::All,
        Some(RawKey::Exact(k)) if var == Var::Xml => KeySel::Exact(k),
        Some(RawKey::Exact(k)) => KeySel::Exact(k.to_ascii_lowercase()),
        Some(RawKey::Regex(re)) => KeySel::Regex(
            regex::bytes::RegexBuilder::new(&re)
                .case_insensitive(true)
                .unicode(false)
                .build()
                .map_err(|e| format!("invalid key regex /{re}/: {e}"))?,
        ),
    };
    Ok(Target {
        var,
        key,
        count: raw.count,
        exclude: raw.exclude,
    })
}

/// What a rule does to the request when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disruptive {
    Pass,
    /// Resolved to the phase's default disruptive action at load time.
    Block,
    Deny,
    Drop,
    Allow,
    Redirect,
}

/// Engine mode, settable by `SecRuleEngine` and `ctl:ruleEngine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineMode {
    On,
    DetectionOnly,
    Off,
}

impl EngineMode {
    pub(crate) fn parse(s: &str) -> Option<EngineMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "on" => Some(EngineMode::On),
            "off" => Some(EngineMode::Off),
            "detectiononly" => Some(EngineMode::DetectionOnly),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetOp {
    Set,
    Add,
    Sub,
    Delete,
}

/// An inclusive range of rule ids.
pub(crate) type IdRange = (u64, u64);

pub(crate) fn parse_id_ranges(text: &str) -> Result<Vec<IdRange>, String> {
    text.split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let a: u64 = a
                .trim()
                .parse()
                .map_err(|_| format!("bad rule id {part}"))?;
            let b: u64 = b
                .trim()
                .parse()
                .map_err(|_| format!("bad rule id {part}"))?;
            Ok((a, b))
        })
        .collect()
}

#[derive(Debug, Clone)]
pub(crate) enum Ctl {
    RuleEngine(EngineMode),
    RuleRemoveById(Vec<IdRange>),
    RuleRemoveByTag(String),
    RuleRemoveTargetById(Vec<IdRange>, Vec<Target>),
    RuleRemoveTargetByTag(String, Vec<Target>),
    RequestBodyProcessor(String),
    ForceRequestBodyVariable(bool),
    RequestBodyAccess(bool),
    ResponseBodyAccess(bool),
    /// Accepted and ignored (audit log settings and the like).
    Ignored,
}

#[derive(Debug, Clone)]
pub(crate) enum Action {
    SetVar {
        coll: String,
        name: Macro,
        op: SetOp,
        value: Macro,
    },
    Ctl(Ctl),
    SetEnv {
        name: Macro,
        value: Macro,
    },
    /// `initcol`, `expirevar`, ...: accepted without effect, as this engine
    /// keeps no state between transactions.
    Noop,
}

/// A compiled rule; chained rules hang off `chain`.
#[derive(Debug)]
pub(crate) struct Rule {
    pub id: u64,
    pub phase: u8,
    pub targets: Vec<Target>,
    /// The `!` targets of `targets`, split out at load (`RuleSetBuilder::build`).
    pub exclusions: Vec<Target>,
    pub op: Op,
    pub negated: bool,
    pub transforms: Vec<Transform>,
    /// `t:none` was given, so the phase's default transformations are dropped.
    pub transforms_reset: bool,
    /// Identifies the transformation list among all rules (same list, same
    /// key), so a transaction can reuse a transformed value; 0 means none.
    pub transform_key: u32,
    /// This rule's bit in the literal scan of its transformation list (`@rx` rules with
    /// required literals only); `None`: the regex runs on every value.
    pub prefilter: Option<u32>,
    pub multi_match: bool,
    pub capture: bool,
    pub msg: Option<Macro>,
    pub logdata: Option<Macro>,
    pub tags: Vec<String>,
    /// `tags` again, shared with every match of the rule (set in `RuleSetBuilder::build`).
    pub shared_tags: std::sync::Arc<[String]>,
    pub severity: Option<u8>,
    pub ver: Option<String>,
    pub log: Option<bool>,
    pub disruptive: Option<Disruptive>,
    pub status: Option<u16>,
    pub actions: Vec<Action>,
    pub skip: u32,
    pub skip_after: Option<String>,
    pub chain: Option<Box<Rule>>,
    pub wants_chain: bool,
}

/// Per-phase defaults from `SecDefaultAction`.
#[derive(Debug, Clone)]
pub(crate) struct Defaults {
    pub log: bool,
    pub disruptive: Disruptive,
    pub status: Option<u16>,
    pub transforms: Vec<Transform>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            log: true,
            disruptive: Disruptive::Pass,
            status: None,
            transforms: Vec::new(),
        }
    }
}

fn severity_from(v: &str) -> Result<u8, String> {
    let v = v.trim();
    if let Ok(n) = v.parse::<u8>() {
        return Ok(n.min(7));
    }
    Ok(match v.to_ascii_uppercase().as_str() {
        "EMERGENCY" => 0,
        "ALERT" => 1,
        "CRITICAL" => 2,
        "ERROR" => 3,
        "WARNING" => 4,
        "NOTICE" => 5,
        "INFO" => 6,
        "DEBUG" => 7,
        _ => return Err(format!("unknown severity {v}")),
    })
}

fn parse_phase(v: &str) -> Result<u8, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "request_headers" => Ok(1),
        "2" | "request" => Ok(2),
        "3" | "response_headers" => Ok(3),
        "4" | "response" => Ok(4),
        "5" | "logging" => Ok(5),
        other => Err(format!("unknown phase {other}")),
    }
}

fn parse_setvar(v: &str) -> Result<Action, String> {
    let v = v.trim();
    let (delete, v) = match v.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (lhs, op, rhs) = if delete {
        (v, SetOp::Delete, "")
    } else if let Some((l, r)) = v.split_once('=') {
        if let Some(r2) = r.strip_prefix('+') {
            (l, SetOp::Add, r2)
        } else if let Some(r2) = r.strip_prefix('-') {
            (l, SetOp::Sub, r2)
        } else {
            (l, SetOp::Set, r)
        }
    } else {
        (v, SetOp::Set, "1")
    };
    let (coll, name) = lhs
        .split_once('.')
        .ok_or_else(|| format!("setvar needs collection.name: {lhs}"))?;
    Ok(Action::SetVar {
        coll: coll.trim().to_ascii_lowercase(),
        name: Macro::parse(name.trim()),
        op,
        value: Macro::parse(rhs),
    })
}

fn parse_ctl(v: &str) -> Result<Ctl, String> {
    let (name, value) = v
        .split_once('=')
        .ok_or_else(|| format!("ctl needs name=value: {v}"))?;
    let value = value.trim();
    let on = |s: &str| s.eq_ignore_ascii_case("on") || s == "1" || s.eq_ignore_ascii_case("true");
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "ruleengine" => Ctl::RuleEngine(
            EngineMode::parse(value).ok_or_else(|| format!("bad ruleEngine {value}"))?,
        ),
        "ruleremovebyid" => Ctl::RuleRemoveById(parse_id_ranges(value)?),
        "ruleremovebytag" => Ctl::RuleRemoveByTag(value.to_string()),
        "ruleremovetargetbyid" => {
            let (ids, targets) = value
                .split_once(';')
                .ok_or_else(|| format!("ruleRemoveTargetById needs id;target: {value}"))?;
            Ctl::RuleRemoveTargetById(parse_id_ranges(ids)?, compile_targets(targets)?)
        }
        "ruleremovetargetbytag" => {
            let (tag, targets) = value
                .split_once(';')
                .ok_or_else(|| format!("ruleRemoveTargetByTag needs tag;target: {value}"))?;
            Ctl::RuleRemoveTargetByTag(tag.to_string(), compile_targets(targets)?)
        }
        "requestbodyprocessor" => Ctl::RequestBodyProcessor(value.to_ascii_uppercase()),
        "forcerequestbodyvariable" => Ctl::ForceRequestBodyVariable(on(value)),
        "requestbodyaccess" => Ctl::RequestBodyAccess(on(value)),
        "responsebodyaccess" => Ctl::ResponseBodyAccess(on(value)),
        "auditengine" | "auditlogparts" | "debugloglevel" | "requestbodylimit"
        | "responsebodylimit" | "hashengine" | "parseXmlIntoArgs" => Ctl::Ignored,
        other => return Err(format!("unsupported ctl {other}")),
    })
}

fn compile_operator(text: &str, dir: &Path) -> Result<(bool, Op), String> {
    let (negated, name, arg) = parser::split_operator(text);
    let lname = name.to_ascii_lowercase();
    let has_macro = arg.contains("%{");
    let m = || Macro::parse(&arg);
    let op = match lname.as_str() {
        "rx" if has_macro => Op::RxMacro(m()),
        "rx" => {
            let (re, unicode) = operator::build_regex_mode(&arg)?;
            Op::Rx(re, unicode)
        }
        "pm" => {
            let words: Vec<String> = arg.split_whitespace().map(str::to_string).collect();
            Op::Pm(operator::build_pm(&words)?)
        }
        "pmfromfile" | "pmf" => {
            let mut words = Vec::new();
            for file in arg.split_whitespace() {
                let path = dir.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                words.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(str::to_string),
                );
            }
            Op::Pm(operator::build_pm(&words)?)
        }
        "streq" => Op::StrEq(m()),
        "contains" => Op::Contains(m()),
        "containsword" => Op::ContainsWord(m()),
        "beginswith" => Op::BeginsWith(m()),
        "endswith" => Op::EndsWith(m()),
        "within" => Op::Within(m()),
        "eq" => Op::Eq(m()),
        "ge" => Op::Ge(m()),
        "gt" => Op::Gt(m()),
        "le" => Op::Le(m()),
        "lt" => Op::Lt(m()),
        "detectsqli" => Op::DetectSqli,
        "detectxss" => Op::DetectXss,
        "validatebyterange" => Op::ValidateByteRange(operator::parse_byte_range(&arg)?),
        "validateurlencoding" => Op::ValidateUrlEncoding,
        "validateutf8encoding" => Op::ValidateUtf8,
        "ipmatch" => Op::IpMatch(operator::parse_ip_list(&arg)?),
        "ipmatchfromfile" | "ipmatchf" => {
            let path = dir.join(arg.trim());
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let list: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .collect();
            Op::IpMatch(operator::parse_ip_list(&list.join(","))?)
        }
        "verifycc" => Op::VerifyCc(operator::build_regex(&arg)?),
        "unconditionalmatch" => Op::Unconditional,
        "nomatch" => Op::NoMatch,
        other => return Err(format!("unsupported operator @{other}")),
    };
    Ok((negated, op))
}

impl Rule {
    /// Compiles a `SecRule` (or, with `targets == None`, a `SecAction`).
    pub(crate) fn compile(
        targets: Option<&str>,
        operator: Option<&str>,
        actions: Option<&str>,
        dir: &Path,
    ) -> Result<Rule, String> {
        let targets = match targets {
            Some(t) => compile_targets(t)?,
            None => Vec::new(),
        };
        let (negated, op) = match operator {
            Some(o) => compile_operator(o, dir)?,
            None => (false, Op::Unconditional),
        };
        let mut rule = Rule {
            id: 0,
            phase: 0,
            targets,
            exclusions: Vec::new(),
            op,
            negated,
            transforms: Vec::new(),
            transforms_reset: false,
            transform_key: 0,
            prefilter: None,
            multi_match: false,
            capture: false,
            msg: None,
            logdata: None,
            tags: Vec::new(),
            shared_tags: std::sync::Arc::from(Vec::new()),
            severity: None,
            ver: None,
            log: None,
            disruptive: None,
            status: None,
            actions: Vec::new(),
            skip: 0,
            skip_after: None,
            chain: None,
            wants_chain: false,
        };
        let raw = match actions {
            Some(a) => parser::split_actions(a)?,
            None => Vec::new(),
        };
        rule.apply_actions(&raw)?;
        Ok(rule)
    }

    /// Applies parsed actions to the rule (also used by
    /// `SecRuleUpdateActionById`).
    pub(crate) fn apply_actions(&mut self, raw: &[RawAction]) -> Result<(), String> {
        for a in raw {
            let v = a.value.as_deref().unwrap_or("");
            let need = |what: &str| -> Result<(), String> {
                if a.value.is_none() {
                    Err(format!("action {what} needs a value"))
                } else {
                    Ok(())
                }
            };
            match a.name.to_ascii_lowercase().as_str() {
                "id" => {
                    need("id")?;
                    self.id = v.trim().parse().map_err(|_| format!("bad id {v}"))?;
                }
                "phase" => self.phase = parse_phase(v)?,
                "msg" => self.msg = Some(Macro::parse(v)),
                "logdata" => self.logdata = Some(Macro::parse(v)),
                "tag" => self.tags.push(v.to_string()),
                "severity" => self.severity = Some(severity_from(v)?),
                "ver" => self.ver = Some(v.to_string()),
                "rev" | "maturity" | "accuracy" | "sanitisematched" | "sanitizematched"
                | "sanitisearg" | "sanitizearg" | "auditlog" | "noauditlog" | "status_line" => {}
                "t" => match Transform::from_name(v.trim()).map_err(|e| e.to_string())? {
                    None => {
                        self.transforms.clear();
                        self.transforms_reset = true;
                    }
                    Some(t) => self.transforms.push(t),
                },
                "multimatch" => self.multi_match = true,
                "capture" => self.capture = true,
                "log" => self.log = Some(true),
                "nolog" => self.log = Some(false),
                "pass" => self.disruptive = Some(Disruptive::Pass),
                "block" => self.disruptive = Some(Disruptive::Block),
                "deny" => self.disruptive = Some(Disruptive::Deny),
                "drop" => self.disruptive = Some(Disruptive::Drop),
                "allow" => self.disruptive = Some(Disruptive::Allow),
                "redirect" => self.disruptive = Some(Disruptive::Redirect),
                "status" => {
                    self.status = Some(v.trim().parse().map_err(|_| format!("bad status {v}"))?)
                }
                "chain" => self.wants_chain = true,
                "skip" => self.skip = v.trim().parse().map_err(|_| format!("bad skip {v}"))?,
                "skipafter" => {
                    need("skipAfter")?;
                    self.skip_after = Some(v.trim().to_string())
                }
                "setvar" => {
                    need("setvar")?;
                    self.actions.push(parse_setvar(v)?)
                }
                "ctl" => {
                    need("ctl")?;
                    self.actions.push(Action::Ctl(parse_ctl(v)?))
                }
                "setenv" => {
                    need("setenv")?;
                    let (n, val) = v.split_once('=').unwrap_or((v, "1"));
                    self.actions.push(Action::SetEnv {
                        name: Macro::parse(n.trim()),
                        value: Macro::parse(val),
                    });
                }
                "initcol" | "expirevar" | "setuid" | "setsid" | "deprecatevar" | "append"
                | "prepend" | "exec" | "xmlns" => self.actions.push(Action::Noop),
                other => return Err(format!("unknown action {other}")),
            }
        }
        Ok(())
    }

    /// Fills what the rule left unset from the phase defaults.
    pub(crate) fn apply_defaults(&mut self, d: &Defaults) {
        if self.log.is_none() {
            self.log = Some(d.log);
        }
        match self.disruptive {
            None | Some(Disruptive::Block) => {
                self.disruptive = Some(d.disruptive);
                if self.status.is_none() {
                    self.status = d.status;
                }
            }
            _ => {}
        }
        if !d.transforms.is_empty() && !self.transforms_reset {
            let mut t = d.transforms.clone();
            t.append(&mut self.transforms);
            self.transforms = t;
        }
    }

    /// The last rule of the chain that starts here.
    pub(crate) fn chain_tail_mut(&mut self) -> &mut Rule {
        match self.chain {
            Some(ref mut next) => next.chain_tail_mut(),
            None => self,
        }
    }
}
