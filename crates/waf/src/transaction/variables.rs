//! Variable storage and lookup for a transaction: how request and response
//! data are kept, how a rule target (`ARGS:/^q/`, `&TX:x`, `XML:/*`) turns
//! into the values to test, and how `%{...}` macros resolve. Evaluation
//! order and actions live in the parent module.

use std::borrow::Cow;

use super::Transaction;
use crate::macros::Macro;
use crate::rule::{Coll, KeySel, Target, Var};

impl<'r> Transaction<'r> {
    pub(super) fn set(&mut self, name: &'static str, v: Vec<u8>) {
        self.scalars.insert(name, v);
    }

    pub(super) fn push(&mut self, c: Coll, k: String, v: Vec<u8>) {
        self.colls[c.index()].push((k, v));
    }

    pub(super) fn add_arg(&mut self, c: Coll, k: String, v: Vec<u8>) {
        let size = k.len() + v.len();
        let cur = crate::operator::atoi(
            self.scalars
                .get("ARGS_COMBINED_SIZE")
                .map_or(&b"0"[..], |v| v),
        );
        self.set(
            "ARGS_COMBINED_SIZE",
            (cur + size as i64).to_string().into_bytes(),
        );
        self.push(Coll::Args, k.clone(), v.clone());
        self.push(c, k, v);
    }

    pub(super) fn coll(&self, c: Coll) -> &[(String, Vec<u8>)] {
        &self.colls[c.index()]
    }

    pub(super) fn scalar(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        // The computed names first: they are never stored, and stored ones win over
        // the remaining computed defaults (`scalar_owned`).
        if let Some(v) = self.volatile_scalar(name) {
            return Some(Cow::Owned(v));
        }
        match self.scalars.get(name) {
            Some(v) => Some(Cow::Borrowed(v.as_slice())),
            None => self.scalar_owned(name).map(Cow::Owned),
        }
    }

    /// Values that change while rules run, so they are never stored.
    fn volatile_scalar(&self, name: &str) -> Option<Vec<u8>> {
        match name {
            "DURATION" => Some(self.started.elapsed().as_micros().to_string().into_bytes()),
            "UNIQUE_ID" => Some(self.unique_id.clone().into_bytes()),
            "MATCHED_VAR" => Some(self.matched_var.clone()),
            "MATCHED_VAR_NAME" => Some(self.matched_var_name.clone().into_bytes()),
            _ => None,
        }
    }

    /// Values computed on demand when nothing is stored under the name.
    pub(super) fn scalar_owned(&self, name: &str) -> Option<Vec<u8>> {
        match name {
            "REQBODY_PROCESSOR" => {
                Some(self.body_processor.clone().unwrap_or_default().into_bytes())
            }
            "HIGHEST_SEVERITY" => Some(
                self.matched
                    .iter()
                    .filter_map(|m| m.severity)
                    .min()
                    .unwrap_or(255)
                    .to_string()
                    .into_bytes(),
            ),
            n if n.starts_with("TIME") => {
                let secs = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
                let sod = secs.rem_euclid(86_400);
                let (h, mi, s) = (sod / 3600, sod % 3600 / 60, sod % 60);
                let v = match n {
                    "TIME_EPOCH" => secs.to_string(),
                    "TIME_YEAR" => y.to_string(),
                    "TIME_MON" => mo.to_string(),
                    "TIME_DAY" => d.to_string(),
                    "TIME_HOUR" => h.to_string(),
                    "TIME_MIN" => mi.to_string(),
                    "TIME_SEC" => s.to_string(),
                    "TIME_WDAY" => ((secs.div_euclid(86_400) + 4).rem_euclid(7)).to_string(),
                    _ => format!("{h:02}:{mi:02}:{s:02}"),
                };
                Some(v.into_bytes())
            }
            "MULTIPART_FILENAME" | "MULTIPART_NAME" => Some(Vec::new()),
            // Built on demand: it would be a third copy of the body.
            "FULL_REQUEST" => Some(self.full_request()),
            "FULL_REQUEST_LENGTH" => Some(self.full_request().len().to_string().into_bytes()),
            _ => None,
        }
    }

