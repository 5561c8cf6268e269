//! Crashes: a worker killed by SIGKILL or exiting on its own is replaced in the same slot;
//! a crash loop ends in the errored state with exit code 4.

use std::time::Duration;

use crate::common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Waits for the next spawn of `slot` logged at or after stderr line `from`.
fn respawn_of(herd: &Herd, slot: usize, from: usize) -> u32 {
    herd.wait_event_from(from, "worker.spawned", |e| e.slot() == slot)
        .1
        .pid()
}

#[test]
fn sigkilled_worker_is_replaced_in_the_same_slot() {
    let herd = Herd::testworkers(2);
    herd.wait_ready(2);
    let (victim, slot) = herd.who();
    let mark = herd.mark(Out::Stderr);
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    let (_, exit) = herd.wait_event_from(mark, "worker.exited", |e| e.pid() == victim);
    assert!(
        exit.str("status") == "SIGKILL" && !exit.bool("expected") && exit.slot() == slot,
        "an unexpected SIGKILL of slot {slot}: {exit:?}"
    );
    let new = respawn_of(&herd, slot, mark);
    assert_ne!(new, victim);
    herd.who_until(
        &format!("the replacement pid {new} in slot {slot}"),
        |p, s| p == new && s == slot,
    );
    assert!(!pid_alive(victim));
}

/// SIGKILLs the worker of slot 0 once both ran longer than `--min-uptime 300ms`; returns
/// its `worker.restarting` record.
fn kill_a_stable_worker(extra: &[&str]) -> (Herd, Event) {
    let mut args = vec!["run", "-i", "2", "--min-uptime", "300ms"];
    args.extend(extra);
    args.extend(["--listen", "127.0.0.1:0", "--", worker_bin()]);
    let herd = Herd::start(&args);
    herd.wait_ready(2);
    let started = herd.wait_event("worker.spawned").at();
    herd.wait_until("the workers ran longer than --min-uptime", T, || {
        started.elapsed() > Duration::from_millis(400)
    });
    let (victim, slot) = herd.who();
    let mark = herd.mark(Out::Stderr);
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    let (_, restarting) = herd.wait_event_from(mark, "worker.restarting", |e| e.slot() == slot);
    let new = respawn_of(&herd, slot, mark);
    herd.who_until(&format!("the replacement {new}"), |p, s| {
        p == new && s == slot
    });
    (herd, restarting)
}

/// A worker that ran stably is replaced at once (Node's cluster and gunicorn do, PM2's
/// restart_delay is 0): no 100 ms backoff for its slot, nor a `--restart-backoff` (PM2's
/// exp_backoff_restart_delay, which PM2 resets after a stable run). A restart delay the
/// user set is honoured.
#[test]
fn a_stable_worker_is_replaced_at_once_unless_a_restart_delay_is_set() {
    let (herd, restarting) = kill_a_stable_worker(&[]);
    if restarting.u64("delay_ms") != 0 {
        herd.fail(&format!("a stable worker waited: {restarting:?}"));
    }
    let (herd, restarting) = kill_a_stable_worker(&["--restart-backoff", "300ms"]);
    if restarting.u64("delay_ms") != 0 {
        herd.fail(&format!(
            "a stable worker waited for --restart-backoff: {restarting:?}"
        ));
    }
    drop(herd);
    let (herd, restarting) = kill_a_stable_worker(&["--restart-delay", "300ms"]);
    if restarting.u64("delay_ms") < 270 {
        herd.fail(&format!(
            "--restart-delay 300ms not honoured: {restarting:?}"
        ));
    }
}

