//! The daemon's admin listener (`herd daemon --admin ADDR`): `/livez` and `/readyz` for
//! every app at once. Each question goes to every running app's own loop, as
//! [`AppRequest::Probe`], so the answers are the apps' loops' answers: `/livez` passes when
//! the daemon and every app loop answer; `/readyz` passes when every app that should run is
//! ready by its own rules (`min_ready`, no shutdown), with one `?verbose` line per app.
//! An app stopped on purpose counts as passing (it is not supposed to serve); an errored one
//! fails. `/metrics` asks every running app's loop for its snapshot, then renders them all
//! with one pass over `/proc`, each app's series labelled `app` (and `namespace`).

use std::sync::Arc;

use tokio::sync::oneshot;

use super::registry::{Registry, State};
use crate::admin::{Check, Probe, Report, LOOP_ANSWER};
use crate::driver::AppRequest;

/// `herd metrics`: the exposition of the selected apps (every app when none is named), as
/// `/metrics` (Prometheus text) or `/metrics/app` serve it.
pub(super) async fn exposition(
    registry: &Arc<Registry>,
    select: &[String],
    app_own: bool,
) -> crate::control::protocol::Response {
    use crate::control::protocol::Response;
    let chosen = if select.is_empty() {
        registry.names()
    } else {
        match registry.select(select) {
            Ok(names) => names,
            Err(message) => {
                return Response::Error {
                    message,
                    lines: Vec::new(),
                }
            }
        }
    };
    let apps: Vec<Target> = targets(registry)
        .into_iter()
        .filter(|t| chosen.contains(&t.name))
        .collect();
    let (reply, rx) = oneshot::channel();
    if app_own {
        app_metrics(apps, reply).await;
    } else {
        metrics(apps, false, reply).await;
    }
    Response::Done {
        lines: vec![rx.await.unwrap_or_default()],
        apps: Vec::new(),
    }
}

/// Serves `listener`, answering its questions from the apps' loops; its dashboard acts
/// for a page that has `token`.
pub(super) fn start(
    listener: crate::admin::Listener,
    registry: Arc<Registry>,
    token: Option<String>,
) {
    let (tx, mut rx) = crate::admin::probes();
    tokio::spawn(crate::admin::serve(
        listener,
        tx,
        crate::admin::Access { token },
    ));
    tokio::spawn(async move {
        while let Some(probe) = rx.recv().await {
            let registry = registry.clone();
            // One task per question: a slow app delays its own answer, not the next question.
            tokio::spawn(async move { answer(&registry, probe).await });
        }
    });
}

/// What an app is, for a question: its name, its namespace and, if its driver runs, where
/// to ask.
struct Target {
    name: String,
    namespace: Option<String>,
    state: State,
    commands: Option<tokio::sync::mpsc::UnboundedSender<AppRequest>>,
}

fn targets(registry: &Registry) -> Vec<Target> {
    let inner = registry.lock();
    inner
        .apps
        .iter()
        .map(|(name, app)| Target {
            name: name.clone(),
            namespace: super::registry::namespace(&app.config).map(str::to_string),
            state: app.state,
            commands: app.run.as_ref().map(|r| r.commands.clone()),
        })
        .collect()
}

/// Every running app's own metrics (labelled `app`, and `namespace`), merged.
async fn app_metrics(apps: Vec<Target>, reply: oneshot::Sender<String>) {
    let mut asked = Vec::new();
    for t in apps {
        let Some(c) = t.commands else { continue };
        let (tx, rx) = oneshot::channel();
        if c.send(AppRequest::AppMetrics(tx)).is_ok() {
            asked.push((t.namespace, rx));
        }
    }
    let mut all = Vec::new();
    for (namespace, rx) in asked {
        // Each app bounds its own scrape; this bounds an app whose loop does not answer.
        if let Ok(Ok(mut families)) = tokio::time::timeout(crate::admin::METRICS_ANSWER, rx).await {
            if let Some(ns) = namespace {
                crate::observe::metrics::label_all(&mut families, &[("namespace", ns)]);
            }
            all.extend(families);
        }
    }
    let _ = tokio::task::spawn_blocking(move || {
        let (merged, errors) = crate::observe::metrics::merge(all);
        for e in errors {
            tracing::warn!("app metrics: {e}");
        }
        let _ = reply.send(crate::observe::metrics::encode(&merged));
    })
    .await;
}

/// Every running app's snapshot, within the loop's answer time, then the exposition.
async fn metrics(apps: Vec<Target>, openmetrics: bool, reply: oneshot::Sender<String>) {
    let mut asked = Vec::new();
    for t in apps {
        let Some(c) = t.commands else { continue };
        let (tx, rx) = oneshot::channel();
        if c.send(AppRequest::Snapshot(tx)).is_ok() {
            asked.push((t.namespace, rx));
        }
    }
    let mut snapshots = Vec::new();
    for (namespace, rx) in asked {
        // An app whose loop does not answer in time is left out of this scrape.
        if let Ok(Ok(mut s)) = tokio::time::timeout(LOOP_ANSWER, rx).await {
            s.namespace = namespace;
            snapshots.push(s);
        }
    }
    let _ = tokio::task::spawn_blocking(move || {
        let _ = reply.send(crate::observe::metrics::render(snapshots, openmetrics));
    })
    .await;
}

