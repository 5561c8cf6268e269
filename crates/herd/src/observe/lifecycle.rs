//! Writes the supervisor's lifecycle records through `tracing`, as structured events with
//! a human sentence: text by default, JSON with `--log-format json` (or `HERD_LOG_FORMAT=json`).
//!
//! # The `event` field: a contract
//!
//! The sentence is for people and may change. Every record also carries a stable,
//! machine-readable `event` name and the fields below; log queries and tests match on
//! those. In JSON mode each record is one object per line with every field at the top
//! level, next to `timestamp`, `level` and `message`, e.g.
//!
//! ```text
//! {"timestamp":"…","level":"INFO","message":"worker api:0 (pid 4242) ready after 31 ms (READY=1)","app":"api","event":"worker.ready","slot":0,"pid":4242,"after_ms":31,"how":"READY=1"}
//! ```
//!
//! Each record has `app` (the app's name) and `event`; the other fields by event:
//!
//! | `event` | level | fields |
//! |---|---|---|
//! | `worker.starting` | DEBUG | `slot`, `worker`, `generation` |
//! | `worker.spawned` | INFO | `slot`, `pid` |
//! | `worker.spawn_failed` | ERROR | `slot`, `error` |
//! | `worker.ready` | INFO | `slot`, `pid`, `after_ms`, `how` (`READY=1`, `"ready" message`, `Node cluster worker listening`, `its port accepts connections`, `ready delay`, or `no READY=1 within the auto delay, assumed ready`) |
//! | `worker.exited` | INFO if `expected`, else WARN | `slot`, `pid`, `status` (`code N` or a signal name such as `SIGKILL`), `uptime_ms`, `expected` (false for a crash) |
//! | `worker.restarting` | INFO | `slot`, `delay_ms`, `unstable` |
//! | `worker.not_ready` | WARN | `slot`, `pid`, `timeout_ms` |
//! | `worker.stopping` | INFO | `slot`, `pid`, `reason` |
//! | `worker.kill_timeout` | WARN | `slot`, `pid`, `timeout_ms` |
//! | `worker.stopping_announced` | INFO | `slot`, `pid` |
//! | `worker.status` | INFO | `slot`, `pid`, `status` |
//! | `worker.not_restarted` | INFO | `slot`, `pid` (absent if none), `reason`, `code` (the stop exit code, if that is the reason) |
//! | `worker.memory_over_limit` | WARN | `slot`, `pid`, `rss`, `limit` (bytes) |
//! | `worker.memory_restart_failed` | ERROR | `slot`, `reason`, `retry_in_ms` |
//! | `worker.hung` | ERROR | `slot`, `pid`, `cause` (`health` or `watchdog`), `detail` (it leaves the route; a replacement starts) |
//! | `worker.never_healthy` | ERROR | `slot`, `pid`, `within_ms`, `last` (the last check's error, if any): a failed start |
//! | `worker.hung_restart_failed` | ERROR | `slot`, `reason` (the hung worker is stopped; its slot restarts) |
//! | `health.failed` | WARN | `slot`, `pid`, `failures`, `threshold`, `error` (a counted failed health check) |
//! | `health.recovered` | INFO | `slot`, `pid`, `failures` (passed again after that many failures) |
//! | `app.errored` | ERROR | `unstable`, `window_s` |
//! | `app.recovered` | INFO | |
//! | `app.scaled` | INFO | `from`, `to` |
//! | `app.stopped` | INFO if `clean`, else WARN | `clean` |
//! | `reload.started` | INFO | `generation`, `slots`, `superseded` |
//! | `reload.progress` | INFO | `slot`, `done`, `total` |
//! | `reload.done` | INFO | `generation` |
//! | `reload.aborted` | ERROR | `slot`, `reason` |
//! | `shutdown.delayed` | INFO | `delay_ms` (`--shutdown-delay`: not ready now, stopping after it) |
//! | `shutdown.started` | INFO | `workers` |
//! | `shutdown.forced` | WARN | `workers` |
//! | `request.ignored` | WARN | `what`, `why` |
//! | `notify.unknown_sender` | WARN | `pid` |
//! | `herd.listening` | INFO | `addr`, `balance`, `inherited` (true: the socket came from socket activation, `LISTEN_FDS`) |
//! | `herd.starting` | INFO | `instances`, `reason` (how `-i` was resolved, e.g. `-i max = 2 workers: …`) |
//! | `herd.listening_on_demand` | INFO | `addr`, `slot` (the Node cluster worker that asked) |
//! | `worker.disconnecting` | INFO | `pid` (a Node cluster worker told to close its servers) |
//! | `admin.listening` | INFO | `addr` (the admin listener's, `--admin`) |
//! | `herd.exiting` | INFO | `code` (no `app`) |
//! | `herd.memory_limit` | INFO | `limit` (bytes), `reason` (`max_memory_restart` resolved, e.g. `40% of the container memory limit 1 GiB (cgroup v2 memory.max) = 409.6 MiB`) |
//! | `herd.memory_overcommitted` | WARN | `instances`, `limit` (each worker's), `total`, `container_limit` (bytes) |
//! | `reload.scheduled` | INFO | `schedule` (`cron_restart` as written), `next` (the following time, RFC 3339 with the local offset; empty if none) |
//! | `herd.watching` | INFO | `paths` (the watched paths, absolute, `, `-separated), `dirs` (directories watched), `took_ms`, `ignored` (the ignore rules) |
//! | `app.changed` | INFO | `paths` (the first 5 changed paths, relative to the app's directory, `, `-separated), `changed` (distinct changed paths, counted up to 10 000): a rolling reload follows |
//! | `watch.failed` | WARN | `error` (a directory that could not be watched, with the sysctl to raise at the watch limit; changes that were lost) |
//! | `slot.vacated` | INFO | `slot` (its worker died: the connections queued on its reuseport socket moved to live workers, `net.ipv4.tcp_migrate_req = 1`) |
//!
//! The last thirteen are written by the driver (`src/driver/`; the memory records through
//! [`super::memory`]), not here: `herd.listening` once
//! per bound listener, `herd.starting` before the first worker, `herd.memory_limit` after it
//! when `max_memory_restart` is set and `herd.memory_overcommitted` when the workers' limits
//! add up to more than the container's memory limit, `herd.listening_on_demand`
//! when a Node cluster worker's `listen()` makes herd bind a socket it was not given,
//! `worker.disconnecting` when a Node cluster worker is stopped as `worker.kill()` does,
//! `herd.exiting` as the last line of `herd run`, `reload.scheduled` when the schedule starts
//! a rolling reload (its `reload.started` follows), and with `watch`: `herd.watching` before
//! the first worker, `app.changed` for each burst of changes, `watch.failed` when a part of
//! the tree cannot be watched, and `slot.vacated` when a dead worker's queued connections
//! moved to live workers. Names are
//! only ever added; a renamed or removed name or field is a breaking change. The README
//! lists them too ("Lifecycle events: a contract"); a test below checks both lists.

