//! Field matchers: one Sigma `field|modifiers: values` entry, compiled once at load.
//!
//! Sigma's string matching is case-insensitive unless `|cased`; `*` and `?` are wildcards
//! in every string value (`\*`, `\?`, `\\` escape them). A field addresses the event's JSON:
//! a top-level key (`source_ip`), else a dotted path (`detail.permission`); a path through a
//! list looks at every element, and the field matches when any value found does.

use ipnet::IpNet;
use regex::Regex;
use serde_json::Value;

use crate::error::Problem;
use crate::yaml::{Kind, Node};

/// Where a field's values are in an event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldPath {
    whole: String,
    parts: Vec<String>,
}

impl FieldPath {
    pub fn new(name: &str) -> FieldPath {
        FieldPath {
            whole: name.to_string(),
            parts: name.split('.').map(str::to_string).collect(),
        }
    }

    pub fn name(&self) -> &str {
        &self.whole
    }

    /// Every value at the path (lists flattened); empty when the field is missing.
    pub fn values<'a>(&self, event: &'a Value, out: &mut Vec<&'a Value>) {
        out.clear();
        if let Some(v) = event.get(&self.whole) {
            flatten(v, out);
            return;
        }
        if self.parts.len() > 1 {
            walk(event, &self.parts, out);
        }
    }

    /// The field as one string, for grouping: a string as is, anything else as JSON,
    /// several values joined by `,`, a missing field as "".
    pub fn group_value(&self, event: &Value) -> String {
        let mut found = Vec::new();
        self.values(event, &mut found);
        let texts: Vec<String> = found
            .iter()
            .filter(|v| !v.is_null())
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        texts.join(",")
    }
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => out.extend(items.iter()),
        other => out.push(other),
    }
}

