//! `flush` and `reset`: an app's log files emptied, its restart counts and counters zeroed
//! (PM2's `flush` and `reset`).

use std::sync::Arc;

use tokio::sync::oneshot;

use super::super::registry::Registry;
use super::{failed, infos, respond, running};
use crate::control::protocol::Response;
use crate::driver::AppRequest;

/// `flush`: the log files of the apps (every app when none is named) emptied. A running
/// app's writer empties the files it has open (it writes what it buffered first and
/// counts their size from 0 again); the others are emptied by path, whether or not the
/// app runs.
pub async fn flush(registry: &Arc<Registry>, select: &[String]) -> Response {
    let names = if select.is_empty() {
        registry.names()
    } else {
        match registry.select(select) {
            Ok(n) => n,
            Err(e) => return failed(e, Vec::new()),
        }
    };
    let apps = infos(registry).await;
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for name in &names {
        if let Some(run) = running(registry, name) {
            let (tx, rx) = oneshot::channel();
            if run.commands.send(AppRequest::EmptyLogs(tx)).is_ok() {
                let _ = rx.await;
            }
        }
        let mut emptied = 0;
        for log in apps
            .iter()
            .filter(|a| &a.name == name)
            .flat_map(|a| &a.logs)
        {
            match std::fs::OpenOptions::new().write(true).open(&log.path) {
                Ok(f) => match f.set_len(0) {
                    Ok(()) => emptied += 1,
                    Err(e) => errors.push(format!("{name}: cannot empty {}: {e}", log.path)),
                },
                // Never written: nothing to empty.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => errors.push(format!("{name}: cannot open {}: {e}", log.path)),
            }
        }
        lines.push(format!(
            "{name}: {emptied} log file{} emptied",
            if emptied == 1 { "" } else { "s" }
        ));
    }
    respond(registry, lines, errors).await
}

/// `reset`: the restart counts (by reason too) and the counters of running apps zeroed.
pub async fn reset(registry: &Arc<Registry>, select: &[String]) -> Response {
    super::ask_each(
        registry,
        select,
        AppRequest::Reset,
        |name, ()| Ok(format!("{name}: restart counts and counters reset")),
        |name| format!("{name}: not running (its counts start from 0 when it starts)"),
    )
    .await
}
