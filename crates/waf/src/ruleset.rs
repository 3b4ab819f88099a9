//! Loading SecLang into an immutable, shareable `RuleSet`: directive
//! dispatch, `SecDefaultAction` inheritance, chains, markers, rule removal
//! and target updates, and the engine configuration directives. A rule set
//! is built once and then only read, so it is `Send + Sync`.

use std::path::{Path, PathBuf};

use crate::macros::Macro;
use crate::operator::Op;
use crate::parser::{self, RawDirective};
use crate::prefilter::{required_literals, LiteralScan};
use crate::rule::{self, Action, Defaults, Disruptive, EngineMode, Rule, Var};
use crate::transaction::SetupSnapshot;

/// Why a rule set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{file}:{line}: {reason}")]
    Syntax {
        file: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Directives about logging, storage and server housekeeping: accepted so
/// existing configurations load, and ignored because this library keeps no
/// audit log, files or persistent state.
const HOUSEKEEPING_DIRECTIVES: &[&str] = &[
    "seccomponentsignature",
    "secrequestbodynofileslimit",
    "secrequestbodyinmemorylimit",
    "secrequestbodylimitaction",
    "secresponsebodylimitaction",
    "secpcrematchlimit",
    "secpcrematchlimitrecursion",
    "sectmpdir",
    "secdatadir",
    "secauditengine",
    "secauditlog",
    "secauditlogparts",
    "secauditlogtype",
    "secauditlogrelevantstatus",
    "secauditlogstoragedir",
    "secauditlogformat",
    "secdebuglog",
    "secdebugloglevel",
    "secargumentseparator",
    "seccookieformat",
    "secunicodemapfile",
    "secstatusengine",
    "seccollectiontimeout",
    "sechttpblkey",
    "secuploaddir",
    "secuploadkeepfiles",
    "secuploadfilemode",
    "secuploadfilelimit",
    "secxmlexternalentity",
    "secwebappid",
    "secserversignature",
    "secsensorid",
    "secgeolookupdb",
    "secgsblookupdb",
    "sectmpsaveuploadedfiles",
    "secinterceptonerror",
    "secconnengine",
    "secremoterules",
    "secremoterulesfailaction",
    "secruleinheritance",
    "seccontentinjection",
    "secstreaminbodyinspection",
    "secstreamoutbodyinspection",
    "secdisablebackendcompression",
    "sechashengine",
    "sechashkey",
    "sechashparam",
    "sechashmethodrx",
    "sechashmethodpm",
    "secruleperftime",
    "seccachetransformations",
    "secguardianlog",
    "secauditlog2",
    "secauditlogdirmode",
    "secauditlogfilemode",
    "secchrootdir",
];

#[derive(Debug)]
pub(crate) enum Entry {
    Rule(Box<Rule>),
    Marker(String),
}

/// One rule of a phase's program, with its `skipAfter` resolved at load: evaluating a
/// phase walks an array and jumps, instead of comparing marker names on every rule.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Step {
    /// Index into `RuleSet::entries` (always a rule).
    pub(crate) entry: usize,
    /// Where to continue in the program when this rule matches and has `skipAfter`: the
    /// step after the first later marker of that name, or rule of that id (the end of
    /// the phase when there is none, as ModSecurity does).
    pub(crate) skip_after_to: usize,
}

/// Engine settings from configuration directives.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub mode: EngineMode,
    pub request_body_access: bool,
    pub response_body_access: bool,
    /// Response bodies are inspected only for these media types.
    pub response_mime_types: Vec<String>,
    /// Bodies are inspected up to this many bytes; the rest is ignored.
    pub request_body_limit: usize,
    pub response_body_limit: usize,
    /// Maximum number of arguments parsed from a request.
    pub arguments_limit: usize,
    /// JSON bodies nested deeper than this set `REQBODY_ERROR` instead of being parsed
    /// (`SecRequestBodyJsonDepthLimit`; ModSecurity v3's default is 10000).
    pub json_depth_limit: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            mode: EngineMode::On,
            request_body_access: true,
            response_body_access: true,
            response_mime_types: vec!["text/plain".into(), "text/html".into(), "text/xml".into()],
            request_body_limit: 13_107_200,
            response_body_limit: 524_288,
            arguments_limit: 1000,
            json_depth_limit: 10_000,
        }
    }
}

