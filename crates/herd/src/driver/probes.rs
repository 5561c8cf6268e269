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
                name: "workers".into(),
                ok: ready >= needed,
                detail: format!("{ready} of {slots} workers ready, {needed} needed"),
            },
            Check {
                name: "shutdown".into(),
                ok: !shutting_down,
                detail: if shutting_down {
                    "shutting down".into()
                } else {
                    "not shutting down".into()
                },
            },
        ],
        workers: Vec::new(),
    }
}

/// The `?verbose` line of one worker: `worker 0 (pid 4242): online, health ok in 3 ms`.
fn worker_line(w: &super::status::WorkerStatus) -> String {
    let pid = w.pid.map_or("no process".into(), |p| format!("pid {p}"));
    let mut line = format!("worker {} ({pid}): {}", w.slot, w.state);
    if let Some(h) = &w.health {
        match (&h.error, h.latency_ms) {
            (Some(e), _) => line.push_str(&format!(
                ", last health check failed ({} in a row): {e}",
                h.failures
            )),
            (None, Some(ms)) => line.push_str(&format!(", health ok in {ms:.1} ms")),
            _ => {}
        }
        if let Some(ms) = h.heartbeat_age_ms {
            line.push_str(&format!(", heartbeat {ms} ms ago"));
        }
        if let Some(ms) = h.loop_lag_ms {
            line.push_str(&format!(", event-loop lag {ms:.1} ms"));
        }
    }
    line
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
            Probe::AppMetrics(reply) => {
                let gathering = self.gather_app_metrics();
                tokio::spawn(async move {
                    let families = gathering.await;
                    let text = tokio::task::spawn_blocking(move || {
                        crate::observe::metrics::encode(&families)
                    })
                    .await
                    .unwrap_or_default();
                    let _ = reply.send(text);
                });
            }
            Probe::Metrics { openmetrics, reply } => {
                let app = self.metrics_snapshot();
                // The /proc pass and the encoding take milliseconds: not on the loop.
                tokio::task::spawn_blocking(move || {
                    let _ = reply.send(crate::observe::metrics::render(vec![app], openmetrics));
                });
            }
            Probe::View(reply) => {
                let mut status = self.status();
                let plan = &self.plan;
                let command: Vec<String> = std::iter::once(plan.program.as_os_str())
                    .chain(plan.args.iter().map(|a| a.as_os_str()))
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect();
                // Names only: values hold secrets.
                let mut env_keys: Vec<&str> = plan
                    .launch
                    .env
                    .iter()
                    .chain(&plan.extra_env)
                    .map(|(k, _)| k.as_str())
                    .collect();
                env_keys.sort_unstable();
                env_keys.dedup();
                let mut view = serde_json::json!({
                    "name": plan.name,
                    "state": status.state,
                    "command": command,
                    "cwd": plan.launch.cwd.as_ref().map(|c| c.display().to_string()),
                    "env_keys": env_keys,
                    "logs": false,
                });
                tokio::task::spawn_blocking(move || {
                    super::status::fill_usage(&mut status.workers);
                    view["status"] = serde_json::to_value(&status).unwrap_or_default();
                    let _ = reply.send(serde_json::Value::Array(vec![view]).to_string());
                });
            }
            Probe::LogPath { reply, .. } => drop(reply.send(Err(
                "this listener follows no log file: herd run writes its workers' output to its own stdout and stderr (under the daemon, `herd dashboard`'s page follows each worker's log files)".into(),
            ))),
            Probe::Act { reply, .. } => drop(reply.send(Err(
                "herd run's admin listener is read-only: reload it with SIGHUP, scale with SIGTTIN/SIGTTOU".into(),
            ))),
            Probe::Status(reply) => {
                let name = self.plan.name.clone();
                let mut status = self.status();
                // CPU and memory from /proc, off the loop, as the daemon's `ls` does.
                tokio::task::spawn_blocking(move || {
                    super::status::fill_usage(&mut status.workers);
                    let json = serde_json::json!({"name": name, "status": status});
                    let _ = reply.send(json.to_string());
                });
            }
            Probe::Ready(reply) => {
                let mut report = readiness(
                    self.sup.ready_count(),
                    self.sup.instances(),
                    self.plan.min_ready,
                    self.sup.is_shutting_down(),
                );
                // Only with checks or a watchdog: otherwise `ls` says as much, and a
                // readiness probe every second should not build a snapshot.
                if self.plan.health_check.is_some() || self.plan.policy.watchdog.is_some() {
                    report.workers = self.status().workers.iter().map(worker_line).collect();
                }
                drop(reply.send(report))
            }
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
