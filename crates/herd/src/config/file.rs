//! herd.toml: the apps a user keeps in their repository, parsed in two stages as the flags
//! are — raw serde structs that keep every value's span (`raw`), then a validated
//! [`AppConfig`] per app (`app`) whose values are typed by the same parsers as the
//! `herd run` flags. Every error names the file, line, column and key path. Nothing here
//! starts a process or binds a socket; applying defaults is the caller's job.
//!
//! ```toml
//! [apps.api]
//! command = ["node", "server.js"]
//! instances = "max"
//! port = 3000
//! kill_timeout = "10s"
//! max_memory_restart = "1G"     # binary units, as in PM2: 1G = 1024³ bytes; or "40%" of the container's limit
//! env = { NODE_ENV = "development" }
//! env_production = { NODE_ENV = "production" }   # merged over env by `--env production`
//! instance_var = "INSTANCE_ID"  # the slot number's variable (default NODE_APP_INSTANCE)
//! stop_exit_codes = [0]         # a worker that exits with these is not restarted
//! out_file = "logs/api.out.log" # relative to this file's directory, like cwd
//! error_file = "logs/api.err.log"
//! log_max_size = "10M"          # rotate past this size …
//! log_files = 5                 # … keeping this many rotated files
//!
//! [apps.jobs]
//! command = "python3 -m jobs"
//! instances = -1                # max minus one
//! node_cluster = false
//! autorestart = false
//! ```
//!
//! All the keys: `command`, `args`, `cwd`, `env`, `env_<profile>`, `instances`, `port`,
//! `listen`, `balance`, `sticky_wait`, `proxy`, `proxy_protocol`, `ready`,
//! `listen_timeout`, `kill_timeout`, `stop_signal`, `stop_message`, `node_cluster`,
//! `node_drain`, `min_uptime`, `max_restarts`, `restart_window`, `restart_delay`,
//! `restart_backoff`, `restart_delay_max`,
//! `reload_parallel`, `max_memory_restart`, `autorestart`, `stop_exit_codes`, `user`,
//! `group`, `namespace`, `instance_var`, `increment_var`, `log_format`, `out_file`,
//! `error_file`, `log_file`, `merge_logs`, `log_date_format`, `log_max_size`, `log_files`.
//! Reloading on a change of the files: `watch`, `ignore_watch`, `watch_delay`.
//! Durations need a unit (`"500ms"`, `"10s"`); [`to_toml`] writes apps back as a file.
//!
//! A file with no app is an error: there is nothing to run, so it is surely a mistake.

mod app;
mod error;
mod raw;
#[cfg(test)]
mod tests;
mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use toml::de::DeTable;

use super::settings::AppConfig;
pub(crate) use error::suggest;
pub use error::{FileError, Location};
pub use write::{redact_env, to_toml};

use error::Source;
use raw::RawFile;

/// A validated herd.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct HerdFile {
    /// The apps by name (at least one).
    pub apps: BTreeMap<String, AppConfig>,
}

/// Reads and validates the herd.toml at `path`, with the env profile `profile` (`--env`)
/// merged over each app's `env`. A relative `cwd`, `out_file`, `error_file` or `log_file`
/// is made relative to the file's directory, so the file means the same thing wherever
/// herd is started from.
pub fn load(path: &Path, profile: Option<&str>) -> Result<HerdFile, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut file = parse(&text, &path.display().to_string(), profile)?;
    let dir = path.parent().unwrap_or(Path::new(""));
    for app in file.apps.values_mut() {
        anchor_paths(app, dir);
    }
    Ok(file)
}

/// Makes the relative paths of `app` (`cwd` and the log files) relative to `dir`, the
/// directory of the file that defines it.
pub(crate) fn anchor_paths(app: &mut AppConfig, dir: &Path) {
    let paths = [
        &mut app.cwd,
        &mut app.out_file,
        &mut app.error_file,
        &mut app.log_file,
    ];
    for path in paths.into_iter().flatten() {
        if path.is_relative() {
            *path = dir.join(&*path);
        }
    }
}

/// Validates the text of a herd.toml; `file_name` is what errors call it.
pub fn parse(text: &str, file_name: &str, profile: Option<&str>) -> Result<HerdFile, FileError> {
    let src = Source {
        text,
        file: file_name,
    };
    let root = DeTable::parse(text).map_err(|err| src.syntax(&err))?;
    let mut envs = raw::scan(root.get_ref(), &src)?;
    let raw: RawFile = toml::from_str(text).map_err(|err| src.typed(&err, root.get_ref()))?;
    if raw.apps.is_empty() {
        return Err(FileError::NoApps {
            file: file_name.to_string(),
        });
    }
    if let Some(profile) = profile {
        let known: BTreeSet<&String> = envs.values().flat_map(|e| e.profiles.keys()).collect();
        if !known.contains(&profile.to_string()) {
            return Err(FileError::UnknownProfile {
                file: file_name.to_string(),
                profile: profile.to_string(),
                known: known.into_iter().cloned().collect(),
            });
        }
    }
    let mut apps = BTreeMap::new();
    for (name, raw_app) in raw.apps {
        let app_envs = envs.remove(&name).unwrap_or_default();
        let mut env = app_envs.base;
        if let Some(vars) = profile.and_then(|p| app_envs.profiles.get(p)) {
            env.extend(vars.clone());
        }
        let mut config = app::validate(&name, raw_app, env, &src)?;
        if profile.is_none() {
            config.profiles = app_envs.profiles;
        }
        apps.insert(name, config);
    }
    Ok(HerdFile { apps })
}
