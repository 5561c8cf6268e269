//! The way back: validated apps written as a herd.toml that [`parse`](super::parse) reads
//! to exactly the same [`AppConfig`]s. `herd import` prints it, and the daemon uses it to
//! ship app definitions and to write its dump file.
//!
//! Every value is encoded by the `toml` crate (quoting and escapes are its job), in a
//! fixed key order (the order of the herd.toml reference, env last) so the same apps always
//! give the same text. Durations and sizes are written with their unit (`"1500ms"`, `"1G"`)
//! because a bare number is refused on the way in. Paths that are not UTF-8 cannot be
//! written in TOML and are written lossily.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use toml::Value;

use crate::config::flags::ProxyProtocol;
use crate::config::settings::MinReady;
use crate::config::AppConfig;
use crate::config::Instances;
use crate::output::LogFormat;
use crate::units::{format_duration, format_size};

/// A herd.toml with one `[apps.<name>]` table per app, in name order.
pub fn to_toml(apps: &BTreeMap<String, AppConfig>) -> String {
    let mut out = String::new();
    for (name, app) in apps {
        if !out.is_empty() {
            out.push('\n');
        }
        write_app(&mut out, name, app);
    }
    out
}

/// The lines of one app. The destructuring is exhaustive on purpose: a new field of
/// [`AppConfig`] does not compile until it is written here.
fn write_app(out: &mut String, name: &str, app: &AppConfig) {
    let AppConfig {
        program,
        args,
        cwd,
        env,
        profiles,
        instances,
        port,
        listen,
        balance,
        proxy,
        proxy_protocol,
        ready,
        listen_timeout,
        kill_timeout,
        stop_signal,
        stop_message,
        min_uptime,
        max_restarts,
        restart_window,
        restart_delay,
        restart_backoff,
        restart_delay_max,
        reload_parallel,
        max_memory_restart,
        user,
        group,
        log_format,
        sticky_wait,
        admin,
        min_ready,
        shutdown_delay,
        health_check,
        health_interval,
        health_timeout,
        health_failures,
        health_start_period,
        watchdog,
        worker_metrics,
        cron_restart,
        filter_env,
        watch,
        ignore_watch,
        watch_delay,
        node_cluster,
        node_drain,
        namespace,
        autorestart,
        stop_exit_codes,
        instance_var,
        increment_var,
        out_file,
        error_file,
        log_file,
        merge_logs,
        log_date_format,
        log_max_size,
        log_files,
    } = app;
    let _ = writeln!(out, "[apps.{}]", key(name));
    let mut t = Lines(out);
    let command = std::iter::once(program).chain(args);
    t.put("command", Some(strings(command)));
    t.put("cwd", cwd.as_deref().map(path));
    t.put("instances", instances.map(instances_value));
    t.put("port", port.map(|p| Value::Integer(p.into())));
    if !listen.is_empty() {
        t.put(
            "listen",
            Some(strings(listen.iter().map(|a| a.to_string()))),
        );
    }
    t.put("balance", balance.map(|b| text(b.to_string())));
    t.put("sticky_wait", sticky_wait.map(duration));
    t.put("shutdown_delay", shutdown_delay.map(duration));
    t.put("admin", admin.as_ref().map(|a| text(a.to_string())));
    t.put(
        "health_check",
        health_check.as_ref().map(|c| text(c.to_string())),
    );
    t.put("health_interval", health_interval.map(duration));
    t.put("health_timeout", health_timeout.map(duration));
    t.put(
        "health_failures",
        health_failures.map(|n| integer(n as usize)),
    );
    t.put("health_start_period", health_start_period.map(duration));
    t.put("watchdog", watchdog.map(duration));
    t.put("worker_metrics", worker_metrics.as_deref().map(text));
    t.put("watch", watch_value(watch));
    if !ignore_watch.is_empty() {
        let globs = ignore_watch.iter().map(|g| g.to_string());
        t.put("ignore_watch", Some(strings(globs)));
    }
    t.put("watch_delay", watch_delay.map(duration));
    t.put(
        "cron_restart",
        cron_restart.as_ref().map(|s| text(s.to_string())),
    );
    t.put(
        "filter_env",
        filter_env.as_ref().map(|f| match f {
            crate::config::FilterEnv::All => Value::Boolean(true),
            crate::config::FilterEnv::Prefixes(p) => strings(p.iter().cloned()),
        }),
    );
    t.put(
        "min_ready",
        min_ready.map(|m| match m {
            MinReady::Count(n) => integer(n),
            MinReady::All => text("all"),
        }),
    );
    t.put("proxy", proxy.map(Value::Boolean));
    t.put("proxy_protocol", proxy_protocol.map(|p| text(protocol(p))));
    t.put("ready", ready.map(|r| text(r.to_string())));
    t.put("listen_timeout", listen_timeout.map(duration));
    t.put("kill_timeout", kill_timeout.map(duration));
    t.put("stop_signal", stop_signal.map(|s| text(s.as_str())));
    t.put("stop_message", stop_message.map(Value::Boolean));
    t.put("node_cluster", node_cluster.map(Value::Boolean));
    t.put("node_drain", node_drain.map(Value::Boolean));
    t.put("min_uptime", min_uptime.map(duration));
    t.put("max_restarts", max_restarts.map(integer));
    t.put("restart_window", restart_window.map(duration));
    t.put("restart_delay", restart_delay.map(duration));
    t.put("restart_backoff", restart_backoff.map(duration));
    t.put("restart_delay_max", restart_delay_max.map(duration));
    t.put("reload_parallel", reload_parallel.map(integer));
    t.put(
        "max_memory_restart",
        max_memory_restart.map(|m| text(m.to_string())),
    );
    t.put("autorestart", autorestart.map(Value::Boolean));
    if !stop_exit_codes.is_empty() {
        let codes = stop_exit_codes.iter().map(|c| Value::Integer((*c).into()));
        t.put("stop_exit_codes", Some(Value::Array(codes.collect())));
    }
    t.put("user", user.as_deref().map(text));
    t.put("group", group.as_deref().map(text));
    t.put("namespace", namespace.as_deref().map(text));
    t.put("instance_var", instance_var.as_deref().map(text));
    t.put("increment_var", increment_var.as_deref().map(text));
    t.put("log_format", log_format.map(|f| text(format(f))));
    t.put("out_file", out_file.as_deref().map(path));
    t.put("error_file", error_file.as_deref().map(path));
    t.put("log_file", log_file.as_deref().map(path));
    t.put("merge_logs", merge_logs.map(Value::Boolean));
    t.put("log_date_format", log_date_format.as_deref().map(text));
    t.put("log_max_size", log_max_size.map(size));
    t.put("log_files", log_files.map(integer));
    let profiles = profiles
        .iter()
        .map(|(profile, vars)| (format!("env_{profile}"), vars));
    for (table, vars) in std::iter::once(("env".to_string(), env)).chain(profiles) {
        if vars.is_empty() && table == "env" {
            continue;
        }
        let _ = writeln!(out, "\n[apps.{}.{}]", key(name), key(&table));
        let mut t = Lines(out);
        for (var, value) in vars {
            t.put(&key(var), Some(text(value)));
        }
    }
}

