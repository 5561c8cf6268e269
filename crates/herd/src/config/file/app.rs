//! The second stage: one raw `[apps.<name>]` table validated into an [`AppConfig`] of typed
//! values, with the same parsers as the `herd run` flags so a value means the same thing in
//! both places. A knob left out stays `None`: the caller applies `herd run`'s defaults.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;
use toml::{Spanned, Value};

use super::error::{FileError, Source};
use super::raw::RawApp;
use crate::config::flags::ProxyProtocol;
use crate::config::plan::PlanError;
use crate::config::values::parse_readiness;
use crate::config::{AppConfig, MaxMemory};
use crate::listen::{Balance, ListenAddr};
use crate::observe::watch::IgnoreGlob;
use crate::output::LogFormat;
use crate::units::{parse_duration, parse_signal, parse_size};

/// What a duration key says when it gets a bare number.
const BARE_NUMBER: &str = "a bare number is ambiguous (PM2 counts milliseconds, herd's flags \
                           seconds): write the unit, e.g. \"10s\" or \"500ms\"";

/// Validates the app `name`; `env` is its environment after the profile merge.
pub(super) fn validate(
    name: &str,
    raw: Spanned<RawApp>,
    env: BTreeMap<String, String>,
    src: &Source<'_>,
) -> Result<AppConfig, FileError> {
    let table_span = raw.span();
    let raw = raw.into_inner();
    let v = Validator { name, src };
    let key_spans = KeySpans::of(&raw);
    let (program, mut args) = v.command(raw.command, table_span)?;
    if let Some(more) = raw.args {
        args.extend(more.into_inner());
    }
    let proxy = raw.proxy.map(Spanned::into_inner);
    let proxy_protocol = match raw.proxy_protocol {
        Some(p) if proxy != Some(true) => {
            return Err(v.bad("proxy_protocol", p.span(), "needs `proxy = true`"));
        }
        p => v.parse(p, "proxy_protocol", |s: &str| {
            match s.to_ascii_lowercase().as_str() {
                "v1" => Ok(ProxyProtocol::V1),
                "v2" => Ok(ProxyProtocol::V2),
                _ => Err("expected \"v1\" or \"v2\"".to_string()),
            }
        })?,
    };
    let config = AppConfig {
        program,
        args,
        cwd: raw.cwd.map(|c| PathBuf::from(c.into_inner())),
        instances: v.number_or_word(raw.instances, "instances", "expected N, \"max\" or -K")?,
        port: v.port(raw.port)?,
        listen: raw
            .listen
            .unwrap_or_default()
            .into_iter()
            .map(|a| v.parse_one(a, "listen", |s: &str| s.parse::<ListenAddr>()))
            .collect::<Result<_, _>>()?,
        balance: v.parse(raw.balance, "balance", |s: &str| s.parse::<Balance>())?,
        proxy,
        proxy_protocol,
        ready: v.parse(raw.ready, "ready", parse_readiness)?,
        listen_timeout: v.duration(raw.listen_timeout, "listen_timeout")?,
        kill_timeout: v.duration(raw.kill_timeout, "kill_timeout")?,
        stop_signal: v.signal(raw.stop_signal)?,
        stop_message: raw.stop_message.map(Spanned::into_inner),
        min_uptime: v.duration(raw.min_uptime, "min_uptime")?,
        max_restarts: v.count(raw.max_restarts, "max_restarts", 0)?,
        restart_window: v.duration(raw.restart_window, "restart_window")?,
        restart_delay: v.duration(raw.restart_delay, "restart_delay")?,
        restart_backoff: v.duration(raw.restart_backoff, "restart_backoff")?,
        restart_delay_max: v.duration(raw.restart_delay_max, "restart_delay_max")?,
        reload_parallel: v.count(raw.reload_parallel, "reload_parallel", 1)?,
        max_memory_restart: v.max_memory(raw.max_memory_restart)?,
        user: v.parse(raw.user, "user", non_empty)?,
        group: v.parse(raw.group, "group", non_empty)?,
        log_format: v.parse(raw.log_format, "log_format", |s: &str| {
            match s.to_ascii_lowercase().as_str() {
                "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                _ => Err("expected \"text\" or \"json\"".to_string()),
            }
        })?,
        sticky_wait: v.duration(raw.sticky_wait, "sticky_wait")?,
        admin: v.parse(raw.admin, "admin", |s: &str| s.parse::<ListenAddr>())?,
        min_ready: v.number_or_word(raw.min_ready, "min_ready", "expected N or \"all\"")?,
        shutdown_delay: v.duration(raw.shutdown_delay, "shutdown_delay")?,
        health_check: v.parse(raw.health_check, "health_check", |s: &str| {
            s.parse::<crate::config::health::HealthCheck>()
        })?,
        health_interval: v.duration(raw.health_interval, "health_interval")?,
        health_timeout: v.duration(raw.health_timeout, "health_timeout")?,
        health_failures: v
            .count(raw.health_failures, "health_failures", 1)?
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        health_start_period: v.duration(raw.health_start_period, "health_start_period")?,
        watchdog: v.duration(raw.watchdog, "watchdog")?,
        worker_metrics: v.parse(raw.worker_metrics, "worker_metrics", |s: &str| {
            crate::config::health::metrics_path(s)
        })?,
        cron_restart: v.parse(raw.cron_restart, "cron_restart", str::parse)?,
        filter_env: v.filter_env(raw.filter_env)?,
        watch: v.watch(raw.watch)?,
        ignore_watch: v.ignore_watch(raw.ignore_watch)?,
        watch_delay: v.duration(raw.watch_delay, "watch_delay")?,
        node_cluster: raw.node_cluster.map(Spanned::into_inner),
        node_drain: raw.node_drain.map(Spanned::into_inner),
        namespace: v.parse(raw.namespace, "namespace", |s: &str| {
            not_blank(s, "expected a name, e.g. \"web\"")
        })?,
        autorestart: raw.autorestart.map(Spanned::into_inner),
        stop_exit_codes: v.exit_codes(raw.stop_exit_codes)?,
        instance_var: v.parse(raw.instance_var, "instance_var", env_name)?,
        increment_var: v.increment_var(raw.increment_var, &env)?,
        out_file: v.parse(raw.out_file, "out_file", path)?,
        error_file: v.parse(raw.error_file, "error_file", path)?,
        log_file: v.parse(raw.log_file, "log_file", path)?,
        merge_logs: raw.merge_logs.map(Spanned::into_inner),
        log_date_format: v.parse(raw.log_date_format, "log_date_format", |s: &str| {
            not_blank(s, "expected a format, e.g. \"YYYY-MM-DD HH:mm:ss\"")
        })?,
        log_max_size: v.size(raw.log_max_size, "log_max_size")?,
        log_files: v.count(raw.log_files, "log_files", 1)?,
        env,
        profiles: BTreeMap::new(),
    };
    // Settings that contradict each other, named at the key that must change.
    if let Err(e) = crate::config::plan::check_combinations(&config) {
        if let Some((key, span)) = key_spans.key_of(&e) {
            return Err(v.bad(key, span, e.to_string()));
        }
    }
    Ok(config)
}

