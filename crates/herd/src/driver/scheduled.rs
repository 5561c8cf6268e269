//! Scheduled reloads (`--cron-reload`, `cron_restart`): the timer that turns the schedule
//! into `Event::Reload`, as SIGHUP does. The decision (fire now, or how long to sleep) is
//! [`ReloadTimer::poll`], a pure function of the wall-clock time it is given; the loop
//! sleeps on tokio's monotonic clock in between and asks again when it wakes.
//!
//! Why both clocks: the schedule is in wall-clock time, tokio's sleep in monotonic time.
//! The two part when the wall clock is set (an NTP step, a suspended machine, a changed
//! time zone), so no sleep is longer than [`MAX_SLEEP`]: after a wall-clock change the
//! reload happens at most that late, and never early (it fires only once the wall clock
//! has reached its time). Missed times (a machine suspended over several) give one reload,
//! not one per missed time.

use std::time::Duration;

use jiff::Zoned;
use tracing::info;

use super::Driver;
use crate::config::Schedule;

/// The longest sleep between two looks at the wall clock. Why a minute: a reload after a
/// clock change is at most this late, and one wake-up a minute costs nothing.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// What the timer says at a given wall-clock time.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Poll {
    /// A scheduled time has come: reload now. The next time is [`ReloadTimer::next`].
    Fire,
    /// Ask again after this long.
    Sleep(Duration),
    /// The schedule names no later time.
    Never,
}

/// An app's schedule and its next time.
pub(super) struct ReloadTimer {
    schedule: Schedule,
    next: Option<Zoned>,
}

impl ReloadTimer {
    /// The timer of `schedule`, from `now` on.
    pub(super) fn new(schedule: Schedule, now: &Zoned) -> ReloadTimer {
        let next = schedule.next_after(now);
        ReloadTimer { schedule, next }
    }

    /// The schedule as written.
    pub(super) fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// When the next reload is due.
    pub(super) fn next(&self) -> Option<&Zoned> {
        self.next.as_ref()
    }

    /// What to do at wall-clock time `now`.
    pub(super) fn poll(&mut self, now: &Zoned) -> Poll {
        let Some(due) = &self.next else {
            return Poll::Never;
        };
        match due.timestamp().duration_since(now.timestamp()) {
            left if left.is_positive() => {
                Poll::Sleep(Duration::try_from(left).unwrap_or(MAX_SLEEP).min(MAX_SLEEP))
            }
            _ => {
                // From `now`, not from `due`: times missed while the machine slept give
                // one reload, and the next one is in the future.
                self.next = self.schedule.next_after(now);
                Poll::Fire
            }
        }
    }
}

/// A time as the log shows it: RFC 3339 with the local offset, `2026-01-11T03:00:00+01:00`.
pub(super) fn local(t: &Zoned) -> String {
    t.timestamp().display_with_offset(t.offset()).to_string()
}

impl Driver {
    /// Wall-clock time in the machine's time zone (`TZ`, else /etc/localtime), which the
    /// schedule is written in.
    fn wall_clock() -> Zoned {
        Zoned::now()
    }

    /// Starts (or, after a reload with a new definition, replaces) the timer of the plan's
    /// schedule.
    pub(super) fn schedule_reloads(&mut self) {
        let changed = self.reloads.as_ref().map(|t| t.schedule()) != self.plan.cron_reload.as_ref();
        if !changed {
            return;
        }
        self.reloads = self
            .plan
            .cron_reload
            .clone()
            .map(|s| ReloadTimer::new(s, &Self::wall_clock()));
        self.reload_wake = None;
        if let Some(t) = &self.reloads {
            let next = t.next().map_or("never".to_string(), local);
            info!(app = %self.plan.name, schedule = %t.schedule(),
                "{}: rolling reload at `{}` (local time); next at {next}", self.plan.name, t.schedule());
        }
        self.scheduled_reload();
    }

    /// The timer woke (or was just set): reload if it is time, and set the next wake-up.
    pub(super) fn scheduled_reload(&mut self) {
        let Some(timer) = self.reloads.as_mut() else {
            self.reload_wake = None;
            return;
        };
        let now = Self::wall_clock();
        self.reload_wake = match timer.poll(&now) {
            Poll::Fire => {
                let next = timer.next().map_or(String::new(), local);
                let app = &self.plan.name;
                info!(app = %app, event = "reload.scheduled", schedule = %timer.schedule(), next = %next,
                    "scheduled reload of {app} (`{}`); the next one at {next}", timer.schedule());
                self.queue.push_back(crate::supervisor::Event::Reload);
                // The next wake-up, from the new next time.
                match timer.poll(&now) {
                    Poll::Sleep(d) => Some(tokio::time::Instant::now() + d),
                    Poll::Fire | Poll::Never => None,
                }
            }
            Poll::Sleep(d) => Some(tokio::time::Instant::now() + d),
            Poll::Never => None,
        };
    }

    /// The next scheduled reload, Unix milliseconds (`herd describe`).
    pub(super) fn next_reload_ms(&self) -> Option<u64> {
        let next = self.reloads.as_ref()?.next()?;
        u64::try_from(next.timestamp().as_millisecond()).ok()
    }
}

#[cfg(test)]
mod tests {
    use jiff::tz::TimeZone;
    use jiff::Timestamp;

    use super::*;

    fn at(utc: &str) -> Zoned {
        utc.parse::<Timestamp>()
            .unwrap()
            .to_zoned(TimeZone::posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap())
    }

    fn timer(expr: &str, now: &str) -> ReloadTimer {
        ReloadTimer::new(expr.parse().unwrap(), &at(now))
    }

    #[test]
    fn sleeps_until_the_time_in_steps_of_at_most_a_minute() {
        // 03:00 CET = 02:00 UTC.
        let mut t = timer("0 3 * * *", "2026-01-10T01:58:30Z");
        assert_eq!(t.poll(&at("2026-01-10T01:58:30Z")), Poll::Sleep(MAX_SLEEP));
        assert_eq!(
            t.poll(&at("2026-01-10T01:59:30Z")),
            Poll::Sleep(Duration::from_secs(30))
        );
        assert_eq!(t.poll(&at("2026-01-10T02:00:00Z")), Poll::Fire);
        assert_eq!(
            t.next().unwrap().timestamp(),
            "2026-01-11T02:00:00Z".parse::<Timestamp>().unwrap()
        );
        // Right after firing, the next day's is a day away.
        assert_eq!(t.poll(&at("2026-01-10T02:00:00Z")), Poll::Sleep(MAX_SLEEP));
    }

    #[test]
    fn a_late_wake_up_fires_once_and_a_clock_set_back_does_not_fire_early() {
        let mut t = timer("*/10 * * * * *", "2026-01-10T12:00:01Z");
        // Woken 35 s late (a suspended machine): one reload, the next in the future.
        assert_eq!(t.poll(&at("2026-01-10T12:00:45Z")), Poll::Fire);
        assert_eq!(
            t.next().unwrap().timestamp(),
            "2026-01-10T12:00:50Z".parse::<Timestamp>().unwrap()
        );
        // The wall clock set back an hour: nothing fires until it reaches the time again.
        assert_eq!(t.poll(&at("2026-01-10T11:00:45Z")), Poll::Sleep(MAX_SLEEP));
    }

    #[test]
    fn a_schedule_is_kept_with_its_next_time() {
        let t = timer("0 3 * * *", "2026-01-10T12:00:00Z");
        assert_eq!(t.schedule().to_string(), "0 3 * * *");
        assert!(t.next().is_some());
    }
}
