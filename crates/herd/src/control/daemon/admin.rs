//! The daemon's admin listener (`herd daemon --admin ADDR`): `/livez` and `/readyz` for
//! every app at once. Each question goes to every running app's own loop, as
//! [`AppRequest::Probe`], so the answers are the apps' loops' answers: `/livez` passes when
//! the daemon and every app loop answer; `/readyz` passes when every app that should run is
//! ready by its own rules (`min_ready`, no shutdown), with one `?verbose` line per app.
//! An app stopped on purpose counts as passing (it is not supposed to serve); an errored one
//! fails.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::registry::{Registry, State};
use crate::admin::{Check, Probe, Report, LOOP_ANSWER};
use crate::driver::AppRequest;

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

/// What an app is, for a question: its name and, if its driver runs, where to ask.
type Target = (
    String,
    State,
    Option<tokio::sync::mpsc::UnboundedSender<AppRequest>>,
);

fn targets(registry: &Registry) -> Vec<Target> {
    let inner = registry.lock();
    inner
        .apps
        .iter()
        .map(|(name, app)| {
            let commands = app.run.as_ref().map(|r| r.commands.clone());
            (name.clone(), app.state, commands)
        })
        .collect()
}

async fn answer(registry: &Registry, probe: Probe) {
    let apps = targets(registry);
    match probe {
        Probe::Live(reply) => {
            let mut asked = Vec::new();
            for (_, _, commands) in &apps {
                if let Some(c) = commands {
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
            for (name, state, commands) in apps {
                report.checks.push(app_check(name, state, commands).await);
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
