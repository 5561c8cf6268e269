//! `start`, `stop`, `restart`, `reload`, `delete` and `kill`: an app's life.

use std::ffi::OsString;
use std::sync::Arc;

use super::super::registry::{Registry, Running, State};
use super::{all_ready, ask_each, done, failed, respond};
use crate::control::protocol::Response;
use crate::driver::signals::Intent;
use crate::driver::{AppRequest, RequestError};

/// `start`: define the apps of a herd.toml text and start those not running.
pub async fn start(
    registry: &Arc<Registry>,
    toml: &str,
    origin: &str,
    env: Vec<(String, String)>,
    wait: bool,
) -> Response {
    let (apps, base_env) = match parse(toml, origin, env) {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut started = Vec::new();
    for (name, config) in apps {
        let timeout = listen_timeout(&config);
        let same = registry.with_app(&name, |a| a.config == config);
        if !registry.define(&name, config, toml, origin, base_env.clone()) {
            lines.push(match same {
                Some(false) => format!(
                    "{name}: already running, with a definition other than {origin}'s: `herd reload {origin}` (with this command's --env and --only) applies it, `herd restart {origin}` if its sockets change"
                ),
                _ => format!(
                    "{name}: already running (`herd reload {name}` replaces its workers, `herd delete {name}` forgets it)"
                ),
            });
            continue;
        }
        match registry.launch(&name).await {
            Ok(run) => started.push((name, run, timeout)),
            Err(e) => errors.push(e),
        }
    }
    if !wait {
        lines.extend(started.iter().map(|(name, ..)| format!("{name}: started")));
        return respond(registry, lines, errors).await;
    }
    let (ready, not_ready) = started_ready(registry, started).await;
    lines.extend(
        ready
            .iter()
            .map(|name| format!("{name}: started, every worker ready")),
    );
    errors.extend(not_ready);
    respond(registry, lines, errors).await
}

/// Waits until the apps just started are ready: the names of those that are, and an
/// error for each that is not. Every app's workers start at once and the waits overlap,
/// so a slow or failing app costs its own timeout once, not once per app before it.
pub(super) async fn started_ready(
    registry: &Arc<Registry>,
    started: Vec<(String, Running, std::time::Duration)>,
) -> (Vec<String>, Vec<String>) {
    let (mut ready, mut errors) = (Vec::new(), Vec::new());
    for (name, run, result) in all_ready(started).await {
        match result {
            Ok(()) => ready.push(name),
            Err(why) => {
                registry.ended_if_done(&name, &run);
                errors.push(format!("{name}: {why}"));
            }
        }
    }
    (ready, errors)
}

/// The apps of a herd.toml text by name, and the environment their workers start from.
pub(super) type Apps = (
    std::collections::BTreeMap<String, crate::config::AppConfig>,
    Arc<Vec<(OsString, OsString)>>,
);

/// The apps of a herd.toml text sent by the CLI (checked there already).
pub(super) fn parse(
    toml: &str,
    origin: &str,
    env: Vec<(String, String)>,
) -> Result<Apps, Response> {
    let file = crate::config::file::parse(toml, origin, None)
        .map_err(|e| failed(e.to_string(), Vec::new()))?;
    let base_env = env
        .into_iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
    Ok((file.apps, Arc::new(base_env)))
}

/// How long `start` waits for an app's workers (besides a slack).
pub(super) fn listen_timeout(config: &crate::config::AppConfig) -> std::time::Duration {
    config
        .listen_timeout
        .unwrap_or(crate::supervisor::DEFAULT_LISTEN_TIMEOUT)
}

/// `stop`.
pub async fn stop(registry: &Arc<Registry>, select: &[String]) -> Response {
    let names = match registry.select(select) {
        Ok(n) => n,
        Err(e) => return failed(e, Vec::new()),
    };
    let lines = stop_names(registry, &names).await;
    respond(registry, lines, Vec::new()).await
}

/// Stops the apps and waits until their drivers ended.
pub(super) async fn stop_names(registry: &Arc<Registry>, names: &[String]) -> Vec<String> {
    let mut waiting = Vec::new();
    let mut lines = Vec::new();
    for name in names {
        let run = registry.with_app(name, |app| {
            let run = app.run.clone();
            if run.is_some() {
                app.state = State::Stopping;
            }
            run
        });
        match run.flatten() {
            Some(run) => {
                let _ = run
                    .commands
                    .send(AppRequest::Intent(Intent::Shutdown("herd stop")));
                waiting.push((name.clone(), run));
            }
            None => lines.push(format!("{name}: not running")),
        }
    }
    for (name, run) in waiting {
        let ended = run.wait().await;
        registry.ended(&name, run.key, &ended);
        // A stop that ended in an error (it errored while stopping) still stopped it.
        lines.push(match ended.words() {
            (super::super::registry::State::Stopped, Some(why)) => {
                format!("{name}: stopped ({why})")
            }
            _ => format!("{name}: stopped"),
        });
    }
    lines
}

/// Stops every app (the daemon is exiting).
pub async fn stop_all(registry: &Arc<Registry>) {
    let names = registry.names();
    for line in stop_names(registry, &names).await {
        tracing::info!("{line}");
    }
}

/// `restart`: stop, then start again.
pub async fn restart(registry: &Arc<Registry>, select: &[String]) -> Response {
    let names = match registry.select(select) {
        Ok(n) => n,
        Err(e) => return failed(e, Vec::new()),
    };
    let mut lines = stop_names(registry, &names).await;
    let mut errors = Vec::new();
    let mut started = Vec::new();
    for name in &names {
        let timeout = registry
            .with_app(name, |a| listen_timeout(&a.config))
            .unwrap_or(crate::supervisor::DEFAULT_LISTEN_TIMEOUT);
        match registry.launch(name).await {
            Ok(run) => started.push((name.clone(), run, timeout)),
            Err(e) => errors.push(e),
        }
    }
    for (name, _, result) in all_ready(started).await {
        match result {
            Ok(()) => lines.push(format!("{name}: restarted")),
            Err(why) => errors.push(format!("{name}: {why}")),
        }
    }
    respond(registry, lines, errors).await
}

/// `reload`: rolling, zero downtime.
pub async fn reload(registry: &Arc<Registry>, select: &[String]) -> Response {
    ask_each(
        registry,
        select,
        AppRequest::Reload,
        |name, done: Result<(), RequestError>| {
            done.map(|()| format!("{name}: reloaded, every worker replaced"))
                .map_err(|e| super::say(&e))
        },
        |name| format!("{name}: not running (`herd restart {name}` starts it)"),
    )
    .await
}

/// `delete`: stop and forget.
pub async fn delete(registry: &Arc<Registry>, select: &[String]) -> Response {
    let names = match registry.select(select) {
        Ok(n) => n,
        Err(e) => return failed(e, Vec::new()),
    };
    stop_names(registry, &names).await;
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for name in &names {
        // Another command may have started it again while it stopped: that one wins.
        match registry.remove_if_stopped(name) {
            true => lines.push(format!("{name}: deleted")),
            false => errors.push(format!(
                "{name}: started again by another command while it stopped; not deleted"
            )),
        }
    }
    respond(registry, lines, errors).await
}

/// `kill`: answered at once; the daemon then stops every app and exits.
pub fn kill(registry: &Arc<Registry>) -> Response {
    registry.request_kill();
    done(
        vec!["stopping every app, then the daemon".to_string()],
        Vec::new(),
    )
}