/// What an environment value is replaced with where values must not be shown.
pub(crate) const HIDDEN: &str = "(hidden)";

/// `text` (a herd.toml as [`to_toml`] writes it) with every value of every app's `env` and
/// `env_<profile>` tables replaced by [`HIDDEN`], names kept: what `herd ls --json`,
/// `herd describe --json` and the admin listener show unless asked for the values. Text that
/// does not parse comes back as [`HIDDEN`] whole: showing it could show a secret.
pub fn redact_env(text: &str) -> String {
    let Ok(mut doc) = text.parse::<toml::Table>() else {
        return HIDDEN.to_string();
    };
    let apps = doc.get_mut("apps").and_then(Value::as_table_mut);
    for app in apps
        .into_iter()
        .flat_map(|a| a.iter_mut().map(|(_, app)| app))
    {
        let Some(app) = app.as_table_mut() else {
            continue;
        };
        for (key, vars) in app.iter_mut() {
            if key != "env" && !key.starts_with("env_") {
                continue;
            }
            if let Some(vars) = vars.as_table_mut() {
                for (_, value) in vars.iter_mut() {
                    *value = Value::String(HIDDEN.into());
                }
            }
        }
    }
    toml::to_string(&doc).unwrap_or_else(|_| HIDDEN.to_string())
}

/// Appends `key = value` lines; `None` writes nothing (the key was not set).
struct Lines<'a>(&'a mut String);

impl Lines<'_> {
    fn put(&mut self, key: &str, value: Option<Value>) {
        if let Some(value) = value {
            let _ = writeln!(self.0, "{key} = {value}");
        }
    }
}

/// A key as TOML needs it: bare when it is only letters, digits, `-` and `_`, quoted
/// otherwise (env names may hold anything but `=`).
fn key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        name.to_string()
    } else {
        Value::String(name.to_string()).to_string()
    }
}

fn text(s: impl Into<String>) -> Value {
    Value::String(s.into())
}

fn strings<S: Into<String>>(items: impl IntoIterator<Item = S>) -> Value {
    Value::Array(items.into_iter().map(text).collect())
}

fn path(p: &Path) -> Value {
    text(p.to_string_lossy())
}

fn duration(d: Duration) -> Value {
    text(format_duration(d))
}

fn size(bytes: u64) -> Value {
    text(format_size(bytes))
}

/// A count as a TOML integer; counts past i64 (which no config means) are clamped.
fn integer(n: usize) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

/// `watch = true` for the app's directory alone (how PM2 files and `--watch` say it), the
/// paths otherwise; nothing when it watches nothing.
fn watch_value(paths: &[std::path::PathBuf]) -> Option<Value> {
    match paths {
        [] => None,
        [one] if one.as_os_str() == "." => Some(Value::Boolean(true)),
        _ => Some(strings(paths.iter().map(|p| p.to_string_lossy()))),
    }
}

/// `"max"`, or N and -K as integers, the way people write them.
fn instances_value(instances: Instances) -> Value {
    match instances {
        Instances::Max => text("max"),
        Instances::Count(n) => integer(n),
        Instances::MaxMinus(k) => Value::Integer(-i64::try_from(k).unwrap_or(i64::MAX)),
    }
}

fn protocol(p: ProxyProtocol) -> &'static str {
    match p {
        ProxyProtocol::V1 => "v1",
        ProxyProtocol::V2 => "v2",
    }
}

fn format(f: LogFormat) -> &'static str {
    match f {
        LogFormat::Text => "text",
        LogFormat::Json => "json",
    }
}
