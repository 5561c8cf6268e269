//! `--watchdog`: `WATCHDOG=1` to `$NOTIFY_SOCKET` every half of `$WATCHDOG_USEC`, from a
//! thread of its own, as libsystemd's `sd_watchdog_enabled` rules allow; `/watchdog?do=…`
//! stops, resumes or triggers it, and a busy hang ends it for good.

use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::Duration;

use crate::hang::Hangs;
use crate::notify;
use crate::serve::Ctx;

/// Shortest time between two pings, however small `WATCHDOG_USEC` is.
const MIN_EVERY: Duration = Duration::from_millis(1);

/// How often to ping, from `WATCHDOG_USEC`, `WATCHDOG_PID` and our pid, as
/// `sd_watchdog_enabled` decides: the variable set to a positive number of microseconds
/// (neither 0 nor "infinity", `u64::MAX`), and `WATCHDOG_PID`, when set, our pid. Half of
/// that period (at least [`MIN_EVERY`]), or why there are no pings.
pub(crate) fn ping_every(
    usec: Option<&str>,
    pid: Option<&str>,
    me: u32,
) -> Result<Duration, String> {
    let Some(usec) = usec else {
        return Err("WATCHDOG_USEC is not set".into());
    };
    let period = match usec.parse::<u64>() {
        Ok(u) if u != 0 && u != u64::MAX => u,
        _ => return Err(format!("invalid WATCHDOG_USEC={usec:?}")),
    };
    if let Some(pid) = pid {
        match pid.parse::<u32>() {
            Ok(p) if p == me => {}
            Ok(p) if p != 0 => return Err(format!("WATCHDOG_PID={p} is not our pid {me}")),
            _ => return Err(format!("invalid WATCHDOG_PID={pid:?}")),
        }
    }
    Ok(Duration::from_micros(period / 2).max(MIN_EVERY))
}

/// `--watchdog`: starts the pinging thread if the environment asks for pings, and prints
/// `testworker pid=<pid> watchdog every <ms> ms`; else says on stderr why not.
pub(crate) fn start(ctx: &'static Ctx, pid: u32) {
    let usec = std::env::var("WATCHDOG_USEC").ok();
    let wpid = std::env::var("WATCHDOG_PID").ok();
    let every = match ping_every(usec.as_deref(), wpid.as_deref(), pid) {
        Ok(every) => every,
        Err(why) => {
            eprintln!("herd-testworker: --watchdog: {why}: no pings");
            return;
        }
    };
    crate::say(&format!(
        "testworker pid={pid} watchdog every {} ms",
        every.as_millis()
    ));
    let spawned = thread::Builder::new()
        .name("watchdog".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            ctx.watchdog
                .run(&ctx.hangs, every, || notify::sd_notify("WATCHDOG=1\n"))
        });
    if let Err(e) = spawned {
        eprintln!("herd-testworker: spawn the watchdog thread: {e}");
    }
}

/// What `/watchdog?do=` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Do {
    Stop,
    Start,
    Trigger,
}

impl Do {
    /// The value of `do=`, `None` for an unknown one.
    pub(crate) fn parse(s: &str) -> Option<Do> {
        match s {
            "stop" => Some(Do::Stop),
            "start" => Some(Do::Start),
            "trigger" => Some(Do::Trigger),
            _ => None,
        }
    }

    /// What `/watchdog` answers once done.
    pub(crate) fn answer(self) -> &'static str {
        match self {
            Do::Stop => "watchdog stop\n",
            Do::Start => "watchdog start\n",
            Do::Trigger => "watchdog trigger\n",
        }
    }
}

/// Whether the pings are stopped, and a way to wake the pinging thread.
#[derive(Default)]
pub(crate) struct Switch {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Switch {
    /// Stops the pings: none starts once this returns.
    pub(crate) fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = true;
    }

    /// Resumes the pings, with one at once (if the pinging thread runs).
    pub(crate) fn start(&self) {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.wake.notify_all();
    }

