//! One PM2 app object mapped to an [`AppConfig`]: every PM2 option that means something in
//! herd, with PM2's units (milliseconds for bare numbers, K/M/G sizes) and PM2's loose
//! types (numbers as strings, a string or an array of arguments). Options herd does not
//! have become warnings; only values that cannot mean anything are errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::options::{INTERPRETERS, MAPPED, UNSUPPORTED};
use super::EcosystemError;
use crate::config::AppConfig;
use crate::config::Instances;
use crate::output::LogFormat;
use crate::supervisor::{Readiness, DEFAULT_BACKOFF_MAX};
use crate::units::parse_signal;

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
pub(super) struct Mapper<'a> {
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

impl Mapper<'_> {
    pub(super) fn bad(&self, key: &str, message: impl Into<String>) -> EcosystemError {
        EcosystemError::Invalid {
            file: self.cx.file.to_string(),
            app: self.label.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    pub(super) fn warn(&mut self, key: &str, message: impl std::fmt::Display) {
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
                "max_memory_restart" => app.max_memory_restart = Some(self.max_memory(k, value)?),
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
                "watch" => app.watch = self.watch(value)?,
                "ignore_watch" => app.ignore_watch = self.ignore_watch(value)?,
                "watch_delay" => app.watch_delay = Some(self.millis(k, value)?),
                "uid" | "user" => app.user = Some(self.scalar(k, value)?),
                "gid" => app.group = Some(self.scalar(k, value)?),
                "cron_restart" | "cron" => app.cron_restart = self.schedule(k, value)?,
                "filter_env" => app.filter_env = self.filter_env(k, value)?,
                _ => self.unsupported(k),
            }
        }
        // PM2 counts restart_delay as a fixed pause and exp_backoff_restart_delay as the
        // start of a growing one, which PM2 resets once the app ran stably: herd's
        // `restart_backoff` (a stable worker is restarted at once, an unstable one after the
        // doubling delay); a fixed delay is herd's `restart_delay`.
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
                app.restart_backoff = Some(initial);
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
}
