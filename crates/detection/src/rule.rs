//! One Sigma document, parsed and compiled: a detection rule or a correlation rule.
//!
//! Every rule needs a `title`, and an `id` or a `name` (the id falls back to the name, as
//! in the spec's examples). `level` may be left out only on a rule that never alerts on its
//! own (one referenced by a correlation with `generate: false`); the engine checks that at
//! load. MITRE ATT&CK technique ids are read from `attack.tNNNN[.NNN]` tags.
//! MITRE ATT&CK technique ids from `attack.tNNNN[.NNN]` tags.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::condition::{self, Cond};
use crate::error::Problem;
use crate::matcher::{FieldMatch, FieldPath, ValueKeyword};
use crate::yaml::{Kind, Node};

/// Sigma's levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }

    fn parse(text: &str) -> Option<Level> {
        Some(match text {
            "informational" => Level::Informational,
            "low" => Level::Low,
            "medium" => Level::Medium,
            "high" => Level::High,
            "critical" => Level::Critical,
            _ => return None,
        })
    }
}

/// What every loaded rule says about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleInfo {
    pub id: String,
    /// Sigma's `name`, by which correlations may reference the rule.
    pub name: Option<String>,
    pub title: String,
    pub level: Level,
    pub tags: Vec<String>,
    /// ATT&CK technique ids from the tags, upper-case: `T1110.001`.
    pub techniques: Vec<String>,
    /// `detection`, `event_count`, `value_count`, `temporal` or `temporal_ordered`.
    pub kind: &'static str,
    /// The file the rule came from (`builtin:<name>` for the compiled-in set).
    pub file: String,
    pub line: usize,
    /// False when the rule has no `level` (it then reads `informational`).
    #[serde(skip)]
    pub(crate) level_given: bool,
}

/// A selection: any of its alternatives (a list of maps is an OR of ANDs).
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    alternatives: Vec<Alternative>,
}

#[derive(Debug, Clone)]
enum Alternative {
    /// Every field matches.
    Fields(Vec<FieldMatch>),
    Keyword(ValueKeyword),
}