    #[cfg(test)]
    pub(crate) fn stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pinging thread: `ping` every `every` while not stopped; returns once the
    /// process is busy-hung (a hung process pings no more).
    pub(crate) fn run(&self, hangs: &Hangs, every: Duration, mut ping: impl FnMut()) {
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if hangs.busy() {
                return;
            }
            if !*stopped {
                ping();
            }
            stopped = self
                .wake
                .wait_timeout(stopped, every)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::thread;
    use std::time::Instant;

    use super::*;
    use crate::hang::How;

    #[test]
    fn pings_only_as_sd_watchdog_enabled_allows() {
        let ms = Duration::from_millis;
        assert_eq!(ping_every(Some("2000000"), None, 7), Ok(ms(1000)));
        assert_eq!(ping_every(Some("300000"), Some("7"), 7), Ok(ms(150)));
        assert_eq!(ping_every(Some("1"), None, 7), Ok(ms(1)));
        assert_eq!(
            ping_every(Some("3001"), None, 7),
            Ok(Duration::from_micros(1500))
        );
        for (usec, pid) in [
            (None, None),
            (None, Some("7")),
            (Some(""), None),
            (Some("0"), None),
            (Some("-5"), None),
            (Some("1s"), None),
            (Some("18446744073709551615"), None),
            (Some("100000"), Some("8")),
            (Some("100000"), Some("0")),
            (Some("100000"), Some("")),
            (Some("100000"), Some("me")),
        ] {
            assert!(ping_every(usec, pid, 7).is_err(), "{usec:?} {pid:?}");
        }
    }

    #[test]
    fn parses_what_to_do() {
        assert_eq!(Do::parse("stop"), Some(Do::Stop));
        assert_eq!(Do::parse("start"), Some(Do::Start));
        assert_eq!(Do::parse("trigger"), Some(Do::Trigger));
        assert_eq!(Do::parse("pause"), None);
        assert_eq!(Do::parse(""), None);
    }

    /// Waits (at most 5 s) until `count` reaches `n`.
    fn wait_for(count: &AtomicU32, n: u32) {
        let end = Instant::now() + Duration::from_secs(5);
        while count.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < end, "no ping {n}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn stops_resumes_and_ends_with_a_busy_hang() {
        let sw = Arc::new(Switch::default());
        let hangs = Arc::new(Hangs::default());
        let count = Arc::new(AtomicU32::new(0));
        let pinger = {
            let (sw, hangs, count) = (sw.clone(), hangs.clone(), count.clone());
            thread::spawn(move || {
                sw.run(&hangs, Duration::from_millis(5), || {
                    count.fetch_add(1, Ordering::SeqCst);
                })
            })
        };
        wait_for(&count, 3);

        sw.stop();
        assert!(sw.stopped());
        let n = count.load(Ordering::SeqCst);
        thread::sleep(Duration::from_millis(50));
        assert_eq!(count.load(Ordering::SeqCst), n, "pinged while stopped");

        sw.start();
        assert!(!sw.stopped());
        wait_for(&count, n + 3);

        hangs.set(How::Busy);
        sw.start(); // wakes it now rather than after its period
        pinger.join().expect("the pinging thread ends");
    }

    #[test]
    fn pings_at_once_when_started_and_when_resumed() {
        let sw = Arc::new(Switch::default());
        let hangs = Arc::new(Hangs::default());
        let count = Arc::new(AtomicU32::new(0));
        let pinger = {
            let (sw, hangs, count) = (sw.clone(), hangs.clone(), count.clone());
            thread::spawn(move || {
                sw.run(&hangs, Duration::from_secs(3600), || {
                    count.fetch_add(1, Ordering::SeqCst);
                })
            })
        };
        wait_for(&count, 1);
        sw.stop();
        sw.start();
        wait_for(&count, 2);
        hangs.set(How::Busy);
        sw.start();
        pinger.join().expect("the pinging thread ends");
    }
}