#[test]
fn crash_route_restarts_the_same_slot() {
    let herd = Herd::testworkers(2);
    herd.wait_ready(2);
    let mark = herd.mark(Out::Stderr);
    // The worker exits without answering: a transport error is the expected outcome.
    let r = http_get(&herd.url("/crash"));
    assert!(r.is_err(), "/crash should not answer: {r:?}");
    let (_, exit) = herd.wait_event_from(mark, "worker.exited", |e| e.str("status") == "code 70");
    assert!(!exit.bool("expected"), "a crash: {exit:?}");
    let crashed = exit.pid();
    let slot = herd
        .spawned()
        .iter()
        .find(|(_, p)| *p == crashed)
        .map(|(s, _)| *s)
        .unwrap_or_else(|| herd.fail(&format!("pid {crashed} was never spawned")));
    herd.wait_event_from(mark, "worker.restarting", |e| e.slot() == slot);
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
    herd.wait_event("app.errored");
    let code = herd.wait_exit(T);
    if code != 4 {
        herd.fail(&format!("exit code {code}, expected 4 (errored)"));
    }
    let pids = herd.worker_pids();
    // `--max-restarts 2`: the third unstable exit (of the app, whichever slot) makes it
    // errored. The first two exits are each restarted; a restart not yet spawned when the
    // app became errored never is. So 3 or 4 workers in all, and exactly 2 restarts.
    let restarts = herd.events("worker.restarting").len();
    if !(3..=4).contains(&pids.len()) || restarts != 2 {
        herd.fail(&format!(
            "expected 2 restarts and at most 2 + 2 workers before the app is errored; {restarts} restarts, spawned {pids:?}"
        ));
    }
    herd.wait_gone(&pids, Duration::from_secs(5));
    let exiting = herd.events("herd.exiting");
    assert!(
        exiting.len() == 1 && exiting[0].u64("code") == 4,
        "{}",
        herd.dump()
    );
}

/// Runs `test` on a thread of its own in a new network namespace (loopback up,
/// `net.ipv4.tcp_migrate_req = 1`): herd, its workers and the clients started from it live
/// there, and the host's setting is untouched. `None` (a skip is recorded) where the machine
/// cannot make one (not root, no user namespaces).
fn in_migrating_netns<T: Send + 'static>(test: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    std::thread::spawn(move || {
        if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET) {
            skip(&format!("cannot make a network namespace: {e}"));
            return None;
        }
        loopback_up().expect("bring lo up in the new namespace");
        std::fs::write("/proc/sys/net/ipv4/tcp_migrate_req", "1")
            .expect("set tcp_migrate_req in the new namespace");
        Some(test())
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// `ip link set lo up`, with the ioctl `ip` makes.
fn loopback_up() -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: a plain socket(2); the fd is owned at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new fd nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: all-zero is a valid ifreq.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq naming "lo", borrowed for the calls.
    unsafe {
        if libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A dead worker costs only its own connections: the ones the kernel had queued on its
/// slot's socket (its worker stopped accepting, then died) are answered by the live worker,
/// not left waiting for the replacement, which takes 3 s to start here.
#[test]
fn a_dead_workers_queued_connections_are_served_by_the_live_worker() {
    let Some((answers, live, herd)) = in_migrating_netns(|| {
        let herd = Herd::start(&[
            "run",
            "-i",
            "2",
            "--ready",
            "notify",
            "--listen",
            "127.0.0.1:0",
            "--",
            worker_bin(),
            "--notify",
            "--startup-ms",
            "3000",
        ]);
        herd.wait_ready(2);
        let pids: Vec<(usize, u32)> = herd.spawned();
        let (victim, live) = (pids[0].1, pids[1].1);
        // The victim stops accepting: what reaches its socket now queues there.
        kill(Pid::from_raw(victim as i32), Signal::SIGSTOP).unwrap();
        // kill() returns before the victim stops: a victim still in accept(2) could take
        // one more connection, which would be its own (reset with it, as the issue allows).
        // Connections start once it is stopped.
        let until = std::time::Instant::now() + T;
        while proc_state(victim) != Some('T') {
            assert!(
                std::time::Instant::now() < until,
                "the victim never stopped"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        let port = herd.port();
        let mut conns: Vec<std::net::TcpStream> = (0..30)
            .map(|_| {
                let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(T)).unwrap();
                std::io::Write::write_all(
                    &mut s,
                    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                )
                .unwrap();
                s
            })
            .collect();
        let mark = herd.mark(Out::Stderr);
        kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
        herd.wait_event_from(mark, "slot.vacated", |e| e.slot() == 0);
        let answers: Vec<Result<u32, String>> = conns
            .iter_mut()
            .map(|s| {
                read_response(s).and_then(|(_, body)| {
                    ident(&body)
                        .map(|(p, _)| p)
                        .ok_or(format!("no pid in {body:?}"))
                })
            })
            .collect();
        (answers, live, herd)
    }) else {
        return;
    };
    let by_live = answers.iter().filter(|a| **a == Ok(live)).count();
    if by_live != answers.len() {
        herd.fail(&format!(
            "every queued connection should be answered by the live worker {live}: {answers:?}"
        ));
    }
}