/// A compiled rule set. Build it once, share it (it is `Send + Sync`), and
/// start a [`crate::Transaction`] per request.
#[derive(Debug)]
pub struct RuleSet {
    pub(crate) entries: Vec<Entry>,
    /// Per phase (index 0 = phase 1), the rules to run in file order.
    pub(crate) phases: [Vec<Step>; 5],
    pub(crate) config: EngineConfig,
    /// Per transformation list (index = `Rule::transform_key`), the literal scan of its
    /// prefiltered rules.
    pub(crate) scans: Vec<Option<LiteralScan>>,
    /// What the leading setup rules of phase 1 leave behind, computed once at load.
    pub(crate) setup: Option<SetupSnapshot>,
}

impl RuleSet {
    /// Loads the setup files in the given order, then every `*.conf` in
    /// `rules_dir` in file name order. `Include` is not supported: the
    /// directory is the unit of loading.
    pub fn load(setup_files: &[impl AsRef<Path>], rules_dir: &Path) -> Result<RuleSet, LoadError> {
        let mut b = RuleSetBuilder::new();
        for f in setup_files {
            b.add_file(f.as_ref())?;
        }
        b.add_dir(rules_dir)?;
        b.build()
    }

    /// Compiles rules from text; `@pmFromFile` paths are relative to the
    /// current directory.
    pub fn from_text(text: &str) -> Result<RuleSet, LoadError> {
        let mut b = RuleSetBuilder::new();
        b.add_text(text, Path::new("<text>"), Path::new("."))?;
        b.build()
    }

    /// Number of rules (chains count once, markers not at all).
    pub fn rule_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e, Entry::Rule(_)))
            .count()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Starts evaluating one request/response exchange.
    pub fn transaction(&self) -> crate::Transaction<'_> {
        crate::Transaction::new(self)
    }
}

impl std::str::FromStr for RuleSet {
    type Err = LoadError;

    fn from_str(text: &str) -> Result<RuleSet, LoadError> {
        RuleSet::from_text(text)
    }
}

/// Incremental loader for callers that assemble a rule set from several
/// sources (for example setup text plus a rules directory).
#[derive(Debug)]
pub struct RuleSetBuilder {
    entries: Vec<Entry>,
    defaults: [Defaults; 5],
    config: EngineConfig,
    /// Index of the rule whose chain is still open.
    open_chain: Option<usize>,
    literal_prefilters: bool,
    setup_snapshot: bool,
}

impl Default for RuleSetBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl RuleSetBuilder {
    pub fn new() -> Self {
        RuleSetBuilder {
            entries: Vec::new(),
            defaults: Default::default(),
            config: EngineConfig::default(),
            open_chain: None,
            literal_prefilters: true,
            setup_snapshot: true,
        }
    }

    /// Whether the setup rules at the start of phase 1 (rules that read only TX and
    /// constants and only write TX, like CRS's `crs-setup.conf` and 901 rules) are
    /// evaluated once at load, each transaction starting from their result (on by
    /// default). Verdicts are the same either way.
    pub fn setup_snapshot(&mut self, on: bool) -> &mut Self {
        self.setup_snapshot = on;
        self
    }

    /// Whether `@rx` rules get literal prefilters (on by default). Verdicts are the same
    /// either way; turning them off is for the differential test and for measuring them.
    pub fn literal_prefilters(&mut self, on: bool) -> &mut Self {
        self.literal_prefilters = on;
        self
    }

