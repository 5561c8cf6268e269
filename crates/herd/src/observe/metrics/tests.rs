use std::time::{Duration, UNIX_EPOCH};

use super::*;

fn app() -> AppSnapshot {
    AppSnapshot {
        app: "api".into(),
        namespace: Some("web".into()),
        state: "running".into(),
        desired: 2,
        generation: 1,
        reloads_ok: 1,
        reloads_failed: 0,
        restarts: vec![("crash", 2), ("memory", 0), ("health", 1), ("watchdog", 0)],
        listeners: vec![ListenerSnapshot {
            addr: "0.0.0.0:3000".into(),
            queued: 3,
            backlog: 1024,
        }],
        handed_over: 0,
        relayed: 0,
        waiting: 0,
        workers: vec![
            WorkerSnapshot {
                slot: 0,
                pid: Some(4242),
                generation: 1,
                state: "online".into(),
                ready: true,
                started: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
                restarts: 2,
                last_exit: Some(137),
                extra: false,
                health: Some(HealthSnapshot {
                    ok: Some(true),
                    failures: 0,
                    latency: Some(0.002),
                    heartbeat_age: None,
                }),
                handed_over: 0,
            },
            WorkerSnapshot {
                slot: 0,
                pid: Some(4250),
                generation: 2,
                state: "starting".into(),
                extra: true,
                ..Default::default()
            },
            WorkerSnapshot {
                slot: 1,
                state: "waiting-restart".into(),
                ..Default::default()
            },
        ],
        counters: vec![("req/s".into(), vec![(0, 5), (1, 7)])],
        scrape_errors: vec![(1, 2)],
    }
}

fn procs() -> Procs {
    [(
        4242,
        ProcInfo {
            cpu: 1.5,
            rss: 50 << 20,
            threads: 4,
            fds: Some(12),
        },
    )]
    .into()
}

#[test]
fn one_series_per_slot_labelled_by_app_and_worker() {
    let text = render::render_with(vec![app()], procs(), false);
    for line in [
        "# TYPE herd_app_restarts_total counter",
        "herd_app_restarts_total{app=\"api\",namespace=\"web\",reason=\"crash\"} 2",
        "herd_app_state{app=\"api\",namespace=\"web\",state=\"running\"} 1",
        "herd_app_state{app=\"api\",namespace=\"web\",state=\"errored\"} 0",
        "herd_app_workers{app=\"api\",namespace=\"web\",state=\"starting\"} 1",
        "herd_listener_queued_connections{app=\"api\",namespace=\"web\",listener=\"0.0.0.0:3000\"} 3",
        "herd_worker_state{app=\"api\",namespace=\"web\",worker=\"1\",state=\"waiting-restart\"} 1",
        "herd_worker_cpu_seconds_total{app=\"api\",namespace=\"web\",worker=\"0\"} 1.5",
        "herd_worker_resident_memory_bytes{app=\"api\",namespace=\"web\",worker=\"0\"} 52428800",
        "herd_worker_last_exit_code{app=\"api\",namespace=\"web\",worker=\"0\"} 137",
        "herd_worker_health_check_ok{app=\"api\",namespace=\"web\",worker=\"0\"} 1",
        "herd_worker_info{app=\"api\",namespace=\"web\",worker=\"0\",pid=\"4242\",generation=\"1\"} 1",
        "herd_count_req_s{app=\"api\",namespace=\"web\",worker=\"1\"} 7",
        "herd_count_req_s_all{app=\"api\",namespace=\"web\"} 12",
        "herd_worker_scrape_errors_total{app=\"api\",namespace=\"web\",worker=\"1\"} 2",
        "herd_build_info{version=\"",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
    // The replacement (pid 4250) is counted by state, but is not slot 0's series.
    assert!(!text.contains("4250"), "{text}");
    assert_eq!(
        text.matches("herd_worker_ready{").count(),
        2,
        "one per slot:\n{text}"
    );
    assert!(!text.contains("# EOF"));
}

#[test]
fn openmetrics_when_asked() {
    let text = render::render_with(vec![app()], procs(), true);
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE herd_app_restarts counter"), "{text}");
}

#[test]
fn counter_names_become_prometheus_names() {
    assert_eq!(sanitize("requests"), "requests");
    assert_eq!(sanitize("req/s"), "req_s");
    assert_eq!(sanitize("2xx"), "_2xx");
    assert_eq!(sanitize("é"), "_");
    assert_eq!(sanitize(""), "_");
}
