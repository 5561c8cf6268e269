//! Crashes: a worker killed by SIGKILL or exiting on its own is replaced in the same slot;
//! a crash loop ends in the errored state with exit code 4.

use std::time::Duration;

use crate::common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The pid in "(pid N)" of a log line.
fn pid_in(line: &str) -> u32 {
    let i = line.find("(pid ").expect("a (pid N) in the line") + 5;
    line[i..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .expect("pid")
}

/// Waits for the next spawn of `slot` logged at or after stderr line `from`.
fn respawn_of(herd: &Herd, slot: usize, from: usize) -> u32 {
    let needle = format!("worker {APP}:{slot} spawned as pid ");
    let (_, line) = herd.wait_log_from(from, &needle);
    parse_spawned(&line).unwrap().1
}

#[test]
fn sigkilled_worker_is_replaced_in_the_same_slot() {
    let herd = Herd::testworkers(2);
    herd.wait_ready(2);
    let (victim, slot) = herd.who();
    let mark = herd.mark(Out::Stderr);
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    let (_, line) = herd.wait_log_from(mark, "possibly the kernel's OOM killer");
    assert!(
        line.contains(&format!("{APP}:{slot} (pid {victim})")),
        "the SIGKILL line names the slot and pid: {line:?}"
    );
    let new = respawn_of(&herd, slot, mark);
    assert_ne!(new, victim);
    herd.who_until(
        &format!("the replacement pid {new} in slot {slot}"),
        |p, s| p == new && s == slot,
    );
    assert!(!pid_alive(victim));
}

#[test]
fn crash_route_restarts_the_same_slot() {
    let herd = Herd::testworkers(2);
    herd.wait_ready(2);
    let mark = herd.mark(Out::Stderr);
    // The worker exits without answering: a transport error is the expected outcome.
    let r = http_get(&herd.url("/crash"));
    assert!(r.is_err(), "/crash should not answer: {r:?}");
    let (_, line) = herd.wait_log_from(mark, "code 70");
    let crashed = pid_in(&line);
    let slot = herd
        .spawned()
        .iter()
        .find(|(_, p)| *p == crashed)
        .map(|(s, _)| *s)
        .unwrap_or_else(|| herd.fail(&format!("pid {crashed} was never spawned")));
    herd.wait_log_from(mark, &format!("restarting worker {APP}:{slot} in "));
    let new = respawn_of(&herd, slot, mark);
    assert_ne!(new, crashed);
    herd.who_until(
        &format!("the restarted pid {new} in slot {slot}"),
        |p, s| p == new && s == slot,
    );
}

#[test]
fn crash_loop_is_errored_and_exits_4() {
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "2",
        "--max-restarts",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--",
        worker_bin(),
        "--exit-now",
        "3",
    ]);
    herd.wait_log("errored");
    let code = herd.wait_exit(T);
    if code != 4 {
        herd.fail(&format!("exit code {code}, expected 4 (errored)"));
    }
    let pids = herd.worker_pids();
    // `--max-restarts 2`: the third unstable exit (of the app, whichever slot) makes it
    // errored. The first two exits are each restarted; a restart not yet spawned when the
    // app became errored never is. So 3 or 4 workers in all, and exactly 2 restarts.
    let restarts = herd.count_log(&format!("restarting worker {APP}:"));
    if !(3..=4).contains(&pids.len()) || restarts != 2 {
        herd.fail(&format!(
            "expected 2 restarts and at most 2 + 2 workers before the app is errored; {restarts} restarts, spawned {pids:?}"
        ));
    }
    herd.wait_gone(&pids, Duration::from_secs(5));
    assert!(herd.count_log("exits with code 4") == 1, "{}", herd.dump());
}
