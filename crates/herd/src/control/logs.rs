//! `herd logs`: the apps' log files read directly by the CLI (they are the user's own
//! files, so this works with the daemon stopped, and a slow reader never slows the
//! daemon): the last lines of each, then, with `--follow`, new lines as they come,
//! across rotations.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::client::{Client, ClientError};
use super::protocol::{Request, Response};
use super::verbs::LogsArgs;
use crate::observe::logfiles;

/// Runs `herd logs`.
pub fn run(client: &Client, args: &LogsArgs) -> ExitCode {
    let files = match files(client, args.name.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("herd: {e}");
            return ExitCode::from(1);
        }
    };
    // The follower starts first, at each file's current end, and the last lines are read
    // up to there: a line written in between is printed once, by the follower.
    let mut follower = args.follow.then(|| logfiles::Follower::new(files.clone()));
    let mut out = std::io::stdout().lock();
    for file in &files {
        let end = follower
            .as_ref()
            .map_or(u64::MAX, |f| f.position(file).unwrap_or(u64::MAX));
        let lines = match logfiles::tail_before(file, args.lines, end) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                eprintln!("herd: cannot read {}: {e}", file.display());
                continue;
            }
        };
        if !args.json && !lines.is_empty() {
            let _ = writeln!(out, "==> {} <==", file.display());
        }
        for line in lines {
            print_line(&mut out, file, &line, args.json);
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
        for (file, line) in batch {
            print_line(&mut out, &file, &line, args.json);
        }
        if out.flush().is_err() {
            // The reader went away (`herd logs -f | head`).
            return ExitCode::SUCCESS;
        }
    }
}

fn print_line(out: &mut impl Write, file: &std::path::Path, line: &str, json: bool) {
    if json {
        let v = serde_json::json!({ "file": file.display().to_string(), "line": line });
        let _ = writeln!(out, "{v}");
    } else {
        let _ = writeln!(out, "{line}");
    }
}

/// The log files of `name` (or of every app): what the daemon says they are, or, with no
/// daemon running, the files of the default names in HERD_HOME/logs.
fn files(client: &Client, name: Option<&str>) -> Result<Vec<PathBuf>, String> {
    let dir = client.home().logs();
    let apps = match client.request(Request::List) {
        Ok(Response::Done { apps, .. }) => apps,
        Ok(Response::Error { message, .. }) => return Err(message),
        Ok(_) => Vec::new(),
        Err(ClientError::NoDaemon(_)) => Vec::new(),
        Err(e) => return Err(e.to_string()),
    };
    let mut files: Vec<PathBuf> = Vec::new();
    let known: Vec<&str> = apps.iter().map(|a| a.name.as_str()).collect();
    if let Some(name) = name {
        if !known.is_empty() && !known.contains(&name) {
            let on_disk = logfiles::app_files(&dir, name).unwrap_or_default();
            if on_disk.is_empty() {
                return Err(format!("no app `{name}` (apps: {})", known.join(", ")));
            }
        }
    }
    for app in &apps {
        if name.map_or(true, |n| n == app.name) {
            files.extend(app.logs.iter().map(PathBuf::from));
        }
    }
    if files.is_empty() {
        match name {
            Some(n) => files = logfiles::app_files(&dir, n).map_err(|e| e.to_string())?,
            None => {
                let mut names: Vec<String> = Vec::new();
                if let Ok(entries) = std::fs::read_dir(&dir) {
                    for e in entries.flatten() {
                        files.push(e.path());
                        names.push(e.file_name().to_string_lossy().into_owned());
                    }
                }
                files.retain(|f| f.extension().is_some_and(|e| e == "log"));
                files.sort();
            }
        }
    }
    Ok(files)
}