/// Where the keys of an app are that can contradict each other, for the mistakes only
/// their combination shows.
struct KeySpans {
    port: Option<Range<usize>>,
    /// Each `listen` entry as written, and where.
    listen: Vec<(String, Range<usize>)>,
    balance: Option<Range<usize>>,
    proxy: Option<Range<usize>>,
    admin: Option<Range<usize>>,
    restart_delay: Option<Range<usize>>,
    restart_backoff: Option<Range<usize>>,
    restart_delay_max: Option<Range<usize>>,
    check: Option<Range<usize>>,
    interval: Option<Range<usize>>,
    timeout: Option<Range<usize>>,
    failures: Option<Range<usize>>,
    start_period: Option<Range<usize>>,
    watchdog: Option<Range<usize>>,
}

impl KeySpans {
    fn of(raw: &RawApp) -> KeySpans {
        KeySpans {
            port: raw.port.as_ref().map(Spanned::span),
            listen: raw
                .listen
                .iter()
                .flatten()
                .map(|l| (l.get_ref().clone(), l.span()))
                .collect(),
            balance: raw.balance.as_ref().map(Spanned::span),
            proxy: raw.proxy.as_ref().map(Spanned::span),
            admin: raw.admin.as_ref().map(Spanned::span),
            restart_delay: raw.restart_delay.as_ref().map(Spanned::span),
            restart_backoff: raw.restart_backoff.as_ref().map(Spanned::span),
            restart_delay_max: raw.restart_delay_max.as_ref().map(Spanned::span),
            check: raw.health_check.as_ref().map(Spanned::span),
            interval: raw.health_interval.as_ref().map(Spanned::span),
            timeout: raw.health_timeout.as_ref().map(Spanned::span),
            failures: raw.health_failures.as_ref().map(Spanned::span),
            start_period: raw.health_start_period.as_ref().map(Spanned::span),
            watchdog: raw.watchdog.as_ref().map(Spanned::span),
        }
    }

