//! PM2 ecosystem files (`ecosystem.config.js`, `.json`, `.yaml`) read into the same
//! [`AppConfig`]s as a herd.toml, so a PM2 user can switch with one command
//! (`herd import ecosystem.config.js > herd.toml`) or run the file as it is.
//!
//! Three stages: the file becomes a JSON value (JSON and YAML are parsed here; JavaScript is
//! evaluated by the machine's `node`, see `node`), the value's shape is found (`{ apps:
//! [...] }`, a bare array, or one app), then each app's PM2 options are mapped to herd's
//! (`pm2`). A PM2 option herd does not have, or one it does differently, is a *warning*
//! naming the file, the app and the key, never an error: the file was written for PM2 and
//! the user should not have to edit it before trying herd. A value that cannot mean
//! anything (a missing `script`, `instances: "many"`) is an error naming the same.
//! Nothing here starts the apps.

mod node;
mod options;
mod pm2;
#[cfg(test)]
mod tests;
mod values;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::file::Location;
use super::AppConfig;

/// The apps of an ecosystem file, and what herd could not take over from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ecosystem {
    /// The apps by name (at least one), with herd names: a PM2 name that is not a plain
    /// word is rewritten, with a warning.
    pub apps: BTreeMap<String, AppConfig>,
    /// One line per ignored or differently-behaving option, naming file, app and key.
    pub warnings: Vec<String>,
}

/// An ecosystem file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum EcosystemError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Not valid JSON or YAML.
    #[error("{at}: {message}")]
    Syntax {
        /// Where the parser stopped.
        at: Location,
        /// The parser's description.
        message: String,
    },
    /// A JavaScript file that node could not evaluate (or no node to do it).
    #[error("{file}: {message}")]
    Node {
        /// The file name.
        file: String,
        /// What went wrong, with node's stderr when it ran.
        message: String,
    },
    /// The file is not an ecosystem: no apps, or not an object or array.
    #[error("{file}: {message}")]
    Shape {
        /// The file name.
        file: String,
        /// What was expected.
        message: String,
    },
    /// One app's option has a value herd cannot use, or a required one is missing.
    #[error("{file}: app {app}: `{key}`: {message}")]
    Invalid {
        /// The file name.
        file: String,
        /// The app: its index in `apps` and its name, e.g. `apps[0] (api)`.
        app: String,
        /// The PM2 option, e.g. `instances`.
        key: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// `--env <profile>` named a profile that no app defines.
    #[error(
        "{file}: unknown profile `{profile}`: no app has an `env_{profile}` object{}",
        known_profiles(known)
    )]
    UnknownProfile {
        /// The file name.
        file: String,
        /// The profile asked for.
        profile: String,
        /// The profiles the file defines.
        known: Vec<String>,
    },
}

fn known_profiles(known: &[String]) -> String {
    if known.is_empty() {
        " (the file defines no profile)".to_string()
    } else {
        format!(" (defined: {})", known.join(", "))
    }
}

/// How an ecosystem file is read, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.json`.
    Json,
    /// `.yaml`, `.yml`.
    Yaml,
    /// `.js`, `.cjs`, `.mjs`: evaluated by node.
    JavaScript,
}

impl Format {
    /// The format of `path`, or `None` when its extension is not one of an ecosystem file.
    pub fn of(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "json" => Some(Format::Json),
            "yaml" | "yml" => Some(Format::Yaml),
            "js" | "cjs" | "mjs" => Some(Format::JavaScript),
            _ => None,
        }
    }
}

/// Reads the ecosystem file at `path` (its format from its extension; anything that is not
/// `.json` or `.yaml`/`.yml` is evaluated as JavaScript) with the env profile `profile`
/// (`env_<profile>` merged over `env`, PM2's `--env`). Relative `cwd` and log paths are
/// made relative to the file's directory, and an app without `cwd` runs there, as PM2 does.
pub fn load(path: &Path, profile: Option<&str>) -> Result<Ecosystem, EcosystemError> {
    let file = path.display().to_string();
    let read_error = |source| EcosystemError::Read {
        path: path.to_path_buf(),
        source,
    };
    // The directory anchors relative paths; absolute, so the apps mean the same thing
    // wherever herd is started from and wherever an imported herd.toml is saved.
    let dir = std::fs::canonicalize(path)
        .map_err(read_error)?
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let value = match Format::of(path).unwrap_or(Format::JavaScript) {
        Format::Json => {
            let text = std::fs::read_to_string(path).map_err(read_error)?;
            parse_json(&text, &file)?
        }
        Format::Yaml => {
            let text = std::fs::read_to_string(path).map_err(read_error)?;
            parse_yaml(&text, &file)?
        }
        Format::JavaScript => node::evaluate(path, &file)?,
    };
    from_value(&value, &file, &dir, profile)
}

