//! What the loop tells the outside about the app: systemd (`announce`), and the admin
//! listener's questions: that the loop turns (`/livez`), and whether the app
//! is ready (`/readyz`). What "ready" means is decided here, in [`readiness`], a pure
//! function of what the supervisor knows.

use super::Driver;
use crate::admin::{Check, Probe, Report};
use crate::config::settings::MinReady;

/// `/readyz` of an app with `ready` ready workers in `slots` slots: at least `min_ready`
/// of them ready (`all`: every slot's), and no shutdown begun. A shutdown fails it at
/// once, while the workers still serve, so that load balancers stop sending new clients
/// before the workers stop.
pub(super) fn readiness(
    ready: usize,
    slots: usize,
    min_ready: MinReady,
    shutting_down: bool,
) -> Report {
    let needed = min_ready.of(slots);
    Report {
        checks: vec![
            Check {
                name: "workers",
                ok: ready >= needed,
                detail: format!("{ready} of {slots} workers ready, {needed} needed"),
            },
            Check {
                name: "shutdown",
                ok: !shutting_down,
                detail: if shutting_down {
                    "shutting down".into()
                } else {
                    "not shutting down".into()
                },
            },
        ],
    }
}

impl Driver {
    /// Tells systemd what changed since the last step (`herd run` only).
    pub(super) fn announce(&mut self) {
        let Some(announcer) = self.announcer.as_mut() else {
            return;
        };
        let view = super::service::View {
            ready: self.sup.ready_count(),
            slots: self.sup.instances(),
            reloading: self.sup.is_reloading(),
            shutting_down: self.sup.is_shutting_down(),
        };
        for message in announcer.update(view, super::service::monotonic_usec()) {
            super::service::send(&message);
        }
    }

    pub(super) fn answer_probe(&mut self, probe: Probe) {
        match probe {
            // Answered from the loop: that it answers is the check.
            Probe::Live(reply) => drop(reply.send(())),
            Probe::Ready(reply) => drop(reply.send(readiness(
                self.sup.ready_count(),
                self.sup.instances(),
                self.plan.min_ready,
                self.sup.is_shutting_down(),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_with_enough_workers_and_no_shutdown() {
        assert!(readiness(1, 2, MinReady::Count(1), false).ready());
        assert!(!readiness(0, 2, MinReady::Count(1), false).ready());
        assert!(!readiness(1, 2, MinReady::All, false).ready());
        assert!(readiness(2, 2, MinReady::All, false).ready());
        // More needed than there are slots: never ready, and it says why.
        let r = readiness(2, 2, MinReady::Count(3), false);
        assert!(!r.ready());
        assert_eq!(r.checks[0].detail, "2 of 2 workers ready, 3 needed");
    }

    #[test]
    fn a_shutdown_fails_it_whatever_the_workers() {
        let r = readiness(2, 2, MinReady::Count(1), true);
        assert!(!r.ready());
        assert!(r.checks[0].ok && !r.checks[1].ok);
    }
}
