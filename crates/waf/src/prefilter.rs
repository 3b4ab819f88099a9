//! Literal prefilters for `@rx`: at load time, the strings at least one of which any match
//! of a rule's regex must contain; at run time, one Aho-Corasick pass per transformed value
//! that says which rules' literals occur in it, so a regex runs only where it can match.
//!
//! Most CRS regexes never match ordinary traffic, and most of them name a keyword
//! (`union`, `<script`, `/etc/`) that a match cannot do without. Checking for every such
//! keyword of every rule that reads a value in one pass costs about what one regex search
//! costs, and spares all the others.
//!
//! Invariant: a prefilter never changes a verdict. It only answers "cannot match"
//! when no required literal occurs, which a correct extraction makes true; a rule whose
//! regex yields no usable literal has no prefilter and runs as before. The differential
//! test in `tests/crs_regression.rs` holds the engine to that.
//!
//! Literals are kept ASCII-lowercased and searched case-insensitively: that is weaker than
//! the regex (it may let through a value the regex then rejects), never stronger, and it
//! folds the case variants of `(?i)` patterns into one literal each.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex_syntax::hir::{Class, Hir, HirKind};

/// Most literals a set may hold; beyond it a set is dropped (bigger sets cost more than
/// they spare, and cross products grow fast).
const MAX_SET: usize = 64;
/// Longest literal kept exact; longer runs are cut into separate requirements.
const MAX_LEN: usize = 24;
/// Shortest literal worth a prefilter: one- byte literals occur in too many values.
const MIN_USEFUL_LEN: usize = 2;

/// What is known of the strings a sub-expression matches.
struct Facts {
    /// It matches exactly one of these (lowercased) strings, when the set is small.
    exact: Option<Vec<Vec<u8>>>,
    /// Every match contains one of these (lowercased) strings.
    need: Option<Vec<Vec<u8>>>,
}

impl Facts {
    fn any() -> Facts {
        Facts {
            exact: None,
            need: None,
        }
    }

    fn exact(set: Vec<Vec<u8>>) -> Facts {
        Facts {
            exact: Some(set),
            need: None,
        }
    }

    /// The requirement this sub-expression puts on a match, exact strings included.
    fn requirement(&self) -> Option<&Vec<Vec<u8>>> {
        match &self.exact {
            Some(e) if !e.iter().any(Vec::is_empty) => Some(e),
            _ => self.need.as_ref(),
        }
    }
}

/// The required literals of `pattern` (parsed as `operator::build_regex` compiled it), or
/// `None` when it has no usable set.
pub(crate) fn required_literals(pattern: &str, unicode: bool) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::ParserBuilder::new()
        .dot_matches_new_line(true)
        .unicode(unicode)
        .utf8(false)
        .build()
        .parse(pattern)
        .ok()?;
    let facts = analyze(&hir);
    let mut set = facts.requirement()?.clone();
    set.sort();
    set.dedup();
    let usable = !set.is_empty() && set.iter().all(|l| l.len() >= MIN_USEFUL_LEN);
    usable.then_some(set)
}

fn analyze(h: &Hir) -> Facts {
    match h.kind() {
        HirKind::Empty | HirKind::Look(_) => Facts::exact(vec![Vec::new()]),
        HirKind::Literal(lit) => {
            if lit.0.len() > MAX_LEN {
                Facts {
                    exact: None,
                    need: Some(vec![lit.0.to_ascii_lowercase()]),
                }
            } else {
                Facts::exact(vec![lit.0.to_ascii_lowercase()])
            }
        }
        HirKind::Class(c) => class_facts(c),
        HirKind::Capture(c) => analyze(&c.sub),
        HirKind::Repetition(r) => {
            if r.min == 0 {
                return Facts::any();
            }
            let sub = analyze(&r.sub);
            // At least one copy of the sub-expression is in every match.
            Facts {
                exact: None,
                need: sub.requirement().cloned(),
            }
        }
        HirKind::Concat(subs) => concat_facts(subs),
        HirKind::Alternation(subs) => {
            let facts: Vec<Facts> = subs.iter().map(analyze).collect();
            let exact = facts
                .iter()
                .map(|f| f.exact.as_ref())
                .collect::<Option<Vec<_>>>()
                .and_then(|sets| union(sets.into_iter()));
            // Whichever branch matched, its own requirement holds.
            let need = facts
                .iter()
                .map(Facts::requirement)
                .collect::<Option<Vec<_>>>()
                .and_then(|sets| union(sets.into_iter()));
            Facts { exact, need }
        }
    }
}

