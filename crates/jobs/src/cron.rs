//! Cron expressions (five fields: minute hour day-of-month month day-of-week) evaluated
//! in a fixed-offset time zone.
//!
//! Our own small parser instead of the `cron`/`croner` + `chrono-tz` crates: the
//! schedules we need (nightly backups at 02:00 WIB, weekly drills) use the classic five
//! fields, and every zone the seeds run in (Indonesia's WIB, WITA, WIT) has had no daylight
//! saving since 1964, so a fixed UTC offset is exact and no time-zone database has to be
//! built in. Zones with daylight saving are refused by name rather than run wrongly.
//!
//! Supported: `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b,c`; day of
//! week 0-7 (0 and 7 are Sunday). As in Vixie cron, when both day fields are restricted a
//! day matches if either does.

use std::fmt;

/// A UTC offset in minutes, named by a zone without daylight saving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone {
    offset_minutes: i64,
}

impl Zone {
    pub const UTC: Zone = Zone { offset_minutes: 0 };

    /// `UTC`, an IANA name from a fixed list of zones without daylight saving
    /// (`Asia/Jakarta` ...), `WIB`/`WITA`/`WIT`, or an offset `+07:00`.
    pub fn parse(text: &str) -> Result<Zone, String> {
        let minutes = match text {
            "UTC" | "Etc/UTC" | "Z" => 0,
            "Asia/Jakarta" | "Asia/Pontianak" | "WIB" | "Asia/Bangkok" | "Asia/Ho_Chi_Minh" => {
                7 * 60
            }
            "Asia/Makassar" | "WITA" | "Asia/Singapore" | "Asia/Kuala_Lumpur" | "Asia/Manila" => {
                8 * 60
            }
            "Asia/Jayapura" | "WIT" | "Asia/Tokyo" => 9 * 60,
            _ => {
                let (sign, rest) = match text.as_bytes().first() {
                    Some(b'+') => (1, &text[1..]),
                    Some(b'-') => (-1, &text[1..]),
                    _ => {
                        return Err(format!(
                            "unknown time zone {text:?}: use UTC, Asia/Jakarta, Asia/Makassar, \
                             Asia/Jayapura (or WIB/WITA/WIT) or an offset like +07:00"
                        ))
                    }
                };
                let (h, m) = rest
                    .split_once(':')
                    .ok_or_else(|| format!("offset {text:?} must look like +07:00"))?;
                let (h, m): (i64, i64) = (
                    h.parse().map_err(|_| format!("bad offset {text:?}"))?,
                    m.parse().map_err(|_| format!("bad offset {text:?}"))?,
                );
                if h > 14 || m > 59 {
                    return Err(format!("offset {text:?} is out of range"));
                }
                sign * (h * 60 + m)
            }
        };
        Ok(Zone {
            offset_minutes: minutes,
        })
    }
}

/// One parsed expression.
#[derive(Clone, PartialEq, Eq)]
pub struct CronExpr {
    text: String,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

impl fmt::Debug for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronExpr({:?})", self.text)
    }
}

