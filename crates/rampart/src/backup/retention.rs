//! Which backups retention removes: a pure function of the backups, the time and the
//! policy, so it is tested without files or a database.
//!
//! Every backup is kept `daily_days`. The oldest backup of each calendar month (in the
//! schedule's zone) is kept `monthly_days`, and the oldest of each year `yearly_days`.
//! The newest complete backup is never removed, however old.

use std::collections::HashSet;

use time::{OffsetDateTime, UtcOffset};

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub daily_days: u32,
    pub monthly_days: u32,
    pub yearly_days: u32,
    /// The zone calendar months and years are counted in.
    pub offset: UtcOffset,
}

const DAY_MS: i64 = 24 * 3600 * 1000;

/// The ids to remove from `backups` (`(id, created_at ms)`, any order) at `now_ms`.
pub fn to_prune(now_ms: i64, backups: &[(String, i64)], policy: &Policy) -> Vec<String> {
    let mut sorted: Vec<&(String, i64)> = backups.iter().collect();
    sorted.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    let mut first_of_month = HashSet::new();
    let mut first_of_year = HashSet::new();
    let mut months_seen = HashSet::new();
    let mut years_seen = HashSet::new();
    for (id, at) in &sorted {
        let Ok(t) = OffsetDateTime::from_unix_timestamp(at / 1000) else {
            continue;
        };
        let t = t.to_offset(policy.offset);
        if months_seen.insert((t.year(), t.month())) {
            first_of_month.insert(id.as_str());
        }
        if years_seen.insert(t.year()) {
            first_of_year.insert(id.as_str());
        }
    }
    let newest = sorted.last().map(|(id, _)| id.as_str());
    let within = |at: i64, days: u32| now_ms - at <= i64::from(days) * DAY_MS;
    sorted
        .iter()
        .filter(|(id, at)| {
            let id = id.as_str();
            let keep = Some(id) == newest
                || within(*at, policy.daily_days)
                || (first_of_month.contains(id) && within(*at, policy.monthly_days))
                || (first_of_year.contains(id) && within(*at, policy.yearly_days));
            !keep
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// The UTC offset of a schedule zone. Indonesia's zones have no daylight saving, so a
/// fixed offset is exact for them; other zones are given as `UTC`, `+07:00` or `-05:00`.
pub fn zone_offset(zone: &str) -> Option<UtcOffset> {
    let hours = match zone {
        "UTC" | "Etc/UTC" => 0,
        "Asia/Jakarta" | "Asia/Pontianak" => 7,
        "Asia/Makassar" => 8,
        "Asia/Jayapura" => 9,
        other => {
            let (sign, rest) = match other.as_bytes().first()? {
                b'+' => (1, &other[1..]),
                b'-' => (-1, &other[1..]),
                _ => return None,
            };
            let (h, m) = rest.split_once(':')?;
            let (h, m): (i8, i8) = (h.parse().ok()?, m.parse().ok()?);
            return UtcOffset::from_hms(sign * h, sign * m, 0).ok();
        }
    };
    UtcOffset::from_hms(hours, 0, 0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            daily_days: 30,
            monthly_days: 90,
            yearly_days: 365,
            offset: zone_offset("Asia/Jakarta").unwrap(),
        }
    }

    /// Milliseconds for a date at 02:00 in Jakarta (19:00 UTC the day before).
    fn at(year: i32, month: u8, day: u8) -> i64 {
        let date = time::Date::from_calendar_date(year, month.try_into().unwrap(), day).unwrap();
        let t = date
            .with_hms(2, 0, 0)
            .unwrap()
            .assume_offset(zone_offset("Asia/Jakarta").unwrap());
        t.unix_timestamp() * 1000
    }

    fn daily(from: (i32, u8, u8), days: i64) -> Vec<(String, i64)> {
        (0..days)
            .map(|d| {
                let t = at(from.0, from.1, from.2) + d * DAY_MS;
                (format!("b{d:04}"), t)
            })
            .collect()
    }

    #[test]
    fn a_year_of_dailies_keeps_30_days_two_monthlies_and_the_yearly() {
        // 2025-01-01 .. 2025-12-31, pruned on 2026-01-01.
        let backups = daily((2025, 1, 1), 365);
        let now = at(2026, 1, 1);
        let pruned: HashSet<String> = to_prune(now, &backups, &policy()).into_iter().collect();
        let kept: Vec<&(String, i64)> = backups.iter().filter(|b| !pruned.contains(&b.0)).collect();
        let dates: Vec<String> = kept
            .iter()
            .map(|(_, t)| {
                let d = OffsetDateTime::from_unix_timestamp(t / 1000)
                    .unwrap()
                    .to_offset(policy().offset)
                    .date();
                d.to_string()
            })
            .collect();
        // 30 dailies (Dec 2 .. Dec 31), the firsts of Nov and Dec (61 and 31 days old;
        // Oct 1 is 92), and Jan 1 (the year's first).
        assert!(dates.contains(&"2025-01-01".to_string()), "{dates:?}");
        assert!(!dates.contains(&"2025-10-01".to_string()), "{dates:?}");
        assert!(dates.contains(&"2025-11-01".to_string()), "{dates:?}");
        assert!(dates.contains(&"2025-12-01".to_string()), "{dates:?}");
        assert!(!dates.contains(&"2025-09-01".to_string()), "{dates:?}");
        assert!(!dates.contains(&"2025-11-30".to_string()), "{dates:?}");
        assert!(dates.contains(&"2025-12-02".to_string()), "{dates:?}");
        assert_eq!(kept.len(), 30 + 2 + 1, "{dates:?}");
    }

    #[test]
    fn the_yearly_expires_after_365_days_and_the_newest_is_always_kept() {
        let backups = vec![
            ("old".to_string(), at(2024, 1, 1)),
            ("newest".to_string(), at(2024, 6, 1)),
        ];
        let pruned = to_prune(at(2026, 1, 1), &backups, &policy());
        assert_eq!(pruned, vec!["old".to_string()]);
    }

    #[test]
    fn months_are_counted_in_the_schedule_zone() {
        // 2025-03-01 02:00 in Jakarta is 2025-02-28 19:00 UTC: March's first (kept as a
        // monthly), not February's second (which would go).
        let backups = vec![
            ("jan".to_string(), at(2025, 1, 5)),
            ("feb".to_string(), at(2025, 2, 10)),
            ("mar".to_string(), at(2025, 3, 1)),
            ("newest".to_string(), at(2025, 5, 1)),
        ];
        let pruned = to_prune(at(2025, 5, 20), &backups, &policy());
        assert_eq!(pruned, vec!["feb".to_string()]);
    }

    #[test]
    fn zones_parse() {
        assert_eq!(zone_offset("Asia/Jakarta").unwrap().whole_hours(), 7);
        assert_eq!(zone_offset("-05:30").unwrap().whole_minutes(), -330);
        assert!(zone_offset("Mars/Olympus").is_none());
    }
}