fn walk<'a>(v: &'a Value, parts: &[String], out: &mut Vec<&'a Value>) {
    let Some((first, rest)) = parts.split_first() else {
        flatten(v, out);
        return;
    };
    match v {
        Value::Object(map) => {
            if let Some(next) = map.get(first) {
                walk(next, rest, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, parts, out);
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum StrOp {
    Exact,
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum NumOp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone)]
enum ValueMatch {
    /// The field is missing or null.
    Null,
    Exists(bool),
    Str {
        op: StrOp,
        /// Lowercased unless `cased`.
        needle: String,
        cased: bool,
    },
    /// A string with wildcards, or a `|re`.
    Regex(Regex),
    Cidr(IpNet),
    Compare(NumOp, f64),
    /// A plain number: equal as a number, or as the text written.
    Number(f64, String),
    Bool(bool),
}

impl ValueMatch {
    fn matches(&self, v: &Value) -> bool {
        match self {
            ValueMatch::Null | ValueMatch::Exists(_) => false,
            ValueMatch::Str { op, needle, cased } => {
                let Some(text) = as_text(v) else { return false };
                let text = if *cased {
                    text
                } else {
                    std::borrow::Cow::Owned(text.to_lowercase())
                };
                match op {
                    StrOp::Exact => *text == **needle,
                    StrOp::Contains => text.contains(needle.as_str()),
                    StrOp::StartsWith => text.starts_with(needle.as_str()),
                    StrOp::EndsWith => text.ends_with(needle.as_str()),
                }
            }
            ValueMatch::Regex(re) => as_text(v).is_some_and(|t| re.is_match(&t)),
            ValueMatch::Cidr(net) => v
                .as_str()
                .and_then(|s| s.parse::<std::net::IpAddr>().ok())
                .is_some_and(|ip| net.contains(&ip)),
            ValueMatch::Compare(op, limit) => as_number(v).is_some_and(|n| match op {
                NumOp::Gt => n > *limit,
                NumOp::Gte => n >= *limit,
                NumOp::Lt => n < *limit,
                NumOp::Lte => n <= *limit,
            }),
            ValueMatch::Number(n, text) => match v {
                Value::Number(_) => as_number(v) == Some(*n),
                Value::String(s) => s == text || s.parse::<f64>().ok() == Some(*n),
                _ => false,
            },
            ValueMatch::Bool(b) => match v {
                Value::Bool(x) => x == b,
                Value::String(s) => s.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
                _ => false,
            },
        }
    }
}

fn as_text(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        Value::String(s) => Some(std::borrow::Cow::Borrowed(s)),
        Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(std::borrow::Cow::Owned(b.to_string())),
        _ => None,
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// One `field|modifiers: value(s)` entry of a selection.
#[derive(Debug, Clone)]
pub(crate) struct FieldMatch {
    pub field: FieldPath,
    /// `|all`: every value must match; otherwise any.
    all: bool,
    values: Vec<ValueMatch>,
}

impl FieldMatch {
    /// `key` is the map key as written (`detail.permission|contains|all`).
    pub fn compile(key: &str, value: &Node) -> Result<FieldMatch, Problem> {
        let mut parts = key.split('|');
        let field = parts.next().unwrap_or_default().trim();
        if field.is_empty() {
            return Err(Problem::at(
                value.line,
                format!("`{key}`: a field name is needed"),
            ));
        }
        let mut m = Modifiers::default();
        for modifier in parts {
            m.add(modifier)
                .map_err(|reason| Problem::at(value.line, format!("`{key}`: {reason}")))?;
        }
        let items: Vec<&Node> = match &value.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ => vec![value],
        };
        if items.is_empty() {
            return Err(Problem::at(
                value.line,
                format!("`{key}`: an empty list of values"),
            ));
        }
        let values = items
            .into_iter()
            .map(|item| m.compile(item))
            .collect::<Result<Vec<_>, String>>()
            .map_err(|reason| Problem::at(value.line, format!("`{key}`: {reason}")))?;
        Ok(FieldMatch {
            field: FieldPath::new(field),
            all: m.all,
            values,
        })
    }

    /// A keyword (a bare value in a keyword list): matches any string anywhere in the event.
    pub fn keyword(value: &Node) -> Result<ValueKeyword, Problem> {
        let m = Modifiers {
            op: Some(StrOp::Contains),
            ..Modifiers::default()
        };
        m.compile(value)
            .map(ValueKeyword)
            .map_err(|reason| Problem::at(value.line, reason))
    }

    /// The exact values of an `event` filter with no modifier, for the rule index.
    pub fn exact_values(&self) -> Option<Vec<String>> {
        if self.all {
            return None;
        }
        self.values
            .iter()
            .map(|v| match v {
                ValueMatch::Str {
                    op: StrOp::Exact,
                    needle,
                    cased: false,
                } => Some(needle.clone()),
                _ => None,
            })
            .collect()
    }

    pub fn matches(&self, event: &Value) -> bool {
        let mut found: Vec<&Value> = Vec::new();
        self.field.values(event, &mut found);
        let one = |m: &ValueMatch| match m {
            ValueMatch::Null => found.iter().all(|v| v.is_null()),
            ValueMatch::Exists(want) => found.iter().any(|v| !v.is_null()) == *want,
            other => found.iter().any(|v| other.matches(v)),
        };
        if self.all {
            self.values.iter().all(one)
        } else {
            self.values.iter().any(one)
        }
    }
}

/// A compiled keyword.
#[derive(Debug, Clone)]
pub(crate) struct ValueKeyword(ValueMatch);

impl ValueKeyword {
    pub fn matches(&self, event: &Value) -> bool {
        match event {
            Value::Object(map) => map.values().any(|v| self.matches(v)),
            Value::Array(items) => items.iter().any(|v| self.matches(v)),
            Value::String(_) => self.0.matches(event),
            _ => false,
        }
    }
}

#[derive(Debug, Default)]
struct Modifiers {
    op: Option<StrOp>,
    all: bool,
    cased: bool,
    re: bool,
    re_flags: String,
    cidr: bool,
    compare: Option<NumOp>,
    exists: bool,
}

impl Modifiers {
    fn add(&mut self, name: &str) -> Result<(), String> {
        let set_op = |op: &mut Option<StrOp>, new| {
            if op.is_some() {
                return Err("only one of contains, startswith and endswith".to_string());
            }
            *op = Some(new);
            Ok(())
        };
        match name {
            "contains" => set_op(&mut self.op, StrOp::Contains)?,
            "startswith" => set_op(&mut self.op, StrOp::StartsWith)?,
            "endswith" => set_op(&mut self.op, StrOp::EndsWith)?,
            "all" => self.all = true,
            "cased" => self.cased = true,
            "re" => self.re = true,
            "i" | "ignorecase" => self.re_flags.push('i'),
            "m" | "multiline" => self.re_flags.push('m'),
            "s" | "dotall" => self.re_flags.push('s'),
            "cidr" => self.cidr = true,
            "gt" => self.compare = Some(NumOp::Gt),
            "gte" => self.compare = Some(NumOp::Gte),
            "lt" => self.compare = Some(NumOp::Lt),
            "lte" => self.compare = Some(NumOp::Lte),
            "exists" => self.exists = true,
            other => return Err(format!("unknown modifier `{other}`")),
        }
        let kinds = [
            self.op.is_some() || self.cased,
            self.re,
            self.cidr,
            self.compare.is_some(),
            self.exists,
        ];
        if kinds.iter().filter(|k| **k).count() > 1 {
            return Err(format!(
                "modifier `{name}` cannot be combined with the others"
            ));
        }
        if !self.re_flags.is_empty() && !self.re {
            return Err(format!("modifier `{name}` belongs after `re`"));
        }
        Ok(())
    }

    fn compile(&self, node: &Node) -> Result<ValueMatch, String> {
        if let Kind::Seq(_) | Kind::Map(_) = node.kind {
            return Err(format!("a value must be a scalar, not {}", node.describe()));
        }
        if self.exists {
            return match node.kind {
                Kind::Bool(b) => Ok(ValueMatch::Exists(b)),
                _ => Err("`exists` takes true or false".into()),
            };
        }
        if node.kind == Kind::Null {
            if self.op.is_some() || self.re || self.cidr || self.compare.is_some() {
                return Err("null cannot take a modifier".into());
            }
            return Ok(ValueMatch::Null);
        }
        if let Some(op) = self.compare {
            return match &node.kind {
                Kind::Number(_, n) => Ok(ValueMatch::Compare(op, *n)),
                _ => Err(format!(
                    "a comparison needs a number, not {}",
                    node.describe()
                )),
            };
        }
        let text = node.as_text().unwrap_or_default();
        if self.re {
            let flags = if self.re_flags.is_empty() {
                String::new()
            } else {
                format!("(?{})", self.re_flags)
            };
            return Regex::new(&format!("{flags}{text}"))
                .map(ValueMatch::Regex)
                .map_err(|e| format!("bad regular expression: {e}"));
        }
        if self.cidr {
            return text
                .parse::<IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
                .map(ValueMatch::Cidr)
                .map_err(|_| format!("`{text}` is not a CIDR network"));
        }
        if self.op.is_none() && !self.cased {
            match node.kind {
                Kind::Number(ref t, n) => return Ok(ValueMatch::Number(n, t.clone())),
                Kind::Bool(b) => return Ok(ValueMatch::Bool(b)),
                _ => {}
            }
        }
        Ok(string_match(
            &text,
            self.op.unwrap_or(StrOp::Exact),
            self.cased,
        ))
    }
}

enum Piece {
    Text(String),
    Star,
    One,
}

fn pieces(value: &str) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut text = String::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some('*' | '?' | '\\')) => {
                text.extend(chars.next());
            }
            '*' | '?' => {
                if !text.is_empty() {
                    out.push(Piece::Text(std::mem::take(&mut text)));
                }
                out.push(if c == '*' { Piece::Star } else { Piece::One });
            }
            other => text.push(other),
        }
    }
    if !text.is_empty() {
        out.push(Piece::Text(text));
    }
    out
}

