//! The daemon's lifecycle records of each app (spawned, ready, crashed, restarting, reload
//! progress) also go to that app's own `<app>.herd.log`, so that `herd logs api` tells why
//! a worker came and went next to what the workers printed. A tracing layer: it takes the
//! records that carry an `app` field and appends them to the app's file; it decides nothing.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// The file is moved to `.1` when the daemon opens it past this size. Why 10 MiB: years of
/// lifecycle records of a stable app, months of a crash-looping one.
const MAX_SIZE: u64 = 10 * 1024 * 1024;

/// The layer.
#[derive(Debug)]
pub struct AppEvents {
    dir: PathBuf,
    files: Mutex<HashMap<String, Option<File>>>,
}

impl AppEvents {
    /// Records of each app go to `<dir>/<app>.herd.log`.
    pub fn new(dir: PathBuf) -> AppEvents {
        AppEvents {
            dir,
            files: Mutex::new(HashMap::new()),
        }
    }

    /// The file of `app` in `dir`.
    pub fn path(dir: &std::path::Path, app: &str) -> PathBuf {
        dir.join(format!("{app}.herd.log"))
    }

    fn open(&self, app: &str) -> Option<File> {
        let path = Self::path(&self.dir, app);
        super::logfiles::set_aside_if_larger(&path, MAX_SIZE);
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
            .ok()
    }
}

#[derive(Default)]
struct Fields {
    app: Option<String>,
    message: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "app" => self.app = Some(value.to_string()),
            "message" => self.message = Some(value.to_string()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `app = %name` arrives here; its Debug is the Display of the name.
        match field.name() {
            "app" => self.app = Some(format!("{value:?}")),
            "message" => self.message = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for AppEvents {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let (Some(app), Some(message)) = (fields.app, fields.message) else {
            return;
        };
        // Only names of apps: a field that is not one must not name a file.
        if !crate::units::is_app_name(&app) {
            return;
        }
        let line = format!(
            "{} {app} [herd] {} {message}\n",
            humantime::format_rfc3339_millis(std::time::SystemTime::now()),
            event.metadata().level()
        );
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let file = files.entry(app.clone()).or_insert_with(|| self.open(&app));
        if let Some(f) = file {
            if f.write_all(line.as_bytes()).is_err() {
                // A full disk, say: tried again with the next record's fresh open.
                files.remove(&app);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::prelude::*;

    #[test]
    fn records_with_an_app_go_to_its_file() {
        let dir = std::env::temp_dir().join(format!("herd-app-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let subscriber = tracing_subscriber::registry().with(AppEvents::new(dir.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let name = "api";
            tracing::info!(app = name, slot = 0, "worker api:0 spawned as pid 1");
            tracing::warn!(app = %String::from("web"), "worker web:1 crashed");
            tracing::info!("no app: nowhere");
            tracing::info!(app = "../x", "not an app name: nowhere");
        });
        let api = std::fs::read_to_string(AppEvents::path(&dir, "api")).unwrap();
        assert!(
            api.ends_with(" api [herd] INFO worker api:0 spawned as pid 1\n"),
            "{api}"
        );
        let web = std::fs::read_to_string(AppEvents::path(&dir, "web")).unwrap();
        assert!(
            web.contains(" web [herd] WARN worker web:1 crashed"),
            "{web}"
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
