//! One PM2 app object mapped to an [`AppConfig`]: every PM2 option that means something in
//! herd, with PM2's units (milliseconds for bare numbers, K/M/G sizes) and PM2's loose
//! types (numbers as strings, a string or an array of arguments). Options herd does not
//! have become warnings; only values that cannot mean anything are errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use super::EcosystemError;
use crate::config::AppConfig;
use crate::config::Instances;
use crate::output::LogFormat;
use crate::supervisor::{Readiness, DEFAULT_BACKOFF_MAX};
use crate::units::{parse_duration, parse_signal, parse_size};

/// What every app of one file shares.
pub(super) struct Context<'a> {
    /// The file name, for messages.
    pub file: &'a str,
    /// The file's directory (absolute): relative paths are relative to it.
    pub dir: &'a Path,
    /// `--env`: the `env_<profile>` merged over `env`.
    pub profile: Option<&'a str>,
}

/// One mapped app.
pub(super) struct Mapped {
    /// Its herd name (PM2's, made a plain word).
    pub name: String,
    /// How messages call it: `apps[0] (api)`.
    pub label: String,
    /// The app.
    pub app: AppConfig,
    /// The profiles of its `env_<profile>` objects.
    pub profiles: Vec<String>,
}

/// PM2 options herd has no equivalent for, with why (or what to do instead).
const UNSUPPORTED: [(&str, &str); 33] = [
    ("watch", "herd does not restart on file changes: run `herd reload` from your deploy or a file watcher"),
    ("ignore_watch", "herd does not watch files"),
    ("watch_options", "herd does not watch files"),
    ("watch_delay", "herd does not watch files"),
    ("cron_restart", "herd has no cron restarts: call `herd reload` from cron or a systemd timer"),
    ("cron", "herd has no cron restarts: call `herd reload` from cron or a systemd timer"),
    ("vizion", "herd keeps no versioning metadata"),
    ("post_update", "herd has no Keymetrics update hooks"),
    ("source_map_support", "herd does not inject source-map-support: use node's --enable-source-maps in node_args"),
    ("disable_source_map_support", "herd does not inject source-map-support"),
    ("force", "herd never starts an app twice under one name"),
    ("treekill", "herd stops each worker's process group"),
    ("pmx", "herd has no pmx/PM2.io agent"),
    ("automation", "herd has no pmx/PM2.io agent"),
    ("deep_monitoring", "herd has no PM2.io monitoring"),
    ("trace", "herd has no PM2.io tracing"),
    ("disable_trace", "herd has no PM2.io tracing"),
    ("v8", "herd has no PM2.io monitoring"),
    ("event_loop_inspector", "herd has no PM2.io monitoring"),
    ("io", "herd has no PM2.io agent"),
    ("pid_file", "herd writes no pid files: `herd` itself is the process to supervise"),
    ("pid", "herd writes no pid files: `herd` itself is the process to supervise"),
    ("time", "herd's log lines carry their own timestamp (log_format)"),
    ("disable_logs", "herd always passes on the workers' output"),
    ("filter_env", "workers get herd's environment plus `env`"),
    ("append_env_to_name", "app names do not change with --env"),
    ("name_prefix", "app names are used as written"),
    ("install_url", "herd installs nothing"),
    ("execute_command", "not supported"),
    ("write", "not supported"),
    ("windowsHide", "herd runs on Unix only"),
    ("kill_retry_time", "herd sends SIGKILL once, after kill_timeout"),
    ("username", "use `user`"),
];

