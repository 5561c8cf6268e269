//! `cron_restart` (`herd run --cron-reload`): the times of an app's scheduled rolling
//! reloads, a cron expression in local time. This module owns the expression (parsed
//! once, kept with its text so herd.toml round-trips it as written) and the one question
//! asked of it: the first time after a given instant. It reads no clock: the driver's
//! timer gives it "now".
//!
//! The dialect is croner's, the one PM2 uses for `cron_restart`: five fields (minute hour
//! day-of-month month day-of-week), or six with seconds first, optionally a seventh for
//! the year; `*`, lists, ranges, `*/N` steps, month and day names, `L`, `W`, `#`, `?`,
//! and `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`. Day-of-month and day-of-week
//! combine with OR as in Vixie cron (`+` before the weekday makes it AND).
//!
//! Daylight saving time (croner follows the Open Cron Pattern Specification and Vixie
//! cron): a fixed time that a spring-forward gap skips (02:30 when 02:00 jumps to 03:00)
//! fires once, at the first instant after the gap (03:00); a fixed time that a fall-back
//! overlap repeats fires once, at its first occurrence. A schedule with `*` or a step in
//! its second, minute or hour field fires at each matching wall-clock time: nothing in a
//! gap, both passes of an overlap.

use std::fmt;
use std::str::FromStr;

use croner::Cron;
use jiff::Zoned;

/// The form a schedule takes, for error messages.
const EXPECTED: &str = "expected a cron expression of 5 fields (minute hour day-of-month month \
                        day-of-week, e.g. \"0 3 * * *\"), or 6 with seconds first";

/// A parsed cron expression, with the text it was written as.
#[derive(Clone)]
pub struct Schedule {
    text: String,
    cron: Cron,
}

impl Schedule {
    /// The first time strictly after `after` that the schedule names, in `after`'s time
    /// zone; `None` if there is none within croner's range (up to the year 5000).
    pub fn next_after(&self, after: &Zoned) -> Option<Zoned> {
        self.cron.find_next_occurrence(after, false).ok()
    }
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Schedule, String> {
        let text = s.trim();
        let bad = |why: String| format!("`{text}` is not a schedule: {why}; {EXPECTED}");
        if text.is_empty() {
            return Err(bad("it is empty".into()));
        }
        // An empty item in a list (`,`, `1,`, `1,,2`) leaves that field matching nothing, and
        // croner then searches years ahead before it says so: seconds of CPU for a typo
        // (found by fuzzing). Refused here, naming the field.
        if let Some((n, field)) = text
            .split_whitespace()
            .enumerate()
            .find(|(_, f)| f.split(',').any(str::is_empty))
        {
            return Err(bad(format!(
                "field {} (`{field}`) has an empty item in its list",
                n + 1
            )));
        }
        let cron = Cron::from_str(text).map_err(|e| bad(e.to_string()))?;
        // A pattern that never matches (`0 0 30 2 *`, or a year gone by) parses: it is
        // refused here rather than leaving an app that silently never reloads.
        let now = jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC);
        if cron.find_next_occurrence(&now, false).is_err() {
            return Err(bad("it names no time from now on".into()));
        }
        Ok(Schedule {
            text: text.to_string(),
            cron,
        })
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.text)
    }
}