/// A class is exact when it holds few bytes once ASCII case is folded (`[Aa]`, `[-_]`).
fn class_facts(c: &Class) -> Facts {
    let mut set: Vec<Vec<u8>> = Vec::new();
    match c {
        Class::Bytes(b) => {
            for r in b.ranges() {
                if usize::from(r.end() - r.start()) >= 8 {
                    return Facts::any();
                }
                for byte in r.start()..=r.end() {
                    set.push(vec![byte.to_ascii_lowercase()]);
                }
            }
        }
        Class::Unicode(u) => {
            for r in u.ranges() {
                if u32::from(r.end()) - u32::from(r.start()) >= 8 {
                    return Facts::any();
                }
                for ch in r.start()..=r.end() {
                    let mut buf = [0u8; 4];
                    set.push(ch.encode_utf8(&mut buf).as_bytes().to_ascii_lowercase());
                }
            }
        }
    }
    set.sort();
    set.dedup();
    if set.is_empty() || set.len() > 4 {
        // An empty class matches nothing; treating it as "anything" is the safe side.
        return Facts::any();
    }
    Facts::exact(set)
}

/// A concatenation: runs of exact parts are crossed into longer literals; the best of
/// those runs and of the parts' own requirements is the requirement of the whole.
fn concat_facts(subs: &[Hir]) -> Facts {
    let mut best: Option<Vec<Vec<u8>>> = None;
    let mut run: Option<Vec<Vec<u8>>> = Some(vec![Vec::new()]);
    let mut all_exact = true;
    let consider = |cand: Option<Vec<Vec<u8>>>, best: &mut Option<Vec<Vec<u8>>>| {
        if let Some(c) = cand {
            if !c.iter().any(Vec::is_empty) && better(&c, best.as_ref()) {
                *best = Some(c);
            }
        }
    };
    for sub in subs {
        let f = analyze(sub);
        match f.exact {
            Some(e) => {
                let current = run.take().unwrap_or_else(|| vec![Vec::new()]);
                match cross(&current, &e) {
                    Some(joined) => run = Some(joined),
                    None => {
                        // Too many or too long: what ran so far still stands on its own.
                        all_exact = false;
                        consider(Some(current), &mut best);
                        run = Some(e);
                    }
                }
            }
            None => {
                all_exact = false;
                consider(run.take(), &mut best);
                consider(f.need, &mut best);
            }
        }
    }
    if all_exact {
        return Facts {
            exact: run,
            need: None,
        };
    }
    consider(run, &mut best);
    Facts {
        exact: None,
        need: best,
    }
}

/// Whether `a` filters better than `b`: longer shortest literal first, then fewer literals.
fn better(a: &[Vec<u8>], b: Option<&Vec<Vec<u8>>>) -> bool {
    let Some(b) = b else { return true };
    let min = |s: &[Vec<u8>]| s.iter().map(Vec::len).min().unwrap_or(0);
    (min(a), std::cmp::Reverse(a.len())) > (min(b), std::cmp::Reverse(b.len()))
}

