//! Sliding windows of one correlation rule, one per group.
//!
//! Each group keeps the matches of the last `timespan` (by event time), sorted. A match
//! older than the group's window is dropped, not counted. The condition is checked when a
//! match arrives, so a `lt`/`lte` condition is judged at each match, not at the window's end.
//!
//! **Suppression:** once a group fires, it stays quiet for one `timespan` from that match;
//! its matches are still counted, so an attack that goes on past that raises one alert
//! per window, not one per event, and an attack that stops raises one.
//!
//! **Bounded memory:** at most `max_groups` groups per rule (when full, groups whose
//! window has passed go first, then the least recently seen, down to 90 % of the cap), and
//! at most `max_entries_per_group` matches per group (the oldest go first, so a count
//! saturates there).

use std::collections::{HashMap, VecDeque};

use crate::rule::{CorrelationKind, Threshold};

/// Memory bounds of the correlation state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Groups kept per correlation rule.
    pub max_groups: usize,
    /// Matches kept per group.
    pub max_entries_per_group: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_groups: 10_000,
            max_entries_per_group: 10_000,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    at: i64,
    /// Which referenced rule matched.
    slot: usize,
    value: Option<String>,
    event_id: Option<String>,
}

#[derive(Debug, Default)]
struct Group {
    entries: VecDeque<Entry>,
    values: HashMap<String, usize>,
    slots: Vec<usize>,
    newest: i64,
    quiet_until: Option<i64>,
}

/// What a window reports when its correlation fires.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Fired {
    pub count: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub event_ids: Vec<String>,
}

/// How many event ids an alert carries.
pub(crate) const SAMPLE: usize = 10;

/// The windows of one correlation rule.
#[derive(Debug)]
pub(crate) struct Windows {
    groups: HashMap<Vec<String>, Group>,
    slots: usize,
    timespan_ms: i64,
    limits: Limits,
}

/// One match handed to a window.
pub(crate) struct Match {
    pub at: i64,
    pub slot: usize,
    /// The value_count field's value (`None`: the event has none and is not counted).
    pub value: Option<String>,
    pub event_id: Option<String>,
}

impl Windows {
    pub fn new(slots: usize, timespan_ms: i64, limits: Limits) -> Windows {
        Windows {
            groups: HashMap::new(),
            slots,
            timespan_ms,
            // A cap of zero would hold nothing and fire nothing: one is the least.
            limits: Limits {
                max_groups: limits.max_groups.max(1),
                max_entries_per_group: limits.max_entries_per_group.max(1),
            },
        }
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    fn make_room(&mut self, now: i64) {
        if self.groups.len() < self.limits.max_groups {
            return;
        }
        let span = self.timespan_ms;
        self.groups.retain(|_, g| g.newest >= now - span);
        let target = self.limits.max_groups - self.limits.max_groups / 10 - 1;
        if self.groups.len() > target {
            let mut ages: Vec<i64> = self.groups.values().map(|g| g.newest).collect();
            ages.sort_unstable();
            let cut = ages[self.groups.len() - target - 1];
            let mut excess = self.groups.len() - target;
            self.groups.retain(|_, g| {
                if excess > 0 && g.newest <= cut {
                    excess -= 1;
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Adds a match to its group's window and says whether the correlation fires.
    pub fn add(
        &mut self,
        kind: &CorrelationKind,
        threshold: &Threshold,
        key: Vec<String>,
        m: Match,
    ) -> Option<Fired> {
        if matches!(kind, CorrelationKind::ValueCount(_)) && m.value.is_none() {
            return None;
        }
        if !self.groups.contains_key(&key) {
            self.make_room(m.at);
        }
        let slots = self.slots;
        let group = self.groups.entry(key).or_insert_with(|| Group {
            slots: vec![0; slots],
            newest: i64::MIN,
            ..Group::default()
        });
        let span = self.timespan_ms;
        if group.newest != i64::MIN && m.at < group.newest - span {
            return None;
        }
        group.newest = group.newest.max(m.at);
        let entry = Entry {
            at: m.at,
            slot: m.slot,
            value: m.value,
            event_id: m.event_id,
        };
        group.push(entry);
        let horizon = group.newest - span;
        while group.entries.front().is_some_and(|e| e.at < horizon) {
            group.pop_front();
        }
        while group.entries.len() > self.limits.max_entries_per_group {
            group.pop_front();
        }
        let measured = match kind {
            CorrelationKind::EventCount => group.entries.len() as u64,
            CorrelationKind::ValueCount(_) => group.values.len() as u64,
            CorrelationKind::Temporal | CorrelationKind::TemporalOrdered => {
                group.slots.iter().filter(|n| **n > 0).count() as u64
            }
        };
        let holds = match kind {
            CorrelationKind::Temporal if threshold.is_empty() => measured == slots as u64,
            CorrelationKind::TemporalOrdered => group.in_order(slots),
            _ => threshold.holds(measured as f64),
        };
        if !holds || group.quiet_until.is_some_and(|until| m.at < until) {
            return None;
        }
        group.quiet_until = Some(m.at.saturating_add(span));
        Some(Fired {
            count: measured,
            first_seen_ms: group.entries.front().map_or(m.at, |e| e.at),
            last_seen_ms: group.newest,
            event_ids: group
                .entries
                .iter()
                .rev()
                .filter_map(|e| e.event_id.clone())
                .take(SAMPLE)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect(),
        })
    }
}

impl Group {
    fn push(&mut self, entry: Entry) {
        if let Some(v) = &entry.value {
            *self.values.entry(v.clone()).or_default() += 1;
        }
        if let Some(n) = self.slots.get_mut(entry.slot) {
            *n += 1;
        }
        let at = self.entries.partition_point(|e| e.at <= entry.at);
        self.entries.insert(at, entry);
    }

    fn pop_front(&mut self) {
        let Some(e) = self.entries.pop_front() else {
            return;
        };
        if let Some(v) = &e.value {
            if let Some(n) = self.values.get_mut(v) {
                *n -= 1;
                if *n == 0 {
                    self.values.remove(v);
                }
            }
        }
        if let Some(n) = self.slots.get_mut(e.slot) {
            *n = n.saturating_sub(1);
        }
    }

    /// Slot 0, then slot 1, ... in event time within the window.
    fn in_order(&self, slots: usize) -> bool {
        let mut next = 0;
        for e in &self.entries {
            if e.slot == next {
                next += 1;
                if next == slots {
                    return true;
                }
            }
        }
        false
    }
}
