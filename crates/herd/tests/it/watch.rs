//! `--watch`: a change of the app's files is a zero-downtime rolling reload. Edits under
//! load, a burst of 500 files, ignored paths, a change that breaks the start-up, the
//! kernel's watch limit (lowered in a user namespace of the test's own), bad input, and an
//! app of the daemon whose HERD_HOME and log files are inside its watched tree.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::daemon::{testworker_args_app, Daemon};
use crate::common::*;

/// A folder to watch, with `src/app.js`.
fn tree() -> TempPath {
    let t = TempPath::new("watch");
    std::fs::create_dir_all(t.0.join("src")).unwrap();
    std::fs::write(t.0.join("src/app.js"), "v1").unwrap();
    t
}

/// `herd run -i 2 --ready notify --listen 127.0.0.1:0 --watch <extra> -- herd-testworker
/// --notify --startup-ms 100 <worker>` in `dir`, once its two workers are ready.
/// (`--startup-ms 100` makes the old and new generations overlap, as in `reload.rs`.)
fn watching(dir: &Path, extra: &[&str], worker: &[&str]) -> Herd {
    let mut cmd = Command::new(herd_bin());
    cmd.current_dir(dir)
        .args(["run", "-i", "2", "--ready", "notify"])
        .args(["--listen", "127.0.0.1:0", "--watch"])
        .args(extra)
        .arg("--")
        .arg(worker_bin())
        .args(["--notify", "--startup-ms", "100"])
        .args(worker);
    let herd = Herd::spawn(cmd, false, true);
    herd.wait_event("herd.watching");
    herd.wait_ready(2);
    herd
}

fn write(path: PathBuf, text: &str) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Pids answering `n` fresh-connection requests.
fn answering(herd: &Herd, n: usize) -> HashSet<u32> {
    (0..n).map(|_| herd.who().0).collect()
}

/// Writes `marker` and waits for its own burst: once that is reported alone, no change
/// written before it is still to come. Returns the `app.changed` event.
fn marker_burst(herd: &Herd, from: usize, marker: PathBuf, shown: &str) -> Event {
    write(marker, "x");
    let (_, e) = herd.wait_event_from(from, "app.changed", |_| true);
    if e.str("paths") != shown || e.u64("changed") != 1 {
        herd.fail(&format!(
            "the burst after the marker should be the marker alone ({shown}), got {:?} ({} changed)",
            e.str("paths"),
            e.u64("changed")
        ));
    }
    e
}

#[test]
fn editing_a_file_reloads_with_no_failed_request() {
    let t = tree();
    let herd = watching(&t.0, &["--watch-delay", "200ms"], &[]);
    let watching = herd.wait_event("herd.watching");
    assert_eq!(watching.str("paths"), t.s());
    assert_eq!(watching.u64("dirs"), 2, "the folder and src");
    let load = Load::with(herd.port(), &[Client::KeepAlive, Client::NewConnection]);
    let mark = herd.mark(Out::Stderr);
    let old = reload_under_by(&herd, load, || write(t.0.join("src/app.js"), "v2"));
    let (_, changed) = herd.wait_event_from(mark, "app.changed", |_| true);
    assert_eq!(changed.str("paths"), "src/app.js");
    assert_eq!(changed.u64("changed"), 1);
    let now = answering(&herd, 20);
    assert!(now.is_disjoint(&old.into_iter().collect()), "{now:?}");
}

/// A `git checkout` of 500 files is one reload: the changes are reported as one burst,
/// and a marker written after the reload is a burst of its own, alone.
#[test]
fn five_hundred_files_changed_at_once_are_one_reload() {
    let t = tree();
    let herd = watching(&t.0, &["--watch-delay", "500ms"], &[]);
    let mark = herd.mark(Out::Stderr);
    for i in 0..500 {
        write(t.0.join(format!("src/f{i:03}.js")), "x");
    }
    let (_, burst) = herd.wait_event_from(mark, "app.changed", |_| true);
    assert_eq!(burst.u64("changed"), 500, "{:?}", burst.str("paths"));
    assert_eq!(
        burst.str("paths"),
        "src/f000.js, src/f001.js, src/f002.js, src/f003.js, src/f004.js"
    );
    let (done, _) = herd.wait_event_from(mark, "reload.done", |_| true);
    marker_burst(&herd, done, t.0.join("src/marker.js"), "src/marker.js");
    assert_eq!(herd.events_from(mark, "app.changed").len(), 2);
    herd.wait_event_from(done, "reload.started", |_| true);
    assert_eq!(
        herd.events_from(mark, "reload.started").len(),
        2,
        "one reload for the 500 files, one for the marker"
    );
}

