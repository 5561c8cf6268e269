//! One handler per control request. Each takes the registry, does what was asked, and
//! says what happened in lines a user can read (which the CLI prints). This file holds
//! what they share: the answers, the wait for ready workers, the `ls` view of the apps.

mod apply;
mod dump;
mod lifecycle;
mod upkeep;
mod workers;

pub use apply::apply;
pub use dump::{resurrect, save};
pub use lifecycle::{delete, kill, reload, restart, start, stop, stop_all};
pub use upkeep::{flush, reset};
pub use workers::{env, scale, send, signal};

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::registry::{self, Registry, Running};
use crate::control::protocol::{AppInfo, Response};
use crate::driver::{AppRequest, RequestError};

/// How long `start` and `scale` wait for workers beyond the app's listen timeout.
const READY_SLACK: Duration = Duration::from_secs(2);
/// How long `ls` waits for one app's driver to answer: a driver answers in microseconds
/// unless its thread is stuck, and one stuck app must not hang `ls`.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) fn done(lines: Vec<String>, apps: Vec<AppInfo>) -> Response {
    Response::Done { lines, apps }
}

pub(super) fn failed(message: String, lines: Vec<String>) -> Response {
    Response::Error { message, lines }
}

/// `ping`.
pub fn ping(registry: &Registry) -> Response {
    Response::Pong {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: crate::control::protocol::VERSION,
        apps: registry.names().len(),
        since_ms: unix_ms(registry.started),
        notice: registry.previous_notice(),
    }
}

/// `ls`.
pub async fn list(registry: &Arc<Registry>) -> Response {
    done(Vec::new(), infos(registry).await)
}