/// A JSON ecosystem file's text as a value; `file` is what errors call it.
pub fn parse_json(text: &str, file: &str) -> Result<Value, EcosystemError> {
    serde_json::from_str(text).map_err(|e| EcosystemError::Syntax {
        at: Location {
            file: file.to_string(),
            line_column: Some((e.line(), e.column())),
        },
        message: strip_position(&e.to_string()),
    })
}

/// A YAML ecosystem file's text as a value; `file` is what errors call it.
pub fn parse_yaml(text: &str, file: &str) -> Result<Value, EcosystemError> {
    serde_norway::from_str(text).map_err(|e| EcosystemError::Syntax {
        at: Location {
            file: file.to_string(),
            line_column: e.location().map(|l| (l.line(), l.column())),
        },
        message: strip_position(&e.to_string()),
    })
}

/// serde_json and serde_norway end their messages with " at line L column C", which the
/// [`Location`] already says.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// The apps of an ecosystem already read as a value (what `module.exports` is): `{ apps:
/// [...] }`, a bare array of apps, or one app. `dir` anchors relative paths.
pub fn from_value(
    value: &Value,
    file: &str,
    dir: &Path,
    profile: Option<&str>,
) -> Result<Ecosystem, EcosystemError> {
    let mut warnings = Vec::new();
    let shape = |message: &str| EcosystemError::Shape {
        file: file.to_string(),
        message: message.to_string(),
    };
    let expected = "expected `{ apps: [ { script: \"…\" } ] }`, an array of apps or one app";
    let apps: Vec<&Value> = match value {
        Value::Array(apps) => apps.iter().collect(),
        Value::Object(top) if top.contains_key("apps") => {
            for key in top.keys().filter(|k| *k != "apps") {
                let why = if key == "deploy" {
                    "herd does not deploy (use your CI or pm2 deploy): ignored"
                } else {
                    "not an ecosystem section herd knows: ignored"
                };
                warnings.push(format!("{file}: `{key}`: {why}"));
            }
            match &top["apps"] {
                Value::Array(apps) => apps.iter().collect(),
                app @ Value::Object(_) => vec![app],
                _ => return Err(shape(&format!("`apps` is not an array: {expected}"))),
            }
        }
        Value::Object(top) if top.contains_key("script") || top.contains_key("exec") => {
            vec![value]
        }
        _ => return Err(shape(expected)),
    };
    if apps.is_empty() {
        return Err(shape("no apps: add one to `apps` with a `script`"));
    }
    let cx = pm2::Context { file, dir, profile };
    let mut mapped = Vec::new();
    for (index, app) in apps.into_iter().enumerate() {
        mapped.push(pm2::map(index, app, &cx, &mut warnings)?);
    }
    let known: BTreeSet<String> = mapped
        .iter()
        .flat_map(|m| m.profiles.iter().cloned())
        .collect();
    match profile {
        Some(p) if !known.contains(p) => {
            return Err(EcosystemError::UnknownProfile {
                file: file.to_string(),
                profile: p.to_string(),
                known: known.into_iter().collect(),
            });
        }
        None if !known.is_empty() => {
            let names: Vec<String> = known.iter().map(|p| format!("`env_{p}`")).collect();
            warnings.push(format!(
                "{file}: {} applied only with --env {}",
                names.join(", "),
                known.iter().cloned().collect::<Vec<_>>().join("|")
            ));
        }
        _ => {}
    }
    let mut out = BTreeMap::new();
    for m in mapped {
        let mut name = m.name.clone();
        let mut n = 2;
        while out.contains_key(&name) {
            name = format!("{}-{n}", m.name);
            n += 1;
        }
        if name != m.name {
            warnings.push(format!(
                "{file}: app {}: `name`: `{}` is already taken: imported as `{name}`",
                m.label, m.name
            ));
        }
        out.insert(name, m.app);
    }
    Ok(Ecosystem {
        apps: out,
        warnings,
    })
}