/// node_modules, .git and the globs of --ignore-watch give no reload, and ignored
/// folders are not watched at all: the first burst after them is a marker's, alone.
#[test]
fn changes_of_ignored_paths_give_no_reload() {
    let t = tree();
    for dir in ["node_modules/pkg/lib", ".git/objects", "cache/a", "src/gen"] {
        std::fs::create_dir_all(t.0.join(dir)).unwrap();
    }
    let herd = watching(
        &t.0,
        &[
            "--watch-delay",
            "1s",
            "--ignore-watch",
            "*.tmp",
            "--ignore-watch",
            "cache/**",
            "--ignore-watch",
            "src/gen",
        ],
        &[],
    );
    let watching = herd.wait_event("herd.watching");
    assert_eq!(
        watching.u64("dirs"),
        2,
        "only the folder and src are watched"
    );
    let mark = herd.mark(Out::Stderr);
    write(t.0.join("node_modules/pkg/lib/index.js"), "x");
    write(t.0.join("node_modules/new/index.js"), "x");
    write(t.0.join("src/node_modules/dep/index.js"), "x");
    write(t.0.join(".git/index"), "x");
    write(t.0.join("src/.git/HEAD"), "x");
    write(t.0.join("src/draft.tmp"), "x");
    write(t.0.join("cache/a/b.json"), "x");
    write(t.0.join("cache/new/c.json"), "x");
    write(t.0.join("src/gen/out.js"), "x");
    marker_burst(&herd, mark, t.0.join("src/app.js"), "src/app.js");
    assert_eq!(herd.events_from(mark, "app.changed").len(), 1);
}

/// A change that makes the app fail to start leaves the old workers serving; the change
/// that fixes it reloads.
#[test]
fn a_change_that_breaks_the_start_up_leaves_the_old_workers_serving() {
    let t = tree();
    let broken = t.0.join("src/broken");
    let herd = watching(
        &t.0,
        &["--watch-delay", "200ms"],
        &["--fail-if-file", broken.to_str().unwrap()],
    );
    let old: HashSet<u32> = herd.worker_pids().into_iter().collect();
    let mark = herd.mark(Out::Stderr);
    write(broken.clone(), "x");
    herd.wait_event_from(mark, "app.changed", |e| e.str("paths") == "src/broken");
    herd.wait_event_from(mark, "reload.aborted", |_| true);
    let now = answering(&herd, 40);
    if now != old {
        herd.fail(&format!(
            "after the failed reload the old workers {old:?} should answer; got {now:?}"
        ));
    }
    let mark = herd.mark(Out::Stderr);
    std::fs::remove_file(&broken).unwrap();
    herd.wait_event_from(mark, "app.changed", |_| true);
    herd.wait_event_from(mark, "reload.done", |_| true);
    herd.wait_gone(&old.iter().copied().collect::<Vec<_>>(), T);
    let now = answering(&herd, 40);
    assert!(now.is_disjoint(&old), "{now:?} {old:?}");
}

