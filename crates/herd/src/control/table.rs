//! The `herd ls` table: one row per worker (one per app that is not running), columns
//! aligned, widths from the content, and a HEALTH column when some app has health checks
//! or a watchdog. A pure function of the apps, so its output is snapshot-tested.

use super::protocol::AppInfo;

const HEADER: [&str; 10] = [
    "NAME",
    "NAMESPACE",
    "SLOT",
    "PID",
    "STATUS",
    "UPTIME",
    "RESTARTS",
    "CPU",
    "MEMORY",
    "BALANCE",
];

/// Renders the table; `now_ms` is the time uptimes are counted to (Unix milliseconds).
pub fn render(apps: &[AppInfo]) -> String {
    let health = apps.iter().any(|a| {
        a.status
            .as_ref()
            .is_some_and(|s| s.workers.iter().any(|w| w.health.is_some()))
    });
    let mut header: Vec<String> = HEADER.map(str::to_string).into();
    if health {
        header.push("HEALTH".into());
    }
    let mut rows: Vec<Vec<String>> = vec![header];
    for app in apps {
        let ns = app.namespace.clone().unwrap_or_else(|| "-".into());
        match &app.status {
            Some(status) if !status.workers.is_empty() => {
                // Workers that listen on their own (a Node app's listen(3000) asks herd
                // later): no socket of herd's yet, so no balancing to show.
                let balance = if status.listen.is_empty() {
                    "-".to_string()
                } else {
                    status.balance.clone()
                };
                for w in &status.workers {
                    let mut row = vec![
                        app.name.clone(),
                        ns.clone(),
                        w.slot.to_string(),
                        w.pid.map_or("-".into(), |p| p.to_string()),
                        w.state.clone(),
                        w.pid.map_or("-".into(), |_| duration(w.uptime_ms)),
                        w.restarts.to_string(),
                        w.pid
                            .map_or("-".into(), |_| format!("{:.0}%", w.cpu_percent)),
                        w.pid.map_or("-".into(), |_| bytes(w.memory)),
                        balance.clone(),
                    ];
                    if health {
                        row.push(w.health.as_ref().map_or("-".into(), |h| h.short()));
                    }
                    rows.push(row);
                }
            }
            _ => {
                let mut row = vec![app.name.clone(), ns, "-".into(), "-".into()];
                row.push(app.state.clone());
                row.resize(rows[0].len(), "-".into());
                rows.push(row);
            }
        }
    }
    let mut widths = vec![0usize; rows[0].len()];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', *w - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `45s`, `12m`, `3h`, `2d`: the largest unit that fits, as PM2 shows uptime.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Binary units with one decimal: `812K`, `45.2M`, `1.5G`.
pub fn bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let n = n as f64;
    if n < K * K {
        format!("{:.0}K", n / K)
    } else if n < K * K * K {
        format!("{:.1}M", n / K / K)
    } else {
        format!("{:.1}G", n / K / K / K)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::status::{AppStatus, WorkerStatus};

    fn app(name: &str, state: &str, status: Option<AppStatus>) -> AppInfo {
        AppInfo {
            name: name.into(),
            namespace: None,
            state: state.into(),
            reason: None,
            command: vec!["node".into(), "server.js".into()],
            cwd: None,
            origin: "herd.toml".into(),
            toml: String::new(),
            started_ms: 0,
            logs: Vec::new(),
            status,
        }
    }

    fn worker(slot: usize, pid: Option<u32>, state: &str, uptime_ms: u64) -> WorkerStatus {
        WorkerStatus {
            slot,
            pid,
            generation: 1,
            state: state.into(),
            uptime_ms,
            restarts: slot as u32,
            cpu_percent: 1.46,
            memory: 47_400_000,
            health: None,
            handed_over: 0,
            last_exit: None,
            last_exit_ms: None,
        }
    }

    #[test]
    fn ls_table_snapshot() {
        let status = AppStatus {
            state: "running".into(),
            instances: 2,
            balance: "reuseport".into(),
            listen: vec!["0.0.0.0:3000".into()],
            workers: vec![
                worker(0, Some(4242), "online", 75_000),
                worker(1, None, "waiting-restart", 0),
            ],
            counters: serde_json::json!({}),
            queued: 0,
            restarts_by_reason: Default::default(),
            next_reload_ms: None,
        };
        let mut worker_app = app("worker", "stopped", None);
        worker_app.namespace = Some("jobs".into());
        let table = render(&[app("api", "running", Some(status)), worker_app]);
        let expected = "\
NAME    NAMESPACE  SLOT  PID   STATUS           UPTIME  RESTARTS  CPU  MEMORY  BALANCE
api     -          0     4242  online           1m      0         1%   45.2M   reuseport
api     -          1     -     waiting-restart  -       1         -    -       reuseport
worker  jobs       -     -     stopped          -       -         -    -       -
";
        assert_eq!(table, expected, "\n{table}");
    }

    #[test]
    fn a_health_column_when_some_worker_is_checked() {
        let mut checked = worker(0, Some(7), "online", 5_000);
        checked.health = Some(crate::driver::status::HealthStatus {
            ok: Some(true),
            latency_ms: Some(2.6),
            error: None,
            failures: 0,
            passed: true,
            heartbeat_age_ms: Some(120),
            loop_lag_ms: None,
        });
        let mut hung = worker(1, Some(8), "hung", 5_000);
        hung.health = Some(crate::driver::status::HealthStatus {
            ok: Some(false),
            latency_ms: None,
            error: Some("status 503".into()),
            failures: 3,
            passed: true,
            heartbeat_age_ms: None,
            loop_lag_ms: None,
        });
        let status = AppStatus {
            state: "running".into(),
            instances: 2,
            balance: "reuseport".into(),
            listen: vec!["0.0.0.0:3000".into()],
            workers: vec![checked, hung],
            counters: serde_json::json!({}),
            queued: 0,
            restarts_by_reason: Default::default(),
            next_reload_ms: None,
        };
        let table = render(&[
            app("api", "running", Some(status)),
            app("w", "stopped", None),
        ]);
        let expected = "\
NAME  NAMESPACE  SLOT  PID  STATUS   UPTIME  RESTARTS  CPU  MEMORY  BALANCE    HEALTH
api   -          0     7    online   5s      0         1%   45.2M   reuseport  ok 3ms, beat 120ms
api   -          1     8    hung     5s      1         1%   45.2M   reuseport  failing 3
w     -          -     -    stopped  -       -         -    -       -          -
";
        assert_eq!(table, expected, "\n{table}");
    }

    #[test]
    fn units() {
        assert_eq!(duration(59_999), "59s");
        assert_eq!(duration(3_600_000), "1h");
        assert_eq!(duration(200_000_000), "2d");
        assert_eq!(bytes(512 * 1024), "512K");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024 / 2), "1.5G");
    }
}