fn cross(a: &[Vec<u8>], b: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if a.len() * b.len() > MAX_SET {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            if x.len() + y.len() > MAX_LEN {
                return None;
            }
            let mut s = x.clone();
            s.extend_from_slice(y);
            out.push(s);
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

fn union<'a>(sets: impl Iterator<Item = &'a Vec<Vec<u8>>>) -> Option<Vec<Vec<u8>>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for s in sets {
        out.extend(s.iter().cloned());
        if out.len() > MAX_SET * 2 {
            return None;
        }
    }
    out.sort();
    out.dedup();
    (out.len() <= MAX_SET).then_some(out)
}

/// The literals of every prefiltered rule that tests values of one transformation list,
/// in one automaton; a value's pass over it sets one bit per rule whose literal occurs.
#[derive(Debug)]
pub(crate) struct LiteralScan {
    ac: AhoCorasick,
    /// For each pattern of `ac`, the rule bits it stands for.
    owners: Vec<Vec<u32>>,
    /// Number of rule bits.
    bits: u32,
}

impl LiteralScan {
    /// Builds the automaton from each rule bit's literal set (index = bit).
    pub(crate) fn build(sets: &[Vec<Vec<u8>>]) -> Option<LiteralScan> {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut owners: Vec<Vec<u32>> = Vec::new();
        let mut index: std::collections::HashMap<Vec<u8>, usize> = std::collections::HashMap::new();
        for (bit, set) in sets.iter().enumerate() {
            let bit = u32::try_from(bit).ok()?;
            for lit in set {
                let at = *index.entry(lit.clone()).or_insert_with(|| {
                    patterns.push(lit.clone());
                    owners.push(Vec::new());
                    patterns.len() - 1
                });
                owners[at].push(bit);
            }
        }
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&patterns)
            .ok()?;
        Some(LiteralScan {
            ac,
            owners,
            bits: u32::try_from(sets.len()).ok()?,
        })
    }

    /// One pass over `value`: the bit set of rules whose literals occur in it.
    pub(crate) fn scan(&self, value: &[u8]) -> Box<[u64]> {
        let mut bits = vec![0u64; (self.bits as usize).div_ceil(64)].into_boxed_slice();
        for m in self.ac.find_overlapping_iter(value) {
            for &b in &self.owners[m.pattern().as_usize()] {
                bits[(b / 64) as usize] |= 1 << (b % 64);
            }
        }
        bits
    }
}

/// Whether rule bit `bit` is set in a scan result.
pub(crate) fn has(bits: &[u64], bit: u32) -> bool {
    bits.get((bit / 64) as usize)
        .is_some_and(|w| w & (1 << (bit % 64)) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(p: &str) -> Option<Vec<String>> {
        required_literals(p, false).map(|s| {
            s.into_iter()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .collect()
        })
    }

    #[test]
    fn extracts_what_a_match_cannot_do_without() {
        assert_eq!(lits("(?i)union\\s+select"), Some(vec!["select".into()]));
        assert_eq!(
            lits("(?i)<(script|iframe)"),
            Some(vec!["<iframe".into(), "<script".into()])
        );
        assert_eq!(lits("foo|bar"), Some(vec!["bar".into(), "foo".into()]));
        assert_eq!(lits("a[xy]b"), Some(vec!["axb".into(), "ayb".into()]));
    }

    #[test]
    fn no_prefilter_when_a_match_can_avoid_every_literal() {
        assert_eq!(lits("foo|\\d+"), None);
        assert_eq!(lits("(?:foo)?bar?"), Some(vec!["ba".into()]));
        assert_eq!(lits("(?:foo)?b?ar?"), None);
        assert_eq!(lits("x"), None);
        assert_eq!(lits("^$"), None);
        assert_eq!(lits("[a-z]+"), None);
    }

    #[test]
    fn scan_marks_only_rules_whose_literals_occur() {
        let scan = LiteralScan::build(&[vec![b"select".to_vec()], vec![b"<script".to_vec()]])
            .expect("builds");
        let bits = scan.scan(b"1 UNION SELECT 2");
        assert!(has(&bits, 0));
        assert!(!has(&bits, 1));
    }
}