/// Runs herd (or `sh -c`) in a user namespace of its own whose inotify watch limit is
/// `limit`: the namespace's limit is its own, so the machine's is not touched. `None`
/// (after recording a skip) where user namespaces cannot do that.
fn with_watch_limit(limit: u32, args: &[&str], dir: &Path) -> Option<Command> {
    let set = format!("echo {limit} > /proc/sys/user/max_inotify_watches");
    let probe = Command::new(util_linux("unshare"))
        .args(["-U", "-r", "sh", "-c", &set])
        .output()
        .expect("run unshare");
    if !probe.status.success() {
        skip(&format!(
            "cannot lower the inotify watch limit in a user namespace (`unshare -U -r`): {}",
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
        return None;
    }
    let mut cmd = Command::new(util_linux("unshare"));
    cmd.current_dir(dir)
        .args([
            "-U",
            "-r",
            "sh",
            "-c",
            &format!("{set} && exec \"$0\" \"$@\""),
        ])
        .arg(herd_bin())
        .args(args);
    Some(cmd)
}

/// At the kernel's watch limit herd names the sysctl and its value: at start it exits 1
/// before any worker starts; later, a directory it cannot watch is a warning, and the
/// change still reloads.
#[test]
fn the_watch_limit_is_named_with_its_sysctl() {
    let t = tree();
    for i in 0..30 {
        std::fs::create_dir_all(t.0.join(format!("src/d{i}"))).unwrap();
    }
    let run = ["run", "-i", "1", "--listen", "127.0.0.1:0", "--watch", "--"];
    let mut args = run.to_vec();
    args.push(worker_bin());
    let Some(cmd) = with_watch_limit(10, &args, &t.0) else {
        return;
    };
    let mut herd = Herd::spawn(cmd, false, true);
    assert_eq!(herd.wait_exit(T), 1);
    let err = herd.lines(Out::Stderr).join("\n");
    for needle in [
        "cannot watch `",
        "the inotify watch limit is reached (fs.inotify.max_user_watches = ",
        "and 10 in this user namespace",
        "sysctl -w fs.inotify.max_user_watches=",
    ] {
        if !err.contains(needle) {
            herd.fail(&format!("the message does not say {needle:?}"));
        }
    }
    herd.assert_no_spawn();

    // Running: the root and src take 2 of 4 watches; of 4 new directories, 2 fit.
    let t = tree();
    let mut args = run.to_vec();
    args.splice(5..5, ["--watch-delay", "300ms"]);
    args.push(worker_bin());
    let cmd = with_watch_limit(4, &args, &t.0).expect("probed above");
    let herd = Herd::spawn(cmd, false, true);
    herd.wait_ready(1);
    let mark = herd.mark(Out::Stderr);
    for d in ["a", "b", "c", "d"] {
        std::fs::create_dir(t.0.join("src").join(d)).unwrap();
    }
    let (_, failed) = herd.wait_event_from(mark, "watch.failed", |_| true);
    assert!(
        failed
            .str("error")
            .contains("fs.inotify.max_user_watches = "),
        "{}",
        failed.str("error")
    );
    let (_, changed) = herd.wait_event_from(mark, "app.changed", |_| true);
    assert_eq!(changed.u64("changed"), 4);
    herd.wait_event_from(mark, "reload.done", |_| true);
}

/// A watch path that does not exist, a glob that is not one, a delay that is not a
/// duration: one line naming it, no worker started.
#[test]
fn bad_watch_input_is_named_before_any_worker_starts() {
    let t = tree();
    let cases: [(&[&str], i32, &[&str]); 4] = [
        (
            &["--watch", "srcc"],
            1,
            &["watch path `srcc` does not exist"],
        ),
        (
            &["--watch", "/no/such/dir"],
            1,
            &["`/no/such/dir` does not exist"],
        ),
        (
            &["--watch", "--ignore-watch", "a**"],
            2,
            &["`a**` is not a glob"],
        ),
        (
            &["--watch", "--watch-delay", "soon"],
            2,
            &["--watch-delay", "soon"],
        ),
    ];
    for (flags, code, needles) in cases {
        let mut cmd = Command::new(herd_bin());
        cmd.current_dir(&t.0)
            .args(["run", "--listen", "127.0.0.1:0"])
            .args(flags)
            .arg("--")
            .arg(worker_bin());
        let mut herd = Herd::spawn(cmd, false, true);
        let got = herd.wait_exit(T);
        if got != code {
            herd.fail(&format!("{flags:?}: exit code {got}, expected {code}"));
        }
        let err = herd.lines(Out::Stderr).join("\n");
        for n in needles {
            if !err.contains(n) {
                herd.fail(&format!("{flags:?}: the message does not name {n:?}"));
            }
        }
        herd.assert_no_spawn();
    }
    // herd.toml: the file, line and key.
    for (line, key) in [
        ("watch_delay = 1000", "apps.api.watch_delay"),
        ("ignore_watch = [\"[x\"]", "apps.api.ignore_watch"),
        ("watch = 3", "apps.api.watch"),
    ] {
        let file = t.0.join("herd.toml");
        std::fs::write(&file, format!("[apps.api]\ncommand = \"x\"\n{line}\n")).unwrap();
        let mut herd = Herd::start(&["check", file.to_str().unwrap()]);
        assert_eq!(herd.wait_exit(T), 1);
        let err = herd.lines(Out::Stderr).join("\n");
        let at = format!("{}:3:", file.display());
        assert!(err.contains(&at) && err.contains(key), "{line}: {err}");
    }
}

/// An app of the daemon with `watch = true` whose folder holds HERD_HOME and its own
/// `out_file`: what herd writes there (the daemon's log, the workers' lines) is no change;
/// an edit is a reload.
#[test]
fn a_daemon_app_reloads_on_change_and_ignores_what_herd_writes() {
    let d = Daemon::new();
    let app = testworker_args_app(
        "web",
        &["--notify", "--print", "3"],
        2,
        "ready = \"notify\"\nwatch = true\nwatch_delay = \"300ms\"\nout_file = \"logs/out.log\"",
    );
    let file = d.file("herd.toml", &app);
    std::fs::write(d.root().join("app.js"), "v1").unwrap();
    d.ok(&["start", file.to_str().unwrap()]);
    let old = d.wait_online("web", 2);
    assert!(
        d.home().starts_with(d.root()),
        "HERD_HOME is in the watched folder"
    );
    assert_eq!(d.daemon_events("herd.watching").len(), 1);
    let changed = |n: usize| {
        d.wait_until(&format!("{n} app.changed events"), T, || {
            d.daemon_events("app.changed").len() >= n
        });
        d.daemon_events("app.changed")[n - 1].clone()
    };
    std::fs::write(d.root().join("app.js"), "v2").unwrap();
    let first = changed(1);
    assert_eq!(first["paths"], "app.js", "{first}");
    assert_eq!(first["changed"], 1, "{first}");
    d.wait_until("the reload is done", T, || {
        !d.daemon_events("reload.done").is_empty()
    });
    let new = d.wait_online("web", 2);
    assert!(new.iter().all(|p| !old.contains(p)), "{old:?} → {new:?}");
    assert!(
        std::fs::read_dir(d.root().join("logs")).is_ok_and(|mut f| f.next().is_some()),
        "the workers' lines went to logs/"
    );
    // What the reload wrote (new workers' lines, the daemon's records) is no change: the
    // next burst is a marker's, alone.
    std::fs::write(d.root().join("marker.js"), "x").unwrap();
    let second = changed(2);
    assert_eq!(second["paths"], "marker.js", "{second}");
    assert_eq!(second["changed"], 1, "{second}");
}

/// `herd reload FILE` that adds `watch` to a running app starts watching; one that takes
/// it away stops.
#[test]
fn a_reload_with_a_new_definition_starts_and_stops_the_watch() {
    let d = Daemon::new();
    let app = |extra: &str| {
        testworker_args_app(
            "web",
            &["--notify"],
            1,
            &format!("ready = \"notify\"\n{extra}"),
        )
    };
    std::fs::create_dir_all(d.root().join("src")).unwrap();
    let file = d.file("herd.toml", &app(""));
    d.ok(&["start", file.to_str().unwrap()]);
    d.wait_online("web", 1);
    d.file(
        "herd.toml",
        &app("watch = [\"src\"]\nwatch_delay = \"200ms\""),
    );
    d.ok(&["reload", file.to_str().unwrap()]);
    assert_eq!(d.daemon_events("herd.watching").len(), 1);
    std::fs::write(d.root().join("src/a.js"), "x").unwrap();
    d.wait_until("a change is seen", T, || {
        !d.daemon_events("app.changed").is_empty()
    });
    d.wait_until("its reload is done", T, || {
        d.daemon_events("reload.done").len() >= 2
    });
    d.file("herd.toml", &app(""));
    d.ok(&["reload", file.to_str().unwrap()]);
    d.wait_until("the third reload is done", T, || {
        d.daemon_events("reload.done").len() >= 3
    });
    // No longer watched: a change would be reported 200 ms after it; an absence can
    // only be waited for, three times that.
    std::fs::write(d.root().join("src/b.js"), "x").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(d.daemon_events("app.changed").len(), 1);
}
