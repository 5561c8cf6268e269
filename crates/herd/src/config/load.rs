//! One entry point for every file that defines apps: a herd.toml, or a PM2 ecosystem file
//! (`.json`, `.yaml`/`.yml`, `.js`/`.cjs`/`.mjs`), chosen by the extension. `herd check`,
//! `herd import` and the daemon load apps through here so they accept the same files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ecosystem::{self, EcosystemError, Format};
use super::file::{self, FileError};
use super::AppConfig;

/// The apps of a file, and the warnings of reading it (always empty for a herd.toml,
/// whose unknown keys are errors).
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The apps by name (at least one).
    pub apps: BTreeMap<String, AppConfig>,
    /// One line per PM2 option that was ignored or behaves differently in herd.
    pub warnings: Vec<String>,
}

/// A file of apps that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A herd.toml that cannot be used.
    #[error(transparent)]
    File(#[from] FileError),
    /// An ecosystem file that cannot be used.
    #[error(transparent)]
    Ecosystem(#[from] EcosystemError),
    /// The extension is neither `.toml` nor one of an ecosystem file.
    #[error(
        "{}: unknown kind of file: expected herd.toml (.toml) or a PM2 ecosystem file \
         (.js, .cjs, .mjs, .json, .yaml, .yml)",
        .0.display()
    )]
    UnknownKind(PathBuf),
}

/// Reads the apps of `path` with the env profile `profile`: `.toml` through
/// [`file::load`], ecosystem files through [`ecosystem::load`].
pub fn load_any(path: &Path, profile: Option<&str>) -> Result<Loaded, LoadError> {
    if is_toml(path) {
        let file = file::load(path, profile)?;
        return Ok(Loaded {
            apps: file.apps,
            warnings: Vec::new(),
        });
    }
    if Format::of(path).is_none() {
        return Err(LoadError::UnknownKind(path.to_path_buf()));
    }
    let eco = ecosystem::load(path, profile)?;
    Ok(Loaded {
        apps: eco.apps,
        warnings: eco.warnings,
    })
}

fn is_toml(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"))
}

/// Whether `path` has the extension of a file of apps (`.toml` or an ecosystem file's).
pub fn is_apps_file(path: &Path) -> bool {
    is_toml(path) || Format::of(path).is_some()
}

/// `herd import`: the apps of `path` written as a herd.toml, with a header comment naming
/// the source, and the warnings of reading it.
pub fn import(path: &Path, profile: Option<&str>) -> Result<(String, Vec<String>), LoadError> {
    let loaded = load_any(path, profile)?;
    let mut text = format!(
        "# herd.toml imported from {}{} by `herd import`.\n\
         # Check it with `herd check`; durations carry their unit (PM2 counted milliseconds).\n\n",
        path.display(),
        profile.map(|p| format!(" (env_{p})")).unwrap_or_default()
    );
    text.push_str(&file::to_toml(&loaded.apps));
    Ok((text, loaded.warnings))
}
