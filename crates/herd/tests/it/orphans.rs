//! Processes never outlive herd, and herd reaps what its workers orphan: as a child
//! subreaper, and as PID 1 of a pid namespace.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use crate::common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn sigkill_of_herd_takes_every_worker_with_it() {
    let mut herd = Herd::testworkers(2);
    herd.wait_ready(2);
    let workers = herd.worker_pids();
    assert!(workers.iter().all(|p| pid_alive(*p)));
    herd.signal(Signal::SIGKILL);
    assert_eq!(herd.wait_status(T).signal(), Some(libc::SIGKILL));
    // Re-parented to init, they might linger as zombies if init does not reap: that still
    // counts as stopped, so report states but only require "not running".
    herd.wait_until(
        &format!("the workers die with herd (states {:?})", states(&workers)),
        T,
        || workers.iter().all(|p| !pid_alive(*p)),
    );
}

/// A worker (a shell wrapper) whose background child is orphaned at once. Returns herd's
/// pid as seen here, and the orphan's pid once seen re-parented to herd.
fn orphan_reparented_to(herd: &Herd, herd_pid: u32) -> u32 {
    let mut orphan = None;
    herd.wait_until("the orphaned sleep is re-parented to herd", T, || {
        orphan = children_of(herd_pid)
            .into_iter()
            .find(|s| s.comm == "sleep" && s.state != 'Z')
            .map(|s| s.pid);
        orphan.is_some()
    });
    orphan.unwrap()
}

fn assert_reaped(herd: &Herd, herd_pid: u32, orphan: u32) {
    herd.wait_until(
        &format!(
            "the orphan {orphan} is reaped (state {:?})",
            proc_state(orphan)
        ),
        T,
        || proc_state(orphan).is_none(),
    );
    let zombies: Vec<Stat> = children_of(herd_pid)
        .into_iter()
        .filter(|s| s.state == 'Z')
        .collect();
    if !zombies.is_empty() {
        herd.fail(&format!("zombies with herd as parent: {zombies:?}"));
    }
}

const ORPHANING_WORKER: &str = r#"(sleep 2 &); exec "$0""#;

#[test]
fn orphans_of_workers_are_reaped_by_herd_as_subreaper() {
    let herd = Herd::start(&[
        "run",
        "-i",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--",
        "/bin/sh",
        "-c",
        ORPHANING_WORKER,
        worker_bin(),
    ]);
    herd.wait_ready(1);
    let orphan = orphan_reparented_to(&herd, herd.pid());
    assert_reaped(&herd, herd.pid(), orphan);
    // The worker itself is untouched by its orphan's exit.
    herd.who();
}

#[test]
fn orphans_are_reaped_by_herd_as_pid_1() {
    let probe = Command::new(util_linux("unshare"))
        .args(["--pid", "--fork", "--kill-child", "--mount-proc", "true"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        other => {
            skip(&format!(
                "`unshare --pid --fork --mount-proc` does not work here: {other:?}"
            ));
            return;
        }
    }
    let mut cmd = Command::new(util_linux("unshare"));
    cmd.args([
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        herd_bin(),
    ])
    .args([
        "run",
        "-i",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--",
        "/bin/sh",
        "-c",
    ])
    .args([ORPHANING_WORKER, worker_bin()]);
    // The logged pids are the namespace's: Drop must not kill them by number.
    let mut herd = Herd::spawn(cmd, false, false);
    herd.wait_ready(1);
    let unshare = herd.pid();
    let herd_pid = children_of(unshare)
        .into_iter()
        .find(|s| s.comm == "herd")
        .unwrap_or_else(|| herd.fail("no herd process under unshare"))
        .pid;
    // herd is PID 1 inside: the worker's logged pid is small, its parent is 1.
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{herd_pid}/status"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("NSpid:"))
            .and_then(|l| l.split_whitespace().last().map(String::from)),
        Some("1".to_string()),
        "herd is PID 1 of its namespace"
    );
    let orphan = orphan_reparented_to(&herd, herd_pid);
    assert_reaped(&herd, herd_pid, orphan);
    herd.who();
    kill(Pid::from_raw(herd_pid as i32), Signal::SIGTERM).unwrap();
    let code = herd.wait_exit(T);
    if code != 0 {
        herd.fail(&format!("herd as PID 1 exited with {code} after SIGTERM"));
    }
}

/// PR_SET_PDEATHSIG reaches only a worker's direct child; the guardian process kills the
/// rest of each worker's process group when herd is SIGKILLed (`npm start` → node).
#[test]
fn sigkill_of_herd_takes_the_workers_children_with_it() {
    let mut herd = Herd::start(&["run", "-i", "2", "--", "/bin/sh", "-c", "sleep 300 & wait"]);
    herd.wait_spawned(2);
    let workers = herd.worker_pids();
    let mut grandchildren = Vec::new();
    herd.wait_until("each worker shell has started its sleep", T, || {
        grandchildren = workers
            .iter()
            .flat_map(|w| children_of(*w))
            .filter(|s| s.comm == "sleep")
            .map(|s| s.pid)
            .collect();
        grandchildren.len() == 2
    });
    herd.signal(Signal::SIGKILL);
    assert_eq!(herd.wait_status(T).signal(), Some(libc::SIGKILL));
    herd.wait_until(
        &format!(
            "the workers' children die with herd (states {:?})",
            states(&grandchildren)
        ),
        T,
        || grandchildren.iter().all(|p| !pid_alive(*p)),
    );
}
