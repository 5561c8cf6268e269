//! PM2's loose value types read into herd's typed values: numbers as strings, a string or
//! an array of arguments, milliseconds for bare numbers, K/M/G sizes. Each reader names the
//! app and key of a value that cannot mean anything.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::pm2::Mapper;
use super::EcosystemError;
use crate::config::{Instances, MaxMemory};
use crate::observe::watch::IgnoreGlob;
use crate::units::{parse_duration, parse_size};

impl Mapper<'_> {
    pub(super) fn string(&self, key: &str, value: &Value) -> Result<String, EcosystemError> {
        match value {
            Value::String(s) => Ok(s.clone()),
            _ => Err(self.bad(key, format!("{}: expected a string", shown(value)))),
        }
    }

    pub(super) fn non_empty(&self, key: &str, value: &Value) -> Result<String, EcosystemError> {
        let s = self.string(key, value)?;
        if s.trim().is_empty() {
            return Err(self.bad(key, "must not be empty"));
        }
        Ok(s)
    }

    /// A string, or a number written as one (`uid: 1000`).
    pub(super) fn scalar(&self, key: &str, value: &Value) -> Result<String, EcosystemError> {
        match value {
            Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(self.bad(
                key,
                format!("{}: expected a name or a number", shown(value)),
            )),
        }
    }

    pub(super) fn bool(&self, key: &str, value: &Value) -> Result<bool, EcosystemError> {
        match value {
            Value::Bool(b) => Ok(*b),
            // PM2's CLI writes booleans into saved files as strings.
            Value::String(s) if s == "true" || s == "false" => Ok(s == "true"),
            _ => Err(self.bad(key, format!("{}: expected true or false", shown(value)))),
        }
    }

    pub(super) fn path(&self, key: &str, value: &Value) -> Result<PathBuf, EcosystemError> {
        self.non_empty(key, value).map(PathBuf::from)
    }

    pub(super) fn env_name(&self, key: &str, value: &Value) -> Result<String, EcosystemError> {
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
    pub(super) fn words(&self, key: &str, value: &Value) -> Result<Vec<String>, EcosystemError> {
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
    pub(super) fn env(
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
    pub(super) fn integer(value: &Value) -> Option<i64> {
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
    pub(super) fn instances(&self, value: &Value) -> Result<Instances, EcosystemError> {
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

    pub(super) fn port(&self, value: &Value) -> Result<u16, EcosystemError> {
        Self::integer(value)
            .and_then(|n| u16::try_from(n).ok())
            .ok_or_else(|| {
                self.bad(
                    "port",
                    format!("{}: expected a port number, 0-65535", shown(value)),
                )
            })
    }

    pub(super) fn count(&self, key: &str, value: &Value) -> Result<usize, EcosystemError> {
        Self::integer(value)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| self.bad(key, format!("{}: expected a number ≥ 0", shown(value))))
    }

    /// A size: a number of bytes, or "200M"/"1G" (binary, as PM2).
    pub(super) fn size(&self, key: &str, value: &Value) -> Result<u64, EcosystemError> {
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

    /// `max_memory_restart`: a size as [`Self::size`] reads it, or herd's share of the
    /// container's memory limit ("40%"; PM2 has no such value).
    pub(super) fn max_memory(&self, key: &str, value: &Value) -> Result<MaxMemory, EcosystemError> {
        match value {
            Value::String(s) => s.parse().map_err(|message| self.bad(key, message)),
            _ => self.size(key, value).map(MaxMemory::Size),
        }
    }

    /// A PM2 duration: a number of milliseconds (also as a string), or a string with a
    /// unit ("5s", "1m").
    pub(super) fn millis(&self, key: &str, value: &Value) -> Result<Duration, EcosystemError> {
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

    /// `watch`: true or false (also as strings), one path or an array of paths, relative
    /// to `cwd` as in PM2; empty when it watches nothing.
    pub(super) fn watch(&self, value: &Value) -> Result<Vec<PathBuf>, EcosystemError> {
        let bad = || {
            self.bad(
                "watch",
                format!("{}: expected true, false or paths", shown(value)),
            )
        };
        let path = |item: &Value| match item {
            Value::String(s) if !s.trim().is_empty() => Ok(PathBuf::from(s)),
            _ => Err(bad()),
        };
        match value {
            // PM2's CLI writes booleans into saved files as strings.
            Value::Bool(true) => Ok(vec![PathBuf::from(".")]),
            Value::String(s) if s == "true" => Ok(vec![PathBuf::from(".")]),
            Value::Bool(false) => Ok(Vec::new()),
            Value::String(s) if s == "false" => Ok(Vec::new()),
            // PM2: an empty array watches the app's directory.
            Value::Array(items) if items.is_empty() => Ok(vec![PathBuf::from(".")]),
            Value::Array(items) => items.iter().map(path).collect(),
            one => path(one).map(|p| vec![p]),
        }
    }

    /// `ignore_watch`: one glob or an array. A JavaScript RegExp (which reaches herd as
    /// `{}`) cannot be taken: warned about and left out.
    pub(super) fn ignore_watch(
        &mut self,
        value: &Value,
    ) -> Result<Vec<IgnoreGlob>, EcosystemError> {
        let items: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        let mut globs = Vec::new();
        for item in items {
            match item {
                Value::String(s) => globs.push(
                    s.parse::<IgnoreGlob>()
                        .map_err(|message| self.bad("ignore_watch", message))?,
                ),
                other => self.warn(
                    "ignore_watch",
                    format!(
                        "{}: not a glob (a RegExp?): herd takes globs such as \"*.log\"; left out",
                        shown(other)
                    ),
                ),
            }
        }
        Ok(globs)
    }

    /// `stop_exit_codes`: one code or an array.
    /// `cron_restart`: a cron expression; `0` (or `"0"`) turns it off, as in PM2.
    pub(super) fn schedule(
        &self,
        key: &str,
        value: &Value,
    ) -> Result<Option<crate::config::Schedule>, EcosystemError> {
        match value {
            Value::Number(n) if n.as_i64() == Some(0) => Ok(None),
            Value::String(s) if s.trim() == "0" => Ok(None),
            Value::String(s) => s.parse().map(Some).map_err(|e: String| self.bad(key, e)),
            _ => Err(self.bad(
                key,
                format!(
                    "{}: expected a cron expression, e.g. \"0 3 * * *\"",
                    shown(value)
                ),
            )),
        }
    }

    /// `filter_env`: `true` (none of herd's variables), `false`, or prefixes (an array, or
    /// one as a string).
    pub(super) fn filter_env(
        &self,
        key: &str,
        value: &Value,
    ) -> Result<Option<crate::config::FilterEnv>, EcosystemError> {
        let prefixes = match value {
            Value::Bool(all) => return Ok(all.then_some(crate::config::FilterEnv::All)),
            Value::String(s) => vec![s.clone()],
            Value::Array(items) => items
                .iter()
                .map(|item| self.string(key, item))
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(self.bad(
                    key,
                    format!(
                        "{}: expected true, false or prefixes of variable names",
                        shown(value)
                    ),
                ))
            }
        };
        for p in &prefixes {
            crate::config::launch::parse_prefix(p).map_err(|e| self.bad(key, e))?;
        }
        Ok(crate::config::FilterEnv::from_flags(false, prefixes))
    }

    pub(super) fn exit_codes(&self, value: &Value) -> Result<Vec<i32>, EcosystemError> {
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

/// A value's JSON text, shortened for a message.
pub(super) fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 {
        format!("{} …", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}
