//! Health under the daemon: `herd ls` gets a HEALTH column (`ok 1ms`), `herd describe
//! --json` has each worker's `health`, and a hung worker's replacement is counted as a
//! restart with reason `health`.

use crate::common::daemon::*;

use super::*;

#[test]
fn ls_and_describe_show_health_and_a_hung_worker_counts_as_a_health_restart() {
    let d = Daemon::new();
    let mut args = vec![
        "start",
        "--name",
        "hz",
        "-i",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--health-check",
        "http:/healthz",
        "--kill-timeout",
        "5s",
    ];
    args.extend(TIMINGS);
    args.extend(["--", worker_bin()]);
    d.ok(&args);
    let pids = d.wait_online("hz", 2);

    // The table: a HEALTH column, `ok Nms` once each worker passed a check.
    let mut table = String::new();
    d.wait_until(
        &format!("`herd ls` shows both workers healthy (last: {table})"),
        T,
        || {
            table = d.ok(&["ls"]).stdout;
            let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("hz ")).collect();
            rows.len() == 2 && rows.iter().all(|r| ok_ms(r))
        },
    );
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.split_whitespace().last() == Some("HEALTH"),
        "a HEALTH column: {table}"
    );

    // describe --json: `health` of each worker.
    let r = d.ok(&["describe", "hz", "--json"]);
    let desc: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| d.fail(&format!("describe --json is not JSON ({e}):\n{r}")));
    let workers = desc["status"]["workers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(workers.len(), 2, "{desc:#}");
    for w in &workers {
        let h = &w["health"];
        assert!(
            h["ok"] == true
                && h["passed"] == true
                && h["failures"] == 0
                && h["latency_ms"].is_number(),
            "{desc:#}"
        );
    }

    // A worker whose check fails: replaced, one restart of its slot with reason `health`.
    let port = d.port("hz");
    let mut conn =
        connect_from(Ipv4Addr::LOCALHOST, port).unwrap_or_else(|e| d.fail(&e.to_string()));
    let (_, body) = request_on(&mut conn, "/", false).unwrap_or_else(|e| d.fail(&e));
    let (sick, slot) = ident(&body).unwrap_or_else(|| d.fail(&format!("GET /: {body:?}")));
    let answer = request_on(&mut conn, "/health?mode=fail", false).unwrap_or_else(|e| d.fail(&e));
    assert_eq!(answer, (200, "health fail\n".to_string()));
    drop(conn);
    let mut app = serde_json::Value::Null;
    let replaced = poll_until(T, Duration::from_millis(50), || {
        app = d.app("hz");
        let ws = workers_of(&app);
        let online = ws.iter().filter(|w| w.state == "online").count();
        app["status"]["restarts_by_reason"]
            == serde_json::json!({"crash": 0, "health": 1, "memory": 0, "watchdog": 0})
            && online == 2
            && ws.iter().all(|w| w.pid != Some(sick))
    });
    if !replaced {
        d.fail(&format!(
            "pid {sick} was not replaced with one restart for health: {app:#}"
        ));
    }
    let restarts: Vec<(u64, u64)> = app["status"]["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            (
                w["slot"].as_u64().unwrap_or(99),
                w["restarts"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    let want: Vec<(u64, u64)> = (0..2).map(|s| (s, u64::from(s == slot as u64))).collect();
    assert_eq!(restarts, want, "(slot, restarts): {app:#}");
    assert!(pids.contains(&sick), "{sick} is one of {pids:?}");
}

/// A row whose HEALTH cell says `ok Nms`.
fn ok_ms(row: &str) -> bool {
    let cells: Vec<&str> = row.split_whitespace().collect();
    match cells.as_slice() {
        [.., "ok", ms] => ms
            .strip_suffix("ms")
            .is_some_and(|n| n.parse::<u64>().is_ok()),
        _ => false,
    }
}