fn field(text: &str, min: u32, max: u32, name: &str) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{name}: bad step in {part:?}"))?,
            ),
            None => (part, 1),
        };
        let number = |t: &str| {
            t.parse::<u32>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| format!("{name}: {t:?} is not between {min} and {max}"))
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (number(a)?, number(b)?)
        } else {
            let n = number(range)?;
            // `5/15` means from 5 to the end, every 15.
            (n, if part.contains('/') { max } else { n })
        };
        if lo > hi {
            return Err(format!("{name}: range {range:?} runs backwards"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

impl CronExpr {
    pub fn parse(text: &str) -> Result<CronExpr, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!(
                "cron expression {text:?} must have five fields: minute hour day month weekday"
            ));
        };
        let mut weekdays = field(weekday, 0, 7, "weekday")?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(CronExpr {
            text: text.to_string(),
            minutes: field(minute, 0, 59, "minute")?,
            hours: field(hour, 0, 23, "hour")?,
            days: field(day, 1, 31, "day")?,
            months: field(month, 1, 12, "month")?,
            weekdays,
            days_restricted: day != "*",
            weekdays_restricted: weekday != "*",
        })
    }

    fn day_matches(&self, day: u32, weekday: u32) -> bool {
        let d = self.days & (1 << day) != 0;
        let w = self.weekdays & (1 << weekday) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => d || w,
            (true, false) => d,
            (false, true) => w,
            (false, false) => true,
        }
    }

    /// The first slot strictly after `after_ms` (ms since the epoch), as ms since the
    /// epoch; `None` if the expression never matches within five years (`0 0 31 2 *`).
    pub fn next_after(&self, after_ms: i64, zone: Zone) -> Option<i64> {
        // Work in whole local minutes.
        let mut t = after_ms.div_euclid(60_000) + zone.offset_minutes + 1;
        let limit = t + 5 * 366 * 24 * 60;
        while t < limit {
            let days = t.div_euclid(24 * 60);
            let (_, month, day) = civil_from_days(days);
            // 1970-01-01 was a Thursday (4).
            let weekday = (days + 4).rem_euclid(7) as u32;
            let minute_of_day = t.rem_euclid(24 * 60);
            if self.months & (1 << month) == 0 || !self.day_matches(day, weekday) {
                t = (days + 1) * 24 * 60;
                continue;
            }
            let hour = (minute_of_day / 60) as u32;
            if self.hours & (1 << hour) == 0 {
                t = t - minute_of_day % 60 + 60;
                continue;
            }
            if self.minutes & (1 << (minute_of_day % 60)) == 0 {
                t += 1;
                continue;
            }
            return Some((t - zone.offset_minutes) * 60_000);
        }
        None
    }
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-23T00:00:00Z, a Monday.
    const MONDAY: i64 = 1_795_392_000_000;
    const HOUR: i64 = 3_600_000;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_780), (2026, 11, 23));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn nightly_at_two_in_jakarta_is_nineteen_utc() {
        let e = CronExpr::parse("0 2 * * *").unwrap();
        let wib = Zone::parse("Asia/Jakarta").unwrap();
        // 02:00 WIB on the 23rd was 19:00 UTC on the 22nd, already past: next is 19:00 on
        // the 23rd.
        assert_eq!(e.next_after(MONDAY, wib), Some(MONDAY + 19 * HOUR));
        assert_eq!(
            e.next_after(MONDAY + 19 * HOUR, wib),
            Some(MONDAY + 43 * HOUR)
        );
        assert_eq!(e.next_after(MONDAY, Zone::UTC), Some(MONDAY + 2 * HOUR));
    }

    #[test]
    fn weekly_lists_steps_and_ranges() {
        // Sundays at 03:30 WIB = Saturday 20:30 UTC; the 23rd is a Monday.
        let e = CronExpr::parse("30 3 * * 0").unwrap();
        let wib = Zone::parse("+07:00").unwrap();
        let sat = MONDAY + 5 * 24 * HOUR;
        assert_eq!(e.next_after(MONDAY, wib), Some(sat + 20 * HOUR + HOUR / 2));
        assert_eq!(
            CronExpr::parse("30 3 * * 7")
                .unwrap()
                .next_after(MONDAY, wib),
            Some(sat + 20 * HOUR + HOUR / 2)
        );
        let every_15 = CronExpr::parse("*/15 9-17 * * 1-5").unwrap();
        assert_eq!(
            every_15.next_after(MONDAY + 9 * HOUR + 60_000, Zone::UTC),
            Some(MONDAY + 9 * HOUR + 15 * 60_000)
        );
        assert_eq!(
            every_15.next_after(MONDAY + 17 * HOUR + 45 * 60_000, Zone::UTC),
            Some(MONDAY + 33 * HOUR)
        );
        // Day of month and weekday both restricted: either matches (the 1st, or Mondays).
        let either = CronExpr::parse("0 0 1 * 1").unwrap();
        assert_eq!(
            either.next_after(MONDAY, Zone::UTC),
            Some(MONDAY + 7 * 24 * HOUR)
        );
    }

    #[test]
    fn refuses_bad_expressions_and_zones() {
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "5-1 * * * *",
            "*/0 * * * *",
        ] {
            assert!(CronExpr::parse(bad).is_err(), "{bad}");
        }
        assert!(Zone::parse("Europe/Berlin").is_err());
        assert!(CronExpr::parse("0 0 31 2 *")
            .unwrap()
            .next_after(MONDAY, Zone::UTC)
            .is_none());
    }
}