/// Waits for every app to be ready, all at the same time; in the order given.
pub(super) async fn all_ready(
    apps: Vec<(String, Running, Duration)>,
) -> Vec<(String, Running, Result<(), String>)> {
    let waits: Vec<_> = apps
        .into_iter()
        .map(|(name, run, timeout)| {
            tokio::spawn(async move {
                let result = ready(&run, timeout + READY_SLACK).await;
                (name, run, result)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(waits.len());
    for w in waits {
        if let Ok(done) = w.await {
            out.push(done);
        }
    }
    out
}

/// Waits until every slot of a running app has a ready worker.
pub(super) async fn ready(run: &Running, timeout: Duration) -> Result<(), String> {
    let (tx, rx) = oneshot::channel();
    if run.commands.send(AppRequest::WhenReady(tx)).is_err() {
        return Err(ended_why(run).await);
    }
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(r)) => r.map_err(|e| say(&e)),
        Ok(Err(_)) => Err(ended_why(run).await),
        Err(_) => Err(format!(
            "not every worker was ready after {} s; it keeps trying (see `herd ls` and `herd logs`)",
            timeout.as_secs()
        )),
    }
}

/// The user's words for why a running app did not do what was asked (the driver gives the
/// facts; the commands to run next are the CLI's to name).
pub(super) fn say(e: &RequestError) -> String {
    let kept = |kept: bool| match kept {
        true => "; it keeps its previous definition",
        false => "",
    };
    match e {
        RequestError::FixedChanges(changes) => format!(
            "a reload keeps the app's sockets, and the new definition changes {}",
            changes.join(", ")
        ),
        RequestError::Errored { app, kept_previous } => format!(
            "{app} errored: its workers exited too often (see `herd logs {app}`){}",
            kept(*kept_previous)
        ),
        RequestError::NoWorker { slot, slots } if slot < slots => {
            format!("no worker runs in slot {slot} now (it is starting or waiting for its restart)")
        }
        RequestError::NoWorker { slot, slots } => match slots {
            1 => format!("it has no slot {slot}: its only slot is 0"),
            n => format!("it has no slot {slot}: its slots are 0-{}", n.saturating_sub(1)),
        },
        RequestError::ReloadStopped { app, kept_previous } => format!(
            "the reload of {app} stopped: a new worker did not become ready, the old workers keep serving{} (see `herd logs {app}`)",
            kept(*kept_previous)
        ),
    }
}

pub(super) async fn ended_why(run: &Running) -> String {
    match run.wait().await.words() {
        (state, Some(reason)) => format!("it {state}: {reason}"),
        (_, None) => {
            "it stopped (by another command, or every worker exited and none restarts)".into()
        }
    }
}

pub(super) fn running(registry: &Registry, name: &str) -> Option<Running> {
    registry.with_app(name, |a| a.run.clone()).flatten()
}

pub(super) async fn status_of(run: &Running) -> Option<crate::driver::status::AppStatus> {
    let (tx, rx) = oneshot::channel();
    run.commands.send(AppRequest::Status(tx)).ok()?;
    tokio::time::timeout(STATUS_TIMEOUT, rx).await.ok()?.ok()
}

/// Every app as `ls` shows it.
pub(super) async fn infos(registry: &Arc<Registry>) -> Vec<AppInfo> {
    let mut out = Vec::new();
    for name in registry.names() {
        let Some((mut info, run, config, last_slots)) = registry.with_app(&name, |a| {
            let info = AppInfo {
                name: name.clone(),
                namespace: registry::namespace(&a.config).map(str::to_string),
                state: a.state.to_string(),
                reason: a.reason.clone(),
                command: std::iter::once(a.config.program.clone())
                    .chain(a.config.args.iter().cloned())
                    .collect(),
                cwd: a.config.cwd.as_ref().map(|c| c.display().to_string()),
                origin: a.origin.clone(),
                toml: a.toml.clone(),
                started_ms: unix_ms(a.started),
                logs: Vec::new(),
                status: None,
            };
            (info, a.run.clone(), a.config.clone(), a.slots)
        }) else {
            continue;
        };
        if let Some(run) = run {
            info.status = status_of(&run).await;
            if let Some(s) = &info.status {
                if info.state == "running" && s.state != "running" {
                    info.state = s.state.clone();
                }
            }
        }
        let slots = info.status.as_ref().map_or(last_slots, |s| {
            s.instances
                .max(s.workers.iter().map(|w| w.slot + 1).max().unwrap_or(0))
        });
        info.logs = super::launch::log_files(registry.home(), &name, &config, slots);
        out.push(info);
    }
    // A /proc scan: off the daemon's thread, which routes every app's exits.
    let registry = registry.clone();
    tokio::task::spawn_blocking(move || {
        registry.usage.measure(&mut out);
        out
    })
    .await
    .unwrap_or_default()
}

/// Sends a request made by `make` to every running app of `select` in turn and waits for
/// each answer; `line` turns an answer into a line for the user, or an error.
pub(super) async fn ask_each<T>(
    registry: &Arc<Registry>,
    select: &[String],
    make: impl Fn(oneshot::Sender<T>) -> AppRequest,
    line: impl Fn(&str, T) -> Result<String, String>,
    not_running: impl Fn(&str) -> String,
) -> Response {
    let names = match registry.select(select) {
        Ok(n) => n,
        Err(e) => return failed(e, Vec::new()),
    };
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for name in &names {
        let Some(run) = running(registry, name) else {
            errors.push(not_running(name));
            continue;
        };
        let (tx, rx) = oneshot::channel();
        let _ = run.commands.send(make(tx));
        match rx.await {
            Ok(answer) => match line(name, answer) {
                Ok(l) => lines.push(l),
                Err(e) => errors.push(e),
            },
            // The driver ended without answering (the send failed, or it exited).
            Err(_) => errors.push(format!("{name}: {}", ended_why(&run).await)),
        }
    }
    respond(registry, lines, errors).await
}

/// The answer of a request that acted on apps: what was done, the apps now, and the
/// errors (which make it a failure).
pub(super) async fn respond(
    registry: &Arc<Registry>,
    lines: Vec<String>,
    errors: Vec<String>,
) -> Response {
    if errors.is_empty() {
        done(lines, infos(registry).await)
    } else {
        failed(errors.join("\n"), lines)
    }
}

pub(super) fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_driver_s_reasons_are_worded_for_the_user() {
        let errored = RequestError::Errored {
            app: "web".into(),
            kept_previous: true,
        };
        assert_eq!(
            say(&errored),
            "web errored: its workers exited too often (see `herd logs web`); it keeps its previous definition"
        );
        let stopped = RequestError::ReloadStopped {
            app: "web".into(),
            kept_previous: false,
        };
        assert_eq!(
            say(&stopped),
            "the reload of web stopped: a new worker did not become ready, the old workers keep serving (see `herd logs web`)"
        );
        let fixed = RequestError::FixedChanges(vec!["listen".into(), "balance".into()]);
        assert_eq!(
            say(&fixed),
            "a reload keeps the app's sockets, and the new definition changes listen, balance"
        );
    }
}
