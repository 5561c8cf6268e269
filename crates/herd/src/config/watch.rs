//! `watch`, `ignore_watch` and `watch_delay` planned: the watched paths made absolute
//! against the app's directory and checked now (a missing one fails before any worker
//! starts), the ignore rule with its defaults, the delay with its default.

use std::path::{Path, PathBuf};

use super::plan::PlanError;
use super::settings::AppConfig;
use crate::observe::watch::{Ignore, WatchPlan, DEFAULT_WATCH_DELAY};

/// The app's watch, or `None` when it watches nothing.
pub(super) fn plan(app: &AppConfig) -> Result<Option<WatchPlan>, PlanError> {
    if app.watch.is_empty() {
        return Ok(None);
    }
    let base = app_dir(app.cwd.as_deref())?;
    let mut roots: Vec<PathBuf> = Vec::new();
    for given in &app.watch {
        // `.` and `src/./x` are written as people mean them; `..` is kept (a symlink).
        let path: PathBuf = base.join(given).components().collect();
        let bad = |why: String| PlanError::WatchPath {
            given: given.display().to_string(),
            path: path.clone(),
            why,
        };
        match std::fs::metadata(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(bad("does not exist".into()))
            }
            Err(e) => return Err(bad(format!("cannot be watched: {e}"))),
        }
        if !roots.contains(&path) {
            roots.push(path);
        }
    }
    Ok(Some(WatchPlan {
        roots,
        ignore: Ignore::new(base, &app.ignore_watch),
        delay: app.watch_delay.unwrap_or(DEFAULT_WATCH_DELAY),
    }))
}

/// The app's directory, absolute: its `cwd`, else herd's own (`herd run`).
fn app_dir(cwd: Option<&Path>) -> Result<PathBuf, PlanError> {
    let here = || {
        std::env::current_dir().map_err(|e| PlanError::WatchPath {
            given: ".".into(),
            path: PathBuf::from("."),
            why: format!("cannot be read: {e}"),
        })
    };
    Ok(match cwd {
        Some(c) if c.is_absolute() => c.to_path_buf(),
        Some(c) => here()?.join(c),
        None => here()?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn paths_are_made_absolute_against_the_apps_directory_and_checked() {
        let dir = std::env::temp_dir().join(format!("herd-watch-plan-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("src")).unwrap();
        let app = AppConfig {
            cwd: Some(dir.clone()),
            watch: vec![".".into(), "./src".into(), dir.join("src")],
            ignore_watch: vec!["*.log".parse().unwrap()],
            ..AppConfig::default()
        };
        let w = plan(&app).unwrap().unwrap();
        assert_eq!(w.roots, [dir.clone(), dir.join("src")], "each once");
        assert_eq!(w.delay, DEFAULT_WATCH_DELAY);
        assert!(w.ignore.ignores(&dir.join("src/a.log")));
        assert!(w.ignore.ignores(&dir.join("node_modules")));
        assert_eq!(w.ignore.base(), dir);

        let missing = AppConfig {
            watch: vec!["srcc".into()],
            watch_delay: Some(Duration::from_millis(200)),
            ..app.clone()
        };
        let e = plan(&missing).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "watch path `srcc` does not exist ({})",
                dir.join("srcc").display()
            )
        );
        let none = AppConfig {
            watch: Vec::new(),
            ..app
        };
        assert_eq!(plan(&none).unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