async fn answer(registry: &Arc<Registry>, probe: Probe) {
    let apps = targets(registry);
    match probe {
        Probe::View(reply) => {
            let _ = reply.send(view(registry).await);
        }
        Probe::LogPath { app, slot, reply } => {
            let _ = reply.send(log_files(registry, &app, slot));
        }
        Probe::Act { action, reply } => {
            let _ = reply.send(act(registry, action).await);
        }
        Probe::Metrics { openmetrics, reply } => metrics(apps, openmetrics, reply).await,
        Probe::Status(reply) => {
            let mut apps = super::handlers::infos(registry).await;
            // Whoever reaches the listener reads this: the definition without env values.
            for app in &mut apps {
                app.toml = crate::config::file::redact_env(&app.toml);
            }
            let _ = reply.send(serde_json::to_string(&apps).unwrap_or_default());
        }
        Probe::AppMetrics(reply) => app_metrics(apps, reply).await,
        Probe::Live(reply) => {
            let mut asked = Vec::new();
            for t in &apps {
                if let Some(c) = &t.commands {
                    let (tx, rx) = oneshot::channel();
                    if c.send(AppRequest::Probe(Probe::Live(tx))).is_ok() {
                        asked.push(rx);
                    }
                }
            }
            let all = async {
                for rx in asked {
                    // An app that ended meanwhile dropped the question: not a stuck loop.
                    let _ = rx.await;
                }
            };
            // A loop that does not answer leaves the reply unsent: `/livez` fails.
            if tokio::time::timeout(LOOP_ANSWER, all).await.is_ok() {
                let _ = reply.send(());
            }
        }
        Probe::Ready(reply) => {
            let mut report = Report::default();
            for t in apps {
                report
                    .checks
                    .push(app_check(t.name, t.state, t.commands).await);
            }
            let _ = reply.send(report);
        }
    }
}

/// The dashboard's frame: every app as `ls` sees it, with its environment's names only.
async fn view(registry: &Arc<Registry>) -> String {
    let infos = super::handlers::infos(registry).await;
    let views: Vec<serde_json::Value> = infos
        .into_iter()
        .map(|info| {
            let env_keys: Vec<String> = registry
                .with_app(&info.name, |a| a.config.env.keys().cloned().collect())
                .unwrap_or_default();
            serde_json::json!({
                "name": info.name,
                "namespace": info.namespace,
                "state": info.state,
                "reason": info.reason,
                "command": info.command,
                "cwd": info.cwd,
                "origin": info.origin,
                "started_ms": info.started_ms,
                "env_keys": env_keys,
                "logs": true,
                "status": info.status,
            })
        })
        .collect();
    serde_json::Value::Array(views).to_string()
}

/// A worker's log files (its slot's, and herd's records of the app), by stream.
fn log_files(
    registry: &Arc<Registry>,
    app: &str,
    slot: Option<usize>,
) -> Result<Vec<(String, std::path::PathBuf)>, String> {
    let Some((config, slots)) = registry.with_app(app, |a| (a.config.clone(), a.slots)) else {
        return Err(format!("no app named {app}"));
    };
    let slots = slots.max(slot.map_or(0, |s| s + 1));
    let files: Vec<(String, std::path::PathBuf)> =
        super::launch::log_files(registry.home(), app, &config, slots)
            .into_iter()
            .filter(|f| f.slot == slot || f.stream == "herd")
            .map(|f| (f.stream, f.path.into()))
            .collect();
    if files.is_empty() {
        return Err(format!("{app} has no log file for this worker"));
    }
    Ok(files)
}

/// A dashboard's action, done as the same command of the CLI would do it.
async fn act(registry: &Arc<Registry>, action: crate::admin::Action) -> Result<String, String> {
    use super::handlers;
    use crate::admin::Verb;
    use crate::control::protocol::{Response, Scale};
    let select = [action.app.clone()];
    let response = match action.verb {
        Verb::Reload => handlers::reload(registry, &select).await,
        Verb::Restart => handlers::restart(registry, &select).await,
        Verb::Stop => handlers::stop(registry, &select).await,
        Verb::Scale(by) => handlers::scale(registry, &action.app, Scale::By(by)).await,
    };
    match response {
        Response::Error { message, lines } if lines.is_empty() => Err(message),
        Response::Error { message, lines } => Err(format!("{message}: {}", lines.join("; "))),
        Response::Done { lines, .. } if lines.is_empty() => Ok(format!("{action}: done")),
        Response::Done { lines, .. } => Ok(lines.join("; ")),
        other => Ok(format!("{action}: {other:?}")),
    }
}

async fn app_check(
    name: String,
    state: State,
    commands: Option<tokio::sync::mpsc::UnboundedSender<AppRequest>>,
) -> Check {
    let check = |ok: bool, detail: String| Check {
        name: name.clone(),
        ok,
        detail,
    };
    let commands = match (state, commands) {
        (State::Stopped, _) => return check(true, "stopped".into()),
        (State::Errored, _) => return check(false, "errored".into()),
        (_, None) => return check(false, format!("{state}, not started yet")),
        (_, Some(c)) => c,
    };
    let (tx, rx) = oneshot::channel();
    let asked = commands.send(AppRequest::Probe(Probe::Ready(tx))).is_ok();
    match tokio::time::timeout(LOOP_ANSWER, rx).await {
        Ok(Ok(report)) if asked => {
            let ok = report.ready();
            let detail = report
                .checks
                .iter()
                .filter(|c| !ok || c.name == "workers")
                .filter(|c| ok || !c.ok)
                .map(|c| c.detail.clone())
                .collect::<Vec<_>>()
                .join("; ");
            check(ok, detail)
        }
        _ => check(false, "its loop did not answer".into()),
    }
}
