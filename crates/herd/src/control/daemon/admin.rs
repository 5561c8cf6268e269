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

/// Serves `listener`, answering its questions from the apps' loops.
pub(super) fn start(listener: crate::admin::Listener, registry: Arc<Registry>) {
    let (tx, mut rx) = crate::admin::probes();
    tokio::spawn(crate::admin::serve(listener, tx));
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
        Probe::Metrics { openmetrics, reply } => metrics(apps, openmetrics, reply).await,
        Probe::Status(reply) => {
            let apps = super::handlers::infos(registry).await;
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
