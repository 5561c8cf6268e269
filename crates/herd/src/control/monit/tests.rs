use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::model::{Action, Mode, Model};
use super::{on_key, view, Step};
use crate::control::protocol::{AppInfo, LogFile};
use crate::driver::status::{AppStatus, HealthStatus, WorkerStatus};

fn worker(slot: usize, pid: Option<u32>, generation: u64, state: &str) -> WorkerStatus {
    WorkerStatus {
        slot,
        pid,
        generation,
        state: state.into(),
        uptime_ms: 75_000,
        restarts: 0,
        cpu_percent: 3.0,
        memory: 47_400_000,
        health: None,
        handed_over: 0,
        last_exit: None,
        last_exit_ms: None,
    }
}

fn app(name: &str, state: &str, workers: Vec<WorkerStatus>) -> AppInfo {
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
        logs: vec![LogFile {
            path: "/nonexistent/api-0.out.log".into(),
            slot: Some(0),
            stream: "out".into(),
        }],
        status: (!workers.is_empty()).then(|| AppStatus {
            state: state.into(),
            instances: workers.len(),
            balance: "reuseport".into(),
            listen: vec!["0.0.0.0:3000".into()],
            workers,
            counters: serde_json::json!({}),
            queued: 0,
            restarts_by_reason: Default::default(),
            next_reload_ms: None,
        }),
    }
}

/// The screen of `model` in a `w`×`h` terminal, one string per line, trailing spaces cut.
fn screen(model: &Model, w: u16, h: u16, color: bool) -> Vec<String> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| view::draw(f, model, color)).unwrap();
    let buf = t.backend().buffer().clone();
    (0..h)
        .map(|y| {
            let line: String = (0..w).map(|x| buf[(x, y)].symbol().to_string()).collect();
            line.trim_end().to_string()
        })
        .collect()
}

fn sample() -> Model {
    let mut api0 = worker(0, Some(4242), 1, "online");
    api0.health = Some(HealthStatus {
        ok: Some(true),
        latency_ms: Some(2.4),
        error: None,
        failures: 0,
        passed: true,
        heartbeat_age_ms: None,
        loop_lag_ms: None,
    });
    let mut api1 = worker(1, Some(4243), 1, "online");
    api1.restarts = 2;
    api1.last_exit = Some("SIGKILL".into());
    let mut m = Model::new();
    m.refresh(vec![
        app("api", "running", vec![api0, api1]),
        app("jobs", "stopped", vec![]),
    ]);
    m.log = vec!["2026-12-05T12:00:00.000Z api:0 listening on 3000".into()];
    m
}

#[test]
fn the_normal_screen_at_80x24() {
    let lines = screen(&sample(), 80, 24, true);
    let expected = [
        "herd monit · 2 apps · 2 workers · ? help · q quit",
        "APP        SLOT PID     STATUS          UPTIME HEALTH     CPU  MEM    RESTARTS",
        "api        0    4242    online          1m     ok 2ms     3%   45.2M  0",
        "api        1    4243    online          1m     -          3%   45.2M  2 SIGKILL",
        "jobs       -    -       stopped         -      -          -    -      -",
    ];
    assert_eq!(lines[..5], expected, "\n{}", lines.join("\n"));
    assert!(
        lines[15].starts_with(" output of api:0 (pid 4242) ──"),
        "{}",
        lines[15]
    );
    assert_eq!(
        lines[16],
        "2026-12-05T12:00:00.000Z api:0 listening on 3000"
    );
}

