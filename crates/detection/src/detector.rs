//! The engine: loads rule files, resolves correlation references, and evaluates events.
//!
//! Detection rules are indexed by the `event` names they filter on, so an event is only
//! tried against rules that can match it (plus the few that name no event). Regexes and
//! CIDRs are compiled at load. Correlations run in dependency order, so one that
//! references another sees its alerts from the same event.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use crate::error::{Problem, RuleError};
use crate::matcher::FieldPath;
use crate::rule::{parse_document, CorrelationDef, Detection, Document, Level, RuleInfo};
use crate::window::{Limits, Match, Windows};
use crate::{builtin, yaml};

/// One alert: a detection rule that matched an event, or a correlation whose condition
/// held in a group's window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub rule_id: String,
    pub title: String,
    pub level: Level,
    /// ATT&CK technique ids (`T1110.001`); a correlation without its own `attack.*` tags
    /// takes those of the rules it references.
    pub techniques: Vec<String>,
    /// The group-by fields and their values. For a detection rule: whichever of
    /// `tenant_id`, `user_id`, `api_key_id` and `source_ip` the event has.
    pub group: BTreeMap<String, String>,
    /// Events counted (`event_count`), distinct values (`value_count`), referenced rules
    /// seen (`temporal`); 1 for a detection rule.
    pub count: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// Ids (the event's `id`, else its `request_id`) of the newest events in the window,
    /// at most ten, oldest first.
    pub event_ids: Vec<String>,
}

/// Which rule a correlation's slot listens to.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    Detection(usize),
    Correlation(usize),
}

struct Correlation {
    def: CorrelationDef,
    techniques: Vec<String>,
    /// Group-by fields, one list per slot (aliases give each referenced rule its field).
    group_fields: Vec<Vec<FieldPath>>,
    sources: Vec<Source>,
    windows: Windows,
}

/// Loaded rules and their correlation state.
pub struct Detector {
    detections: Vec<Detection>,
    /// Detection rules that alert on their own (not only through a correlation).
    detection_alerts: Vec<bool>,
    by_event: HashMap<String, Vec<usize>>,
    any_event: Vec<usize>,
    /// In dependency order.
    correlations: Vec<Correlation>,
    correlation_alerts: Vec<bool>,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("detections", &self.detections.len())
            .field("correlations", &self.correlations.len())
            .finish()
    }
}

const IDENTITY_FIELDS: [&str; 4] = ["tenant_id", "user_id", "api_key_id", "source_ip"];

