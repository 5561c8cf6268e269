//! `herd logs`: the apps' log files read directly by the CLI (they are the user's own
//! files, so this works with the daemon stopped, and a slow reader never slows the
//! daemon): the last lines of each, then, with `--follow`, new lines as they come,
//! across rotations. With `--json`, each line is an object that says whose it is.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::args::LogsArgs;
use super::client::{Client, ClientError};
use super::protocol::{LogFile, Request, Response};
use crate::observe::logfiles;

/// A log file and whose output it holds.
#[derive(Debug, Clone)]
struct Source {
    app: String,
    file: LogFile,
}

/// Runs `herd logs`.
pub fn run(client: &Client, args: &LogsArgs) -> ExitCode {
    let sources = match sources(client, args.name.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("herd: {e}");
            return ExitCode::from(1);
        }
    };
    let paths: Vec<PathBuf> = sources
        .iter()
        .map(|s| PathBuf::from(&s.file.path))
        .collect();
    // The follower starts first, at each file's current end, and the last lines are read
    // up to there: a line written in between is printed once, by the follower.
    let mut follower = args.follow.then(|| logfiles::Follower::new(paths.clone()));
    let mut out = std::io::stdout().lock();
    for (source, path) in sources.iter().zip(&paths) {
        let end = follower
            .as_ref()
            .map_or(u64::MAX, |f| f.position(path).unwrap_or(u64::MAX));
        let lines = match logfiles::tail_before(path, args.lines, end) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                eprintln!("herd: cannot read {}: {e}", path.display());
                continue;
            }
        };
        if !args.json && !lines.is_empty() {
            let _ = writeln!(out, "==> {} <==", path.display());
        }
        for line in lines {
            print_line(&mut out, source, &line, args.json);
        }
    }
    let _ = out.flush();
    let Some(follower) = follower.as_mut() else {
        return ExitCode::SUCCESS;
    };
    drop(out);
    loop {
        let batch = follower.wait(Duration::from_secs(1));
        let mut out = std::io::stdout().lock();
        for (path, line) in batch {
            if let Some(source) = sources.iter().find(|s| Path::new(&s.file.path) == path) {
                print_line(&mut out, source, &line, args.json);
            }
        }
        if out.flush().is_err() {
            // The reader went away (`herd logs -f | head`).
            return ExitCode::SUCCESS;
        }
    }
}

fn print_line(out: &mut impl Write, source: &Source, line: &str, json: bool) {
    if json {
        let v = serde_json::json!({
            "app": source.app,
            "slot": source.file.slot,
            "stream": source.file.stream,
            "file": source.file.path,
            "line": line,
        });
        let _ = writeln!(out, "{v}");
    } else {
        let _ = writeln!(out, "{line}");
    }
}

/// The log files of `name` (or of every app): what the daemon says they are, or, with no
/// daemon running, the files of the default names in HERD_HOME/logs.
fn sources(client: &Client, name: Option<&str>) -> Result<Vec<Source>, String> {
    let dir = client.home().logs();
    let apps = match client.request(Request::List) {
        Ok(Response::Done { apps, .. }) => apps,
        Ok(Response::Error { message, .. }) => return Err(message),
        Ok(_) => Vec::new(),
        Err(ClientError::NoDaemon(_)) => Vec::new(),
        Err(e) => return Err(e.to_string()),
    };
    let mut out: Vec<Source> = apps
        .iter()
        .filter(|a| name.is_none_or(|n| n == a.name))
        .flat_map(|a| {
            a.logs.iter().map(|f| Source {
                app: a.name.clone(),
                file: f.clone(),
            })
        })
        .collect();
    if !out.is_empty() {
        return Ok(out);
    }
    // No daemon, or an app it does not know (deleted): the files of herd's own names.
    let known: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    let paths = match name {
        Some(n) => {
            let herd = crate::observe::app_events::AppEvents::path(&dir, n);
            let mut paths: Vec<PathBuf> = herd.exists().then_some(herd).into_iter().collect();
            paths.extend(logfiles::app_files(&dir, n).map_err(|e| e.to_string())?);
            paths
        }
        None => {
            let mut all: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            all.retain(|f| f.extension().is_some_and(|e| e == "log"));
            all.sort();
            all
        }
    };
    if let (Some(n), true) = (name, paths.is_empty()) {
        return Err(format!(
            "no app `{n}` and no log files of that name in {} (apps: {})",
            dir.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ));
    }
    out = paths.iter().map(|p| source_of(p)).collect();
    Ok(out)
}

/// Whose a file of herd's default naming is: `<app>-<slot>.out.log`, `<app>.err.log`.
fn source_of(path: &Path) -> Source {
    let name = path
        .file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned());
    let (stem, stream) = match name.strip_suffix(".log").and_then(|n| n.rsplit_once('.')) {
        Some((stem, s @ ("out" | "err" | "herd"))) => (stem.to_string(), s.to_string()),
        _ => (name.clone(), "all".to_string()),
    };
    let (app, slot) = match stem.rsplit_once('-') {
        Some((app, slot)) if slot.parse::<usize>().is_ok() => (app.to_string(), slot.parse().ok()),
        _ => (stem, None),
    };
    Source {
        app,
        file: LogFile {
            path: path.display().to_string(),
            slot,
            stream,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_say_whose_they_are() {
        let s = source_of(Path::new("/h/logs/api-v2-3.err.log"));
        assert_eq!(
            (s.app.as_str(), s.file.slot, s.file.stream.as_str()),
            ("api-v2", Some(3), "err")
        );
        let s = source_of(Path::new("/h/logs/web.out.log"));
        assert_eq!(
            (s.app.as_str(), s.file.slot, s.file.stream.as_str()),
            ("web", None, "out")
        );
    }
}