use std::time::Duration;

use tracing::{debug, error, info, warn};

use crate::supervisor::{ExitStatus, Log, NoRestart, ReadyHow, StopReason};

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// Describes an exit status: "code 1", "SIGKILL".
pub fn describe_exit(status: ExitStatus) -> String {
    match status {
        ExitStatus::Code(c) => format!("code {c}"),
        ExitStatus::Signal(s) => signal_name(s),
    }
}

fn reason_text(r: StopReason) -> &'static str {
    match r {
        StopReason::Shutdown => "shutdown",
        StopReason::Replaced => "replaced by a new worker",
        StopReason::ScaleDown => "scale down",
        StopReason::NotReady => "not ready in time",
        StopReason::ReloadCancelled => "reload cancelled",
        StopReason::MemoryLimit => "over the memory limit, replaced by a new worker",
        StopReason::Hung => "hung",
    }
}

/// Bytes as MiB with one decimal: "181.3".
fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// The stable name of a record, its `event` field (the module doc lists them).
pub fn event_name(log: &Log) -> &'static str {
    match log {
        Log::Spawning { .. } => "worker.starting",
        Log::Spawned { .. } => "worker.spawned",
        Log::SpawnFailed { .. } => "worker.spawn_failed",
        Log::Ready { .. } => "worker.ready",
        Log::Exited { .. } => "worker.exited",
        Log::Restarting { .. } => "worker.restarting",
        Log::Errored { .. } => "app.errored",
        Log::NotReady { .. } => "worker.not_ready",
        Log::Stopping { .. } => "worker.stopping",
        Log::KillTimeout { .. } => "worker.kill_timeout",
        Log::WorkerStopping { .. } => "worker.stopping_announced",
        Log::Status { .. } => "worker.status",
        Log::ReloadStarted { .. } => "reload.started",
        Log::ReloadProgress { .. } => "reload.progress",
        Log::ReloadDone { .. } => "reload.done",
        Log::ReloadAborted { .. } => "reload.aborted",
        Log::ShutdownDelayed { .. } => "shutdown.delayed",
        Log::ShutdownStarted { .. } => "shutdown.started",
        Log::ShutdownForced { .. } => "shutdown.forced",
        Log::Scaled { .. } => "app.scaled",
        Log::Recovered => "app.recovered",
        Log::Ignored { .. } => "request.ignored",
        Log::NotRestarted { .. } => "worker.not_restarted",
        Log::AppStopped { .. } => "app.stopped",
        Log::MemoryOverLimit { .. } => "worker.memory_over_limit",
        Log::MemoryRestartFailed { .. } => "worker.memory_restart_failed",
        Log::UnknownNotify { .. } => "notify.unknown_sender",
        Log::HealthCheckFailed { .. } => "health.failed",
        Log::HealthRecovered { .. } => "health.recovered",
        Log::Hung { .. } => "worker.hung",
        Log::NeverHealthy { .. } => "worker.never_healthy",
        Log::HungRestartFailed { .. } => "worker.hung_restart_failed",
    }
}