fn event_id(event: &Value) -> Option<String> {
    ["id", "request_id"]
        .iter()
        .find_map(|k| match event.get(*k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
}

impl Detector {
    /// Loads the built-in rules (when `builtin`) and every `*.yml`/`*.yaml` file of
    /// `rules_dir` (sorted by name). Any rule that does not parse, a duplicate id or name,
    /// or a correlation referencing an unknown rule fails the whole load.
    pub fn load(builtin: bool, rules_dir: Option<&Path>) -> Result<Detector, RuleError> {
        let mut sources: Vec<(String, String)> = Vec::new();
        if builtin {
            for (name, text) in builtin::RULES {
                sources.push((format!("builtin:{name}"), (*text).to_string()));
            }
        }
        if let Some(dir) = rules_dir {
            let io = |e: std::io::Error| RuleError {
                file: dir.display().to_string(),
                line: None,
                reason: format!("cannot read the rules directory: {e}"),
            };
            let mut files: Vec<_> = std::fs::read_dir(dir)
                .map_err(io)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(io)?
                .into_iter()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
                .collect();
            files.sort();
            for path in files {
                let text = std::fs::read_to_string(&path).map_err(|e| RuleError {
                    file: path.display().to_string(),
                    line: None,
                    reason: format!("cannot read: {e}"),
                })?;
                sources.push((path.display().to_string(), text));
            }
        }
        Detector::from_sources(&sources, Limits::default())
    }

    /// Loads rules from `(file name, YAML text)` pairs.
    pub fn from_sources<S: AsRef<str>, T: AsRef<str>>(
        sources: &[(S, T)],
        limits: Limits,
    ) -> Result<Detector, RuleError> {
        let mut detections = Vec::new();
        let mut defs: Vec<CorrelationDef> = Vec::new();
        let mut seen: HashMap<String, (String, usize)> = HashMap::new();
        for (file, text) in sources {
            let file = file.as_ref();
            let docs = yaml::parse_documents(text.as_ref()).map_err(|e| RuleError {
                file: file.to_string(),
                line: Some(e.line),
                reason: e.reason,
            })?;
            for doc in &docs {
                let parsed = parse_document(doc, file).map_err(|p| p.in_file(file))?;
                let info = match &parsed {
                    Document::Detection(d) => &d.info,
                    Document::Correlation(c) => &c.info,
                };
                let name = info.name.iter().filter(|n| **n != info.id);
                for key in std::iter::once(&info.id).chain(name) {
                    if let Some((other, line)) = seen.get(key) {
                        return Err(RuleError {
                            file: file.to_string(),
                            line: Some(info.line),
                            reason: format!(
                                "`{key}` is already a rule id or name ({other}:{line})"
                            ),
                        });
                    }
                    seen.insert(key.clone(), (file.to_string(), info.line));
                }
                match parsed {
                    Document::Detection(d) => detections.push(d),
                    Document::Correlation(c) => defs.push(c),
                }
            }
        }
        Detector::link(detections, defs, limits)
    }

    fn link(
        detections: Vec<Detection>,
        defs: Vec<CorrelationDef>,
        limits: Limits,
    ) -> Result<Detector, RuleError> {
        let find = |key: &str| -> Option<Source> {
            let named = |i: &RuleInfo| i.id == key || i.name.as_deref() == Some(key);
            detections
                .iter()
                .position(|d| named(&d.info))
                .map(Source::Detection)
                .or_else(|| {
                    defs.iter()
                        .position(|c| named(&c.info))
                        .map(Source::Correlation)
                })
        };
        // Resolve every reference (by index into `defs` for now).
        let mut resolved: Vec<Vec<Source>> = Vec::new();
        for def in &defs {
            let mut sources = Vec::new();
            for (key, line) in &def.rules {
                let source = find(key).ok_or_else(|| {
                    Problem::at(*line, format!("no rule with id or name `{key}`"))
                        .in_file(&def.info.file)
                })?;
                if source == Source::Correlation(sources_index(&defs, def)) {
                    return Err(Problem::at(*line, "a correlation cannot reference itself")
                        .in_file(&def.info.file));
                }
                sources.push(source);
            }
            resolved.push(sources);
        }
        // Dependency order; a cycle is an error.
        let mut order: Vec<usize> = Vec::new();
        let mut state = vec![0u8; defs.len()];
        fn visit(
            i: usize,
            resolved: &[Vec<Source>],
            state: &mut [u8],
            order: &mut Vec<usize>,
        ) -> Result<(), usize> {
            match state[i] {
                2 => return Ok(()),
                1 => return Err(i),
                _ => {}
            }
            state[i] = 1;
            for s in &resolved[i] {
                if let Source::Correlation(j) = s {
                    visit(*j, resolved, state, order)?;
                }
            }
            state[i] = 2;
            order.push(i);
            Ok(())
        }
        for i in 0..defs.len() {
            visit(i, &resolved, &mut state, &mut order).map_err(|j| {
                Problem::at(
                    defs[j].info.line,
                    "correlations reference each other in a cycle",
                )
                .in_file(&defs[j].info.file)
            })?;
        }
        let position: HashMap<usize, usize> =
            order.iter().enumerate().map(|(pos, i)| (*i, pos)).collect();
        let mut detection_alerts = vec![true; detections.len()];
        let mut correlation_alerts = vec![true; defs.len()];
        for (def, sources) in defs.iter().zip(&resolved) {
            if def.generate {
                continue;
            }
            for s in sources {
                match s {
                    Source::Detection(d) => detection_alerts[*d] = false,
                    Source::Correlation(c) => correlation_alerts[position[c]] = false,
                }
            }
        }
        // A rule referenced by a correlation with `generate: true` alerts after all.
        for (def, sources) in defs.iter().zip(&resolved) {
            if def.generate {
                for s in sources {
                    match s {
                        Source::Detection(d) => detection_alerts[*d] = true,
                        Source::Correlation(c) => correlation_alerts[position[c]] = true,
                    }
                }
            }
        }
        let levelless = detections
            .iter()
            .zip(&detection_alerts)
            .map(|(d, alerts)| (&d.info, *alerts))
            .chain(
                order
                    .iter()
                    .map(|i| (&defs[*i].info, correlation_alerts[position[i]])),
            )
            .find(|(info, alerts)| *alerts && !info.level_given);
        if let Some((info, _)) = levelless {
            return Err(Problem::at(
                info.line,
                "`level` is missing: a rule that raises alerts needs one",
            )
            .in_file(&info.file));
        }
        let mut by_def: Vec<Option<CorrelationDef>> = defs.into_iter().map(Some).collect();
        let mut correlations = Vec::new();
        for i in &order {
            let Some(def) = by_def[*i].take() else {
                continue;
            };
            let sources: Vec<Source> = resolved[*i]
                .iter()
                .map(|s| match s {
                    Source::Correlation(c) => Source::Correlation(position[c]),
                    d => *d,
                })
                .collect();
            let info_of = |s: &Source| -> RuleInfo {
                match s {
                    Source::Detection(d) => detections[*d].info.clone(),
                    Source::Correlation(c) => {
                        let c: &Correlation = &correlations[*c];
                        c.def.info.clone()
                    }
                }
            };
            let infos: Vec<RuleInfo> = sources.iter().map(info_of).collect();
            let techniques = if def.info.techniques.is_empty() {
                let mut t: Vec<String> = Vec::new();
                for (s, info) in sources.iter().zip(&infos) {
                    let from = match s {
                        Source::Correlation(c) => correlations[*c].techniques.clone(),
                        Source::Detection(_) => info.techniques.clone(),
                    };
                    for x in from {
                        if !t.contains(&x) {
                            t.push(x);
                        }
                    }
                }
                t
            } else {
                def.info.techniques.clone()
            };
            let group_fields = infos
                .iter()
                .map(|info| {
                    def.group_by
                        .iter()
                        .map(|(name, per_rule)| {
                            per_rule
                                .get(&info.id)
                                .or_else(|| info.name.as_ref().and_then(|n| per_rule.get(n)))
                                .cloned()
                                .unwrap_or_else(|| FieldPath::new(name))
                        })
                        .collect()
                })
                .collect();
            let windows = Windows::new(sources.len(), def.timespan_ms, limits);
            correlations.push(Correlation {
                def,
                techniques,
                group_fields,
                sources,
                windows,
            });
        }
        let mut by_event: HashMap<String, Vec<usize>> = HashMap::new();
        let mut any_event = Vec::new();
        for (i, d) in detections.iter().enumerate() {
            match d.events() {
                Some(names) => {
                    for name in names {
                        by_event.entry(name).or_default().push(i);
                    }
                }
                None => any_event.push(i),
            }
        }
        Ok(Detector {
            detections,
            detection_alerts,
            by_event,
            any_event,
            correlations,
            correlation_alerts,
        })
    }

    /// Every loaded rule: detection rules first, then correlations in dependency order.
    pub fn rules(&self) -> impl Iterator<Item = &RuleInfo> {
        self.detections
            .iter()
            .map(|d| &d.info)
            .chain(self.correlations.iter().map(|c| &c.def.info))
    }

    /// Groups held across all correlation windows (for a state-size metric).
    pub fn groups(&self) -> usize {
        self.correlations.iter().map(|c| c.windows.len()).sum()
    }

    /// Evaluates one event at its own time (`at_ms`, Unix milliseconds): a replay of
    /// yesterday's events gives yesterday's alerts. Events should come in time order; one
    /// older than its group's window is not counted.
    pub fn observe(&mut self, event: &Value, at_ms: i64) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let name = event
            .get("event")
            .and_then(Value::as_str)
            .map(str::to_lowercase);
        let indexed = name
            .as_ref()
            .and_then(|n| self.by_event.get(n))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut matched: Vec<usize> = indexed
            .iter()
            .chain(&self.any_event)
            .copied()
            .filter(|i| self.detections[*i].matches(event))
            .collect();
        matched.sort_unstable();
        matched.dedup();
        let id = event_id(event);
        for i in &matched {
            if !self.detection_alerts[*i] {
                continue;
            }
            let info = &self.detections[*i].info;
            let group = IDENTITY_FIELDS
                .iter()
                .filter_map(|f| match event.get(*f) {
                    Some(Value::String(s)) if !s.is_empty() => Some((f.to_string(), s.clone())),
                    _ => None,
                })
                .collect();
            alerts.push(Alert {
                rule_id: info.id.clone(),
                title: info.title.clone(),
                level: info.level,
                techniques: info.techniques.clone(),
                group,
                count: 1,
                first_seen_ms: at_ms,
                last_seen_ms: at_ms,
                event_ids: id.iter().cloned().collect(),
            });
        }
        if self.correlations.is_empty() || matched.is_empty() {
            return alerts;
        }
        let mut fired = vec![false; self.correlations.len()];
        for c in 0..self.correlations.len() {
            let corr = &mut self.correlations[c];
            for slot in 0..corr.sources.len() {
                let hit = match corr.sources[slot] {
                    Source::Detection(d) => matched.binary_search(&d).is_ok(),
                    Source::Correlation(o) => fired[o],
                };
                if !hit {
                    continue;
                }
                let fields = &corr.group_fields[slot];
                let key: Vec<String> = fields.iter().map(|f| f.group_value(event)).collect();
                let value = match &corr.def.kind {
                    crate::rule::CorrelationKind::ValueCount(f) => {
                        Some(f.group_value(event)).filter(|v| !v.is_empty())
                    }
                    _ => None,
                };
                let m = Match {
                    at: at_ms,
                    slot,
                    value,
                    event_id: id.clone(),
                };
                let Some(hit) =
                    corr.windows
                        .add(&corr.def.kind, &corr.def.threshold, key.clone(), m)
                else {
                    continue;
                };
                fired[c] = true;
                if self.correlation_alerts[c] {
                    let group = corr
                        .def
                        .group_by
                        .iter()
                        .map(|(name, _)| name.clone())
                        .zip(key)
                        .collect();
                    alerts.push(Alert {
                        rule_id: corr.def.info.id.clone(),
                        title: corr.def.info.title.clone(),
                        level: corr.def.info.level,
                        techniques: corr.techniques.clone(),
                        group,
                        count: hit.count,
                        first_seen_ms: hit.first_seen_ms,
                        last_seen_ms: hit.last_seen_ms,
                        event_ids: hit.event_ids,
                    });
                }
            }
        }
        alerts
    }
}

fn sources_index(defs: &[CorrelationDef], def: &CorrelationDef) -> usize {
    defs.iter()
        .position(|d| std::ptr::eq(d, def))
        .unwrap_or(usize::MAX)
}
