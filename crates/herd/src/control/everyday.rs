//! The verbs PM2 users type from habit, around `herd ls`: `--sort`, `-w/--watch` (redraw
//! every second, as `watch -n1`), `jlist` and `prettylist`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use super::args::LsArgs;
use super::client::{Client, ClientError};
use super::protocol::{AppInfo, Request, Response};
use super::verbs::answer;

/// What `herd ls --sort` orders by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// The app's name.
    Name,
    /// CPU use (an app: the sum of its workers').
    Cpu,
    /// Resident memory (an app: the sum).
    Memory,
    /// Restarts (an app: the sum).
    Restarts,
    /// Uptime (an app: its longest-running worker's).
    Uptime,
}

/// `--sort KEY[:asc|:desc]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    /// What to order by.
    pub key: SortKey,
    /// Largest first.
    pub desc: bool,
}

/// Reads `name`, `cpu:asc`, `memory:desc`, …
pub fn parse_sort(s: &str) -> Result<Sort, String> {
    let (key, dir) = match s.split_once(':') {
        Some((k, d)) => (k, Some(d)),
        None => (s, None),
    };
    let key = match key {
        "name" => SortKey::Name,
        "cpu" => SortKey::Cpu,
        "memory" | "mem" => SortKey::Memory,
        "restarts" | "restart" => SortKey::Restarts,
        "uptime" => SortKey::Uptime,
        _ => {
            return Err(format!(
                "`{key}` is not a column to sort by: name, cpu, memory, restarts or uptime"
            ))
        }
    };
    let desc = match dir {
        None => key != SortKey::Name,
        Some("asc") => false,
        Some("desc") => true,
        Some(d) => return Err(format!("`{d}` is not an order: asc or desc")),
    };
    Ok(Sort { key, desc })
}

/// The apps, and each app's workers, in `sort`'s order (stable: equal ones keep theirs).
pub fn sorted(mut apps: Vec<AppInfo>, sort: Sort) -> Vec<AppInfo> {
    let worker_key = |w: &crate::driver::status::WorkerStatus| -> f64 {
        match sort.key {
            SortKey::Name => w.slot as f64,
            SortKey::Cpu => w.cpu_percent,
            SortKey::Memory => w.memory as f64,
            SortKey::Restarts => f64::from(w.restarts),
            SortKey::Uptime => w.uptime_ms as f64,
        }
    };
    let app_key = |a: &AppInfo| -> f64 {
        let workers = a.status.iter().flat_map(|s| &s.workers);
        match sort.key {
            SortKey::Uptime => workers.map(worker_key).fold(0.0, f64::max),
            _ => workers.map(worker_key).sum(),
        }
    };
    let order = |x: f64, y: f64| {
        let o = x.total_cmp(&y);
        if sort.desc {
            o.reverse()
        } else {
            o
        }
    };
    if sort.key == SortKey::Name {
        apps.sort_by(|a, b| {
            let o = a.name.cmp(&b.name);
            if sort.desc {
                o.reverse()
            } else {
                o
            }
        });
    } else {
        apps.sort_by(|a, b| order(app_key(a), app_key(b)));
        for a in &mut apps {
            if let Some(s) = &mut a.status {
                s.workers
                    .sort_by(|x, y| order(worker_key(x), worker_key(y)));
            }
        }
    }
    apps
}

/// `herd ls` with `--sort` and/or `--watch`.
pub fn ls(client: &Client, args: &LsArgs) -> ExitCode {
    loop {
        let apps = match client.request(Request::List) {
            Ok(Response::Done { apps, .. }) => apps,
            Err(ClientError::NoDaemon(_)) => Vec::new(),
            other => return answer(other, false),
        };
        let apps = match args.sort {
            Some(sort) => sorted(apps, sort),
            None => apps,
        };
        let text = if args.json {
            super::verbs::json_apps(&apps, args.show_env, true) + "\n"
        } else {
            super::table::render(&apps)
        };
        let mut out = std::io::stdout().lock();
        let Some(every) = args.watch else {
            let _ = out.write_all(text.as_bytes());
            return ExitCode::SUCCESS;
        };
        // Home, clear, then the table: the terminal shows one table, redrawn in place.
        let _ = write!(
            out,
            "\x1b[H\x1b[2Jevery {every}s: herd ls (Ctrl-C ends)\n\n{text}"
        );
        let _ = out.flush();
        drop(out);
        std::thread::sleep(Duration::from_secs(every.max(1)));
    }
}

/// `jlist` (one line of JSON) and `prettylist` (indented), as PM2 prints them.
pub fn jlist(client: &Client, pretty: bool) -> ExitCode {
    let apps = match client.request(Request::List) {
        Ok(Response::Done { apps, .. }) => apps,
        Err(ClientError::NoDaemon(_)) => Vec::new(),
        other => return answer(other, false),
    };
    println!("{}", super::verbs::json_apps(&apps, false, pretty));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_and_orders() {
        assert_eq!(
            parse_sort("name"),
            Ok(Sort {
                key: SortKey::Name,
                desc: false
            })
        );
        assert_eq!(
            parse_sort("cpu"),
            Ok(Sort {
                key: SortKey::Cpu,
                desc: true
            })
        );
        assert_eq!(
            parse_sort("memory:asc"),
            Ok(Sort {
                key: SortKey::Memory,
                desc: false
            })
        );
        assert_eq!(
            parse_sort("name:desc"),
            Ok(Sort {
                key: SortKey::Name,
                desc: true
            })
        );
        assert!(parse_sort("pid")
            .unwrap_err()
            .contains("`pid` is not a column"));
        assert!(parse_sort("cpu:up")
            .unwrap_err()
            .contains("`up` is not an order"));
    }
}