#[test]
fn a_wide_screen_shows_the_generation_and_the_memory_history() {
    let mut m = sample();
    for _ in 0..3 {
        let apps = m.apps.clone();
        m.refresh(apps);
    }
    let lines = screen(&m, 120, 24, false);
    assert!(
        lines[1].contains("GEN") && lines[1].contains("MEM 2 MIN"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("▁▁▁▁") || lines[2].contains("████"),
        "{}",
        lines[2]
    );
}

#[test]
fn a_narrow_screen_keeps_the_essential_columns() {
    let lines = screen(&sample(), 40, 24, false);
    assert_eq!(lines[1], "APP        SLOT PID     STATUS");
    assert_eq!(lines[2], "api        0    4242    online");
}

#[test]
fn an_errored_app_and_a_reload_in_progress() {
    let mut old = worker(0, Some(10), 1, "online");
    old.uptime_ms = 3_600_000;
    let new = worker(0, Some(11), 2, "starting");
    let mut m = Model::new();
    m.refresh(vec![
        app(
            "web",
            "reloading",
            vec![old, new, worker(1, Some(12), 2, "online")],
        ),
        app("bad", "errored", vec![worker(0, None, 1, "errored")]),
    ]);
    let lines = screen(&m, 100, 24, false);
    let joined = lines.join("\n");
    // Both generations of slot 0 side by side while the reload rolls.
    assert!(
        lines[2].contains("web") && lines[2].contains(" 1 ") && lines[2].contains("online"),
        "{joined}"
    );
    assert!(
        lines[3].contains("web") && lines[3].contains(" 2 ") && lines[3].contains("starting"),
        "{joined}"
    );
    assert!(
        lines[5].contains("bad") && lines[5].contains("errored"),
        "{joined}"
    );
}

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

#[test]
fn keys_move_ask_and_act() {
    let mut m = sample();
    assert_eq!(on_key(&mut m, key(KeyCode::Down)), Step::Stay);
    assert_eq!(m.selected_worker(), Some(("api".into(), 1, Some(4243))));
    on_key(&mut m, key(KeyCode::Char('r')));
    assert_eq!(m.mode, Mode::Confirm(Action::Reload, "api".into()));
    let lines = screen(&m, 80, 24, false);
    assert_eq!(lines[23], "reload api? y/n");
    assert_eq!(
        on_key(&mut m, key(KeyCode::Char('y'))),
        Step::Do(Action::Reload, "api".into())
    );
    on_key(&mut m, key(KeyCode::Char('s')));
    assert_eq!(on_key(&mut m, key(KeyCode::Char('n'))), Step::Stay);
    assert_eq!(m.message, "stop api: cancelled");
    // The filter.
    on_key(&mut m, key(KeyCode::Char('/')));
    for c in "job".chars() {
        on_key(&mut m, key(KeyCode::Char(c)));
    }
    on_key(&mut m, key(KeyCode::Enter));
    assert_eq!(m.rows().len(), 1);
    assert_eq!(m.selected_app().as_deref(), Some("jobs"));
    on_key(&mut m, key(KeyCode::Char('/')));
    on_key(&mut m, key(KeyCode::Esc));
    assert_eq!(m.rows().len(), 3);
    on_key(&mut m, key(KeyCode::Char('?')));
    assert!(screen(&m, 80, 24, false)[2].contains("select a worker"));
    on_key(&mut m, key(KeyCode::Char('x')));
    assert_eq!(m.mode, Mode::Normal);
    assert_eq!(on_key(&mut m, key(KeyCode::Char('q'))), Step::Quit);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(on_key(&mut m, ctrl_c), Step::Quit);
}

#[test]
fn the_daemon_going_away_is_said() {
    let mut m = sample();
    m.unreachable = Some("no daemon runs".into());
    let lines = screen(&m, 80, 24, false);
    assert!(
        lines[23].starts_with("the daemon does not answer (no daemon runs)"),
        "{}",
        lines[23]
    );
}

#[test]
fn connections_per_second_in_the_handoff_modes_and_the_accept_queue() {
    let mut a = app("rr", "running", vec![worker(0, Some(7), 1, "online")]);
    if let Some(s) = a.status.as_mut() {
        s.balance = "round-robin".into();
        s.queued = 3;
    }
    let mut m = Model::new();
    m.refresh(vec![a.clone()]);
    // The previous count, two seconds ago.
    let key = ("rr".to_string(), 0, 7);
    let earlier = std::time::Instant::now() - std::time::Duration::from_secs(2);
    m.conns.insert(key, (0, earlier, None));
    if let Some(s) = a.status.as_mut() {
        s.workers[0].handed_over = 100;
    }
    m.refresh(vec![a]);
    let lines = screen(&m, 120, 24, false);
    assert!(lines[0].contains("3 in accept queues"), "{}", lines[0]);
    let col = lines[1].find("CONN/S").expect("the column");
    assert_eq!(
        lines[2][col..].split_whitespace().next(),
        Some("50"),
        "{}",
        lines[2]
    );
}
