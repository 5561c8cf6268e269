//! Workers' output: every line, in order, with the `name:slot | ` prefix; the last lines
//! before a crash; herd's lifecycle lines as sentences in text mode; JSON on both streams,
//! with each record's `event` and fields at the top level, with `--log-format json`.
//!
//! The harness sets `HERD_LOG_FORMAT=json`; the text-format tests pass `--log-format text`,
//! which beats it.

use crate::common::*;
use nix::sys::signal::Signal;

#[test]
fn every_line_of_every_worker_is_printed_with_its_prefix() {
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "2",
        "--log-format",
        "text",
        "--listen",
        "127.0.0.1:0",
        "--",
        worker_bin(),
        "--print",
        "500",
    ]);
    for slot in 0..2 {
        herd.wait_line_from(
            Out::Stdout,
            0,
            &format!("line 500 of slot {slot}"),
            |l| l == format!("{APP}:{slot} | line 500"),
            T,
        );
    }
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
    if let Some(l) = herd.lines(Out::Stderr).iter().find(|l| l.starts_with('{')) {
        herd.fail(&format!("a JSON line in text mode: {l}"));
    }
    let out = herd.lines(Out::Stdout);
    for slot in 0..2 {
        let prefix = format!("{APP}:{slot} | line ");
        let got: Vec<u32> = out
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(|n| n.parse().unwrap())
            .collect();
        let want: Vec<u32> = (1..=500).collect();
        if got != want {
            herd.fail(&format!(
                "slot {slot}: expected lines 1..=500 once each, in order; got {} lines",
                got.len()
            ));
        }
    }
}

/// stdout and stderr on one pipe, as in a terminal or `2>&1`: the 200 lines a worker
/// printed before exiting come out before herd reports the crash.
#[test]
fn lines_printed_before_a_crash_come_before_the_crash_report() {
    let mut herd = Herd::start_merged(&[
        "run",
        "-i",
        "1",
        "--max-restarts",
        "0",
        "--log-format",
        "text",
        "--listen",
        "127.0.0.1:0",
        "--",
        worker_bin(),
        "--print-then-crash",
        "200",
    ]);
    let code = herd.wait_exit(T);
    let lines = herd.lines(Out::Stdout);
    let pos = |pred: &dyn Fn(&str) -> bool| lines.iter().position(|l| pred(l));
    let crash = pos(&|l: &str| l.contains("crashed with code 71"))
        .unwrap_or_else(|| herd.fail("no crash report"));
    let last = pos(&|l: &str| l == format!("{APP}:0 | line 200"))
        .unwrap_or_else(|| herd.fail("line 200 of the crashed worker is missing"));
    let count = lines
        .iter()
        .filter(|l| l.starts_with(&format!("{APP}:0 | line ")))
        .count();
    assert_eq!(count, 200, "{}", herd.dump());
    if last > crash {
        herd.fail(&format!(
            "the crash was reported (line {crash}) before the worker's last output (line {last})"
        ));
    }
    assert_eq!(code, 4, "max-restarts 0: errored at the first crash");
}

#[test]
fn json_log_format_on_both_streams() {
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "1",
        "--log-format",
        "json",
        "--listen",
        "127.0.0.1:0",
        "--",
        worker_bin(),
        "--print",
        "3",
    ]);
    herd.wait_ready(1);
    herd.wait_line_from(Out::Stdout, 0, "line 3", |l| l.contains("line 3"), T);
    herd.who();
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
    let parse = |out: Out| -> Vec<serde_json::Value> {
        herd.lines(out)
            .iter()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    herd.fail(&format!("{out:?} line is not JSON ({e}): {l:?}"))
                })
            })
            .collect()
    };
    let out = parse(Out::Stdout);
    let err = parse(Out::Stderr);
    let line3 = out
        .iter()
        .find(|v| v["line"] == "line 3")
        .unwrap_or_else(|| herd.fail("no JSON object for line 3"));
    assert_eq!(line3["app"], APP);
    assert_eq!(line3["slot"], 0);
    assert_eq!(line3["stream"], "stdout");
    assert!(line3["pid"].is_u64());
    // A lifecycle record: its event name and fields at the top level, next to the sentence.
    let spawned = err
        .iter()
        .find(|v| v["event"] == "worker.spawned")
        .unwrap_or_else(|| herd.fail("no worker.spawned object"));
    assert_eq!(spawned["app"], APP);
    assert_eq!(spawned["slot"], 0);
    assert_eq!(spawned["pid"], line3["pid"]);
    assert_eq!(spawned["level"], "INFO");
    assert!(spawned["message"].is_string(), "{spawned}");
    assert!(spawned.get("fields").is_none(), "{spawned}");
    let ready = err
        .iter()
        .find(|v| v["event"] == "worker.ready")
        .unwrap_or_else(|| herd.fail("no worker.ready object"));
    assert!(
        ready["after_ms"].is_u64() && ready["how"].is_string(),
        "{ready}"
    );
    let exiting = err.last().unwrap();
    assert_eq!(exiting["event"], "herd.exiting", "the last line: {exiting}");
    assert_eq!(exiting["code"], 0);
    assert!(err
        .iter()
        .all(|v| v["timestamp"].is_string() && v["level"].is_string()));
}

/// The lifecycle records in text mode are sentences a person reads (the JSON `event` names
/// are for machines): spawned, ready, the listener, the exit at shutdown, herd's exit code.
#[test]
fn text_log_format_says_the_lifecycle_in_sentences() {
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "1",
        "--log-format",
        "text",
        "--listen",
        "127.0.0.1:0",
        "--",
        worker_bin(),
    ]);
    let line = herd.wait_log(" spawned as pid ");
    let pid = herd.spawned()[0].1;
    assert!(
        line.ends_with(&format!(" INFO worker {APP}:0 spawned as pid {pid}")),
        "{line:?}"
    );
    let ready = herd.wait_log(") ready after ");
    let sentence = format!(" INFO worker {APP}:0 (pid {pid}) ready after ");
    assert!(ready.contains(&sentence), "{ready:?}");
    herd.wait_log("listening on 127.0.0.1:");
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
    let err = herd.lines(Out::Stderr);
    let exited = format!("worker {APP}:0 (pid {pid}) exited with code 0");
    assert!(err.iter().any(|l| l.contains(&exited)), "{}", herd.dump());
    let last = err.last().map(String::as_str).unwrap_or_default();
    assert!(
        last.contains("herd exits with code 0"),
        "the last line: {last:?}"
    );
    if let Some(l) = err
        .iter()
        .find(|l| l.contains("worker.") || l.contains("\"event\"") || l.starts_with('{'))
    {
        herd.fail(&format!("a field in a text line: {l}"));
    }
}