    pub(super) fn full_request(&self) -> Vec<u8> {
        let mut full = self
            .scalars
            .get("REQUEST_LINE")
            .cloned()
            .unwrap_or_default();
        full.extend_from_slice(b"\r\n");
        for (k, v) in self.coll(Coll::RequestHeaders) {
            full.extend_from_slice(k.as_bytes());
            full.extend_from_slice(b": ");
            full.extend_from_slice(v);
            full.extend_from_slice(b"\r\n");
        }
        full.extend_from_slice(b"\r\n");
        full.extend_from_slice(&self.request_body);
        full
    }

    /// Enumerates a target's values, borrowing them from the transaction.
    /// `excl` holds the rule's own exclusions and those `ctl` added at run time.
    pub(super) fn collect<'a>(
        &'a self,
        t: &'a Target,
        excl: (&[Target], &[Target]),
        out: &mut Vec<Cand<'a>>,
    ) {
        let start = out.len();
        let excl = || excl.0.iter().chain(excl.1);
        let excluded = |key: &str| excl().any(|e| e.excludes(&t.var, Some(key)));
        let mut push = |label: &'a str, key: Option<&'a str>, value: Cow<'a, [u8]>| {
            out.push(Cand {
                label,
                key,
                value,
                slot: None,
            })
        };
        match &t.var {
            Var::Coll(c) | Var::Names(c, _) => {
                let names = matches!(t.var, Var::Names(..));
                let label = match &t.var {
                    Var::Names(_, l) => l,
                    _ => c.name(),
                };
                // MATCHED_VARS is rebuilt per rule; everything else only grows.
                let cacheable = *c != Coll::MatchedVars;
                let id = (*c as u8) << 1 | u8::from(names);
                for (i, (k, v)) in self.coll(*c).iter().enumerate() {
                    if t.key.matches(k) && !excluded(k) {
                        let value = if names { k.as_bytes() } else { v.as_slice() };
                        out.push(Cand {
                            label,
                            key: Some(k),
                            value: Cow::Borrowed(value),
                            slot: (cacheable && !t.count).then_some((id, i as u32)),
                        });
                    }
                }
            }
            Var::Store(s) => {
                if let Some(m) = self.stores.get(s) {
                    let label = store_label(s);
                    match &t.key {
                        KeySel::Exact(k) => {
                            if let Some((k, v)) = m.get_key_value(k) {
                                if !excluded(k) {
                                    push(label, Some(k), Cow::Borrowed(v));
                                }
                            }
                        }
                        key => {
                            for (k, v) in m {
                                if key.matches(k) && !excluded(k) {
                                    push(label, Some(k), Cow::Borrowed(v));
                                }
                            }
                        }
                    }
                }
            }
            Var::Env => {
                for (k, v) in &self.env {
                    if t.key.matches(k) && !excluded(k) {
                        push("ENV", Some(k), Cow::Borrowed(v));
                    }
                }
            }
            Var::Xml => {
                if let Some(doc) = &self.xml {
                    let attrs = matches!(&t.key, KeySel::Exact(k) if k.contains('@'));
                    if attrs {
                        for a in &doc.attrs {
                            push("XML", None, Cow::Borrowed(a));
                        }
                    } else {
                        push("XML", None, Cow::Borrowed(&doc.text));
                    }
                }
            }
            Var::Rule => {
                for k in ["id", "msg", "phase", "ver", "severity"] {
                    if t.key.matches(k) {
                        push("RULE", Some(k), Cow::Owned(self.rule_meta(k)));
                    }
                }
            }
            Var::Scalar(n) => {
                if !excl().any(|e| e.excludes(&t.var, None)) {
                    if let Some(v) = self.scalar(n) {
                        push(n, None, v);
                    }
                }
            }
        }
        if t.count {
            let n = out.len() - start;
            out.truncate(start);
            let label = match &t.var {
                Var::Coll(c) => c.name(),
                Var::Names(_, l) => l,
                Var::Store(s) => store_label(s),
                Var::Scalar(s) => s.as_str(),
                Var::Env => "ENV",
                Var::Xml => "XML",
                Var::Rule => "RULE",
            };
            out.push(Cand {
                label,
                key: None,
                value: count_value(n),
                slot: None,
            });
        }
    }

    pub(super) fn resolve(&self, name: &str, key: Option<&str>) -> Vec<u8> {
        if name == "RULE" {
            return self.rule_meta(key.unwrap_or(""));
        }
        // `%{tx.name}`, by far the most common macro: a direct lookup (macro keys are
        // lower-case already, as TX names are stored).
        if let ("TX", Some(k)) = (name, key) {
            return self
                .stores
                .get("tx")
                .and_then(|m| m.get(k))
                .cloned()
                .unwrap_or_default();
        }
        let Some(var) = crate::rule::var_from_name(name) else {
            return Vec::new();
        };
        let key_sel = match key {
            Some(k) => KeySel::Exact(k.to_ascii_lowercase()),
            None => KeySel::All,
        };
        let t = Target {
            var,
            key: key_sel,
            count: false,
            exclude: false,
        };
        let mut out = Vec::new();
        self.collect(&t, (&[], &[]), &mut out);
        out.into_iter()
            .next()
            .map(|c| c.value.into_owned())
            .unwrap_or_default()
    }

    /// `%{rule.<key>}` for the rule being evaluated.
    pub(super) fn rule_meta(&self, key: &str) -> Vec<u8> {
        let Some(r) = self.cur else {
            return Vec::new();
        };
        match key {
            "id" => r.id.to_string().into_bytes(),
            "msg" => r
                .msg
                .as_ref()
                .and_then(|m| m.as_literal())
                .unwrap_or("")
                .as_bytes()
                .to_vec(),
            "phase" => r.phase.to_string().into_bytes(),
            "ver" => r.ver.clone().unwrap_or_default().into_bytes(),
            "severity" => r
                .severity
                .map(|s| s.to_string())
                .unwrap_or_default()
                .into_bytes(),
            _ => Vec::new(),
        }
    }

    pub(super) fn expand<'m>(&self, m: &'m Macro) -> Cow<'m, [u8]> {
        match m.as_literal() {
            Some(lit) => Cow::Borrowed(lit.as_bytes()),
            None => Cow::Owned(m.expand(|n, k| self.resolve(n, k))),
        }
    }
}

/// A value a rule will test; its name (`ARGS:q`) is built only on a match.
pub(super) struct Cand<'a> {
    pub(super) label: &'a str,
    pub(super) key: Option<&'a str>,
    pub(super) value: Cow<'a, [u8]>,
    /// Where an append-only request value lives (collection, index), for
    /// the transformation cache; `None` for values that can change.
    pub(super) slot: Option<(u8, u32)>,
}

impl Cand<'_> {
    pub(super) fn name(&self) -> String {
        match self.key {
            Some(k) => format!("{}:{k}", self.label),
            None => self.label.to_string(),
        }
    }
}

/// A `&` count as the value rules test; the common small counts need no allocation.
fn count_value(n: usize) -> Cow<'static, [u8]> {
    const SMALL: [&[u8]; 10] = [b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9"];
    match SMALL.get(n) {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(n.to_string().into_bytes()),
    }
}

fn store_label(s: &str) -> &'static str {
    match s {
        "ip" => "IP",
        "global" => "GLOBAL",
        "session" => "SESSION",
        "user" => "USER",
        "resource" => "RESOURCE",
        _ => "TX",
    }
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm; avoids a date dependency.
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}