    pub fn add_file(&mut self, path: &Path) -> Result<&mut Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        self.add_text(&text, path, dir)
    }

    /// Adds every `*.conf` file of `dir`, in file name order.
    pub fn add_dir(&mut self, dir: &Path) -> Result<&mut Self, LoadError> {
        let io = |source| LoadError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf") && p.is_file())
            .collect();
        files.sort();
        for f in files {
            self.add_file(&f)?;
        }
        Ok(self)
    }

    /// Adds SecLang text; `file` names it in errors, `dir` anchors relative
    /// data file paths.
    pub fn add_text(
        &mut self,
        text: &str,
        file: &Path,
        dir: &Path,
    ) -> Result<&mut Self, LoadError> {
        let err = |line: usize, reason: String| LoadError::Syntax {
            file: file.to_path_buf(),
            line,
            reason,
        };
        let directives = parser::split_directives(text).map_err(|(l, r)| err(l, r))?;
        for d in directives {
            self.directive(&d, dir).map_err(|r| err(d.line, r))?;
        }
        if self.open_chain.is_some() {
            return Err(err(text.lines().count(), "file ends inside a chain".into()));
        }
        Ok(self)
    }

    fn directive(&mut self, d: &RawDirective, dir: &Path) -> Result<(), String> {
        let arg = |i: usize| -> Result<&str, String> {
            d.args
                .get(i)
                .map(String::as_str)
                .ok_or_else(|| format!("{} needs {} argument(s)", d.name, i + 1))
        };
        let on = |s: &str| s.eq_ignore_ascii_case("on");
        match d.name.to_ascii_lowercase().as_str() {
            "secrule" => {
                let rule = Rule::compile(
                    Some(arg(0)?),
                    Some(arg(1)?),
                    d.args.get(2).map(String::as_str),
                    dir,
                )?;
                self.push_rule(rule)?;
            }
            "secaction" => {
                let rule = Rule::compile(None, None, Some(arg(0)?), dir)?;
                self.push_rule(rule)?;
            }
            "secmarker" => {
                self.close_chain_check()?;
                self.entries.push(Entry::Marker(arg(0)?.to_string()));
            }
            "secdefaultaction" => {
                let mut r = Rule::compile(None, None, Some(arg(0)?), dir)?;
                let phase = if r.phase == 0 { 2 } else { r.phase };
                r.phase = phase;
                let d = &mut self.defaults[usize::from(phase - 1)];
                d.log = r.log.unwrap_or(true);
                d.disruptive = match r.disruptive {
                    None | Some(Disruptive::Block) => Disruptive::Pass,
                    Some(x) => x,
                };
                d.status = r.status;
                d.transforms = r.transforms;
            }
            "secruleremovebyid" => {
                let ranges = rule::parse_id_ranges(&d.args.join(" "))?;
                self.entries.retain(|e| match e {
                    Entry::Rule(r) => !ranges.iter().any(|&(a, b)| (a..=b).contains(&r.id)),
                    Entry::Marker(_) => true,
                });
            }
            "secruleremovebytag" => {
                let tag = arg(0)?;
                self.entries.retain(|e| match e {
                    Entry::Rule(r) => !r.tags.iter().any(|t| t.eq_ignore_ascii_case(tag)),
                    Entry::Marker(_) => true,
                });
            }
            "secruleremovebymsg" => {
                let msg = arg(0)?;
                self.entries.retain(|e| match e {
                    Entry::Rule(r) => r.msg.as_ref().and_then(|m| m.as_literal()) != Some(msg),
                    Entry::Marker(_) => true,
                });
            }
            "secruleupdatetargetbyid" | "secruleupdatetargetbytag" | "secruleupdatetargetbymsg" => {
                let sel = arg(0)?.to_string();
                let targets = rule::compile_targets(arg(1)?)?;
                let replaced = match d.args.get(2) {
                    Some(r) => Some(rule::compile_targets(r)?),
                    None => None,
                };
                // Updates naming rules that are not loaded (for example after
                // SecRuleRemoveById) are ignored, as in ModSecurity.
                let by = d.name.to_ascii_lowercase();
                let ranges = if by.ends_with("byid") {
                    rule::parse_id_ranges(&sel)?
                } else {
                    Vec::new()
                };
                for e in &mut self.entries {
                    let Entry::Rule(r) = e else { continue };
                    let hit = if by.ends_with("byid") {
                        ranges.iter().any(|&(a, b)| (a..=b).contains(&r.id))
                    } else if by.ends_with("bytag") {
                        r.tags.iter().any(|t| t.eq_ignore_ascii_case(&sel))
                    } else {
                        r.msg.as_ref().and_then(|m| m.as_literal()) == Some(sel.as_str())
                    };
                    if !hit {
                        continue;
                    }
                    match &replaced {
                        Some(old) => {
                            for o in old {
                                r.targets.retain(|t| !t.same_as(o));
                            }
                            r.targets.extend(targets.iter().cloned());
                        }
                        None => r.targets.extend(targets.iter().cloned()),
                    }
                }
            }
            "secruleupdateactionbyid" => {
                let ranges = rule::parse_id_ranges(arg(0)?)?;
                let actions = parser::split_actions(arg(1)?)?;
                for e in &mut self.entries {
                    if let Entry::Rule(r) = e {
                        if ranges.iter().any(|&(a, b)| (a..=b).contains(&r.id)) {
                            r.apply_actions(&actions)?;
                        }
                    }
                }
            }
            "secruleengine" => {
                self.config.mode = EngineMode::parse(arg(0)?)
                    .ok_or_else(|| format!("bad SecRuleEngine {}", arg(0).unwrap_or("")))?;
            }
            "secrequestbodyaccess" => self.config.request_body_access = on(arg(0)?),
            "secresponsebodyaccess" => self.config.response_body_access = on(arg(0)?),
            "secresponsebodymimetype" => {
                self.config.response_mime_types = d
                    .args
                    .iter()
                    .flat_map(|a| a.split_whitespace())
                    .map(|s| s.to_ascii_lowercase())
                    .collect();
            }
            "secresponsebodymimetypesclear" => self.config.response_mime_types.clear(),
            "secrequestbodylimit" => {
                self.config.request_body_limit = arg(0)?
                    .parse()
                    .map_err(|_| "bad SecRequestBodyLimit".to_string())?;
            }
            "secresponsebodylimit" => {
                self.config.response_body_limit = arg(0)?
                    .parse()
                    .map_err(|_| "bad SecResponseBodyLimit".to_string())?;
            }
            "secargumentslimit" => {
                self.config.arguments_limit = arg(0)?
                    .parse()
                    .map_err(|_| "bad SecArgumentsLimit".to_string())?;
            }
            "secrequestbodyjsondepthlimit" => {
                self.config.json_depth_limit = arg(0)?
                    .parse()
                    .map_err(|_| "bad SecRequestBodyJsonDepthLimit".to_string())?;
            }
            "include" => return Err("Include is not supported; load a directory instead".into()),
            other if HOUSEKEEPING_DIRECTIVES.contains(&other) => {}
            other => return Err(format!("unsupported directive {other}")),
        }
        Ok(())
    }

    fn close_chain_check(&self) -> Result<(), String> {
        if self.open_chain.is_some() {
            return Err("a chain must be followed by a SecRule".into());
        }
        Ok(())
    }

    fn push_rule(&mut self, mut rule: Rule) -> Result<(), String> {
        if let Some(idx) = self.open_chain {
            let Some(Entry::Rule(head)) = self.entries.get_mut(idx) else {
                return Err("internal: open chain is not a rule".into());
            };
            if rule.id != 0 || rule.phase != 0 {
                // ModSecurity rejects these too: chained rules inherit both.
                if rule.id != 0 {
                    return Err("a chained rule cannot have an id".into());
                }
            }
            rule.phase = head.phase;
            rule.log = Some(false);
            let wants = rule.wants_chain;
            head.chain_tail_mut().chain = Some(Box::new(rule));
            if !wants {
                self.open_chain = None;
            }
            return Ok(());
        }
        if rule.id == 0 {
            return Err("rule has no id".into());
        }
        if rule.phase == 0 {
            rule.phase = 2;
        }
        rule.apply_defaults(&self.defaults[usize::from(rule.phase - 1)]);
        let wants = rule.wants_chain;
        self.entries.push(Entry::Rule(Box::new(rule)));
        if wants {
            self.open_chain = Some(self.entries.len() - 1);
        }
        Ok(())
    }

    pub fn build(&mut self) -> Result<RuleSet, LoadError> {
        let mut entries = std::mem::take(&mut self.entries);
        let mut keys: std::collections::HashMap<Vec<crate::transform::Transform>, u32> =
            std::collections::HashMap::new();
        for e in &mut entries {
            let Entry::Rule(head) = e else { continue };
            let mut link: Option<&mut Rule> = Some(head);
            while let Some(r) = link {
                r.exclusions = r.targets.iter().filter(|t| t.exclude).cloned().collect();
                r.shared_tags = r.tags.clone().into();
                if !r.transforms.is_empty() {
                    let next = keys.len() as u32 + 1;
                    r.transform_key = *keys.entry(r.transforms.clone()).or_insert(next);
                }
                link = r.chain.as_deref_mut();
            }
        }
        let scans = if self.literal_prefilters {
            attach_prefilters(&mut entries, keys.len() + 1)
        } else {
            Vec::new()
        };
        let phases = std::array::from_fn(|p| compile_phase(&entries, p as u8 + 1));
        let mut rs = RuleSet {
            entries,
            phases,
            config: self.config.clone(),
            scans,
            setup: None,
        };
        if self.setup_snapshot {
            let setup_steps: Vec<bool> = rs.phases[0]
                .iter()
                .map(|step| match &rs.entries[step.entry] {
                    Entry::Rule(r) => is_setup_rule(r),
                    Entry::Marker(_) => false,
                })
                .collect();
            rs.setup = SetupSnapshot::take(&rs, &setup_steps);
        }
        Ok(rs)
    }
}

