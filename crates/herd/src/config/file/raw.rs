//! The first stage: the TOML document as written. [`RawFile`] is what serde reads, every
//! value kept with its span so the second stage can point at it; [`scan`] checks the keys
//! (serde's `deny_unknown_fields` cannot suggest a spelling, and cannot accept the
//! open-ended `env_<profile>` tables) and collects the env tables, whose keys are the user's.
//! Nothing here interprets a value.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::{Spanned, Value};

use super::error::{suggest, FileError, Source};

/// The keys an `[apps.<name>]` table may have, besides `env_<profile>` tables.
pub(super) const APP_KEYS: [&str; 56] = [
    "command",
    "args",
    "cwd",
    "env",
    "instances",
    "port",
    "listen",
    "balance",
    "proxy",
    "proxy_protocol",
    "ready",
    "listen_timeout",
    "kill_timeout",
    "stop_signal",
    "stop_message",
    "min_uptime",
    "max_restarts",
    "restart_window",
    "restart_delay",
    "restart_backoff",
    "restart_delay_max",
    "reload_parallel",
    "max_memory_restart",
    "user",
    "group",
    "log_format",
    "sticky_wait",
    "admin",
    "min_ready",
    "shutdown_delay",
    "health_check",
    "health_interval",
    "health_timeout",
    "health_failures",
    "health_start_period",
    "watchdog",
    "worker_metrics",
    "cron_restart",
    "filter_env",
    "watch",
    "ignore_watch",
    "watch_delay",
    "node_cluster",
    "node_drain",
    "namespace",
    "autorestart",
    "stop_exit_codes",
    "instance_var",
    "increment_var",
    "out_file",
    "error_file",
    "log_file",
    "merge_logs",
    "log_date_format",
    "log_max_size",
    "log_files",
];

/// The top-level keys of a herd.toml.
const TOP_KEYS: [&str; 1] = ["apps"];

/// The prefix of an env profile table: `env_production` is selected by `--env production`.
pub(super) const PROFILE_PREFIX: &str = "env_";

/// A herd.toml as serde reads it.
#[derive(Debug, Deserialize)]
pub(super) struct RawFile {
    /// `[apps.<name>]` tables.
    #[serde(default)]
    pub apps: BTreeMap<String, Spanned<RawApp>>,
}

/// One `[apps.<name>]` table as serde reads it. Values that may take several TOML types
/// (a duration, `instances`, `command`) stay [`Value`]s: the second stage says which forms
/// are expected. `env` and `env_<profile>` come from [`scan`] instead.
#[derive(Debug, Deserialize)]
pub(super) struct RawApp {
    pub command: Option<Spanned<Value>>,
    pub args: Option<Spanned<Vec<String>>>,
    pub cwd: Option<Spanned<String>>,
    pub instances: Option<Spanned<Value>>,
    pub port: Option<Spanned<i64>>,
    pub listen: Option<Vec<Spanned<String>>>,
    pub balance: Option<Spanned<String>>,
    pub proxy: Option<Spanned<bool>>,
    pub proxy_protocol: Option<Spanned<String>>,
    pub ready: Option<Spanned<String>>,
    pub listen_timeout: Option<Spanned<Value>>,
    pub kill_timeout: Option<Spanned<Value>>,
    pub stop_signal: Option<Spanned<Value>>,
    pub stop_message: Option<Spanned<bool>>,
    pub min_uptime: Option<Spanned<Value>>,
    pub max_restarts: Option<Spanned<i64>>,
    pub restart_window: Option<Spanned<Value>>,
    pub restart_delay: Option<Spanned<Value>>,
    pub restart_backoff: Option<Spanned<Value>>,
    pub restart_delay_max: Option<Spanned<Value>>,
    pub reload_parallel: Option<Spanned<i64>>,
    pub max_memory_restart: Option<Spanned<Value>>,
    pub user: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub log_format: Option<Spanned<String>>,
    pub sticky_wait: Option<Spanned<Value>>,
    pub admin: Option<Spanned<String>>,
    pub min_ready: Option<Spanned<Value>>,
    pub shutdown_delay: Option<Spanned<Value>>,
    pub health_check: Option<Spanned<String>>,
    pub health_interval: Option<Spanned<Value>>,
    pub health_timeout: Option<Spanned<Value>>,
    pub health_failures: Option<Spanned<i64>>,
    pub health_start_period: Option<Spanned<Value>>,
    pub watchdog: Option<Spanned<Value>>,
    pub worker_metrics: Option<Spanned<String>>,
    pub cron_restart: Option<Spanned<String>>,
    pub filter_env: Option<Spanned<Value>>,
    pub watch: Option<Spanned<Value>>,
    pub ignore_watch: Option<Spanned<Value>>,
    pub watch_delay: Option<Spanned<Value>>,
    pub node_cluster: Option<Spanned<bool>>,
    pub node_drain: Option<Spanned<bool>>,
    pub namespace: Option<Spanned<String>>,
    pub autorestart: Option<Spanned<bool>>,
    pub stop_exit_codes: Option<Spanned<Value>>,
    pub instance_var: Option<Spanned<String>>,
    pub increment_var: Option<Spanned<String>>,
    pub out_file: Option<Spanned<String>>,
    pub error_file: Option<Spanned<String>>,
    pub log_file: Option<Spanned<String>>,
    pub merge_logs: Option<Spanned<bool>>,
    pub log_date_format: Option<Spanned<String>>,
    pub log_max_size: Option<Spanned<Value>>,
    pub log_files: Option<Spanned<i64>>,
}

