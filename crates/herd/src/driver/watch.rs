//! `watch`: the app's files, watched by [`crate::observe::watch`] on a thread of its own;
//! each burst of changes is a rolling reload, the same as SIGHUP (so a change that breaks
//! the start-up leaves the old workers serving, as any failed reload does). The watch
//! starts before the first worker, so a path that cannot be watched, or the kernel's watch
//! limit, fails the start with a message that names it.

use std::path::Path;

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::Driver;
use crate::observe::watch::{Batch, WatchError, Watcher};
use crate::supervisor::Event;

impl Driver {
    /// Watches what the plan says, replacing the watch running if any.
    pub(super) fn start_watching(&mut self) -> Result<(), WatchError> {
        self.watcher = None;
        self.changes = None;
        let Some(plan) = &self.plan.watch else {
            return Ok(());
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (watcher, started) = Watcher::start(plan, tx)?;
        let app = &self.plan.name;
        let paths = plan
            .roots
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let took_ms = started.took.as_millis() as u64;
        info!(app = %app, event = "herd.watching", paths = %paths, dirs = started.dirs,
            took_ms, ignored = %plan.ignore.describe(),
            "watching {paths} ({} director{} in {took_ms} ms; ignored: {}): a change reloads {app}",
            started.dirs, if started.dirs == 1 { "y" } else { "ies" }, plan.ignore.describe());
        for skipped in &started.skipped {
            warn!(app = %app, event = "watch.failed", error = %skipped,
                "not watched: {skipped}");
        }
        self.watcher = Some(watcher);
        self.changes = Some(rx);
        Ok(())
    }

    /// A burst of changes: logged, then a rolling reload.
    pub(super) fn on_changes(&mut self, batch: Batch) {
        let app = &self.plan.name;
        if let Some(error) = &batch.trouble {
            warn!(app = %app, event = "watch.failed", error = %error, "watching {app}'s files: {error}");
        }
        let base = self
            .plan
            .watch
            .as_ref()
            .map(|w| w.ignore.base().to_path_buf());
        let shown = |p: &Path| match base.as_deref().and_then(|b| p.strip_prefix(b).ok()) {
            Some(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
            _ => p.display().to_string(),
        };
        let paths = batch
            .paths
            .iter()
            .map(|p| shown(p))
            .collect::<Vec<_>>()
            .join(", ");
        let more = batch.changed.saturating_sub(batch.paths.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        info!(app = %app, event = "app.changed", paths = %paths, changed = batch.changed,
            "{app}'s files changed ({paths}{more}): reloading");
        self.queue.push_back(Event::Reload);
    }
}