/// Two schedules are the same when they are written the same: what herd.toml round-trips
/// and what a reload of a changed file compares.
impl PartialEq for Schedule {
    fn eq(&self, other: &Schedule) -> bool {
        self.text == other.text
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_empty_list_item_is_refused_at_once() {
        // Found by fuzzing: this took croner seconds to find that it never matches.
        let started = std::time::Instant::now();
        let e = "3 *  , *  * *".parse::<Schedule>().unwrap_err();
        assert!(e.contains("field 3 (`,`) has an empty item"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        assert!("0 1,,2 * * *"
            .parse::<Schedule>()
            .unwrap_err()
            .contains("field 2"));
        assert!("0,5 3 * * *".parse::<Schedule>().is_ok());
    }

    use jiff::tz::TimeZone;
    use jiff::Timestamp;

    use super::*;

    /// Central Europe, by POSIX rule: CET, CEST from the last Sunday of March at 02:00 to
    /// the last Sunday of October at 03:00. No tz database needed.
    fn berlin() -> TimeZone {
        TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap()
    }

    fn at(utc: &str) -> Zoned {
        utc.parse::<Timestamp>().unwrap().to_zoned(berlin())
    }

    fn next(expr: &str, after: &Zoned) -> Timestamp {
        expr.parse::<Schedule>()
            .unwrap()
            .next_after(after)
            .unwrap()
            .timestamp()
    }

    fn ts(utc: &str) -> Timestamp {
        utc.parse().unwrap()
    }

    #[test]
    fn five_fields_in_local_time() {
        // 03:00 CET is 02:00 UTC.
        assert_eq!(
            next("0 3 * * *", &at("2026-01-10T12:00:00Z")),
            ts("2026-01-11T02:00:00Z")
        );
        // Strictly after: at the time itself, the next day's.
        assert_eq!(
            next("0 3 * * *", &at("2026-01-11T02:00:00Z")),
            ts("2026-01-12T02:00:00Z")
        );
    }

    #[test]
    fn six_fields_have_seconds_first() {
        assert_eq!(
            next("30 * * * * *", &at("2026-01-10T12:00:05Z")),
            ts("2026-01-10T12:00:30Z")
        );
    }

    #[test]
    fn extensions_and_nicknames() {
        // The last day of the month, Friday the 13th-style `#`, names, @daily.
        assert_eq!(
            next("0 0 L * *", &at("2026-02-10T00:00:00Z")),
            ts("2026-02-27T23:00:00Z")
        );
        assert_eq!(
            next("0 9 * * MON#2", &at("2026-03-01T00:00:00Z")),
            ts("2026-03-09T08:00:00Z")
        );
        assert_eq!(
            next("@daily", &at("2026-01-10T12:00:00Z")),
            ts("2026-01-10T23:00:00Z")
        );
    }

    /// 2026-03-29: 02:00 CET jumps to 03:00 CEST. A fixed 02:30 runs once, at 03:00 CEST
    /// (01:00 UTC); an every-30-minutes schedule has nothing in the gap.
    #[test]
    fn a_skipped_hour_moves_a_fixed_time_past_the_gap() {
        let before = at("2026-03-28T23:00:00Z"); // 00:00 CET
        assert_eq!(next("30 2 * * *", &before), ts("2026-03-29T01:00:00Z"));
        let gap_start = at("2026-03-29T00:45:00Z"); // 01:45 CET
        assert_eq!(next("*/30 * * * *", &gap_start), ts("2026-03-29T01:00:00Z"));
        // The day after, 02:30 CEST again.
        assert_eq!(
            next("30 2 * * *", &at("2026-03-29T01:00:00Z")),
            ts("2026-03-30T00:30:00Z")
        );
    }

    /// 2026-10-25: 03:00 CEST falls back to 02:00 CET, so 02:30 happens twice. A fixed
    /// 02:30 runs once, at the first (00:30 UTC); `*/30` runs in both passes.
    #[test]
    fn a_repeated_hour_runs_a_fixed_time_once() {
        let before = at("2026-10-24T22:00:00Z"); // 00:00 CEST
        let first = next("30 2 * * *", &before);
        assert_eq!(first, ts("2026-10-25T00:30:00Z"));
        let after_first = first.to_zoned(berlin());
        assert_eq!(
            next("30 2 * * *", &after_first),
            ts("2026-10-26T01:30:00Z"),
            "not again at 02:30 CET"
        );
        let times: Vec<Timestamp> = {
            let s: Schedule = "*/30 * * * *".parse().unwrap();
            let mut t = at("2026-10-25T00:15:00Z"); // 02:15 CEST
            (0..4)
                .map(|_| {
                    t = s.next_after(&t).unwrap();
                    t.timestamp()
                })
                .collect()
        };
        assert_eq!(
            times,
            [
                ts("2026-10-25T00:30:00Z"), // 02:30 CEST
                ts("2026-10-25T01:00:00Z"), // 02:00 CET
                ts("2026-10-25T01:30:00Z"), // 02:30 CET
                ts("2026-10-25T02:00:00Z"), // 03:00 CET
            ]
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (text, why) in [
            ("", "it is empty"),
            ("0 3 * *", "Invalid pattern"),
            ("61 * * * *", "Component error"),
            ("0 3 * * * * * *", "between 5 and 7 fields"),
            ("every day", "Invalid pattern"),
            ("0 0 30 2 *", "it names no time from now on"),
            ("0 0 0 1 1 * 2020", "it names no time from now on"),
        ] {
            let e = text.parse::<Schedule>().unwrap_err();
            assert!(
                e.starts_with(&format!("`{text}` is not a schedule: ")),
                "{e}"
            );
            assert!(e.contains(why), "{text}: {e}");
            assert!(e.ends_with("or 6 with seconds first"), "{e}");
        }
        // Every fourth year is enough.
        assert!("0 0 29 2 *".parse::<Schedule>().is_ok());
    }

    #[test]
    fn the_text_is_kept_as_written() {
        let s: Schedule = " 0 3 * * mon-fri ".parse().unwrap();
        assert_eq!(s.to_string(), "0 3 * * mon-fri");
        assert_eq!(s, "0 3 * * mon-fri".parse().unwrap());
    }
}
