//! `herd logs` of daemon apps: the last lines with their timestamps, `-f` showing lines
//! written after it started, and size-based rotation that keeps `log_files` files and
//! loses no line at a rotation.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::daemon::*;
use crate::common::*;

/// `<RFC 3339 UTC with ms> <app>:<slot> <text>`: the text, if `line` has that form.
fn stamped<'a>(line: &'a str, app_slot: &str) -> Option<&'a str> {
    let (time, rest) = line.split_once(' ')?;
    let b = time.as_bytes();
    let shape = b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
        && b.iter()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19, 23].contains(&i) || c.is_ascii_digit());
    if !shape {
        return None;
    }
    rest.strip_prefix(app_slot)?.strip_prefix(' ')
}

/// An app of one `sh` worker that prints `started`, `early 1`…`early 7`, then `got usr1`
/// on each SIGUSR1.
const TALK: &str = r#"[apps.talk]
command = ["sh", "-c", "trap 'echo got usr1' USR1; echo started; i=0; while [ $i -lt 7 ]; do i=$((i+1)); echo early $i; done; while :; do sleep 0.1; done"]
instances = 1
"#;

#[test]
fn logs_shows_the_last_lines_with_times_and_follows_new_ones() {
    let d = Daemon::new();
    let file = d.file("herd.toml", TALK);
    d.ok(&["start", file.to_str().unwrap()]);
    d.wait_online("talk", 1);
    let out_log = d.home().join("logs/talk-0.out.log");
    d.wait_until("the worker's 7 early lines are in its log", T, || {
        std::fs::read_to_string(&out_log).is_ok_and(|t| t.contains("talk:0 early 7\n"))
    });

    let r = d.ok(&["logs", "talk", "-n", "5"]);
    // herd's own records of the app come first, from their own file.
    assert!(r.stdout.contains(" talk [herd] INFO started talk"), "{r}");
    let texts: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| !l.starts_with("==> ") && !l.contains(" talk [herd] "))
        .map(|l| {
            stamped(l, "talk:0")
                .unwrap_or_else(|| panic!("line without a timestamp and app:slot: {l:?}\n{r}"))
        })
        .collect();
    assert_eq!(
        texts,
        ["early 3", "early 4", "early 5", "early 6", "early 7"],
        "{r}"
    );
    assert!(
        r.stdout.contains(&format!("==> {} <==", out_log.display())),
        "{r}"
    );

    // --json: one object per line, saying whose it is.
    let r = d.ok(&["logs", "talk", "-n", "1", "--json"]);
    let lines: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!("logs --json is one JSON object per line ({e}):\n{r}");
            })
        })
        .collect();
    assert!(lines.iter().any(|v| v["stream"] == "herd"), "{r}");
    let v = lines
        .iter()
        .find(|v| v["stream"] == "out")
        .unwrap_or_else(|| panic!("no line of the worker's stdout:\n{r}"));
    assert_eq!(v["app"], "talk", "{v}");
    assert_eq!(v["slot"], 0, "{v}");
    assert_eq!(v["stream"], "out", "{v}");
    assert!(
        v["line"].as_str().unwrap_or("").ends_with("talk:0 early 7"),
        "{v}"
    );

    // -f: a line written after it started.
    let mut child = d
        .command(&["logs", "talk", "-f", "-n", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("herd logs -f");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        })
    };
    let has = |needle: &str| lines.lock().unwrap().iter().any(|l| l.contains(needle));
    d.wait_until("`herd logs -f` printed the last line", T, || has("early 7"));
    assert!(!has("got usr1"), "no SIGUSR1 was sent yet");
    // (Sent again until seen: `sh` runs its trap only between two `sleep`s.)
    let mut next = Instant::now();
    d.wait_until(
        "`herd logs -f` shows a line written after it started",
        T,
        || {
            if Instant::now() >= next {
                d.ok(&["signal", "talk", "SIGUSR1"]);
                next = Instant::now() + Duration::from_millis(500);
            }
            has("got usr1")
        },
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let seen = lines.lock().unwrap().clone();
    let got: Vec<&String> = seen.iter().filter(|l| l.contains("got usr1")).collect();
    assert!(
        got.iter().all(|l| stamped(l, "talk:0") == Some("got usr1")),
        "followed lines keep the format: {seen:?}"
    );
}