/// Whether a rule and its chain read only TX, rule metadata and constants and write only
/// TX, so that running it at load gives what it would give in every transaction.
fn is_setup_rule(rule: &Rule) -> bool {
    let fixed = |m: &Macro| {
        m.variables()
            .all(|v| matches!(v, "TX" | "RULE" | "MATCHED_VAR" | "MATCHED_VAR_NAME"))
    };
    let mut link = Some(rule);
    while let Some(r) = link {
        let targets = r
            .targets
            .iter()
            .all(|t| matches!(&t.var, Var::Store(s) if s == "tx") || t.var == Var::Rule);
        let actions = r.actions.iter().all(|a| match a {
            Action::SetVar {
                coll, name, value, ..
            } => coll == "tx" && fixed(name) && fixed(value),
            Action::Noop => true,
            Action::Ctl(_) | Action::SetEnv { .. } => false,
        });
        let texts = r.op.macro_arg().is_none_or(fixed)
            && r.msg.as_ref().is_none_or(fixed)
            && r.logdata.as_ref().is_none_or(fixed);
        if !(targets && actions && texts) {
            return false;
        }
        link = r.chain.as_deref();
    }
    true
}

/// The program of one phase: its rules in file order, each `skipAfter` resolved to the
/// position it continues at. Markers themselves are not steps; they only name positions.
fn compile_phase(entries: &[Entry], phase: u8) -> Vec<Step> {
    // The phase's rules and markers in file order; markers belong to every phase.
    let listed: Vec<usize> = entries
        .iter()
        .enumerate()
        .filter(|(_, e)| match e {
            Entry::Rule(r) => r.phase.clamp(1, 5) == phase,
            Entry::Marker(_) => true,
        })
        .map(|(i, _)| i)
        .collect();
    // For each listed entry, how many rules come before it in the program.
    let mut rules_before = Vec::with_capacity(listed.len());
    let mut n = 0;
    for &i in &listed {
        rules_before.push(n);
        if matches!(entries[i], Entry::Rule(_)) {
            n += 1;
        }
    }
    let mut steps = Vec::with_capacity(n);
    for (at, &i) in listed.iter().enumerate() {
        let Entry::Rule(rule) = &entries[i] else {
            continue;
        };
        let skip_after_to = match &rule.skip_after {
            None => n,
            Some(target) => {
                let id = target.parse::<u64>().ok();
                listed[at + 1..]
                    .iter()
                    .zip(&rules_before[at + 1..])
                    .find_map(|(&j, &before)| match &entries[j] {
                        Entry::Marker(name) if name == target => Some(before),
                        Entry::Rule(r) if Some(r.id) == id => Some(before + 1),
                        _ => None,
                    })
                    .unwrap_or(n)
            }
        };
        steps.push(Step {
            entry: i,
            skip_after_to,
        });
    }
    steps
}