fn string_match(value: &str, op: StrOp, cased: bool) -> ValueMatch {
    let parts = pieces(value);
    if parts.iter().all(|p| matches!(p, Piece::Text(_))) {
        let literal: String = parts
            .into_iter()
            .map(|p| match p {
                Piece::Text(t) => t,
                _ => String::new(),
            })
            .collect();
        return ValueMatch::Str {
            op,
            needle: if cased {
                literal
            } else {
                literal.to_lowercase()
            },
            cased,
        };
    }
    let mut pattern = String::from(if cased { "(?s)" } else { "(?is)" });
    if matches!(op, StrOp::Exact | StrOp::StartsWith) {
        pattern.push('^');
    }
    for p in parts {
        match p {
            Piece::Text(t) => pattern.push_str(&regex::escape(&t)),
            Piece::Star => pattern.push_str(".*"),
            Piece::One => pattern.push('.'),
        }
    }
    if matches!(op, StrOp::Exact | StrOp::EndsWith) {
        pattern.push('$');
    }
    // Built from escaped literals and `.`/`.*` only, so it always compiles.
    match Regex::new(&pattern) {
        Ok(re) => ValueMatch::Regex(re),
        Err(_) => ValueMatch::Str {
            op,
            needle: value.to_lowercase(),
            cased: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_documents;
    use serde_json::json;

    fn field(yaml: &str) -> Result<FieldMatch, Problem> {
        let doc = parse_documents(yaml).unwrap().remove(0);
        let Kind::Map(entries) = doc.kind else {
            panic!()
        };
        let (key, value) = &entries[0];
        FieldMatch::compile(key, value)
    }

    fn hit(yaml: &str, event: Value) -> bool {
        field(yaml).unwrap().matches(&event)
    }

    #[test]
    fn plain_values_are_case_insensitive_with_wildcards() {
        assert!(hit(
            "event: login_failure",
            json!({"event": "LOGIN_FAILURE"})
        ));
        assert!(!hit(
            "event: login_failure",
            json!({"event": "login_failures"})
        ));
        assert!(hit("event: 'login_*'", json!({"event": "login_locked"})));
        assert!(hit(
            "event: 'login_?ocked'",
            json!({"event": "login_locked"})
        ));
        assert!(!hit("event: 'login_\\*'", json!({"event": "login_locked"})));
        assert!(hit("event: 'login_\\*'", json!({"event": "login_*"})));
        assert!(hit("event: [a, b]", json!({"event": "b"})));
        assert!(!hit("event|cased: Login", json!({"event": "login"})));
        assert!(hit("event|cased: Login", json!({"event": "Login"})));
    }

    #[test]
    fn string_modifiers() {
        let e = json!({"detail": {"permission": "tokens:detokenize"}});
        assert!(hit("detail.permission|contains: DETOK", e.clone()));
        assert!(hit("detail.permission|startswith: 'tokens:'", e.clone()));
        assert!(hit("detail.permission|endswith: ':detokenize'", e.clone()));
        assert!(!hit("detail.permission|endswith: tokens", e.clone()));
        assert!(hit("detail.permission|contains: 'ok*det'", e.clone()));
        assert!(hit(
            "detail.permission|contains|all: [tokens, detok]",
            e.clone()
        ));
        assert!(!hit(
            "detail.permission|contains|all: [tokens, users]",
            e.clone()
        ));
        assert!(hit("detail.permission|contains: [users, detok]", e));
    }

    #[test]
    fn regex_and_flags() {
        let e =
            json!({"detail": {"rules": [{"id": 920100}, {"id": 942100, "msg": "SQL Injection"}]}});
        assert!(hit("detail.rules.id|re: '^942\\d{3}$'", e.clone()));
        assert!(!hit("detail.rules.id|re: '^941'", e.clone()));
        assert!(!hit("detail.rules.msg|re: '^sql'", e.clone()));
        assert!(hit("detail.rules.msg|re|i: '^sql'", e));
        assert!(field("a|re: '('")
            .unwrap_err()
            .reason
            .contains("regular expression"));
        assert!(field("a|i: x").is_err());
    }

    #[test]
    fn cidr() {
        assert!(hit(
            "source_ip|cidr: 10.0.0.0/8",
            json!({"source_ip": "10.1.2.3"})
        ));
        assert!(!hit(
            "source_ip|cidr: 10.0.0.0/8",
            json!({"source_ip": "11.1.2.3"})
        ));
        assert!(hit(
            "source_ip|cidr: ['192.168.0.0/16', '2001:db8::/32']",
            json!({"source_ip": "2001:db8::1"})
        ));
        assert!(!hit("source_ip|cidr: 10.0.0.0/8", json!({})));
        assert!(field("source_ip|cidr: nope").is_err());
    }

    #[test]
    fn numbers() {
        let e = json!({"detail": {"amount_minor": 100, "text": "250"}});
        assert!(hit("detail.amount_minor|lte: 100", e.clone()));
        assert!(!hit("detail.amount_minor|lt: 100", e.clone()));
        assert!(hit("detail.amount_minor|gte: 100", e.clone()));
        assert!(!hit("detail.amount_minor|gt: 100", e.clone()));
        assert!(hit("detail.text|gt: 200", e.clone()));
        assert!(hit("detail.amount_minor: 100", e.clone()));
        assert!(hit("detail.text: 250", e.clone()));
        assert!(!hit("detail.amount_minor|gt: 1", json!({"detail": {}})));
        assert!(field("a|gt: many").unwrap_err().reason.contains("number"));
    }

    #[test]
    fn null_exists_and_bool() {
        assert!(hit("user_id: null", json!({"event": "x"})));
        assert!(hit("user_id: null", json!({"user_id": null})));
        assert!(!hit("user_id: null", json!({"user_id": "u1"})));
        assert!(hit("user_id|exists: true", json!({"user_id": "u1"})));
        assert!(hit("user_id|exists: false", json!({})));
        assert!(hit("detail.mfa: true", json!({"detail": {"mfa": true}})));
        assert!(!hit("detail.mfa: true", json!({"detail": {"mfa": false}})));
        assert!(hit("detail.mfa: [true, null]", json!({"detail": {}})));
    }

    #[test]
    fn bad_modifiers_are_refused() {
        assert!(field("a|base64: x")
            .unwrap_err()
            .reason
            .contains("unknown modifier"));
        assert!(field("a|contains|startswith: x").is_err());
        assert!(field("a|contains|re: x").is_err());
        assert!(field("a|contains: null").is_err());
        assert!(field("a: []").is_err());
        assert_eq!(field("\n\na|nope: x").unwrap_err().line, Some(3));
    }

    #[test]
    fn top_level_dotted_keys_win_over_paths() {
        assert!(hit("source.ip: 1.2.3.4", json!({"source.ip": "1.2.3.4"})));
        assert!(hit(
            "source.ip: 1.2.3.4",
            json!({"source": {"ip": "1.2.3.4"}})
        ));
        let p = FieldPath::new("detail.rules.id");
        assert_eq!(
            p.group_value(&json!({"detail": {"rules": [{"id": 1}, {"id": 2}]}})),
            "1,2"
        );
    }
}
