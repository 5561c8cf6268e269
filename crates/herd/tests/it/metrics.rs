//! `/metrics` on the admin listener: herd's own series from a snapshot at scrape time, in
//! the Prometheus text format or OpenMetrics as the scraper asks, linted by `promtool`,
//! following crashes and reloads with no stale series; and a real Prometheus server
//! scraping `herd run` and the daemon.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::daemon::{testworker_app, Daemon};
use crate::common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const T: Duration = Duration::from_secs(30);

/// herd run -i 2 with an admin listener; returns herd and the admin address.
fn herd_with_admin(extra: &[&str]) -> (Herd, String) {
    let admin = format!("127.0.0.1:{}", free_port());
    let mut args = vec![
        "run",
        "-i",
        "2",
        "--admin",
        &admin,
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    args.push("--");
    args.push(worker_bin());
    let herd = Herd::start(&args);
    herd.wait_ready(2);
    (herd, admin)
}

/// GET /metrics with `accept`; (content type, body).
fn scrape(herd: &Herd, admin: &str, accept: &str) -> (String, String) {
    let r = ureq::get(&format!("http://{admin}/metrics"))
        .set("Accept", accept)
        .call()
        .unwrap_or_else(|e| herd.fail(&format!("GET /metrics: {e}")));
    let kind = r.header("content-type").unwrap_or("").to_string();
    (kind, r.into_string().unwrap_or_default())
}

/// `promtool check metrics` on `body`: no error, no lint problem.
fn promtool_check(herd: &Herd, body: &str) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if !out.status.success() || !out.stdout.is_empty() || !out.stderr.is_empty() {
        herd.fail(&format!(
            "promtool check metrics: {}\n{}{}\n{body}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
}

#[test]
fn metrics_follow_the_workers_and_leave_no_gone_worker_behind() {
    let (herd, admin) = herd_with_admin(&[]);
    let (kind, body) = scrape(&herd, &admin, "*/*");
    assert!(kind.starts_with("text/plain"), "{kind}");
    promtool_check(&herd, &body);
    let app = "herd-testworker";
    assert_eq!(
        sample_value(
            &body,
            &format!("herd_app_workers{{app=\"{app}\",state=\"online\"}}")
        ),
        Some(2.0),
        "{body}"
    );
    let pids = herd.worker_pids();
    for pid in &pids {
        assert!(body.contains(&format!("pid=\"{pid}\"")), "{pid}: {body}");
    }
    assert!(body.contains("herd_build_info{version=\""), "{body}");
    assert!(sample_value(&body, "process_resident_memory_bytes").is_some_and(|v| v > 0.0));

    // OpenMetrics when asked, as Prometheus asks.
    let (kind, om) = scrape(
        &herd,
        &admin,
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    );
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(om.ends_with("# EOF\n"), "{om}");

    // A crash: one restart with reason crash, the slot's last exit (128 + 9), and the
    // killed worker's pid nowhere.
    let (slot, victim) = herd.spawned()[0];
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    herd.wait_spawned(3);
    herd.wait_ready(3);
    let (_, body) = scrape(&herd, &admin, "*/*");
    promtool_check(&herd, &body);
    let restarts = format!("herd_app_restarts_total{{app=\"{app}\",reason=\"crash\"}}");
    assert_eq!(sample_value(&body, &restarts), Some(1.0), "{body}");
    let exit = format!("herd_worker_last_exit_code{{app=\"{app}\",worker=\"{slot}\"}}");
    assert_eq!(sample_value(&body, &exit), Some(137.0), "{body}");
    assert!(!body.contains(&format!("\"{victim}\"")), "{body}");
}

#[test]
fn scrapes_during_a_reload_never_fail_and_end_with_the_new_workers_only() {
    let (herd, admin) = herd_with_admin(&["--ready", "delay:300ms"]);
    let old = herd.worker_pids();
    herd.signal(Signal::SIGHUP);
    let mut scrapes = 0;
    let start = Instant::now();
    while herd.count_event("reload.done", |_| true) == 0 {
        let (_, body) = scrape(&herd, &admin, "*/*");
        // One series per slot, whatever replacement runs beside it.
        assert_eq!(body.matches("herd_worker_ready{").count(), 2, "{body}");
        scrapes += 1;
        if start.elapsed() > T {
            herd.fail("the reload did not end");
        }
    }
    assert!(scrapes > 0);
    herd.wait_until("the old workers gone", T, || {
        old.iter()
            .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
    });
    let (_, body) = scrape(&herd, &admin, "*/*");
    for p in &old {
        assert!(!body.contains(&format!("pid=\"{p}\"")), "{p}: {body}");
    }
    let app = "herd-testworker";
    assert_eq!(
        sample_value(
            &body,
            &format!("herd_app_reloads_total{{app=\"{app}\",result=\"ok\"}}")
        ),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample_value(&body, &format!("herd_app_generation{{app=\"{app}\"}}")),
        Some(1.0)
    );
}

/// The answer of Prometheus' query API: each series' labels and value.
type Samples = Vec<(serde_json::Value, f64)>;

/// A real Prometheus server scrapes `herd run` and the daemon every second; its query API
/// sees herd's series, and a SIGKILLed worker's restart with reason crash.
#[test]
fn a_real_prometheus_scrapes_herd_run_and_the_daemon() {
    let (herd, admin) = herd_with_admin(&[]);
    let d = Daemon::new();
    let daemon_admin = format!("127.0.0.1:{}", free_port());
    let file = d.file(
        "herd.toml",
        &(testworker_app("api", 2, "namespace = \"web\"") + &testworker_app("jobs", 1, "")),
    );
    let file = file.to_string_lossy().to_string();
    let mut cmd = d.command(&["start", &file]);
    cmd.env("HERD_DAEMON_ADMIN", &daemon_admin);
    let ran = d.run_command(cmd, &["start", &file]);
    assert_eq!(ran.code, 0, "{ran}");

    let dir = TempPath::new("prometheus");
    std::fs::create_dir_all(&dir.0).unwrap();
    let config = dir.0.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: run\n    static_configs:\n      - targets: ['{admin}']\n  - job_name: daemon\n    static_configs:\n      - targets: ['{daemon_admin}']\n"
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let mut prom = Command::new(prometheus())
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.0.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run prometheus");
    let query = |q: &str| -> Samples {
        let url = format!("http://{web}/api/v1/query");
        let Ok(r) = ureq::get(&url).query("query", q).call() else {
            return Vec::new();
        };
        let v: serde_json::Value =
            serde_json::from_str(&r.into_string().unwrap_or_default()).unwrap_or_default();
        v["data"]["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        let x = s["value"][1].as_str().and_then(|x| x.parse().ok());
                        (s["metric"].clone(), x.unwrap_or(f64::NAN))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let wait_for = |what: &str, q: &str, pred: &dyn Fn(&Samples) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = query(q);
            if pred(&r) {
                return r;
            }
            if Instant::now() > deadline {
                herd.fail(&format!("Prometheus never saw {what} ({q}): last {r:?}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("both targets up", "up == 1", &|r| r.len() == 2);
    let online = wait_for(
        "herd run's online workers",
        "herd_app_workers{job=\"run\",state=\"online\"}",
        &|r| r.first().is_some_and(|(_, v)| *v == 2.0),
    );
    assert_eq!(online[0].0["app"], "herd-testworker");
    let daemon = wait_for(
        "the daemon's apps",
        "herd_app_workers_desired{job=\"daemon\"}",
        &|r| r.len() == 2,
    );
    let api = daemon.iter().find(|(m, _)| m["app"] == "api").expect("api");
    assert_eq!((api.0["namespace"].as_str(), api.1), (Some("web"), 2.0));

    let (_, victim) = herd.spawned()[0];
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    wait_for(
        "the restart after the SIGKILL",
        "herd_app_restarts_total{job=\"run\",reason=\"crash\"}",
        &|r| r.first().is_some_and(|(_, v)| *v == 1.0),
    );
    let _ = prom.kill();
    let _ = prom.wait();
}

/// `herd metrics`: from a `herd run` with `--admin`, and from the daemon for chosen apps;
/// what cannot be asked is named.
#[test]
fn herd_metrics_prints_the_exposition() {
    let (herd, admin) = herd_with_admin(&[]);
    let out = Command::new(herd_bin())
        .args(["metrics", "--admin", &admin])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("herd_app_workers_desired{app=\"herd-testworker\"} 2"),
        "{text}"
    );
    promtool_check(&herd, &text);
    let out = Command::new(herd_bin())
        .args(["metrics", "--admin", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--admin 127.0.0.1:1: "),
        "{out:?}"
    );

    let d = Daemon::new();
    let file = d.file(
        "herd.toml",
        &(testworker_app("api", 2, "") + &testworker_app("jobs", 1, "")),
    );
    d.start_each(&file, &["api", "jobs"]);
    let ran = d.ok(&["metrics", "api"]);
    assert!(
        ran.stdout
            .contains("herd_app_workers_desired{app=\"api\"} 2"),
        "{ran}"
    );
    assert!(!ran.stdout.contains("app=\"jobs\""), "{ran}");
    let ran = d.ok(&["metrics"]);
    assert!(
        ran.stdout
            .contains("herd_app_workers_desired{app=\"jobs\"} 1"),
        "{ran}"
    );
    let ran = d.refused(&["metrics", "nosuch"]);
    assert!(ran.stderr.contains("nosuch"), "{ran}");
}

/// `herd describe` shows how each slot's last worker ended, and when; its JSON too.
#[test]
fn describe_shows_each_slots_last_exit() {
    let d = Daemon::new();
    let file = d.file("herd.toml", &testworker_app("api", 1, ""));
    d.start_each(&file, &["api"]);
    let before = d.online_pids("api");
    d.ok(&["signal", "api", "SIGKILL"]);
    d.wait_until("a new worker", T, || {
        let now = d.online_pids("api");
        !now.is_empty() && now != before
    });
    let ran = d.ok(&["describe", "api"]);
    assert!(ran.stdout.contains("last exit 0 SIGKILL, 0s ago"), "{ran}");
    let ran = d.ok(&["describe", "api", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(v["status"]["workers"][0]["last_exit"], "SIGKILL", "{ran}");
    assert_eq!(v["status"]["restarts_by_reason"]["crash"], 1, "{ran}");
}

/// A crash loop: every scrape answers, and lists no pid that is gone; once errored, the
/// app's state says so.
#[test]
fn scrapes_during_a_crash_loop_never_fail_nor_list_a_gone_worker() {
    let admin = format!("127.0.0.1:{}", free_port());
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "2",
        "--admin",
        &admin,
        "--listen",
        "127.0.0.1:0",
        "--max-restarts",
        "4",
        "--restart-delay",
        "200ms",
        "--",
        worker_bin(),
        "--exit-now",
        "3",
    ]);
    herd.wait_event("admin.listening");
    let mut scrapes = 0;
    let deadline = Instant::now() + T;
    loop {
        let body = match http_get(&format!("http://{admin}/metrics")) {
            Ok((200, body)) => body,
            // herd ends once the errored app's last worker is gone: a scrape that meets
            // its exit is cut off. Any other failure is a bug.
            Err(e) => {
                herd.wait_status(Duration::from_secs(10));
                eprintln!("the scrape that met herd's exit: {e}");
                break;
            }
            other => herd.fail(&format!("a scrape during the crash loop: {other:?}")),
        };
        scrapes += 1;
        for pid in body.lines().filter_map(|l| {
            l.strip_prefix("herd_worker_info{")?
                .split("pid=\"")
                .nth(1)?
                .split('"')
                .next()?
                .parse::<u32>()
                .ok()
        }) {
            // Listed at the snapshot; by now it may have crashed, but it was ours (its
            // `worker.spawned` record may reach the test after the scrape).
            herd.wait_until(
                &format!("pid {pid} of the scrape among the workers"),
                T,
                || herd.worker_pids().contains(&pid),
            );
        }
        if body.contains("herd_app_state{app=\"herd-testworker\",state=\"errored\"} 1")
            || herd.try_exit().is_some()
        {
            break;
        }
        if Instant::now() > deadline {
            herd.fail("the app never errored");
        }
    }
    assert!(scrapes > 1);
}

/// An oversized answer at `--worker-metrics` (10 MiB) is refused whole and counted.
#[test]
fn an_oversized_worker_exposition_is_refused_and_counted() {
    let (herd, admin) = {
        let admin = format!("127.0.0.1:{}", free_port());
        let herd = Herd::start(&[
            "run",
            "-i",
            "1",
            "--admin",
            &admin,
            "--listen",
            "127.0.0.1:0",
            "--worker-metrics",
            "/healthz",
            "--",
            worker_bin(),
        ]);
        herd.wait_ready(1);
        (herd, admin)
    };
    let (code, _) = http_get(&herd.url("/health?mode=huge")).unwrap();
    assert_eq!(code, 200);
    let (code, body) = http_get(&format!("http://{admin}/metrics/app")).unwrap();
    assert_eq!((code, body.as_str()), (200, ""));
    let (_, metrics) = scrape(&herd, &admin, "*/*");
    assert!(
        metrics.contains("herd_worker_scrape_errors_total{app=\"herd-testworker\",worker=\"0\"} 1"),
        "{metrics}"
    );
    assert!(herd.dump().contains("larger than 4 MiB"), "{}", herd.dump());
}