/// The numbers N of the `line N` lines of `path`, checking each file's size.
fn numbers(path: &Path, max_size: u64) -> Vec<u64> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    assert!(
        text.len() as u64 <= max_size,
        "{path:?} has {} bytes, more than log_max_size {max_size}",
        text.len()
    );
    text.lines()
        .map(|l| {
            let t = stamped(l, "chatty:0").unwrap_or_else(|| panic!("{path:?}: odd line {l:?}"));
            t.strip_prefix("line ")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{path:?}: odd line {l:?}"))
        })
        .collect()
}

/// The lines of the current file and its rotated ones, oldest first, and the file count.
fn all_numbers(logs: &Path, keep: usize) -> (Vec<u64>, usize) {
    let base = logs.join("chatty-0.out.log");
    let mut files = vec![base.clone()];
    for n in 1..=keep + 1 {
        let f = logs.join(format!("chatty-0.out.log.{n}"));
        if f.exists() {
            files.push(f);
        }
    }
    let count = files.len();
    let mut out = Vec::new();
    for f in files.iter().rev() {
        out.extend(numbers(f, 2048));
    }
    (out, count)
}

const LINES: u64 = 3000;

fn chatty(keep: usize) -> String {
    format!(
        "[apps.chatty]\ncommand = [\"sh\", \"-c\", \"i=0; while [ $i -lt {LINES} ]; do i=$((i+1)); echo \\\"line $i\\\"; done; exec sleep 1000\"]\ninstances = 1\nlog_max_size = \"2K\"\nlog_files = {keep}\n"
    )
}

/// Starts the chatty app and waits until its last line is in the current file.
fn run_chatty(d: &Daemon, keep: usize) -> std::path::PathBuf {
    let file = d.file("herd.toml", &chatty(keep));
    d.ok(&["start", file.to_str().unwrap()]);
    let logs = d.home().join("logs");
    let current = logs.join("chatty-0.out.log");
    d.wait_until(&format!("`line {LINES}` is logged"), T, || {
        std::fs::read_to_string(&current)
            .is_ok_and(|t| t.ends_with(&format!("chatty:0 line {LINES}\n")))
    });
    logs
}

#[test]
fn rotation_keeps_log_files_and_loses_no_line() {
    // Enough files for everything: every line, in order, across ~70 rotations.
    let d = Daemon::new();
    let logs = run_chatty(&d, 200);
    let (all, files) = all_numbers(&logs, 200);
    assert!(
        files > 10,
        "2K files should have rotated many times: {files} files"
    );
    if all != (1..=LINES).collect::<Vec<_>>() {
        let gaps: Vec<(u64, u64)> = all
            .windows(2)
            .filter(|w| w[1] != w[0] + 1)
            .map(|w| (w[0], w[1]))
            .take(10)
            .collect();
        panic!(
            "{} lines in {files} files, expected 1..={LINES}; first {:?}, last {:?}, gaps {gaps:?}",
            all.len(),
            all.first(),
            all.last()
        );
    }
    drop(d);

    // Three rotated files kept: the newest lines, consecutive, ending with the last.
    let d = Daemon::new();
    let logs = run_chatty(&d, 3);
    let (kept, files) = all_numbers(&logs, 3);
    assert!(
        !logs.join("chatty-0.out.log.4").exists(),
        "a 4th rotated file exists with log_files = 3"
    );
    assert_eq!(files, 4, "the current file and 3 rotated ones");
    assert_eq!(kept.last(), Some(&LINES));
    let first = kept[0];
    assert_eq!(
        kept,
        (first..=LINES).collect::<Vec<_>>(),
        "the kept lines are consecutive"
    );
}
