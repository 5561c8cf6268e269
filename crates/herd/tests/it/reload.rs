//! Rolling reload (SIGHUP) under load, failed reloads (a new worker that cannot start,
//! one that never becomes ready), and scaling with SIGTTIN / SIGTTOU.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::*;
use nix::sys::signal::Signal;

/// herd with `--ready notify` and workers that send READY=1. `--startup-ms 100` in the
/// callers keeps these tests clear of the READY=1-before-spawn-result race (shown by
/// `run.rs::every_ready_notification_counts`) and makes the old and new generations overlap.
fn notify_herd(extra: &[&str], worker_args: &[&str]) -> Herd {
    let mut args = vec![
        "run",
        "-i",
        "2",
        "--ready",
        "notify",
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    args.push("--");
    args.push(worker_bin());
    args.extend_from_slice(worker_args);
    Herd::start(&args)
}

/// Pids answering `n` fresh-connection requests.
fn answering(herd: &Herd, n: usize) -> HashSet<u32> {
    (0..n).map(|_| herd.who().0).collect()
}

/// One client on a keep-alive connection and one on new connections, before, during and
/// after the reload: no request fails, and then only the new workers answer.
#[test]
fn rolling_reload_under_load_loses_no_request() {
    let herd = notify_herd(&[], &["--notify", "--startup-ms", "100"]);
    herd.wait_ready(2);
    let old: HashSet<u32> = herd.worker_pids().into_iter().collect();
    let load = Load::with(herd.port(), &[Client::KeepAlive, Client::NewConnection]);
    reload_under(&herd, load);
    let new: HashSet<u32> = herd
        .worker_pids()
        .into_iter()
        .filter(|p| !old.contains(p))
        .collect();
    assert_eq!(new.len(), 2, "two new workers: {:?}", herd.spawned());
    let now = answering(&herd, 40);
    if !now.is_subset(&new) || !now.is_disjoint(&old) {
        herd.fail(&format!(
            "after the reload only new workers {new:?} may answer; got {now:?} (old {old:?})"
        ));
    }
    for p in &old {
        assert!(!pid_alive(*p), "old worker {p} still alive");
    }
}

#[test]
fn failed_reload_keeps_the_old_workers_then_succeeds() {
    let flag = TempPath::new("fail-flag");
    let herd = notify_herd(
        &[],
        &[
            "--notify",
            "--startup-ms",
            "100",
            "--fail-if-file",
            flag.s(),
        ],
    );
    herd.wait_ready(2);
    let old: HashSet<u32> = herd.worker_pids().into_iter().collect();
    std::fs::write(&flag.0, "x").unwrap();
    let mark = herd.mark(Out::Stderr);
    herd.signal(Signal::SIGHUP);
    herd.wait_event_from(mark, "reload.aborted", |_| true);
    let mut herd = herd;
    if let Some(st) = herd.try_exit() {
        herd.fail(&format!("herd exited after a failed reload: {st:?}"));
    }
    let now = answering(&herd, 40);
    if now != old {
        herd.fail(&format!(
            "after the aborted reload the old workers {old:?} should answer; got {now:?}"
        ));
    }
    for (slot, pid) in herd.spawned() {
        if !old.contains(&pid) {
            assert!(
                !pid_alive(pid),
                "failed new worker {slot}/{pid} still alive"
            );
        }
    }

    std::fs::remove_file(&flag.0).unwrap();
    let mark = herd.mark(Out::Stderr);
    let before: HashSet<u32> = herd.worker_pids().into_iter().collect();
    herd.signal(Signal::SIGHUP);
    herd.wait_event_from(mark, "reload.done", |_| true);
    let new: HashSet<u32> = herd
        .worker_pids()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    // `reload.done` comes when the last old worker is told to stop; until it has, it may
    // still take a connection (and answer it, as a draining server does).
    herd.wait_gone(&before.iter().copied().collect::<Vec<_>>(), T);
    let now = answering(&herd, 40);
    if !now.is_subset(&new) || now.is_empty() {
        herd.fail(&format!(
            "after the second reload only new workers {new:?} may answer; got {now:?}"
        ));
    }
}

#[test]
fn reload_with_a_never_ready_worker_is_aborted() {
    // The options come from a file read at each start, so the new generation can differ.
    let opts = TempPath::new("opts");
    std::fs::write(&opts.0, "--notify --startup-ms 100\n").unwrap();
    let herd = Herd::start(&[
        "run",
        "-i",
        "2",
        "--ready",
        "notify",
        "--listen-timeout",
        "2s",
        "--name",
        APP,
        "--listen",
        "127.0.0.1:0",
        "--",
        "/bin/sh",
        "-c",
        r#"exec "$0" $(cat "$1")"#,
        worker_bin(),
        opts.s(),
    ]);
    herd.wait_ready(2);
    let old: HashSet<u32> = herd.worker_pids().into_iter().collect();
    std::fs::write(&opts.0, "--notify --never-ready\n").unwrap();
    let mark = herd.mark(Out::Stderr);
    herd.signal(Signal::SIGHUP);
    herd.wait_event_from(mark, "worker.not_ready", |_| true);
    herd.wait_event_from(mark, "reload.aborted", |_| true);
    // The new worker shares its slot's socket with the old one, so it may take connections
    // until it has stopped: look once it is gone.
    let never_ready: Vec<u32> = herd
        .worker_pids()
        .into_iter()
        .filter(|p| !old.contains(p))
        .collect();
    assert!(!never_ready.is_empty());
    herd.wait_gone(&never_ready, T);
    let now = answering(&herd, 40);
    if now != old {
        herd.fail(&format!(
            "after the aborted reload the old workers {old:?} should answer; got {now:?}"
        ));
    }
}

/// A worker herd stops because it was not ready in time is told as that, not as a worker
/// that "exited unexpectedly" (it exits with code 0 at herd's SIGTERM).
#[test]
fn a_worker_stopped_for_not_being_ready_is_logged_as_stopped_by_herd() {
    let herd = Herd::start(&[
        "run",
        "-i",
        "1",
        "--ready",
        "notify",
        "--listen-timeout",
        "1s",
        "--listen",
        "127.0.0.1:0",
        "--",
        worker_bin(),
        "--notify",
        "--never-ready",
    ]);
    let (_, not_ready) = herd.wait_event_from(0, "worker.not_ready", |_| true);
    let pid = not_ready.u64("pid");
    let (_, exited) = herd.wait_event_from(0, "worker.exited", |e| e.u64("pid") == pid);
    let message = exited.str("message");
    assert!(
        message.contains("stopped by herd: not ready in time") && !message.contains("unexpectedly"),
        "{message}"
    );
    assert!(
        !exited.bool("expected"),
        "still a failure for the restart policy"
    );
}

#[test]
fn sigttin_adds_slot_2_and_sigttou_removes_it() {
    let herd = Herd::testworkers(2);
    herd.wait_ready(2);
    let mark = herd.mark(Out::Stderr);
    herd.signal(Signal::SIGTTIN);
    herd.wait_event_from(mark, "app.scaled", |e| {
        e.u64("from") == 2 && e.u64("to") == 3
    });
    let third = herd
        .wait_event_from(mark, "worker.spawned", |e| e.slot() == 2)
        .1
        .pid();
    herd.wait_event_from(mark, "worker.ready", |e| e.pid() == third);
    herd.who_until(&format!("slot 2 (pid {third})"), |p, s| {
        p == third && s == 2
    });

    let mark = herd.mark(Out::Stderr);
    herd.signal(Signal::SIGTTOU);
    herd.wait_event_from(mark, "app.scaled", |e| {
        e.u64("from") == 3 && e.u64("to") == 2
    });
    herd.wait_gone(&[third], T);
    let slots: HashSet<usize> = (0..40).map(|_| herd.who().1).collect();
    assert!(
        !slots.contains(&2),
        "slot 2 still answers after scale down: {slots:?}"
    );
}

/// herd running `-i 2` workers through a shell wrapper that reads the worker's options
/// from `opts` at each start; scaled up (SIGTTIN) once the two are ready, with the third
/// worker started as `--notify --never-ready` (it serves but never says READY=1).
/// Returns herd and the third worker's pid, once that worker is listening.
fn scaled_up_with_a_never_ready_third(opts: &TempPath) -> (Herd, u32) {
    std::fs::write(&opts.0, "--notify\n").unwrap();
    let herd = Herd::start(&[
        "run",
        "-i",
        "2",
        "--ready",
        "notify",
        "--listen-timeout",
        "60s",
        "--name",
        APP,
        "--listen",
        "127.0.0.1:0",
        "--",
        "/bin/sh",
        "-c",
        r#"exec "$0" $(cat "$1")"#,
        worker_bin(),
        opts.s(),
    ]);
    herd.wait_ready(2);
    std::fs::write(&opts.0, "--notify --never-ready\n").unwrap();
    let mark = herd.mark(Out::Stderr);
    herd.signal(Signal::SIGTTIN);
    let third = herd
        .wait_event_from(mark, "worker.spawned", |e| e.slot() == 2)
        .1
        .pid();
    herd.wait_until("the third worker is listening", T, || {
        herd.output(Out::Stdout)
            .iter()
            .any(|l| l.contains(&format!("testworker pid={third} slot=2 listening")))
    });
    (herd, third)
}

/// A scaled-up worker that is not ready yet gets no connection (its socket exists and it
/// accepts: only steering keeps connections away).
#[test]
fn scaled_up_worker_gets_no_connection_before_ready() {
    let opts = TempPath::new("opts");
    let (herd, _third) = scaled_up_with_a_never_ready_third(&opts);
    let answers: Vec<(u32, usize)> = (0..60).map(|_| herd.who()).collect();
    if answers.iter().any(|(_, s)| *s == 2) {
        herd.fail(&format!(
            "slot 2 is not ready but received connections: answers {answers:?}"
        ));
    }
}

/// Scaled down again before it became ready: no connection may be left waiting on the
/// removed slot's socket, which herd keeps bound.
#[test]
fn scale_down_before_ready_leaves_no_connection_hanging() {
    let opts = TempPath::new("opts");
    let (herd, third) = scaled_up_with_a_never_ready_third(&opts);
    let mark = herd.mark(Out::Stderr);
    herd.signal(Signal::SIGTTOU);
    herd.wait_event_from(mark, "app.scaled", |e| {
        e.u64("from") == 3 && e.u64("to") == 2
    });
    herd.wait_gone(&[third], T);
    let url = herd.url("/");
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(2))
        .build();
    let mut lost = Vec::new();
    for i in 0..60 {
        if lost.len() == 2 {
            break; // enough evidence; each loss costs the 2 s timeout
        }
        // Connection: close keeps ureq from pooling: a fresh connection each time.
        match agent.get(&url).set("Connection", "close").call() {
            Ok(r) if r.status() == 200 => {}
            other => lost.push(format!("request {i}: {:?}", other.map(|r| r.status()))),
        }
    }
    if !lost.is_empty() {
        herd.fail(&format!(
            "after scaling down, connections were not answered within 2 s \
             (left in the removed slot 2's socket backlog): {lost:?}"
        ));
    }
}

/// The README's signals table: SIGUSR2, like SIGHUP, is a rolling reload.
#[test]
fn sigusr2_is_a_rolling_reload() {
    let herd = Herd::testworkers(2);
    herd.wait_ready(2);
    let old = herd.worker_pids();
    let mark = herd.mark(Out::Stderr);
    herd.signal(Signal::SIGUSR2);
    herd.wait_event_from(mark, "reload.done", |_| true);
    herd.wait_gone(&old, T);
    let new: HashSet<u32> = live_workers(&herd).into_values().collect();
    if new.len() != 2 || new.iter().any(|p| old.contains(p)) {
        herd.fail(&format!("after SIGUSR2: workers {new:?}, old ones {old:?}"));
    }
    let now = answering(&herd, 20);
    assert!(
        now.is_subset(&new),
        "{now:?} answered, the workers are {new:?}"
    );
}
