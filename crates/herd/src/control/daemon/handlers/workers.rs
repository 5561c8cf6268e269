//! `scale`, `send`, `signal` and `env`: requests to a running app's workers.

use std::sync::Arc;

use super::super::registry::Registry;
use super::{ask_each, ended_why, failed, ready, respond, running, say, status_of, READY_SLACK};
use crate::control::protocol::{Response, Scale};
use crate::driver::AppRequest;

/// `scale`.
pub async fn scale(registry: &Arc<Registry>, name: &str, to: Scale) -> Response {
    let Some(run) = running(registry, name) else {
        return failed(
            format!("{name}: not running (scale works on a running app)"),
            Vec::new(),
        );
    };
    let now = match status_of(&run).await {
        Some(s) => s.instances,
        None => return failed(format!("{name}: {}", ended_why(&run).await), Vec::new()),
    };
    // Why 1024: far beyond any machine's cores; a typo must not fork thousands.
    const MOST: i64 = 1024;
    let target = match to {
        Scale::To(n) => i64::try_from(n).unwrap_or(i64::MAX),
        Scale::By(d) => (now as i64).saturating_add(d),
    };
    if target < 1 {
        return failed(
            format!("{name}: cannot scale to {target} workers: at least 1 (`herd stop {name}` stops them all)"),
            Vec::new(),
        );
    }
    if target > MOST {
        return failed(
            format!("{name}: cannot scale to {target} workers: at most {MOST}"),
            Vec::new(),
        );
    }
    let target = target as usize;
    let _ = run.commands.send(AppRequest::ScaleTo(target));
    registry.with_app(name, |a| {
        a.scaled = Some(target);
        a.slots = a.slots.max(target);
    });
    let timeout = registry
        .with_app(name, |a| a.config.listen_timeout)
        .flatten()
        .unwrap_or(crate::supervisor::DEFAULT_LISTEN_TIMEOUT);
    let result = ready(&run, timeout + READY_SLACK).await;
    let lines = vec![format!("{name}: scaled from {now} to {target} workers")];
    match result {
        Ok(()) => respond(registry, lines, Vec::new()).await,
        Err(why) => respond(registry, lines, vec![format!("{name}: {why}")]).await,
    }
}

/// `send`: a JSON message to every worker.
pub async fn send(
    registry: &Arc<Registry>,
    select: &[String],
    message: serde_json::Value,
) -> Response {
    let line = sent_line("message");
    ask_each(
        registry,
        select,
        |tx| AppRequest::Broadcast(message.clone(), tx),
        |name, n| Ok(line(name, n)),
        |name| format!("{name}: not running"),
    )
    .await
}

/// `signal`: a signal to every worker's process group.
pub async fn signal(registry: &Arc<Registry>, select: &[String], signal: &str) -> Response {
    let sig = match crate::units::parse_signal(signal) {
        Ok(s) => s,
        Err(e) => return failed(format!("signal `{signal}`: {e}"), Vec::new()),
    };
    let line = sent_line(sig.as_str());
    ask_each(
        registry,
        select,
        |tx| AppRequest::Signal(sig, tx),
        |name, n| Ok(line(name, n)),
        |name| format!("{name}: not running"),
    )
    .await
}

/// `env`: the environment one worker started with. Its values go only to the daemon's
/// own user: the control socket refuses every other (SO_PEERCRED).
pub async fn env(registry: &Arc<Registry>, name: &str, slot: usize) -> Response {
    let Some(run) = registry.with_app(name, |a| a.run.clone()) else {
        return failed(
            format!("no app `{name}` (`herd ls` lists them)"),
            Vec::new(),
        );
    };
    let Some(run) = run else {
        return failed(format!("{name}: not running"), Vec::new());
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _ = run.commands.send(AppRequest::Env(slot, tx));
    match rx.await {
        Ok(Ok(env)) => Response::Env {
            slot: env.slot,
            pid: env.pid,
            vars: env.vars,
        },
        Ok(Err(e)) => failed(format!("{name}: {}", say(&e)), Vec::new()),
        Err(_) => failed(format!("{name}: {}", ended_why(&run).await), Vec::new()),
    }
}

fn sent_line(what: &str) -> impl Fn(&str, usize) -> String + '_ {
    move |name, n| {
        format!(
            "{name}: {what} sent to {n} worker{}",
            if n == 1 { "" } else { "s" }
        )
    }
}