/// Writes one lifecycle record of app `app`.
pub fn write(app: &str, log: &Log) {
    let event = event_name(log);
    match log {
        Log::Spawning { slot, worker, generation } => {
            debug!(app, event, slot, worker, generation, "starting worker")
        }
        Log::Spawned { slot, pid } => info!(app, event, slot, pid, "worker {app}:{slot} spawned as pid {pid}"),
        Log::SpawnFailed { slot, error } => {
            error!(app, event, slot, error = %error, "worker {app}:{slot} could not be started: {error}")
        }
        Log::Ready { slot, pid, after, how } => {
            let how_s = match how {
                ReadyHow::Notify => "READY=1",
                ReadyHow::Message => "\"ready\" message",
                                ReadyHow::Listening => "Node cluster worker listening",
                ReadyHow::PortOpen => "its port accepts connections",
                ReadyHow::Delay => "ready delay",
                ReadyHow::Assumed => "no READY=1 within the auto delay, assumed ready",
            };
            info!(app, event, slot, pid, after_ms = ms(*after), how = how_s,
                "worker {app}:{slot} (pid {pid}) ready after {} ms ({how_s})", ms(*after))
        }
        Log::Exited { slot, pid, status, uptime, expected, stopped_for } => {
            let what = describe_exit(*status);
            let uptime_ms = ms(*uptime);
            if let (false, Some(reason)) = (*expected, stopped_for) {
                // Stopped by herd for a fault of its own (not ready in time): a failure,
                // but not a crash nor an exit of its own.
                warn!(app, event, slot, pid, status = %what, uptime_ms, expected,
                    "worker {app}:{slot} (pid {pid}) exited with {what} after {uptime_ms} ms, stopped by herd: {}", reason_text(*reason))
            } else if *expected {
                info!(app, event, slot, pid, status = %what, uptime_ms, expected, "worker {app}:{slot} (pid {pid}) exited with {what}")
            } else if *status == ExitStatus::Signal(libc::SIGKILL) {
                warn!(app, event, slot, pid, status = %what, uptime_ms, expected,
                    "worker {app}:{slot} (pid {pid}) was killed by SIGKILL after {uptime_ms} ms (possibly the kernel's OOM killer)")
            } else if *status == ExitStatus::Code(0) {
                warn!(app, event, slot, pid, status = %what, uptime_ms, expected,
                    "worker {app}:{slot} (pid {pid}) exited unexpectedly with {what} after {uptime_ms} ms")
            } else {
                warn!(app, event, slot, pid, status = %what, uptime_ms, expected,
                    "worker {app}:{slot} (pid {pid}) crashed with {what} after {uptime_ms} ms")
            }
        }
        Log::Restarting { slot, delay, unstable } => info!(app, event, slot, delay_ms = ms(*delay), unstable,
            "restarting worker {app}:{slot} in {} ms", ms(*delay)),
        Log::Errored { unstable, window } => error!(app, event, unstable, window_s = window.as_secs(),
            "app {app} errored: {unstable} unstable restarts within {} s; no more restarts (reload to try again)", window.as_secs()),
        Log::NotReady { slot, pid, timeout } => warn!(app, event, slot, pid, timeout_ms = ms(*timeout),
            "worker {app}:{slot} (pid {pid}) not ready within the listen timeout ({} ms)", ms(*timeout)),
        Log::Stopping { slot, pid, reason } => info!(app, event, slot, pid, reason = reason_text(*reason),
            "stopping worker {app}:{slot} (pid {pid}): {}", reason_text(*reason)),
        Log::KillTimeout { slot, pid, timeout } => warn!(app, event, slot, pid, timeout_ms = ms(*timeout),
            "worker {app}:{slot} (pid {pid}) did not stop within the kill timeout ({} ms): SIGKILL", ms(*timeout)),
        Log::WorkerStopping { slot, pid } => info!(app, event, slot, pid, "worker {app}:{slot} (pid {pid}) says it is stopping"),
        Log::Status { slot, pid, text } => info!(app, event, slot, pid, status = %text, "worker {app}:{slot} status: {text}"),
        Log::ReloadStarted { generation, slots, superseded } => info!(app, event, generation, slots, superseded,
            "reload of {app} started: generation {generation}, {slots} slots{}", if *superseded { " (replaces the reload under way)" } else { "" }),
        Log::ReloadProgress { slot, done, total } => info!(app, event, slot, done, total, "reload of {app}: slot {slot} replaced ({done}/{total})"),
        Log::ReloadDone { generation } => info!(app, event, generation, "reload of {app} done: every worker runs generation {generation}"),
        Log::ReloadAborted { slot, reason } => error!(app, event, slot, reason = %reason,
            "reload of {app} aborted at slot {slot}: {reason}; the old workers keep serving"),
        Log::ShutdownDelayed { delay } => info!(app, event, delay_ms = ms(*delay),
            "shutdown of {app} asked for: not ready now, its workers serve {} more, then stop", crate::units::format_duration(*delay)),
        Log::ShutdownStarted { workers } => info!(app, event, workers, "shutting down {app}: stopping {workers} workers"),
        Log::ShutdownForced { workers } => warn!(app, event, workers, "forced shutdown of {app}: killing {workers} workers"),
        Log::Scaled { from, to } => info!(app, event, from, to, "scaled {app} from {from} to {to} workers"),
        Log::Recovered => info!(app, event, "app {app} leaves the errored state"),
        Log::Ignored { what, why } => warn!(app, event, what, why, "{what} ignored: {why}"),
        Log::NotRestarted { slot, pid, reason } => {
            let (reason_s, code) = match reason {
                NoRestart::AutorestartOff => ("autorestart is off".to_string(), None),
                NoRestart::StopExitCode(c) => (format!("exit code {c} is a stop exit code"), Some(*c)),
            };
            let who = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
            info!(app, event, slot, pid = ?pid, reason = %reason_s, code = ?code,
                "worker {app}:{slot}{who} not restarted: {reason_s}")
        }
        Log::AppStopped { clean: true } => info!(app, event, clean = true,
            "app {app} stopped: every worker exited and none is restarted"),
        Log::AppStopped { clean: false } => warn!(app, event, clean = false,
            "app {app} stopped: every worker exited, some with a failure, and none is restarted"),
        Log::MemoryOverLimit { slot, pid, rss, limit } => warn!(app, event, slot, pid, rss, limit,
            "worker {app}:{slot} (pid {pid}) uses {} MiB, over the limit of {} MiB: starting a replacement", mib(*rss), mib(*limit)),
        Log::MemoryRestartFailed { slot, reason, retry_in } => error!(app, event, slot, reason = %reason, retry_in_ms = ms(*retry_in),
            "memory restart of worker {app}:{slot} failed: {reason}; the old worker keeps serving (next attempt in {} ms at the earliest)", ms(*retry_in)),
        Log::UnknownNotify { pid } => warn!(app, event, pid, "notify message from pid {pid}, which is not a worker: ignored"),
        Log::HealthCheckFailed { slot, pid, failures, threshold, error } => warn!(app, event, slot, pid, failures, threshold, error = %error,
            "health check of worker {app}:{slot} (pid {pid}) failed ({failures} of {threshold} in a row): {error}"),
        Log::HealthRecovered { slot, pid, failures } => info!(app, event, slot, pid, failures,
            "worker {app}:{slot} (pid {pid}) passed its health check again after {failures} failed"),
        Log::Hung { slot, pid, cause, detail } => {
            let cause = cause.reason().as_str();
            error!(app, event, slot, pid, cause, detail = %detail,
                "worker {app}:{slot} (pid {pid}) is hung: {detail}; it gets no new connections and a replacement starts")
        }
        Log::NeverHealthy { slot, pid, within, last } => {
            let last_s = last.as_deref().map(|e| format!(" (last check: {e})")).unwrap_or_default();
            let last = last.as_deref().unwrap_or("");
            error!(app, event, slot, pid, within_ms = ms(*within), last,
                "worker {app}:{slot} (pid {pid}) never passed a health check within {}{last_s}: a failed start", crate::units::format_duration(*within))
        }
        Log::HungRestartFailed { slot, reason } => error!(app, event, slot, reason = %reason,
            "replacement of hung worker {app}:{slot} failed: {reason}; stopping the hung worker, its slot restarts"),
    }
}

