//! herd as a `Type=notify` service of systemd (`herd run`, `herd::Cluster`): what it tells
//! the service manager named by its own `NOTIFY_SOCKET`, and the watchdog pings systemd
//! asks for with `WATCHDOG_USEC`.
//!
//! The decisions are [`Announcer::update`], a pure function of what the supervisor says
//! after each step: `READY=1` once every slot's worker is ready, `STATUS=` when the count
//! changes, `RELOADING=1` (with `MONOTONIC_USEC`, as `Type=notify-reload` requires) when a
//! rolling reload begins and `READY=1` when it ends (done or aborted: the old workers
//! serve either way), `STOPPING=1` when a shutdown is asked for. The daemon's apps do not
//! announce anything (the daemon speaks for itself). Sending is best effort: a service
//! manager that went away must not stop herd.

use std::time::Duration;

/// What the supervisor says after a step, as the service manager cares about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct View {
    /// Ready workers serving.
    pub ready: usize,
    /// Slots wanted.
    pub slots: usize,
    /// A rolling reload is under way.
    pub reloading: bool,
    /// A shutdown was asked for.
    pub shutting_down: bool,
}

/// What has been announced so far.
#[derive(Debug, Default)]
pub(super) struct Announcer {
    ready_sent: bool,
    reloading: bool,
    stopping: bool,
    status: String,
}

impl Announcer {
    /// The messages `view` calls for, in order (each one datagram); `monotonic_usec` is
    /// CLOCK_MONOTONIC now, for `RELOADING=1`.
    pub(super) fn update(&mut self, view: View, monotonic_usec: u64) -> Vec<String> {
        let mut out = Vec::new();
        if view.shutting_down {
            if !self.stopping {
                self.stopping = true;
                out.push("STOPPING=1".to_string());
                out.push(format!(
                    "STATUS=shutting down, {} of {} workers ready",
                    view.ready, view.slots
                ));
            }
            return out;
        }
        if view.reloading && !self.reloading && self.ready_sent {
            self.reloading = true;
            out.push(format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}"));
        }
        if !view.reloading && self.reloading {
            self.reloading = false;
            out.push("READY=1".to_string());
        }
        if !self.ready_sent && view.slots > 0 && view.ready >= view.slots {
            self.ready_sent = true;
            out.push("READY=1".to_string());
        }
        let status = format!(
            "{} of {} workers ready{}",
            view.ready,
            view.slots,
            if self.reloading { ", reloading" } else { "" }
        );
        if status != self.status {
            out.push(format!("STATUS={status}"));
            self.status = status;
        }
        out
    }
}

/// Whether the app speaks for the process (`herd run`, not the daemon's apps) and a
/// service manager listens (`NOTIFY_SOCKET` is set).
pub(super) fn enabled(speaks_for_the_process: bool) -> bool {
    speaks_for_the_process && std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// How often to send `WATCHDOG=1`: half of systemd's `WATCHDOG_USEC` (sd_watchdog_enabled's
/// advice), if it is set for this process (`WATCHDOG_PID` absent or ours).
pub(super) fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim() != std::process::id().to_string() {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// CLOCK_MONOTONIC in microseconds (systemd's clock for `MONOTONIC_USEC`).
pub(super) fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
        .unwrap_or(0)
}

/// Sends one message to herd's own `NOTIFY_SOCKET` (see [`enabled`]).
pub(super) fn send(message: &str) {
    if let Err(e) = herd_worker::notify(message) {
        tracing::debug!("NOTIFY_SOCKET: cannot send {message:?}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(ready: usize, reloading: bool, shutting_down: bool) -> View {
        View {
            ready,
            slots: 2,
            reloading,
            shutting_down,
        }
    }

    #[test]
    fn ready_once_every_slot_is_then_reloading_then_ready_then_stopping() {
        let mut a = Announcer::default();
        assert_eq!(
            a.update(view(0, false, false), 1),
            ["STATUS=0 of 2 workers ready"]
        );
        assert_eq!(
            a.update(view(1, false, false), 2),
            ["STATUS=1 of 2 workers ready"]
        );
        assert_eq!(
            a.update(view(2, false, false), 3),
            ["READY=1", "STATUS=2 of 2 workers ready"]
        );
        assert!(a.update(view(2, false, false), 4).is_empty(), "nothing new");
        assert_eq!(
            a.update(view(2, true, false), 5),
            [
                "RELOADING=1\nMONOTONIC_USEC=5",
                "STATUS=2 of 2 workers ready, reloading"
            ]
        );
        assert_eq!(
            a.update(view(2, false, false), 6),
            ["READY=1", "STATUS=2 of 2 workers ready"]
        );
        assert_eq!(
            a.update(view(1, false, true), 7),
            ["STOPPING=1", "STATUS=shutting down, 1 of 2 workers ready"]
        );
        assert!(a.update(view(0, false, true), 8).is_empty());
    }

    #[test]
    fn a_reload_before_the_first_ready_is_no_reload_for_systemd() {
        let mut a = Announcer::default();
        a.update(view(0, false, false), 1);
        let out = a.update(view(0, true, false), 2);
        assert!(!out.iter().any(|m| m.starts_with("RELOADING")), "{out:?}");
    }
}