/// Gives every `@rx` rule with required literals a bit in the scan of its transformation
/// list, and builds those scans. `multiMatch` rules test intermediate values too, which no
/// scan covers, so they keep running their regex on everything.
fn attach_prefilters(entries: &mut [Entry], lists: usize) -> Vec<Option<LiteralScan>> {
    let mut sets: Vec<Vec<Vec<Vec<u8>>>> = (0..lists).map(|_| Vec::new()).collect();
    for e in entries.iter_mut() {
        let Entry::Rule(head) = e else { continue };
        let mut link: Option<&mut Rule> = Some(head);
        while let Some(r) = link {
            if let (Op::Rx(re, unicode), false) = (&r.op, r.multi_match) {
                let key = r.transform_key as usize;
                if let (Some(lits), Some(list)) =
                    (required_literals(re.as_str(), *unicode), sets.get_mut(key))
                {
                    r.prefilter = u32::try_from(list.len()).ok();
                    list.push(lits);
                }
            }
            link = r.chain.as_deref_mut();
        }
    }
    let scans: Vec<Option<LiteralScan>> = sets
        .iter()
        .map(|s| {
            if s.is_empty() {
                None
            } else {
                LiteralScan::build(s)
            }
        })
        .collect();
    // A list whose automaton could not be built keeps its regexes running everywhere.
    for e in entries.iter_mut() {
        let Entry::Rule(head) = e else { continue };
        let mut link: Option<&mut Rule> = Some(head);
        while let Some(r) = link {
            if scans
                .get(r.transform_key as usize)
                .is_none_or(Option::is_none)
            {
                r.prefilter = None;
            }
            link = r.chain.as_deref_mut();
        }
    }
    scans
}
