//! `save` and `resurrect`: the dump file that brings apps back after the daemon ended.

use std::ffi::OsString;
use std::sync::Arc;

use super::super::registry::Registry;
use super::{done, failed, respond};
use crate::control::home::write_atomic;
use crate::control::protocol::Response;

/// The dump file: every app with its definition and whether it ran.
#[derive(serde::Serialize, serde::Deserialize)]
struct Dump {
    version: u32,
    apps: Vec<DumpedApp>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct DumpedApp {
    name: String,
    toml: String,
    origin: String,
    env: Vec<(String, String)>,
    running: bool,
}

/// `save`.
pub async fn save(registry: &Arc<Registry>) -> Response {
    let mut apps = Vec::new();
    for name in registry.names() {
        let app = registry.with_app(&name, |a| DumpedApp {
            name: name.clone(),
            // Its definition alone, with the number of workers it was scaled to.
            toml: {
                let mut config = a.config.clone();
                if let Some(n) = a.scaled {
                    config.instances = Some(crate::config::Instances::Count(n));
                }
                crate::config::file::to_toml(&std::iter::once((name.clone(), config)).collect())
            },
            origin: a.origin.clone(),
            env: a
                .base_env
                .iter()
                .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v.to_str()?.to_string())))
                .collect(),
            running: a.run.is_some(),
        });
        apps.extend(app);
    }
    let n = apps.len();
    let dump = Dump { version: 1, apps };
    let path = registry.home().dump();
    let bytes = match serde_json::to_vec_pretty(&dump) {
        Ok(b) => b,
        Err(e) => return failed(format!("cannot encode the dump: {e}"), Vec::new()),
    };
    match write_atomic(&path, &bytes) {
        Ok(()) => done(
            vec![format!(
                "saved {n} app{} to {}",
                if n == 1 { "" } else { "s" },
                path.display()
            )],
            Vec::new(),
        ),
        Err(e) => failed(format!("cannot write {}: {e}", path.display()), Vec::new()),
    }
}

/// `resurrect`: the apps of the dump that are not running.
pub async fn resurrect(registry: &Arc<Registry>) -> Response {
    let path = registry.home().dump();
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return failed(
                format!(
                    "there is no dump at {} (`herd save` writes it)",
                    path.display()
                ),
                Vec::new(),
            )
        }
        Err(e) => return failed(format!("cannot read {}: {e}", path.display()), Vec::new()),
    };
    let dump: Dump = match serde_json::from_slice(&text) {
        Ok(d) => d,
        Err(e) => return failed(format!("{} is damaged: {e}", path.display()), Vec::new()),
    };
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for app in dump.apps {
        let file = match crate::config::file::parse(&app.toml, &app.origin, None) {
            Ok(f) => f,
            Err(e) => {
                errors.push(format!("{}: {e}", app.name));
                continue;
            }
        };
        let Some(config) = file.apps.get(&app.name).cloned() else {
            errors.push(format!("{}: not in its saved definition", app.name));
            continue;
        };
        let env = Arc::new(
            app.env
                .into_iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
        );
        if !registry.define(&app.name, config, &app.toml, &app.origin, env) {
            lines.push(format!("{}: already running", app.name));
            continue;
        }
        if !app.running {
            lines.push(format!("{}: restored, stopped", app.name));
            continue;
        }
        match registry.launch(&app.name).await {
            Ok(_) => lines.push(format!("{}: resurrected", app.name)),
            Err(e) => errors.push(e),
        }
    }
    respond(registry, lines, errors).await
}
