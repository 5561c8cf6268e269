//! `herd restart FILE` and `herd reload FILE`: the apps of a file become what it defines.
//! Apps that are not running start. Running ones take the new definition by a restart
//! (anything may change, with a short gap in service) or by a rolling reload (no gap; the
//! sockets, the balancing and the log files stay what they are, and a definition that
//! changes them is refused before anything is touched).

use std::ffi::OsString;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::super::launch::log_plan;
use super::super::registry::{Registry, Running};
use super::lifecycle::{listen_timeout, parse, started_ready, stop_names};
use super::{ended_why, respond, running, say};
use crate::config::AppConfig;
use crate::control::protocol::{Apply, Response};
use crate::driver::{AppRequest, RequestError};

/// `restart FILE` / `reload FILE`.
pub async fn apply(
    registry: &Arc<Registry>,
    toml: &str,
    origin: &str,
    env: Vec<(String, String)>,
    how: Apply,
) -> Response {
    let (apps, base_env) = match parse(registry, toml, origin, env) {
        Ok(parsed) => parsed,
        Err(response) => return response,
    };
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut started = Vec::new();
    let mut reloads = Vec::new();
    for (name, config) in apps {
        let timeout = listen_timeout(&config);
        let run = running(registry, &name);
        if let (Some(run), Apply::Reload) = (&run, how) {
            match reload_with(registry, &name, &config, &base_env, origin, run).await {
                Ok(done) => reloads.push((name, run.clone(), done, config)),
                Err(e) => errors.push(e),
            }
            continue;
        }
        if run.is_some() {
            // A definition that cannot start must not stop the app that runs.
            if let Err(e) = registry.plan(&name, config.clone(), base_env.clone()).await {
                errors.push(format!("{name}: not restarted: {e}"));
                continue;
            }
            lines.extend(stop_names(registry, std::slice::from_ref(&name)).await);
        }
        if !registry.define(&name, config, toml, origin, base_env.clone()) {
            errors.push(format!(
                "{name}: started by another command meanwhile; it runs as that one defined it"
            ));
            continue;
        }
        match registry.launch(&name).await {
            Ok(run) => started.push((name, run, timeout)),
            Err(e) => errors.push(e),
        }
    }
    // The reloads run side by side, each app slot by slot.
    for (name, run, done, config) in reloads {
        match done.await {
            Ok(Ok(())) => {
                // Recorded once in force: a reload that fails puts the old one back.
                registry.redefined(&name, config, toml, origin, base_env.clone());
                lines.push(format!(
                    "{name}: reloaded with the definition of {origin}, every worker replaced"
                ));
            }
            Ok(Err(why)) => errors.push(format!("{name}: {}", say(&why))),
            Err(_) => errors.push(format!("{name}: {}", ended_why(&run).await)),
        }
    }
    let (ready, not_ready) = started_ready(registry, started).await;
    lines.extend(ready.iter().map(|name| {
        format!("{name}: started with the definition of {origin}, every worker ready")
    }));
    errors.extend(not_ready);
    respond(registry, lines, errors).await
}

/// The log keys whose values differ, for a refusal.
fn log_changes(old: &AppConfig, new: &AppConfig) -> String {
    let changed = [
        ("out_file", old.out_file != new.out_file),
        ("error_file", old.error_file != new.error_file),
        ("log_file", old.log_file != new.log_file),
        ("merge_logs", old.merge_logs != new.merge_logs),
        (
            "log_date_format",
            old.log_date_format != new.log_date_format,
        ),
        ("log_max_size", old.log_max_size != new.log_max_size),
        ("log_files", old.log_files != new.log_files),
    ];
    let keys: Vec<&str> = changed
        .iter()
        .filter(|(_, differs)| *differs)
        .map(|(key, _)| *key)
        .collect();
    match keys.is_empty() {
        true => "them".to_string(),
        false => keys.join(", "),
    }
}

/// Hands the running app's driver its new plan. `Ok` once the driver took it, with the
/// end of the reload to await.
async fn reload_with(
    registry: &Arc<Registry>,
    name: &str,
    config: &AppConfig,
    base_env: &Arc<Vec<(OsString, OsString)>>,
    origin: &str,
    run: &Running,
) -> Result<oneshot::Receiver<Result<(), RequestError>>, String> {
    let refused = |why: &str| {
        format!(
            "{name}: not reloaded: {why}; `herd restart {origin}` applies it (with a short gap in service)"
        )
    };
    let old = registry
        .with_app(name, |a| a.config.clone())
        .ok_or_else(|| format!("{name}: deleted by another command meanwhile"))?;
    let home = registry.home();
    if log_plan(home, name, &old) != log_plan(home, name, config) {
        return Err(refused(&format!(
            "a reload keeps the app's log files, and the new definition changes {}",
            log_changes(&old, config)
        )));
    }
    let plan = registry
        .plan(name, config.clone(), base_env.clone())
        .await
        .map_err(|e| format!("{name}: {e}"))?;
    let (accepted_tx, accepted) = oneshot::channel();
    let (done_tx, done) = oneshot::channel();
    // A driver that has ended drops `accepted` unanswered: that is the answer.
    let _ = run.commands.send(AppRequest::Redefine {
        plan: Box::new(plan),
        accepted: accepted_tx,
        done: done_tx,
    });
    match accepted.await {
        Ok(Ok(())) => Ok(done),
        Ok(Err(why)) => Err(refused(&say(&why))),
        Err(_) => Err(format!("{name}: {}", ended_why(run).await)),
    }
}