#[cfg(test)]
mod tests {
    /// The names `event_name` gives, read from this file's source.
    fn names() -> Vec<&'static str> {
        let src = include_str!("lifecycle.rs");
        let body = &src[src.find("pub fn event_name").unwrap()..];
        let body = &body[..body.find("\n}\n").unwrap()];
        body.lines()
            .filter_map(|l| l.split("=> \"").nth(1)?.split('"').next())
            .collect()
    }

    /// The contract: each name once, and listed in the module doc and the README (with
    /// the driver's own records).
    #[test]
    fn every_event_name_is_unique_and_documented() {
        let names = names();
        assert_eq!(names.len(), 32, "{names:?}");
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        let doc = include_str!("lifecycle.rs");
        let readme = include_str!("../../../../README.md");
        let driver = [
            "herd.listening",
            "herd.starting",
            "herd.listening_on_demand",
            "worker.disconnecting",
            "admin.listening",
            "herd.exiting",
            "herd.memory_limit",
            "herd.memory_overcommitted",
            "reload.scheduled",
            "herd.watching",
            "app.changed",
            "watch.failed",
            "slot.vacated",
        ];
        for name in names.iter().chain(&driver) {
            let cell = format!("| `{name}` |");
            assert!(doc.contains(&cell), "{name} is not in the module doc");
            assert!(readme.contains(&cell), "{name} is not in the README");
        }
    }
}
