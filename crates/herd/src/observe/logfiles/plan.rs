//! Where an app's log files are: PM2's names (per slot or merged, or the files a config
//! names), the defaults of size and rotation, and finding an app's files again for
//! `herd logs`.

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// Rotate a log file before it grows past this: PM2's pm2-logrotate default, and small
/// enough that `herd logs` and an editor open a file at once, while a worker printing a
/// 100-byte line per request rotates only every ~100 000 requests.
pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
/// Rotated files kept per log file (`x.log.1` … `x.log.5`): with DEFAULT_MAX_SIZE at most
/// 60 MiB per file, enough history for an incident without filling a small disk.
pub const DEFAULT_KEEP: usize = 5;
/// The log directory, created if missing: the owner's only.
const DIR_MODE: u32 = 0o700;

/// Where and how an app's worker output is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogPlan {
    /// The default directory, `HERD_HOME/logs`.
    pub dir: PathBuf,
    /// The app's name: in file names and on every line.
    pub app: String,
    /// PM2's `merge_logs`: one file per stream for all slots instead of one per slot.
    pub merge: bool,
    /// Overrides the stdout file. Unless `merge`, each slot gets `-<slot>` before the
    /// extension (`/var/log/api.log` → `/var/log/api-3.log`), as PM2 does in cluster
    /// mode. A relative path is taken relative to `dir`.
    pub out_file: Option<PathBuf>,
    /// Overrides the stderr file; named like `out_file`. It may be the same file.
    pub error_file: Option<PathBuf>,
    /// Also write every line, stdout and stderr, to this combined file (PM2's
    /// `log_file`); per slot unless `merge`, named like `out_file`.
    pub log_file: Option<PathBuf>,
    /// PM2's `log_date_format` (moment.js tokens `YYYY YY MM M DD D HH H mm m ss s SSS Z
    /// ZZ`, `[literal]`), in local time; `None` is RFC 3339 UTC with milliseconds.
    pub date_format: Option<String>,
    /// Rotate a file before a line would make it larger than this many bytes (a single
    /// line larger than this still goes whole into a fresh file).
    pub max_size: u64,
    /// Rotated files kept: `x.log.1` (newest) … `x.log.<keep>`. 0 keeps none: a full file
    /// is deleted and started again.
    pub keep: usize,
    /// Lines written as JSON objects instead of text.
    pub json: bool,
}

impl LogPlan {
    /// The defaults: per-slot files in `dir`, RFC 3339 times, text, DEFAULT_MAX_SIZE,
    /// DEFAULT_KEEP.
    pub fn new(dir: impl Into<PathBuf>, app: impl Into<String>) -> LogPlan {
        LogPlan {
            dir: dir.into(),
            app: app.into(),
            merge: false,
            out_file: None,
            error_file: None,
            log_file: None,
            date_format: None,
            max_size: DEFAULT_MAX_SIZE,
            keep: DEFAULT_KEEP,
            json: false,
        }
    }

    /// The stdout and stderr files of a slot: `<dir>/<app>-<slot>.out.log` and
    /// `.err.log`, `<dir>/<app>.out.log` and `.err.log` when merged, or the overrides.
    pub fn paths(&self, slot: usize) -> (PathBuf, PathBuf) {
        (
            self.path_of(slot, self.out_file.as_deref(), "out"),
            self.path_of(slot, self.error_file.as_deref(), "err"),
        )
    }

    /// The combined file of a slot, if `log_file` is set.
    pub fn combined_path(&self, slot: usize) -> Option<PathBuf> {
        self.log_file.as_deref().map(|p| self.overridden(slot, p))
    }

    /// Globs (absolute, `watch`'s `ignore_watch` syntax) that match every file this plan
    /// writes, of any slot, rotated ones too, so that an app that watches the directory of
    /// its own logs does not reload at each line: the whole default directory if a stream
    /// goes there, and each file named by `out_file`, `error_file` or `log_file`.
    pub fn written_globs(&self) -> Vec<String> {
        let escape = |p: &Path| glob::Pattern::escape(&p.to_string_lossy());
        let mut globs = Vec::new();
        if self.out_file.is_none() || self.error_file.is_none() {
            globs.push(format!("{}/**", escape(&self.dir)));
        }
        let named = [&self.out_file, &self.error_file, &self.log_file];
        for path in named.into_iter().flatten() {
            let path = self.dir.join(path);
            if self.merge {
                globs.push(escape(&path));
                globs.push(format!("{}.*", escape(&path)));
                continue;
            }
            // `<stem>-<slot>.<ext>` and its rotations `….<ext>.<n>`, as `overridden` names them.
            let stem = path.with_extension("");
            globs.push(match path.extension() {
                Some(e) => {
                    let ext = glob::Pattern::escape(&e.to_string_lossy());
                    format!("{}-*.{ext}*", escape(&stem))
                }
                None => format!("{}-*", escape(&stem)),
            });
        }
        globs
    }

    fn path_of(&self, slot: usize, over: Option<&Path>, stream: &str) -> PathBuf {
        match over {
            Some(p) => self.overridden(slot, p),
            None if self.merge => self.dir.join(format!("{}.{stream}.log", self.app)),
            None => self.dir.join(format!("{}-{slot}.{stream}.log", self.app)),
        }
    }

    fn overridden(&self, slot: usize, path: &Path) -> PathBuf {
        let path = self.dir.join(path);
        if self.merge {
            return path;
        }
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let name = match path.extension() {
            Some(ext) => format!("{stem}-{slot}.{}", ext.to_string_lossy()),
            None => format!("{stem}-{slot}"),
        };
        path.with_file_name(name)
    }
}

/// Moves a log that grew past `max` bytes to `<path>.1` (replacing the one before), for
/// logs that are only checked when opened: the daemon's own, and herd's records of an app.
pub fn set_aside_if_larger(path: &Path, max: u64) {
    if std::fs::metadata(path).is_ok_and(|m| m.len() > max) {
        let _ = std::fs::rename(path, path.with_extension("log.1"));
    }
}

/// Every current log file of an app in `dir` (not rotated ones), for `herd logs`, by the
/// default naming: `<app>.out.log`, `<app>.err.log` (merged), then `<app>-<slot>.out.log`,
/// `<app>-<slot>.err.log` by slot. Files named by `out_file`, `error_file` or `log_file`
/// are not found here: the caller, which has the plan, adds them. A missing `dir` is no
/// files. Ambiguity of PM2's naming: the merged files of an app named `api-2` also look
/// like slot 2 of `api`.
pub fn app_files(dir: &Path, app: &str) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(app) else {
            continue;
        };
        let (rest, stream) = if let Some(r) = rest.strip_suffix(".out.log") {
            (r, 0)
        } else if let Some(r) = rest.strip_suffix(".err.log") {
            (r, 1)
        } else {
            continue;
        };
        let slot = if rest.is_empty() {
            None
        } else {
            match rest.strip_prefix('-') {
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    match n.parse::<usize>() {
                        Ok(n) => Some(n),
                        Err(_) => continue,
                    }
                }
                _ => continue,
            }
        };
        found.push(((slot, stream), entry.path()));
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Creates a log directory and its missing parents, owner-only.
pub(super) fn create_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}