    /// The `listen` entry that is `addr` (as herd prints it), else the first.
    fn listen_of(&self, addr: &str) -> Option<(&'static str, Range<usize>)> {
        let path = addr.trim_start_matches("unix:");
        self.listen
            .iter()
            .find(|(text, _)| text.trim_start_matches("unix:") == path)
            .or(self.listen.first())
            .map(|(_, span)| ("listen", span.clone()))
    }

    /// The key a mistake is about, and where it is.
    fn key_of(&self, e: &PlanError) -> Option<(&'static str, Range<usize>)> {
        let at = |key: &'static str, span: &Option<Range<usize>>| Some((key, span.clone()?));
        match e {
            PlanError::ProxyBalance(_) => {
                at("balance", &self.balance).or_else(|| at("proxy", &self.proxy))
            }
            PlanError::ProxyUnix(addr) => self.listen_of(addr).or_else(|| at("proxy", &self.proxy)),
            PlanError::AdminOnAppAddress(_) => at("admin", &self.admin)
                .or_else(|| at("port", &self.port))
                .or_else(|| {
                    self.listen
                        .first()
                        .map(|(_, span)| ("listen", span.clone()))
                }),
            PlanError::RestartDelay { .. } => at("restart_delay", &self.restart_delay)
                .or_else(|| at("restart_backoff", &self.restart_backoff))
                .or_else(|| at("restart_delay_max", &self.restart_delay_max)),
            // The timeout, or the interval that is shorter than the default timeout.
            PlanError::HealthTimeout { .. } => at("health_timeout", &self.timeout)
                .or_else(|| at("health_interval", &self.interval)),
            PlanError::HealthNeedsCheck(flag) => match *flag {
                "--health-interval" => at("health_interval", &self.interval),
                "--health-timeout" => at("health_timeout", &self.timeout),
                "--health-failures" => at("health_failures", &self.failures),
                _ => at("health_start_period", &self.start_period),
            },
            PlanError::HealthFailures => at("health_failures", &self.failures),
            PlanError::WatchdogTooShort(_) => at("watchdog", &self.watchdog),
            PlanError::HealthUntargetable(_) => at("health_check", &self.check),
            _ => None,
        }
    }
}

fn non_empty(s: &str) -> Result<String, String> {
    not_blank(s, "expected a name or a numeric id")
}

fn not_blank(s: &str, expected: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err(expected.to_string())
    } else {
        Ok(s.to_string())
    }
}

fn path(s: &str) -> Result<PathBuf, String> {
    not_blank(s, "expected a file path").map(PathBuf::from)
}

/// A name that can be put in a process's environment: `=` would end the name early and
/// NUL would end the whole entry.
fn env_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains(['=', '\0']) || s.chars().any(char::is_whitespace) {
        Err("expected an environment variable name, e.g. \"NODE_APP_INSTANCE\"".to_string())
    } else {
        Ok(s.to_string())
    }
}

/// Builds the errors of one app, which all name `apps.<name>.<key>`.
struct Validator<'a> {
    name: &'a str,
    src: &'a Source<'a>,
}

