//! Writes the supervisor's lifecycle records through `tracing`, as structured events with
//! a human sentence: text by default, JSON with `--log-format json`.

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
    }
}

/// Bytes as MiB with one decimal: "181.3".
fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// Writes one lifecycle record of app `app`.
pub fn write(app: &str, log: &Log) {
    match log {
        Log::Spawning { slot, worker, generation } => {
            debug!(app, slot, worker, generation, "starting worker")
        }
        Log::Spawned { slot, pid } => info!(app, slot, pid, "worker {app}:{slot} spawned as pid {pid}"),
        Log::SpawnFailed { slot, error } => {
            error!(app, slot, error = %error, "worker {app}:{slot} could not be started: {error}")
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
            info!(app, slot, pid, after_ms = ms(*after), how = how_s,
                "worker {app}:{slot} (pid {pid}) ready after {} ms ({how_s})", ms(*after))
        }
        Log::Exited { slot, pid, status, uptime, expected } => {
            let what = describe_exit(*status);
            let uptime_ms = ms(*uptime);
            if *expected {
                info!(app, slot, pid, status = %what, uptime_ms, "worker {app}:{slot} (pid {pid}) exited with {what}")
            } else if *status == ExitStatus::Signal(libc::SIGKILL) {
                warn!(app, slot, pid, status = %what, uptime_ms,
                    "worker {app}:{slot} (pid {pid}) was killed by SIGKILL after {uptime_ms} ms (possibly the kernel's OOM killer)")
            } else if *status == ExitStatus::Code(0) {
                warn!(app, slot, pid, status = %what, uptime_ms,
                    "worker {app}:{slot} (pid {pid}) exited unexpectedly with {what} after {uptime_ms} ms")
            } else {
                warn!(app, slot, pid, status = %what, uptime_ms,
                    "worker {app}:{slot} (pid {pid}) crashed with {what} after {uptime_ms} ms")
            }
        }
        Log::Restarting { slot, delay, unstable } => info!(app, slot, delay_ms = ms(*delay), unstable,
            "restarting worker {app}:{slot} in {} ms", ms(*delay)),
        Log::Errored { unstable, window } => error!(app, unstable, window_s = window.as_secs(),
            "app {app} errored: {unstable} unstable restarts within {} s; no more restarts (reload to try again)", window.as_secs()),
        Log::NotReady { slot, pid, timeout } => warn!(app, slot, pid, timeout_ms = ms(*timeout),
            "worker {app}:{slot} (pid {pid}) not ready within the listen timeout ({} ms)", ms(*timeout)),
        Log::Stopping { slot, pid, reason } => info!(app, slot, pid, reason = reason_text(*reason),
            "stopping worker {app}:{slot} (pid {pid}): {}", reason_text(*reason)),
        Log::KillTimeout { slot, pid, timeout } => warn!(app, slot, pid, timeout_ms = ms(*timeout),
            "worker {app}:{slot} (pid {pid}) did not stop within the kill timeout ({} ms): SIGKILL", ms(*timeout)),
        Log::WorkerStopping { slot, pid } => info!(app, slot, pid, "worker {app}:{slot} (pid {pid}) says it is stopping"),
        Log::Status { slot, pid, text } => info!(app, slot, pid, status = %text, "worker {app}:{slot} status: {text}"),
        Log::ReloadStarted { generation, slots, superseded } => info!(app, generation, slots, superseded,
            "reload of {app} started: generation {generation}, {slots} slots{}", if *superseded { " (replaces the reload under way)" } else { "" }),
        Log::ReloadProgress { slot, done, total } => info!(app, slot, done, total, "reload of {app}: slot {slot} replaced ({done}/{total})"),
        Log::ReloadDone { generation } => info!(app, generation, "reload of {app} done: every worker runs generation {generation}"),
        Log::ReloadAborted { slot, reason } => error!(app, slot, reason = %reason,
            "reload of {app} aborted at slot {slot}: {reason}; the old workers keep serving"),
        Log::ShutdownStarted { workers } => info!(app, workers, "shutting down {app}: stopping {workers} workers"),
        Log::ShutdownForced { workers } => warn!(app, workers, "forced shutdown of {app}: killing {workers} workers"),
        Log::Scaled { from, to } => info!(app, from, to, "scaled {app} from {from} to {to} workers"),
        Log::Recovered => info!(app, "app {app} leaves the errored state"),
        Log::Ignored { what, why } => warn!(app, what, why, "{what} ignored: {why}"),
        Log::NotRestarted { slot, pid, reason } => {
            let (reason_s, code) = match reason {
                NoRestart::AutorestartOff => ("autorestart is off".to_string(), None),
                NoRestart::StopExitCode(c) => (format!("exit code {c} is a stop exit code"), Some(*c)),
            };
            let who = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
            info!(app, slot, pid = ?pid, reason = %reason_s, code = ?code,
                "worker {app}:{slot}{who} not restarted: {reason_s}")
        }
        Log::AppStopped { clean: true } => info!(app, clean = true,
            "app {app} stopped: every worker exited and none is restarted"),
        Log::AppStopped { clean: false } => warn!(app, clean = false,
            "app {app} stopped: every worker exited, some with a failure, and none is restarted"),
        Log::MemoryOverLimit { slot, pid, rss, limit } => warn!(app, slot, pid, rss, limit,
            "worker {app}:{slot} (pid {pid}) uses {} MiB, over the limit of {} MiB: starting a replacement", mib(*rss), mib(*limit)),
        Log::MemoryRestartFailed { slot, reason, retry_in } => error!(app, slot, reason = %reason, retry_in_ms = ms(*retry_in),
            "memory restart of worker {app}:{slot} failed: {reason}; the old worker keeps serving (next attempt in {} ms at the earliest)", ms(*retry_in)),
        Log::UnknownNotify { pid } => warn!(app, pid, "notify message from pid {pid}, which is not a worker: ignored"),
    }
}