/// Every PM2 option herd maps, for did-you-mean on unknown ones.
const MAPPED: [&str; 47] = [
    "name",
    "script",
    "exec",
    "cwd",
    "args",
    "interpreter",
    "exec_interpreter",
    "interpreter_args",
    "interpreterArgs",
    "node_args",
    "instances",
    "exec_mode",
    "env",
    "instance_var",
    "increment_var",
    "port",
    "max_memory_restart",
    "wait_ready",
    "listen_timeout",
    "kill_timeout",
    "shutdown_with_message",
    "restart_delay",
    "exp_backoff_restart_delay",
    "max_restarts",
    "min_uptime",
    "autorestart",
    "stop_exit_codes",
    "out_file",
    "out",
    "output",
    "out_log",
    "error_file",
    "error",
    "err",
    "err_file",
    "err_log",
    "log_file",
    "log",
    "merge_logs",
    "combine_logs",
    "log_date_format",
    "log_type",
    "namespace",
    "kill_signal",
    "uid",
    "user",
    "gid",
];

/// Interpreters PM2 picks from the script's extension when `interpreter` is absent
/// (PM2's lib/API/interpreter.json, plus the module extensions node runs). `python3`
/// rather than PM2's `python`, which most current distributions no longer install.
/// A script with another extension is run directly (its shebang decides).
const INTERPRETERS: [(&str, &str); 12] = [
    ("js", "node"),
    ("cjs", "node"),
    ("mjs", "node"),
    ("ts", "bun"),
    ("tsx", "bun"),
    ("sh", "bash"),
    ("py", "python3"),
    ("rb", "ruby"),
    ("php", "php"),
    ("pl", "perl"),
    ("coffee", "coffee"),
    ("ls", "lsc"),
];

/// Maps the app at `index` of the file. Warnings are appended to `warnings`.
pub(super) fn map(
    index: usize,
    value: &Value,
    cx: &Context<'_>,
    warnings: &mut Vec<String>,
) -> Result<Mapped, EcosystemError> {
    let Value::Object(obj) = value else {
        return Err(EcosystemError::Shape {
            file: cx.file.to_string(),
            message: format!("apps[{index}] is not an object: expected {{ script: \"…\", … }}"),
        });
    };
    let pm2_name = obj.get("name").and_then(Value::as_str);
    let label = match pm2_name {
        Some(name) => format!("apps[{index}] ({name})"),
        None => format!("apps[{index}]"),
    };
    let mut m = Mapper {
        cx,
        label: &label,
        warnings,
    };
    m.app(obj, pm2_name)
}

/// Builds the messages of one app.
struct Mapper<'a> {
    cx: &'a Context<'a>,
    label: &'a str,
    warnings: &'a mut Vec<String>,
}

