//! The verbs PM2 users type every day: `flush`, `reset`, `ls --sort`, `ls -w`, and the
//! aliases `list`, `status`, `jlist`, `prettylist`, `monit`.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::daemon::{testworker_app, testworker_args_app, Daemon};
use crate::common::*;

const T: Duration = Duration::from_secs(20);

#[test]
fn flush_empties_the_log_files_and_later_lines_start_them_again() {
    let d = Daemon::new();
    let file = d.file(
        "herd.toml",
        &(testworker_args_app("talk", &["--print", "5"], 1, "") + &testworker_app("quiet", 1, "")),
    );
    d.start_each(&file, &["talk", "quiet"]);
    let out = d.home().join("logs/talk-0.out.log");
    d.wait_until("the five lines in the log", T, || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("line 5"))
    });
    let ran = d.ok(&["flush", "talk"]);
    assert!(ran.stdout.contains("talk: "), "{ran}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "", "emptied");
    // The writer goes on writing into the emptied file, from its start.
    let port = d.port("talk");
    let _ = http_get(&format!("http://127.0.0.1:{port}/grow?mb=1"));
    d.wait_until("the next line", T, || {
        std::fs::read_to_string(&out).is_ok_and(|t| t.contains("grew by 1 MiB"))
    });
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(!text.contains("line 1"), "{text}");
    assert!(
        !text.starts_with('\0'),
        "no hole before the new line: {text:?}"
    );
    // No name: every app.
    let ran = d.ok(&["flush"]);
    assert!(ran.stdout.contains("quiet: "), "{ran}");
    assert!(ran.stdout.contains("talk: "), "{ran}");
}

#[test]
fn reset_zeroes_the_restart_counts() {
    let d = Daemon::new();
    let file = d.file("herd.toml", &testworker_app("api", 1, ""));
    d.start_each(&file, &["api"]);
    let before = d.online_pids("api");
    let port = d.port("api");
    let _ = http_get(&format!("http://127.0.0.1:{port}/crash"));
    d.wait_until("the restart", T, || {
        let now = d.online_pids("api");
        !now.is_empty() && now != before
    });
    assert_eq!(d.app("api")["status"]["restarts_by_reason"]["crash"], 1);
    let ran = d.ok(&["reset", "api"]);
    assert!(
        ran.stdout
            .contains("api: restart counts and counters reset"),
        "{ran}"
    );
    let app = d.app("api");
    assert_eq!(app["status"]["restarts_by_reason"]["crash"], 0, "{app}");
    assert_eq!(app["status"]["workers"][0]["restarts"], 0, "{app}");
    let ran = d.refused(&["reset", "nosuch"]);
    assert!(ran.stderr.contains("nosuch"), "{ran}");
}

#[test]
fn ls_sorts_watches_and_answers_to_pm2s_names() {
    let d = Daemon::new();
    let file = d.file(
        "herd.toml",
        &(testworker_app("alpha", 1, "") + &testworker_app("beta", 2, "")),
    );
    d.start_each(&file, &["alpha", "beta"]);
    let first_app = |args: &[&str]| {
        let ran = d.ok(args);
        ran.stdout
            .lines()
            .nth(1)
            .and_then(|l| l.split_whitespace().next())
            .map(str::to_string)
            .unwrap_or_else(|| d.fail(&format!("no row: {ran}")))
    };
    assert_eq!(first_app(&["ls", "--sort", "name"]), "alpha");
    assert_eq!(first_app(&["ls", "--sort", "name:desc"]), "beta");
    // Two workers' memory is more than one's.
    assert_eq!(first_app(&["ls", "--sort", "memory"]), "beta");
    assert_eq!(first_app(&["ls", "--sort", "memory:asc"]), "alpha");
    let ran = d.run(&["ls", "--sort", "pid"]);
    assert_eq!(ran.code, 2, "{ran}");
    assert!(
        ran.stderr.contains("`pid` is not a column to sort by"),
        "{ran}"
    );
    for alias in ["list", "status"] {
        assert!(d.ok(&[alias]).stdout.starts_with("NAME "), "{alias}");
    }
    let jlist = d.ok(&["jlist"]).stdout;
    assert_eq!(jlist.trim().lines().count(), 1, "{jlist}");
    let apps: serde_json::Value = serde_json::from_str(&jlist).unwrap();
    assert_eq!(apps.as_array().map(Vec::len), Some(2));
    let pretty = d.ok(&["prettylist"]).stdout;
    assert!(pretty.lines().count() > 10, "{pretty}");
    // No terminal here: monit says what to use instead, and writes no escape sequence.
    let ran = d.run(&["monit"]);
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("herd ls -w"), "{ran}");
    assert!(ran.stdout.is_empty(), "{ran}");

    // -w redraws until it is stopped.
    let mut child = d
        .command(&["ls", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(15);
        while seen.matches("every 1s: herd ls").count() < 2 && Instant::now() < deadline {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        seen
    });
    let seen = reader.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.matches("every 1s: herd ls").count() >= 2, "{seen:?}");
    assert!(seen.contains("\x1b[2J"), "{seen:?}");
    assert!(seen.contains("beta"), "{seen:?}");
}