impl Validator<'_> {
    fn bad(&self, key: &str, span: Range<usize>, message: impl Into<String>) -> FileError {
        self.src
            .invalid(format!("apps.{}.{key}", self.name), span, message.into())
    }

    /// `command = "node server.js"` (split on whitespace; no shell, no quotes) or
    /// `command = ["node", "server.js"]`.
    fn command(
        &self,
        command: Option<Spanned<Value>>,
        table_span: Range<usize>,
    ) -> Result<(String, Vec<String>), FileError> {
        let Some(command) = command else {
            return Err(FileError::Missing {
                at: self.src.at(Some(table_span)),
                key: format!("apps.{}.command", self.name),
                message: "write `command = \"program arg\"` or `command = [\"program\", \"arg\"]`"
                    .to_string(),
            });
        };
        let span = command.span();
        let words: Vec<String> = match command.into_inner() {
            Value::String(s) => {
                if s.contains(['"', '\'', '\\']) {
                    return Err(self.bad(
                        "command",
                        span,
                        "quotes are not interpreted (there is no shell): use an array, \
                         e.g. [\"node\", \"my app.js\"]",
                    ));
                }
                s.split_whitespace().map(str::to_string).collect()
            }
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s),
                    _ => Err(self.bad("command", span.clone(), "expected an array of strings")),
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(self.bad(
                    "command",
                    span,
                    "expected a string or an array of strings, e.g. [\"node\", \"server.js\"]",
                ))
            }
        };
        let mut words = words.into_iter();
        match words.next() {
            Some(program) if !program.is_empty() => Ok((program, words.collect())),
            _ => Err(self.bad("command", span, "the command is empty")),
        }
    }

    /// A string value through one of the flag parsers.
    fn parse<T>(
        &self,
        value: Option<Spanned<String>>,
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, FileError> {
        value.map(|v| self.parse_one(v, key, &parse)).transpose()
    }

    fn parse_one<T>(
        &self,
        value: Spanned<String>,
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, FileError> {
        parse(value.get_ref()).map_err(|message| self.bad(key, value.span(), message))
    }

    fn duration(
        &self,
        value: Option<Spanned<Value>>,
        key: &str,
    ) -> Result<Option<Duration>, FileError> {
        let Some(value) = value else { return Ok(None) };
        let span = value.span();
        match value.into_inner() {
            Value::String(s) if s.trim().parse::<f64>().is_ok() => {
                Err(self.bad(key, span, BARE_NUMBER))
            }
            Value::String(s) => parse_duration(&s)
                .map(Some)
                .map_err(|message| self.bad(key, span, message)),
            Value::Integer(_) | Value::Float(_) => Err(self.bad(key, span, BARE_NUMBER)),
            _ => Err(self.bad(key, span, "expected a duration, e.g. \"500ms\", \"10s\"")),
        }
    }

    /// A value written as a number or a word (`instances = 4` or `"max"`), parsed as the
    /// flag's text is.
    fn number_or_word<T: std::str::FromStr<Err = String>>(
        &self,
        value: Option<Spanned<Value>>,
        key: &str,
        expected: &str,
    ) -> Result<Option<T>, FileError> {
        let Some(value) = value else { return Ok(None) };
        let span = value.span();
        let text = match value.into_inner() {
            Value::String(s) => s,
            Value::Integer(n) => n.to_string(),
            _ => return Err(self.bad(key, span, expected)),
        };
        text.parse()
            .map(Some)
            .map_err(|message| self.bad(key, span, message))
    }

    fn port(&self, value: Option<Spanned<i64>>) -> Result<Option<u16>, FileError> {
        let Some(value) = value else { return Ok(None) };
        u16::try_from(*value.get_ref())
            .map(Some)
            .map_err(|_| self.bad("port", value.span(), "expected a port number, 0-65535"))
    }

    fn count(
        &self,
        value: Option<Spanned<i64>>,
        key: &str,
        min: usize,
    ) -> Result<Option<usize>, FileError> {
        let Some(value) = value else { return Ok(None) };
        match usize::try_from(*value.get_ref()) {
            Ok(n) if n >= min => Ok(Some(n)),
            _ => Err(self.bad(key, value.span(), format!("expected a number ≥ {min}"))),
        }
    }

    fn signal(&self, value: Option<Spanned<Value>>) -> Result<Option<Signal>, FileError> {
        let Some(value) = value else { return Ok(None) };
        let span = value.span();
        let text = match value.into_inner() {
            Value::String(s) => s,
            Value::Integer(n) => n.to_string(),
            _ => return Err(self.bad("stop_signal", span, "expected e.g. \"SIGTERM\"")),
        };
        parse_signal(&text)
            .map(Some)
            .map_err(|message| self.bad("stop_signal", span, message))
    }

    fn size(&self, value: Option<Spanned<Value>>, key: &str) -> Result<Option<u64>, FileError> {
        let Some(value) = value else { return Ok(None) };
        let span = value.span();
        let bytes = match value.into_inner() {
            Value::String(s) => parse_size(&s),
            Value::Integer(n) => u64::try_from(n).map_err(|_| "a size cannot be negative".into()),
            _ => Err("expected a size, e.g. \"200M\", \"1G\"".to_string()),
        };
        bytes
            .map(Some)
            .map_err(|message| self.bad(key, span, message))
    }

    /// `max_memory_restart`: a size ("300M", or bytes as a number) or a share ("40%").
    fn max_memory(&self, value: Option<Spanned<Value>>) -> Result<Option<MaxMemory>, FileError> {
        let Some(value) = value else { return Ok(None) };
        let span = value.span();
        let max = match value.into_inner() {
            Value::String(s) => s.parse(),
            Value::Integer(n) => u64::try_from(n)
                .map(MaxMemory::Size)
                .map_err(|_| "a size cannot be negative".into()),
            _ => Err("expected a size or a share, e.g. \"200M\", \"1G\", \"40%\"".to_string()),
        };
        max.map(Some)
            .map_err(|message| self.bad("max_memory_restart", span, message))
    }

    /// `watch = true` (the app's directory), `false`, or a path or paths, relative to `cwd`.
    fn watch(&self, value: Option<Spanned<Value>>) -> Result<Vec<PathBuf>, FileError> {
        let Some(value) = value else {
            return Ok(Vec::new());
        };
        let span = value.span();
        let bad = || {
            self.bad(
                "watch",
                span.clone(),
                "expected true, false or paths, e.g. [\"src\", \"config\"]",
            )
        };
        match value.into_inner() {
            Value::Boolean(true) => Ok(vec![PathBuf::from(".")]),
            Value::Boolean(false) => Ok(Vec::new()),
            Value::String(s) if !s.trim().is_empty() => Ok(vec![PathBuf::from(s)]),
            Value::Array(items) if !items.is_empty() => items
                .into_iter()
                .map(|item| match item {
                    Value::String(s) if !s.trim().is_empty() => Ok(PathBuf::from(s)),
                    _ => Err(bad()),
                })
                .collect(),
            _ => Err(bad()),
        }
    }

    /// `ignore_watch = ["*.log", "tmp/**"]`, or one glob alone.
    fn ignore_watch(&self, value: Option<Spanned<Value>>) -> Result<Vec<IgnoreGlob>, FileError> {
        let Some(value) = value else {
            return Ok(Vec::new());
        };
        let span = value.span();
        let items = match value.into_inner() {
            Value::Array(items) => items,
            one @ Value::String(_) => vec![one],
            _ => {
                return Err(self.bad(
                    "ignore_watch",
                    span,
                    "expected globs, e.g. [\"*.log\", \"tmp/**\"]",
                ))
            }
        };
        items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => s
                    .parse::<IgnoreGlob>()
                    .map_err(|message| self.bad("ignore_watch", span.clone(), message)),
                _ => Err(self.bad("ignore_watch", span.clone(), "expected strings")),
            })
            .collect()
    }

    /// `stop_exit_codes = [0, 2]`, or one code alone as PM2 allows.
    fn exit_codes(&self, value: Option<Spanned<Value>>) -> Result<Vec<i32>, FileError> {
        let Some(value) = value else {
            return Ok(Vec::new());
        };
        let span = value.span();
        let bad = || {
            self.bad(
                "stop_exit_codes",
                span.clone(),
                "expected exit codes, e.g. [0, 2]",
            )
        };
        let items = match value.into_inner() {
            Value::Array(items) => items,
            one @ Value::Integer(_) => vec![one],
            _ => return Err(bad()),
        };
        items
            .into_iter()
            .map(|item| match item {
                Value::Integer(n) => i32::try_from(n).map_err(|_| bad()),
                _ => Err(bad()),
            })
            .collect()
    }

    /// `filter_env = true` (no variable of herd's), `false`, or prefixes: `["SECRET_"]`
    /// (one alone may be a string, as PM2 allows).
    fn filter_env(
        &self,
        value: Option<Spanned<Value>>,
    ) -> Result<Option<crate::config::FilterEnv>, FileError> {
        use crate::config::FilterEnv;
        let Some(value) = value else { return Ok(None) };
        let span = value.span();
        let bad = |message: String| self.bad("filter_env", span.clone(), message);
        let items = match value.into_inner() {
            Value::Boolean(all) => return Ok(all.then_some(FilterEnv::All)),
            Value::Array(items) => items,
            one @ Value::String(_) => vec![one],
            _ => {
                return Err(bad(
                    "expected true, false or prefixes of variable names, e.g. [\"SECRET_\"]".into(),
                ))
            }
        };
        let prefixes = items
            .into_iter()
            .map(|item| match item {
                Value::String(s) => crate::config::launch::parse_prefix(&s).map_err(&bad),
                _ => Err(bad(
                    "expected prefixes of variable names, e.g. [\"SECRET_\"]".into(),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(FilterEnv::from_flags(false, prefixes))
    }

    /// `increment_var`: a variable name whose value in `env`, if set, is a number to
    /// add the slot number to; anything else would fail only when a worker starts.
    fn increment_var(
        &self,
        value: Option<Spanned<String>>,
        env: &BTreeMap<String, String>,
    ) -> Result<Option<String>, FileError> {
        let Some(value) = value else { return Ok(None) };
        let span = value.span();
        let name = self.parse_one(value, "increment_var", env_name)?;
        match env.get(&name) {
            Some(start) if start.trim().parse::<i64>().is_err() => Err(self.bad(
                "increment_var",
                span,
                format!("`env.{name} = {start:?}` is not a number to increment"),
            )),
            _ => Ok(Some(name)),
        }
    }
}