/// `path` without its `.` components (`/srv/./app` is `/srv/app`), so that imported
/// paths read as the user would write them. `..` is kept: it may cross a symlink.
fn clean(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// A value's JSON text, shortened for a message.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 {
        format!("{} …", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

impl Mapper<'_> {
    fn bad(&self, key: &str, message: impl Into<String>) -> EcosystemError {
        EcosystemError::Invalid {
            file: self.cx.file.to_string(),
            app: self.label.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn warn(&mut self, key: &str, message: impl std::fmt::Display) {
        self.warnings.push(format!(
            "{}: app {}: `{key}`: {message}",
            self.cx.file, self.label
        ));
    }

    fn app(
        &mut self,
        obj: &Map<String, Value>,
        pm2_name: Option<&str>,
    ) -> Result<Mapped, EcosystemError> {
        let mut app = AppConfig::default();
        let mut script = None;
        let mut interpreter = None;
        let mut interpreter_args = Vec::new();
        let mut args = Vec::new();
        let mut cwd = None;
        let mut fork = false;
        let mut env = BTreeMap::new();
        let mut profiles = BTreeMap::new();
        let mut restart_delay = None;
        let mut backoff = None;
        for (key, value) in obj {
            let k = key.as_str();
            match k {
                "name" => {
                    self.string(k, value)?;
                }
                "script" | "exec" => script = Some(self.string(k, value)?),
                "cwd" => cwd = Some(self.string(k, value)?),
                "args" => args = self.words(k, value)?,
                "interpreter" | "exec_interpreter" => interpreter = Some(self.string(k, value)?),
                "interpreter_args" | "interpreterArgs" | "node_args" => {
                    interpreter_args.extend(self.words(k, value)?);
                }
                "instances" => app.instances = Some(self.instances(value)?),
                "exec_mode" => {
                    fork = match self.string(k, value)?.as_str() {
                        "fork" | "fork_mode" => true,
                        "cluster" | "cluster_mode" => false,
                        other => {
                            return Err(
                                self.bad(k, format!("`{other}`: expected \"cluster\" or \"fork\""))
                            )
                        }
                    }
                }
                "env" => env = self.env(k, value)?,
                _ if k.starts_with("env_") && k.len() > 4 => {
                    profiles.insert(k[4..].to_string(), self.env(k, value)?);
                }
                "instance_var" => app.instance_var = Some(self.env_name(k, value)?),
                "increment_var" => app.increment_var = Some(self.env_name(k, value)?),
                "port" => app.port = Some(self.port(value)?),
                "max_memory_restart" => app.max_memory_restart = Some(self.size(k, value)?),
                "wait_ready" => {
                    if self.bool(k, value)? {
                        app.ready = Some(Readiness::Message);
                        self.warn(
                            k,
                            "a worker that does not send \"ready\" within listen_timeout \
                             failed to start in herd (stopped, a reload aborted); PM2 \
                             starts it anyway",
                        );
                    }
                }
                "listen_timeout" => app.listen_timeout = Some(self.millis(k, value)?),
                "kill_timeout" => app.kill_timeout = Some(self.millis(k, value)?),
                "shutdown_with_message" => app.stop_message = Some(self.bool(k, value)?),
                "restart_delay" => restart_delay = Some(self.millis(k, value)?),
                "exp_backoff_restart_delay" => backoff = Some(self.millis(k, value)?),
                "max_restarts" => app.max_restarts = Some(self.count(k, value)?),
                "min_uptime" => app.min_uptime = Some(self.millis(k, value)?),
                "autorestart" => app.autorestart = Some(self.bool(k, value)?),
                "stop_exit_codes" => app.stop_exit_codes = self.exit_codes(value)?,
                "out_file" | "out" | "output" | "out_log" => {
                    app.out_file = Some(self.path(k, value)?);
                }
                "error_file" | "error" | "err" | "err_file" | "err_log" => {
                    app.error_file = Some(self.path(k, value)?);
                }
                "log_file" | "log" => match value {
                    Value::Bool(false) => {}
                    Value::Bool(true) => self.warn(
                        k,
                        "herd has no default combined log file: write a path to get one",
                    ),
                    _ => app.log_file = Some(self.path(k, value)?),
                },
                "merge_logs" | "combine_logs" => app.merge_logs = Some(self.bool(k, value)?),
                "log_date_format" => app.log_date_format = Some(self.non_empty(k, value)?),
                "log_type" => match self.string(k, value)?.as_str() {
                    "json" => app.log_format = Some(LogFormat::Json),
                    other => self.warn(
                        k,
                        format!("`{other}`: only \"json\" has a meaning: ignored"),
                    ),
                },
                "namespace" => app.namespace = Some(self.non_empty(k, value)?),
                "kill_signal" => {
                    let text = self.scalar(k, value)?;
                    app.stop_signal =
                        Some(parse_signal(&text).map_err(|message| self.bad(k, message))?);
                }
                "uid" | "user" => app.user = Some(self.scalar(k, value)?),
                "gid" => app.group = Some(self.scalar(k, value)?),
                _ => self.unsupported(k),
            }
        }
        // PM2 counts restart_delay as a fixed pause and exp_backoff_restart_delay as the
        // start of a doubling one; herd's backoff covers both.
        match (restart_delay, backoff) {
            (Some(fixed), None) => {
                app.restart_delay = Some(fixed);
                app.restart_delay_max = Some(fixed);
            }
            (fixed, Some(initial)) => {
                if fixed.is_some() {
                    self.warn(
                        "restart_delay",
                        "ignored: exp_backoff_restart_delay takes precedence, as in PM2",
                    );
                }
                app.restart_delay = Some(initial);
                // The cap must not be below the first delay.
                if initial > DEFAULT_BACKOFF_MAX {
                    app.restart_delay_max = Some(initial);
                }
            }
            (None, None) => {}
        }
        let Some(script) = script.filter(|s| !s.trim().is_empty()) else {
            return Err(self.bad(
                "script",
                "missing: the program to run, e.g. `script: \"./server.js\"`",
            ));
        };
        let dir = match cwd {
            Some(cwd) => clean(&self.cx.dir.join(cwd)),
            None => self.cx.dir.to_path_buf(),
        };
        self.command(&mut app, &script, interpreter, interpreter_args, args, &dir);
        app.cwd = Some(dir);
        for path in [&mut app.out_file, &mut app.error_file, &mut app.log_file]
            .into_iter()
            .flatten()
        {
            if path.is_relative() {
                *path = clean(&self.cx.dir.join(&*path));
            }
        }
        // PM2 starts one instance unless told otherwise, in both modes; herd's own default
        // (one per CPU) would silently multiply an app that was meant to run once.
        match app.instances {
            None => app.instances = Some(Instances::Count(1)),
            Some(Instances::Count(1)) => {}
            Some(n) if fork => self.warn(
                "exec_mode",
                format!(
                    "fork with instances {n}: PM2 runs separate processes; herd runs \
                     them as workers sharing its listening sockets"
                ),
            ),
            Some(_) => {}
        }
        match self.cx.profile {
            Some(profile) => {
                if let Some(vars) = profiles.get(profile) {
                    env.extend(vars.clone());
                }
            }
            // Kept for `herd import`, which writes them as `env_<profile>` tables.
            None => app.profiles = profiles.clone(),
        }
        if let Some(var) = &app.increment_var {
            if let Some(start) = env.get(var).filter(|v| v.trim().parse::<i64>().is_err()) {
                return Err(self.bad(
                    "increment_var",
                    format!("`env.{var}` = {start:?} is not a number to increment"),
                ));
            }
        }
        app.env = env;
        let name = self.name(pm2_name, &script);
        Ok(Mapped {
            name,
            label: self.label.to_string(),
            app,
            profiles: profiles.into_keys().collect(),
        })
    }

    /// program and args: `interpreter [interpreter_args] script [args]`, or the script alone
    /// with `interpreter: "none"` or an extension no interpreter is known for.
    fn command(
        &mut self,
        app: &mut AppConfig,
        script: &str,
        interpreter: Option<String>,
        interpreter_args: Vec<String>,
        args: Vec<String>,
        dir: &Path,
    ) {
        let extension = Path::new(script)
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let interpreter = match interpreter.as_deref() {
            Some("none") => None,
            Some(i) => Some(i.to_string()),
            None => extension.as_deref().and_then(|ext| {
                INTERPRETERS
                    .iter()
                    .find(|(e, _)| *e == ext)
                    .map(|(_, i)| i.to_string())
            }),
        };
        let is_path = script.contains('/') || interpreter.is_some();
        if is_path && !dir.join(script).exists() {
            self.warn(
                "script",
                format!("`{script}` does not exist in {}", dir.display()),
            );
        }
        match interpreter {
            Some(interpreter) => {
                app.program = interpreter;
                app.args = interpreter_args;
                app.args.push(script.to_string());
            }
            None => {
                if !interpreter_args.is_empty() {
                    self.warn(
                        "interpreter_args",
                        "ignored: the script runs without an interpreter",
                    );
                }
                // A relative path is made absolute: herd looks a bare name up in PATH, and
                // PM2 meant the script in cwd.
                app.program = if script.contains('/') && Path::new(script).is_relative() {
                    clean(&dir.join(script)).to_string_lossy().into_owned()
                } else {
                    script.to_string()
                };
                app.args = Vec::new();
            }
        }
        app.args.extend(args);
    }

    /// PM2's name, or the script's file stem; made a herd app name (letters, digits, `-`
    /// and `_`, not `all`) with a warning when it was not one.
    fn name(&mut self, pm2_name: Option<&str>, script: &str) -> String {
        let wanted = match pm2_name {
            Some(name) => name.to_string(),
            None => Path::new(script)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let name = crate::units::app_name_from(&wanted);
        if name != wanted {
            let why = if wanted == "all" {
                "`all` selects every app in herd's commands"
            } else {
                "herd app names are letters, digits, `-` and `_`"
            };
            self.warn("name", format!("`{wanted}`: {why}: imported as `{name}`"));
        }
        name
    }

    fn unsupported(&mut self, key: &str) {
        if let Some((_, why)) = UNSUPPORTED.iter().find(|(k, _)| *k == key) {
            self.warn(key, format!("not supported by herd, ignored: {why}"));
            return;
        }
        let mut known: Vec<&str> = MAPPED.to_vec();
        known.extend(UNSUPPORTED.iter().map(|(k, _)| *k));
        let hint = match crate::config::file::suggest(key, &known) {
            Some(s) => format!(" — did you mean `{s}`?"),
            None => String::new(),
        };
        self.warn(key, format!("unknown PM2 option, ignored{hint}"));
    }

    fn string(&self, key: &str, value: &Value) -> Result<String, EcosystemError> {
        match value {
            Value::String(s) => Ok(s.clone()),
            _ => Err(self.bad(key, format!("{}: expected a string", shown(value)))),
        }
    }

    fn non_empty(&self, key: &str, value: &Value) -> Result<String, EcosystemError> {
        let s = self.string(key, value)?;
        if s.trim().is_empty() {
            return Err(self.bad(key, "must not be empty"));
        }
        Ok(s)
    }

    /// A string, or a number written as one (`uid: 1000`).
    fn scalar(&self, key: &str, value: &Value) -> Result<String, EcosystemError> {
        match value {
            Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(self.bad(
                key,
                format!("{}: expected a name or a number", shown(value)),
            )),
        }
    }

    fn bool(&self, key: &str, value: &Value) -> Result<bool, EcosystemError> {
        match value {
            Value::Bool(b) => Ok(*b),
            // PM2's CLI writes booleans into saved files as strings.
            Value::String(s) if s == "true" || s == "false" => Ok(s == "true"),
            _ => Err(self.bad(key, format!("{}: expected true or false", shown(value)))),
        }
    }

    fn path(&self, key: &str, value: &Value) -> Result<PathBuf, EcosystemError> {
        self.non_empty(key, value).map(PathBuf::from)
    }

    fn env_name(&self, key: &str, value: &Value) -> Result<String, EcosystemError> {
        let s = self.string(key, value)?;
        if s.is_empty() || s.contains(['=', '\0']) || s.chars().any(char::is_whitespace) {
            return Err(self.bad(
                key,
                format!("{}: expected an environment variable name", shown(value)),
            ));
        }
        Ok(s)
    }

    /// Arguments: an array, or a string split on whitespace (as PM2 does, with no quotes).
    fn words(&self, key: &str, value: &Value) -> Result<Vec<String>, EcosystemError> {
        match value {
            Value::String(s) => Ok(s.split_whitespace().map(str::to_string).collect()),
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    Value::Bool(b) => Ok(b.to_string()),
                    _ => Err(self.bad(key, format!("{}: expected strings", shown(item)))),
                })
                .collect(),
            _ => Err(self.bad(
                key,
                format!("{}: expected a string or an array of strings", shown(value)),
            )),
        }
    }

    /// `env` and `env_<profile>`: numbers and booleans are stringified (a process's
    /// environment holds text); `null` leaves the variable out, as node does not pass it.
    fn env(
        &mut self,
        key: &str,
        value: &Value,
    ) -> Result<BTreeMap<String, String>, EcosystemError> {
        let Value::Object(vars) = value else {
            return Err(self.bad(
                key,
                format!("{}: expected an object of variables", shown(value)),
            ));
        };
        let mut env = BTreeMap::new();
        for (name, v) in vars {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Null => {
                    self.warn(&format!("{key}.{name}"), "null: left out");
                    continue;
                }
                _ => {
                    return Err(self.bad(
                        &format!("{key}.{name}"),
                        format!("{}: expected a string, a number or a boolean", shown(v)),
                    ))
                }
            };
            if name.is_empty() || name.contains(['=', '\0']) || text.contains('\0') {
                return Err(self.bad(&format!("{key}.{name}"), "not a valid environment variable"));
            }
            env.insert(name.clone(), text);
        }
        Ok(env)
    }

    /// A whole number from a JSON number or a numeric string.
    fn integer(value: &Value) -> Option<i64> {
        match value {
            Value::Number(n) => n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                    .map(|f| f as i64)
            }),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// `instances`: N, "max", 0 (max), -1 (max minus one), or those as strings.
    fn instances(&self, value: &Value) -> Result<Instances, EcosystemError> {
        let text = match value {
            Value::String(s) => s.trim().to_string(),
            _ => match Self::integer(value) {
                Some(n) => n.to_string(),
                None => {
                    return Err(self.bad(
                        "instances",
                        format!("{}: expected N, \"max\" or -K", shown(value)),
                    ))
                }
            },
        };
        text.parse()
            .map_err(|message| self.bad("instances", message))
    }

    fn port(&self, value: &Value) -> Result<u16, EcosystemError> {
        Self::integer(value)
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| {
                self.bad(
                    "port",
                    format!("{}: expected a port number, 0-65535", shown(value)),
                )
            })
    }

    fn count(&self, key: &str, value: &Value) -> Result<usize, EcosystemError> {
        Self::integer(value)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| self.bad(key, format!("{}: expected a number ≥ 0", shown(value))))
    }

    /// A size: a number of bytes, or "200M"/"1G" (binary, as PM2).
    fn size(&self, key: &str, value: &Value) -> Result<u64, EcosystemError> {
        match value {
            Value::String(s) => parse_size(s).map_err(|message| self.bad(key, message)),
            _ => Self::integer(value)
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| {
                    self.bad(
                        key,
                        format!("{}: expected bytes or e.g. \"200M\"", shown(value)),
                    )
                }),
        }
    }

    /// A PM2 duration: a number of milliseconds (also as a string), or a string with a
    /// unit ("5s", "1m").
    fn millis(&self, key: &str, value: &Value) -> Result<Duration, EcosystemError> {
        let bad = || {
            self.bad(
                key,
                format!("{}: expected milliseconds or e.g. \"5s\"", shown(value)),
            )
        };
        match value {
            Value::Number(n) => match n.as_u64() {
                Some(ms) => Ok(Duration::from_millis(ms)),
                None => n
                    .as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e15)
                    .map(|f| Duration::from_micros((f * 1000.0).round() as u64))
                    .ok_or_else(bad),
            },
            Value::String(s) => match s.trim().parse::<u64>() {
                Ok(ms) => Ok(Duration::from_millis(ms)),
                Err(_) => parse_duration(s).map_err(|message| self.bad(key, message)),
            },
            _ => Err(bad()),
        }
    }

    /// `stop_exit_codes`: one code or an array.
    fn exit_codes(&self, value: &Value) -> Result<Vec<i32>, EcosystemError> {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        items
            .into_iter()
            .map(|item| {
                Self::integer(item)
                    .and_then(|n| i32::try_from(n).ok())
                    .ok_or_else(|| {
                        self.bad(
                            "stop_exit_codes",
                            format!("{}: expected exit codes", shown(value)),
                        )
                    })
            })
            .collect()
    }
}
