//! The file sink: names, formats, rotation, failures.

use std::path::Path;

use super::*;
use std::time::SystemTime;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("herd-logfiles-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn line(slot: usize, stream: Stream, text: &str) -> LineRef<'_> {
    LineRef {
        slot,
        pid: 4242,
        stream,
        text: text.as_bytes(),
        time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn paths_default_merged_and_overridden() {
    let mut plan = LogPlan::new("/h/logs", "api");
    assert_eq!(
        plan.paths(3),
        (
            "/h/logs/api-3.out.log".into(),
            "/h/logs/api-3.err.log".into()
        )
    );
    plan.out_file = Some("/var/log/api.out.log".into());
    plan.error_file = Some("errors".into());
    plan.log_file = Some("/var/log/all.log".into());
    assert_eq!(
        plan.paths(3),
        ("/var/log/api.out-3.log".into(), "/h/logs/errors-3".into())
    );
    assert_eq!(plan.combined_path(3), Some("/var/log/all-3.log".into()));
    plan.merge = true;
    assert_eq!(
        plan.paths(3),
        ("/var/log/api.out.log".into(), "/h/logs/errors".into())
    );
    plan.out_file = None;
    assert_eq!(plan.paths(7).0, PathBuf::from("/h/logs/api.out.log"));
}

/// Every file a plan writes, rotated ones too, is matched by its `written_globs`, and a
/// neighbour is not.
#[test]
fn written_globs_match_every_file_written() {
    use crate::observe::watch::{Ignore, IgnoreGlob};
    let rule = |plan: &LogPlan| {
        let mut ignore = Ignore::new("/srv/app".into(), &[]);
        for g in plan.written_globs() {
            ignore.add_glob(g.parse::<IgnoreGlob>().unwrap());
        }
        ignore
    };
    let mut plan = LogPlan::new("/home/u/.herd/logs", "api");
    let ignore = rule(&plan);
    assert!(ignore.ignores(&plan.paths(3).0));
    assert!(ignore.ignores(Path::new("/home/u/.herd/logs/api-3.out.log.2")));
    plan.out_file = Some("/srv/app/logs/out [x].log".into());
    plan.error_file = Some("/srv/app/logs/err".into());
    plan.log_file = Some("/srv/app/all.log".into());
    let ignore = rule(&plan);
    assert_eq!(plan.written_globs().len(), 3, "{:?}", plan.written_globs());
    for slot in [0, 12] {
        let (out, err) = plan.paths(slot);
        assert!(ignore.ignores(&out), "{out:?}");
        assert!(ignore.ignores(&err), "{err:?}");
        let all = plan.combined_path(slot).unwrap();
        assert!(ignore.ignores(&all));
        assert!(ignore.ignores(&all.with_extension("log.5")));
    }
    assert!(!ignore.ignores(Path::new("/srv/app/all.js")));
    assert!(!ignore.ignores(Path::new("/srv/app/logs/out x.log")));
    plan.merge = true;
    let ignore = rule(&plan);
    assert!(ignore.ignores(Path::new("/srv/app/all.log")));
    assert!(ignore.ignores(Path::new("/srv/app/all.log.1")));
    assert!(!ignore.ignores(Path::new("/srv/app/all.json")));
}

#[test]
fn text_lines_per_slot_combined_with_err_marker_and_modes() {
    use std::os::unix::fs::PermissionsExt;
    let d = dir("text");
    let mut plan = LogPlan::new(d.join("logs"), "api");
    plan.log_file = Some("all.log".into());
    let mut sink = plan.sink().unwrap();
    sink.line(&line(0, Stream::Stdout, "hello\r"));
    sink.line(&line(1, Stream::Stderr, "oops"));
    sink.line(&line(0, Stream::Stdout, "not utf-8: \u{FFFD}"));
    sink.flush();
    let t = "2023-11-14T22:13:20.123Z";
    assert_eq!(
        read(&d.join("logs/api-0.out.log")),
        format!("{t} api:0 hello\n{t} api:0 not utf-8: \u{FFFD}\n")
    );
    assert_eq!(
        read(&d.join("logs/api-1.err.log")),
        format!("{t} api:1 oops\n")
    );
    assert_eq!(
        read(&d.join("logs/all-0.log")),
        read(&d.join("logs/api-0.out.log"))
    );
    assert_eq!(
        read(&d.join("logs/all-1.log")),
        format!("{t} api:1:err oops\n")
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&d.join("logs")), 0o700);
    assert_eq!(
        mode(&d.join("logs/api-0.out.log")) & !0o640,
        0,
        "at most 0640"
    );
    assert_eq!(
        app_files(&d.join("logs"), "api").unwrap(),
        [d.join("logs/api-0.out.log"), d.join("logs/api-1.err.log")]
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn json_lines_are_valid_json_with_every_field() {
    let d = dir("json");
    let mut plan = LogPlan::new(&d, "api");
    plan.json = true;
    plan.merge = true;
    plan.date_format = Some("YYYY".into());
    let mut sink = plan.sink().unwrap();
    sink.line(&line(2, Stream::Stderr, "say \"hi\"\t\\ \u{1b}[31m"));
    sink.dropped(7);
    sink.line(&line(2, Stream::Stderr, "after"));
    sink.flush();
    let text = read(&d.join("api.err.log"));
    let v: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(v.len(), 3);
    assert_eq!(v[0]["message"], "say \"hi\"\t\\ \u{1b}[31m");
    assert_eq!(v[0]["app"], "api");
    assert_eq!(v[0]["slot"], 2);
    assert_eq!(v[0]["pid"], 4242);
    assert_eq!(v[0]["stream"], "stderr");
    assert!(v[0]["time"].as_str().is_some_and(|t| t.len() == 4));
    assert_eq!(v[1]["stream"], "herd");
    assert_eq!(v[1]["dropped"], 7);
    assert_eq!(v[2]["message"], "after");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn dropped_lines_are_noted_where_the_gap_is_or_everywhere_at_a_flush() {
    let d = dir("dropped");
    let plan = LogPlan::new(&d, "api");
    let mut sink = plan.sink().unwrap();
    sink.line(&line(0, Stream::Stdout, "a"));
    sink.line(&line(1, Stream::Stdout, "b"));
    sink.dropped(123);
    sink.line(&line(1, Stream::Stdout, "c"));
    sink.dropped(5);
    sink.flush();
    let t = "2023-11-14T22:13:20.123Z";
    let one = read(&d.join("api-1.out.log"));
    let one: Vec<&str> = one.lines().collect();
    assert_eq!(
        one[..3],
        [
            format!("{t} api:1 b"),
            format!("{t} api:1 [herd] 123 lines dropped: the log writer fell behind"),
            format!("{t} api:1 c"),
        ]
    );
    assert!(one[3].ends_with(" api:* [herd] 5 lines dropped: the log writer fell behind"));
    let zero = read(&d.join("api-0.out.log"));
    assert!(zero.starts_with(&format!("{t} api:0 a\n")));
    assert!(zero
        .lines()
        .nth(1)
        .is_some_and(|l| l.ends_with(" api:* [herd] 5 lines dropped: the log writer fell behind")));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn rotation_keeps_exactly_keep_files_and_loses_no_line() {
    let d = dir("rotation");
    let mut plan = LogPlan::new(&d, "api");
    plan.max_size = 1000;
    plan.keep = 3;
    let mut sink = plan.sink().unwrap();
    let count = 400;
    for i in 0..count {
        sink.line(&line(0, Stream::Stdout, &format!("line {i:04}")));
    }
    sink.flush();
    let path = d.join("api-0.out.log");
    let mut names: Vec<String> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "api-0.out.log",
            "api-0.out.log.1",
            "api-0.out.log.2",
            "api-0.out.log.3"
        ]
    );
    // Newest last: .3 .2 .1 current, each within max_size, consecutive lines throughout.
    let mut all = Vec::new();
    for name in [
        "api-0.out.log.3",
        "api-0.out.log.2",
        "api-0.out.log.1",
        "api-0.out.log",
    ] {
        let text = read(&d.join(name));
        assert!(
            text.len() as u64 <= plan.max_size,
            "{name}: {} bytes",
            text.len()
        );
        all.extend(
            text.lines()
                .map(|l| l.rsplit(' ').next().unwrap().to_string()),
        );
    }
    let last = count - 1;
    let first = last + 1 - all.len();
    let want: Vec<String> = (first..=last).map(|i| format!("{i:04}")).collect();
    assert_eq!(
        all, want,
        "consecutive lines up to the last, none lost inside"
    );
    assert_eq!(
        app_files(&d, "api").unwrap(),
        vec![path.clone()],
        "rotated files are not current files"
    );

    // A follower polling after every flush sees every line across rotations.
    let mut follower = Follower::new(vec![path.clone()]);
    let mut seen = Vec::new();
    for i in 0..200 {
        sink.line(&line(0, Stream::Stdout, &format!("more {i:04}")));
        sink.flush();
        seen.extend(follower.poll().into_iter().map(|(_, l)| l));
    }
    let seen: Vec<String> = seen
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect();
    let want: Vec<String> = (0..200).map(|i| format!("{i:04}")).collect();
    assert_eq!(seen, want);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn keep_zero_starts_the_file_again() {
    let d = dir("keep0");
    let mut plan = LogPlan::new(&d, "api");
    plan.max_size = 100;
    plan.keep = 0;
    let mut sink = plan.sink().unwrap();
    for i in 0..50 {
        sink.line(&line(0, Stream::Stdout, &format!("{i}")));
    }
    sink.flush();
    assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
    assert!(read(&d.join("api-0.out.log")).ends_with(" api:0 49\n"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_file_that_cannot_be_written_loses_lines_without_stopping_the_others() {
    let d = dir("failing");
    let mut plan = LogPlan::new(&d, "api");
    // /dev/full: every write fails with ENOSPC, as a full disk does.
    plan.out_file = Some("/dev/full".into());
    plan.merge = true;
    // Never rotate (rename) /dev/full.
    plan.max_size = u64::MAX;
    let mut sink = plan.sink().unwrap();
    for i in 0..10_000 {
        sink.line(&line(0, Stream::Stdout, &format!("lost {i}")));
        sink.line(&line(0, Stream::Stderr, &format!("kept {i}")));
    }
    sink.flush();
    assert!(sink.files.iter().any(|f| f.failed > 0));
    assert_eq!(
        tail(&d.join("api.err.log"), 1).unwrap(),
        ["2023-11-14T22:13:20.123Z api:0 kept 9999"]
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// Lines lost while a file fails are counted, and the file says how many before the first
/// line it takes again (found by scripts/chaos: a full disk, then space again).
#[test]
fn lines_lost_while_a_file_fails_are_noted_in_it_when_it_works_again() {
    let d = dir("lost");
    std::fs::create_dir_all(&d).unwrap();
    // A file where the folder should be: the log file cannot be opened.
    let blocker = d.join("sub");
    std::fs::write(&blocker, "").unwrap();
    let mut plan = LogPlan::new(&d, "api");
    plan.out_file = Some("sub/out.log".into());
    plan.merge = true;
    let mut sink = plan.sink().unwrap();
    for i in 0..5 {
        sink.line(&line(0, Stream::Stdout, &format!("lost {i}")));
    }
    sink.flush();
    let file = |sink: &FileSink| {
        let f = sink.files.iter().find(|f| f.path.ends_with("sub/out.log"));
        f.map(|f| (f.lost, f.unnoted)).unwrap()
    };
    assert_eq!(file(&sink), (5, 5));
    // Space again: the folder can be made, and the next open is not held back.
    std::fs::remove_file(&blocker).unwrap();
    for f in &mut sink.files {
        f.retry_at = None;
    }
    sink.line(&line(0, Stream::Stdout, "back"));
    sink.flush();
    assert_eq!(file(&sink), (0, 0));
    assert_eq!(
        tail(&d.join("sub/out.log"), 2).unwrap(),
        [
            "2023-11-14T22:13:20.123Z api:* [herd] 5 lines lost: the log file could not be written",
            "2023-11-14T22:13:20.123Z api:0 back"
        ]
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// The whole path the daemon will use: a worker's pipes, `Output::start_to`, a FileSink,
/// and `herd logs --follow` reading the file while the worker still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_pipes_to_files_and_a_follower_sees_each_line_soon() {
    use crate::output::Output;
    let d = dir("pipes");
    let plan = LogPlan::new(&d, "api");
    let (output, thread) = Output::start_to(Box::new(plan.sink().unwrap())).unwrap();
    let (out_r, out_w) = nix::unistd::pipe().unwrap();
    let (err_r, err_w) = nix::unistd::pipe().unwrap();
    let readers = [
        output.follow(out_r, 0, 7, Stream::Stdout),
        output.follow(err_r, 0, 7, Stream::Stderr),
    ];
    let (out_path, err_path) = plan.paths(0);
    let mut follower = Follower::new(vec![out_path.clone(), err_path.clone()]);
    let mut out_w = std::fs::File::from(out_w);
    let mut err_w = std::fs::File::from(err_w);

    // Each line, once printed, shows up in the file within the follower's reach: the
    // writer flushes as soon as its queue is empty, not when a buffer fills.
    let mut worst = Duration::ZERO;
    for i in 0..5 {
        let t = Instant::now();
        writeln!(out_w, "ping {i}").unwrap();
        let got = loop {
            let got = follower.poll();
            if !got.is_empty() || t.elapsed() > Duration::from_secs(5) {
                break got;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        worst = worst.max(t.elapsed());
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].1.ends_with(&format!(" api:0 ping {i}")), "{got:?}");
    }
    assert!(
        worst < Duration::from_millis(500),
        "slowest line took {worst:?}"
    );
    eprintln!("print to file-visible latency, worst of 5: {worst:?}");

    for i in 0..1000 {
        writeln!(out_w, "out {i}").unwrap();
        writeln!(err_w, "err {i}").unwrap();
    }
    drop((out_w, err_w));
    for r in readers {
        r.await.unwrap();
    }
    output.flush().await;
    output.close().await;
    thread.join().unwrap();
    let out = read(&out_path);
    let err = read(&err_path);
    // 5 pings + 1000 lines (a writer this fast for a 2000-line burst drops nothing: the
    // queue holds 4096).
    assert_eq!(out.lines().count(), 1005);
    assert_eq!(err.lines().count(), 1000);
    assert!(err
        .lines()
        .last()
        .is_some_and(|l| l.ends_with(" api:0 err 999")));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_log_past_its_size_is_set_aside_when_opened() {
    let dir = std::env::temp_dir().join(format!("herd-set-aside-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("daemon.log");
    std::fs::write(&log, "small\n").unwrap();
    super::set_aside_if_larger(&log, 100);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "small\n",
        "under the size: kept"
    );
    std::fs::write(&log, "x".repeat(101)).unwrap();
    super::set_aside_if_larger(&log, 100);
    assert!(!log.exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("daemon.log.1"))
            .unwrap()
            .len(),
        101
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