impl Selection {
    fn compile(node: &Node) -> Result<Selection, Problem> {
        let fields = |entries: &[(String, Node)]| {
            entries
                .iter()
                .map(|(k, v)| FieldMatch::compile(k, v))
                .collect::<Result<Vec<_>, _>>()
                .map(Alternative::Fields)
        };
        let alternatives = match &node.kind {
            Kind::Map(entries) if !entries.is_empty() => vec![fields(entries)?],
            Kind::Seq(items) if !items.is_empty() => items
                .iter()
                .map(|item| match &item.kind {
                    Kind::Map(entries) if !entries.is_empty() => fields(entries),
                    Kind::Seq(_) | Kind::Map(_) => Err(Problem::at(
                        item.line,
                        "a selection list holds maps or keywords",
                    )),
                    _ => FieldMatch::keyword(item).map(Alternative::Keyword),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => {
                return Err(Problem::at(
                    node.line,
                    format!(
                        "a selection is a map or a list, not {}",
                        if matches!(node.kind, Kind::Map(_) | Kind::Seq(_)) {
                            "an empty one"
                        } else {
                            node.describe()
                        }
                    ),
                ))
            }
        };
        Ok(Selection { alternatives })
    }

    fn matches(&self, event: &Value) -> bool {
        self.alternatives.iter().any(|alt| match alt {
            Alternative::Fields(fields) => fields.iter().all(|f| f.matches(event)),
            Alternative::Keyword(k) => k.matches(event),
        })
    }

    /// The `event` names an event must have to match, when the selection says.
    fn events(&self) -> Option<BTreeSet<String>> {
        let mut all = BTreeSet::new();
        for alt in &self.alternatives {
            let Alternative::Fields(fields) = alt else {
                return None;
            };
            let names = fields
                .iter()
                .filter(|f| f.field.name() == "event")
                .find_map(FieldMatch::exact_values)?;
            all.extend(names);
        }
        Some(all)
    }
}

/// A compiled detection rule.
#[derive(Debug, Clone)]
pub(crate) struct Detection {
    pub info: RuleInfo,
    selections: Vec<Selection>,
    condition: Cond,
}

impl Detection {
    pub fn matches(&self, event: &Value) -> bool {
        let mut memo: Vec<Option<bool>> = vec![None; self.selections.len()];
        self.condition
            .eval(&mut |i| *memo[i].get_or_insert_with(|| self.selections[i].matches(event)))
    }

    /// Lower-cased event names outside which the rule never matches; `None` when it
    /// may match any event.
    pub fn events(&self) -> Option<BTreeSet<String>> {
        let per: Vec<Option<BTreeSet<String>>> =
            self.selections.iter().map(Selection::events).collect();
        required(&self.condition, &per)
    }
}

fn required(c: &Cond, per: &[Option<BTreeSet<String>>]) -> Option<BTreeSet<String>> {
    let union = |sets: Vec<Option<BTreeSet<String>>>| {
        let mut all = BTreeSet::new();
        for s in sets {
            all.extend(s?);
        }
        Some(all)
    };
    match c {
        Cond::Sel(i) => per[*i].clone(),
        Cond::Not(_) => None,
        Cond::Or(cs) => union(cs.iter().map(|c| required(c, per)).collect()),
        Cond::AtLeast(_, ids) => union(ids.iter().map(|i| per[*i].clone()).collect()),
        Cond::And(cs) => cs
            .iter()
            .filter_map(|c| required(c, per))
            .reduce(|a, b| a.intersection(&b).cloned().collect()),
    }
}

/// Correlation types.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum CorrelationKind {
    EventCount,
    /// Distinct values of the field.
    ValueCount(FieldPath),
    /// Every referenced rule within the timespan (or as many as the condition says).
    Temporal,
    /// The referenced rules in the order listed.
    TemporalOrdered,
}

/// `gte`, `gt`, `lte`, `lt`, `eq`, `neq`; several keys must all hold (two form a range);
/// `range: 5..10` is inclusive.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Threshold {
    checks: Vec<(&'static str, f64)>,
}

impl Threshold {
    pub fn holds(&self, v: f64) -> bool {
        self.checks.iter().all(|(op, n)| match *op {
            "gt" => v > *n,
            "gte" => v >= *n,
            "lt" => v < *n,
            "lte" => v <= *n,
            "eq" => v == *n,
            "neq" => v != *n,
            _ => false,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }
}

/// A correlation rule before its references are resolved.
#[derive(Debug, Clone)]
pub(crate) struct CorrelationDef {
    pub info: RuleInfo,
    pub kind: CorrelationKind,
    /// The referenced rules' ids or names, with the line of each.
    pub rules: Vec<(String, usize)>,
    /// Group-by field names, each with its per-rule field from `aliases`.
    pub group_by: Vec<(String, BTreeMap<String, FieldPath>)>,
    pub timespan_ms: i64,
    pub threshold: Threshold,
    pub generate: bool,
}

pub(crate) enum Document {
    Detection(Detection),
    Correlation(CorrelationDef),
}

fn text_of(doc: &Node, key: &str, required: bool) -> Result<Option<String>, Problem> {
    match doc.get(key) {
        None if required => Err(Problem::at(doc.line, format!("`{key}` is missing"))),
        None => Ok(None),
        Some(node) => match &node.kind {
            Kind::String(s) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
            Kind::Number(s, _) => Ok(Some(s.clone())),
            _ => Err(Problem::at(
                node.line,
                format!(
                    "`{key}` must be a non-empty string, not {}",
                    node.describe()
                ),
            )),
        },
    }
}

/// `attack.t1110.001` → `T1110.001`; other tags give nothing.
pub(crate) fn technique(tag: &str) -> Option<String> {
    let rest = tag.strip_prefix("attack.")?;
    let id = rest.strip_prefix('t').or_else(|| rest.strip_prefix('T'))?;
    let (main, sub) = match id.split_once('.') {
        Some((m, s)) => (m, Some(s)),
        None => (id, None),
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(main, 4) || !sub.is_none_or(|s| digits(s, 3)) {
        return None;
    }
    Some(format!("T{}", id.to_ascii_uppercase()))
}

fn info(doc: &Node, kind: &'static str, file: &str) -> Result<RuleInfo, Problem> {
    let title = text_of(doc, "title", true)?.unwrap_or_default();
    let name = text_of(doc, "name", false)?;
    let id = match (text_of(doc, "id", false)?, &name) {
        (Some(id), _) => id,
        (None, Some(name)) => name.clone(),
        (None, None) => return Err(Problem::at(doc.line, "`id` or `name` is missing")),
    };
    let level_node = doc.get("level");
    let level = match level_node {
        None => Level::Informational,
        Some(node) => node
            .as_text()
            .and_then(|t| Level::parse(&t))
            .ok_or_else(|| {
                Problem::at(
                    node.line,
                    "`level` is one of informational, low, medium, high, critical",
                )
            })?,
    };
    let mut tags = Vec::new();
    if let Some(node) = doc.get("tags") {
        let Kind::Seq(items) = &node.kind else {
            return Err(Problem::at(node.line, "`tags` is a list"));
        };
        for item in items {
            match item.as_text() {
                Some(t) => tags.push(t.to_ascii_lowercase()),
                None => return Err(Problem::at(item.line, "a tag is a string")),
            }
        }
    }
    let mut techniques: Vec<String> = Vec::new();
    for t in tags.iter().filter_map(|t| technique(t)) {
        if !techniques.contains(&t) {
            techniques.push(t);
        }
    }
    Ok(RuleInfo {
        id,
        name,
        title,
        level,
        tags,
        techniques,
        kind,
        file: file.to_string(),
        line: doc.line,
        level_given: level_node.is_some(),
    })
}

/// Parses one YAML document of a rule file.
pub(crate) fn parse_document(doc: &Node, file: &str) -> Result<Document, Problem> {
    if !matches!(doc.kind, Kind::Map(_)) {
        return Err(Problem::at(doc.line, "a rule is a YAML map"));
    }
    if doc.get("correlation").is_some() {
        return parse_correlation(doc, file).map(Document::Correlation);
    }
    if doc.get("filter").is_some() {
        return Err(Problem::at(
            doc.line,
            "Sigma filter documents are not supported yet",
        ));
    }
    let detection = doc
        .get("detection")
        .ok_or_else(|| Problem::at(doc.line, "neither `detection` nor `correlation`"))?;
    let info = info(doc, "detection", file)?;
    if let Some(logsource) = doc.get("logsource") {
        if !matches!(logsource.kind, Kind::Map(_)) {
            return Err(Problem::at(logsource.line, "`logsource` is a map"));
        }
    }
    let Kind::Map(entries) = &detection.kind else {
        return Err(Problem::at(detection.line, "`detection` is a map"));
    };
    let mut names = Vec::new();
    let mut selections = Vec::new();
    let mut condition_node = None;
    for (name, node) in entries {
        if name == "condition" {
            condition_node = Some(node);
        } else if name == "timeframe" {
            return Err(Problem::at(
                node.line,
                "`timeframe` is not supported; use a correlation rule",
            ));
        } else {
            names.push(name.clone());
            selections.push(Selection::compile(node)?);
        }
    }
    let condition_node =
        condition_node.ok_or_else(|| Problem::at(detection.line, "`condition` is missing"))?;
    // A list of conditions is an OR of them.
    let texts: Vec<&Node> = match &condition_node.kind {
        Kind::Seq(items) => items.iter().collect(),
        _ => vec![condition_node],
    };
    let mut conds = Vec::new();
    for t in texts {
        let Kind::String(text) = &t.kind else {
            return Err(Problem::at(t.line, "`condition` is a string"));
        };
        conds.push(
            condition::parse(text, &names)
                .map_err(|e| Problem::at(t.line, format!("condition: {e}")))?,
        );
    }
    let condition = if conds.len() == 1 {
        conds.remove(0)
    } else {
        Cond::Or(conds)
    };
    Ok(Document::Detection(Detection {
        info,
        selections,
        condition,
    }))
}

/// `30s`, `5m`, `1h`, `1d`, `1w` in milliseconds.
pub(crate) fn timespan_ms(text: &str) -> Option<i64> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let number: i64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    let ms = match unit {
        's' => 1_000,
        'm' => 60_000,
        'h' => 3_600_000,
        'd' => 86_400_000,
        'w' => 7 * 86_400_000,
        _ => return None,
    };
    (number > 0).then(|| number.checked_mul(ms)).flatten()
}

fn parse_correlation(doc: &Node, file: &str) -> Result<CorrelationDef, Problem> {
    let corr = doc.get("correlation").unwrap_or(doc);
    if !matches!(corr.kind, Kind::Map(_)) {
        return Err(Problem::at(corr.line, "`correlation` is a map"));
    }
    let type_node = corr
        .get("type")
        .ok_or_else(|| Problem::at(corr.line, "`correlation.type` is missing"))?;
    let type_text = type_node.as_text().unwrap_or_default();
    let condition_node = corr.get("condition");
    let mut threshold = Threshold::default();
    let mut field = None;
    if let Some(node) = condition_node {
        let Kind::Map(entries) = &node.kind else {
            return Err(Problem::at(
                node.line,
                "`condition` is a map such as `gte: 5`",
            ));
        };
        for (key, value) in entries {
            match key.as_str() {
                "field" => {
                    field = Some(value.as_text().ok_or_else(|| {
                        Problem::at(value.line, "`condition.field` is a field name")
                    })?)
                }
                "range" => {
                    let text = value.as_text().unwrap_or_default();
                    let (lo, hi) = text
                        .split_once("..")
                        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
                        .ok_or_else(|| Problem::at(value.line, "`range` is written `5..10`"))?;
                    threshold.checks.push(("gte", lo));
                    threshold.checks.push(("lte", hi));
                }
                "gt" | "gte" | "lt" | "lte" | "eq" | "neq" => {
                    let Kind::Number(_, n) = value.kind else {
                        return Err(Problem::at(value.line, format!("`{key}` needs a number")));
                    };
                    let op = match key.as_str() {
                        "gt" => "gt",
                        "gte" => "gte",
                        "lt" => "lt",
                        "lte" => "lte",
                        "eq" => "eq",
                        _ => "neq",
                    };
                    threshold.checks.push((op, n));
                }
                other => {
                    return Err(Problem::at(
                        value.line,
                        format!("unknown condition key `{other}`"),
                    ))
                }
            }
        }
    }
    let (kind, kind_name) = match type_text.as_str() {
        "event_count" => (CorrelationKind::EventCount, "event_count"),
        "value_count" => {
            let field = field.ok_or_else(|| {
                Problem::at(
                    condition_node.map_or(corr.line, |n| n.line),
                    "a value_count needs `condition.field`",
                )
            })?;
            (
                CorrelationKind::ValueCount(FieldPath::new(&field)),
                "value_count",
            )
        }
        "temporal" => (CorrelationKind::Temporal, "temporal"),
        "temporal_ordered" => (CorrelationKind::TemporalOrdered, "temporal_ordered"),
        other => {
            return Err(Problem::at(
                type_node.line,
                format!(
                    "correlation type `{other}` is not supported (event_count, value_count, temporal, temporal_ordered)"
                ),
            ))
        }
    };
    let temporal = matches!(
        kind,
        CorrelationKind::Temporal | CorrelationKind::TemporalOrdered
    );
    if threshold.is_empty() && !temporal {
        return Err(Problem::at(
            condition_node.map_or(corr.line, |n| n.line),
            "the correlation needs a `condition` such as `gte: 5`",
        ));
    }
    let info = info(doc, kind_name, file)?;
    let rules_node = corr
        .get("rules")
        .ok_or_else(|| Problem::at(corr.line, "`correlation.rules` is missing"))?;
    let rules: Vec<(String, usize)> = match &rules_node.kind {
        Kind::Seq(items) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_text()
                    .map(|t| (t, i.line))
                    .ok_or_else(|| Problem::at(i.line, "a rule reference is an id or a name"))
            })
            .collect::<Result<_, _>>()?,
        Kind::String(s) => vec![(s.clone(), rules_node.line)],
        _ => {
            return Err(Problem::at(
                rules_node.line,
                "`rules` is a list of ids or names",
            ))
        }
    };
    let timespan_node = corr
        .get("timespan")
        .ok_or_else(|| Problem::at(corr.line, "`correlation.timespan` is missing"))?;
    let timespan_ms = timespan_node
        .as_text()
        .and_then(|t| timespan_ms(&t))
        .ok_or_else(|| {
            Problem::at(
                timespan_node.line,
                "`timespan` is a number and a unit: 30s, 5m, 1h, 1d",
            )
        })?;
    let mut aliases: BTreeMap<String, BTreeMap<String, FieldPath>> = BTreeMap::new();
    if let Some(node) = corr.get("aliases") {
        let Kind::Map(entries) = &node.kind else {
            return Err(Problem::at(node.line, "`aliases` is a map"));
        };
        for (alias, per_rule) in entries {
            let Kind::Map(fields) = &per_rule.kind else {
                return Err(Problem::at(
                    per_rule.line,
                    "an alias maps rule names to fields",
                ));
            };
            let mut map = BTreeMap::new();
            for (rule, f) in fields {
                let f = f
                    .as_text()
                    .ok_or_else(|| Problem::at(f.line, "an alias field is a field name"))?;
                map.insert(rule.clone(), FieldPath::new(&f));
            }
            aliases.insert(alias.clone(), map);
        }
    }
    let mut group_by = Vec::new();
    if let Some(node) = corr.get("group-by") {
        let items: Vec<&Node> = match &node.kind {
            Kind::Seq(items) => items.iter().collect(),
            Kind::String(_) => vec![node],
            _ => return Err(Problem::at(node.line, "`group-by` is a list of fields")),
        };
        for item in items {
            let name = item
                .as_text()
                .ok_or_else(|| Problem::at(item.line, "a group-by entry is a field name"))?;
            let per_rule = aliases.remove(&name).unwrap_or_default();
            group_by.push((name, per_rule));
        }
    }
    if let Some((alias, _)) = aliases.into_iter().next() {
        return Err(Problem::at(
            corr.line,
            format!("alias `{alias}` is not in `group-by`"),
        ));
    }
    let generate = match corr.get("generate").or_else(|| doc.get("generate")) {
        None => false,
        Some(Node {
            kind: Kind::Bool(b),
            ..
        }) => *b,
        Some(n) => return Err(Problem::at(n.line, "`generate` is true or false")),
    };
    Ok(CorrelationDef {
        info,
        kind,
        rules,
        group_by,
        timespan_ms,
        threshold,
        generate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_documents;
    use serde_json::json;

    fn detection(yaml: &str) -> Result<Detection, Problem> {
        let doc = parse_documents(yaml).unwrap().remove(0);
        match parse_document(&doc, "t.yml")? {
            Document::Detection(d) => Ok(d),
            Document::Correlation(_) => panic!("a correlation"),
        }
    }

    const HEAD: &str = "title: t\nid: r1\nlevel: high\n";

    #[test]
    fn techniques_come_from_attack_tags() {
        assert_eq!(technique("attack.t1110.001").as_deref(), Some("T1110.001"));
        assert_eq!(technique("attack.t1621").as_deref(), Some("T1621"));
        assert_eq!(technique("attack.credential_access"), None);
        assert_eq!(technique("attack.t11"), None);
        assert_eq!(technique("cve.2021-44228"), None);
        let d = detection(&format!(
            "{HEAD}tags: [attack.credential_access, attack.t1110.001, attack.T1110.003]\ndetection:\n  sel: {{event: x}}\n  condition: sel\n"
        ))
        .unwrap();
        assert_eq!(d.info.techniques, ["T1110.001", "T1110.003"]);
        assert_eq!(d.info.level, Level::High);
    }

    #[test]
    fn maps_are_and_lists_are_or() {
        let d = detection(&format!(
            "{HEAD}detection:\n  sel:\n    event: login_failure\n    source_ip|cidr: 10.0.0.0/8\n  alt:\n    - user_id: u1\n    - user_id: u2\n  condition: sel and alt\n"
        ))
        .unwrap();
        let e = |ip: &str, user: &str| json!({"event": "login_failure", "source_ip": ip, "user_id": user});
        assert!(d.matches(&e("10.0.0.1", "u2")));
        assert!(!d.matches(&e("11.0.0.1", "u2")));
        assert!(!d.matches(&e("10.0.0.1", "u3")));
        assert_eq!(d.events(), Some(["login_failure".to_string()].into()));
    }

    #[test]
    fn keywords_search_every_string() {
        let d = detection(&format!(
            "{HEAD}detection:\n  words:\n    - 'sqlmap'\n    - 'nikto'\n  condition: words\n"
        ))
        .unwrap();
        assert!(d.matches(&json!({"detail": {"user_agent": "SQLMap/1.7"}})));
        assert!(!d.matches(&json!({"detail": {"user_agent": "curl"}})));
        assert_eq!(d.events(), None);
    }

    #[test]
    fn condition_lists_are_or_and_the_index_follows_the_condition() {
        let d = detection(&format!(
            "{HEAD}detection:\n  a: {{event: [a1, a2]}}\n  b: {{event: b1}}\n  other: {{user_id: u}}\n  condition: [a, b]\n"
        ))
        .unwrap();
        assert!(d.matches(&json!({"event": "b1"})));
        let names: BTreeSet<String> = ["a1", "a2", "b1"].iter().map(|s| s.to_string()).collect();
        assert_eq!(d.events(), Some(names));
        let d = detection(&format!(
            "{HEAD}detection:\n  a: {{event: a1}}\n  other: {{user_id: u}}\n  condition: a or other\n"
        ))
        .unwrap();
        assert_eq!(d.events(), None);
        let d = detection(&format!(
            "{HEAD}detection:\n  a: {{event: a1}}\n  other: {{user_id: u}}\n  condition: other and not a\n"
        ))
        .unwrap();
        assert_eq!(d.events(), None);
        let d = detection(&format!(
            "{HEAD}detection:\n  a: {{event: a1}}\n  other: {{user_id: u}}\n  condition: other and a\n"
        ))
        .unwrap();
        assert_eq!(d.events(), Some(["a1".to_string()].into()));
    }

    #[test]
    fn errors_carry_the_line_of_the_problem() {
        let line = |yaml: &str| detection(yaml).unwrap_err();
        let e = line(&format!(
            "{HEAD}detection:\n  sel:\n    event: x\n    detail.x|bogus: 1\n  condition: sel\n"
        ));
        assert_eq!(e.line, Some(7));
        assert!(
            e.reason.contains("unknown modifier `bogus`"),
            "{}",
            e.reason
        );
        let e = line(&format!(
            "{HEAD}detection:\n  sel: {{event: x}}\n  condition: sel and nope\n"
        ));
        assert_eq!(e.line, Some(6));
        assert!(e.reason.contains("no selection named `nope`"));
        let e = line(&format!("{HEAD}detection:\n  sel: {{event: x}}\n"));
        assert!(e.reason.contains("`condition` is missing"));
        let e = line(
            "title: t\nid: r1\nlevel: severe\ndetection:\n  sel: {event: x}\n  condition: sel\n",
        );
        assert_eq!(e.line, Some(3));
        let e = line("id: r1\nlevel: low\ndetection:\n  sel: {event: x}\n  condition: sel\n");
        assert!(e.reason.contains("`title` is missing"));
        let e = line("title: t\nlevel: low\ndetection:\n  sel: {event: x}\n  condition: sel\n");
        assert!(e.reason.contains("`id` or `name`"));
        let d = detection("title: t\nname: n\ndetection:\n  sel: {event: x}\n  condition: sel\n")
            .unwrap();
        assert_eq!(d.info.id, "n");
        assert!(!d.info.level_given);
        let e = line(&format!("{HEAD}detection:\n  sel: x\n  condition: sel\n"));
        assert_eq!(e.line, Some(5));
        let e = line(&format!(
            "{HEAD}detection:\n  sel: {{event: x}}\n  timeframe: 5m\n  condition: sel | count() > 5\n"
        ));
        assert!(e.reason.contains("correlation"));
    }

    #[test]
    fn timespans() {
        assert_eq!(timespan_ms("30s"), Some(30_000));
        assert_eq!(timespan_ms("5m"), Some(300_000));
        assert_eq!(timespan_ms("1h"), Some(3_600_000));
        assert_eq!(timespan_ms("1d"), Some(86_400_000));
        assert_eq!(timespan_ms("2w"), Some(14 * 86_400_000));
        assert_eq!(timespan_ms("5"), None);
        assert_eq!(timespan_ms("0m"), None);
        assert_eq!(timespan_ms("m"), None);
        assert_eq!(timespan_ms("5y"), None);
    }

    fn correlation(yaml: &str) -> Result<CorrelationDef, Problem> {
        let doc = parse_documents(yaml).unwrap().remove(0);
        match parse_document(&doc, "t.yml")? {
            Document::Correlation(c) => Ok(c),
            Document::Detection(_) => panic!("a detection"),
        }
    }

    #[test]
    fn correlation_fields() {
        let c = correlation(
            "title: spray\nid: c1\nlevel: high\ncorrelation:\n  type: value_count\n  rules: [r1]\n  group-by: [source_ip]\n  timespan: 10m\n  condition:\n    field: user_id\n    gte: 5\n",
        )
        .unwrap();
        assert_eq!(
            c.kind,
            CorrelationKind::ValueCount(FieldPath::new("user_id"))
        );
        assert_eq!(c.timespan_ms, 600_000);
        assert!(c.threshold.holds(5.0) && !c.threshold.holds(4.0));
        assert!(!c.generate);
        let c = correlation(
            "title: r\nid: c2\nlevel: low\ncorrelation:\n  type: event_count\n  rules: r1\n  timespan: 1h\n  generate: true\n  condition: {range: 3..5}\n",
        )
        .unwrap();
        assert!(c.threshold.holds(3.0) && c.threshold.holds(5.0) && !c.threshold.holds(6.0));
        assert!(c.generate);
        let c = correlation(
            "title: r\nid: c3\nlevel: low\ncorrelation:\n  type: event_count\n  rules: r1\n  timespan: 1h\n  condition: {gt: 2, lt: 5, neq: 3}\n",
        )
        .unwrap();
        assert!(c.threshold.holds(4.0) && !c.threshold.holds(3.0) && !c.threshold.holds(5.0));
        let c = correlation(
            "title: r\nid: c4\nlevel: low\ncorrelation:\n  type: temporal\n  rules: [a, b]\n  group-by: [key]\n  aliases:\n    key:\n      a: api_key_id\n      b: detail.revoked_key_id\n  timespan: 1d\n",
        )
        .unwrap();
        assert_eq!(c.group_by[0].1.len(), 2);
    }

    #[test]
    fn correlation_errors() {
        let err = |body: &str| {
            correlation(&format!(
                "title: r\nid: c\nlevel: low\ncorrelation:\n{body}"
            ))
            .unwrap_err()
        };
        let e = err("  type: value_sum\n  rules: [a]\n  timespan: 1h\n  condition: {gte: 1}\n");
        assert_eq!(e.line, Some(5));
        assert!(e.reason.contains("not supported"));
        let e =
            err("  type: event_count\n  rules: [a]\n  timespan: 1 hour\n  condition: {gte: 1}\n");
        assert_eq!(e.line, Some(7));
        let e = err("  type: value_count\n  rules: [a]\n  timespan: 1h\n  condition: {gte: 1}\n");
        assert!(e.reason.contains("condition.field"));
        let e = err("  type: event_count\n  rules: [a]\n  timespan: 1h\n");
        assert!(e.reason.contains("needs a `condition`"));
        let e = err("  type: event_count\n  rules: [a]\n  timespan: 1h\n  condition: {most: 1}\n");
        assert!(e.reason.contains("unknown condition key"));
        let e = err("  type: event_count\n  timespan: 1h\n  condition: {gte: 1}\n");
        assert!(e.reason.contains("rules"));
    }
}