/// The environment tables of one app: `env` and each `env_<profile>`.
#[derive(Debug, Default)]
pub(super) struct AppEnvs {
    /// `env`.
    pub base: BTreeMap<String, String>,
    /// `env_<profile>` by profile name.
    pub profiles: BTreeMap<String, BTreeMap<String, String>>,
}

/// Checks every key of the document and collects each app's env tables.
pub(super) fn scan(
    root: &DeTable<'_>,
    src: &Source<'_>,
) -> Result<BTreeMap<String, AppEnvs>, FileError> {
    let mut envs = BTreeMap::new();
    for (key, value) in root {
        let name = key.get_ref().as_ref();
        if !TOP_KEYS.contains(&name) {
            return Err(unknown(src, name.to_string(), key, &TOP_KEYS));
        }
        // A non-table `apps` is left to serde, which names the expected type.
        let Some(apps) = value.get_ref().as_table() else {
            continue;
        };
        for (app, table) in apps {
            check_app_name(app, src)?;
            if let Some(table) = table.get_ref().as_table() {
                envs.insert(
                    app.get_ref().to_string(),
                    scan_app(app.get_ref(), table, src)?,
                );
            }
        }
    }
    Ok(envs)
}

/// App names appear in commands (`herd reload api`) and key paths, so they are plain words;
/// `all` selects every app.
fn check_app_name(
    app: &Spanned<std::borrow::Cow<'_, str>>,
    src: &Source<'_>,
) -> Result<(), FileError> {
    let name = app.get_ref();
    let plain = name == "all" || crate::units::is_app_name(name);
    let message = if !plain {
        "an app name is letters, digits, `-` and `_`"
    } else if name == "all" {
        "`all` is reserved: it selects every app in commands"
    } else {
        return Ok(());
    };
    Err(FileError::Invalid {
        at: src.at(Some(app.span())),
        key: format!("apps.{name}"),
        value: "{ … }".to_string(),
        message: message.to_string(),
    })
}

fn scan_app(app: &str, table: &DeTable<'_>, src: &Source<'_>) -> Result<AppEnvs, FileError> {
    let mut envs = AppEnvs::default();
    for (key, value) in table {
        let name = key.get_ref().as_ref();
        let path = format!("apps.{app}.{name}");
        if name == "env" {
            envs.base = env_table(&path, value, src)?;
        } else if let Some(profile) = name.strip_prefix(PROFILE_PREFIX).filter(|p| !p.is_empty()) {
            envs.profiles
                .insert(profile.to_string(), env_table(&path, value, src)?);
        } else if !APP_KEYS.contains(&name) {
            return Err(unknown(src, path, key, &APP_KEYS));
        }
    }
    Ok(envs)
}

/// An env table: string values, and numbers and booleans written as TOML would print them
/// (`PORT = 3000` is common in ecosystem files and means "3000").
fn env_table(
    path: &str,
    value: &Spanned<DeValue<'_>>,
    src: &Source<'_>,
) -> Result<BTreeMap<String, String>, FileError> {
    let Some(table) = value.get_ref().as_table() else {
        return Err(src.invalid(
            path.to_string(),
            value.span(),
            "expected a table of variables, e.g. `{ NODE_ENV = \"production\" }`".to_string(),
        ));
    };
    let mut vars = BTreeMap::new();
    for (key, value) in table {
        let text = match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n.to_string()),
            DeValue::Float(f) => Some(f.as_str().to_string()),
            DeValue::Boolean(b) => Some(b.to_string()),
            _ => None,
        };
        let Some(text) = text else {
            return Err(src.invalid(
                format!("{path}.{}", key.get_ref()),
                value.span(),
                "expected a string, a number or a boolean".to_string(),
            ));
        };
        vars.insert(key.get_ref().to_string(), text);
    }
    Ok(vars)
}

fn unknown(
    src: &Source<'_>,
    path: String,
    key: &Spanned<std::borrow::Cow<'_, str>>,
    known: &[&str],
) -> FileError {
    FileError::UnknownKey {
        at: src.at(Some(key.span())),
        key: path,
        suggestion: suggest(key.get_ref(), known).map(str::to_string),
    }
}
