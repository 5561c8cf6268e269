//! The reaper and the spawner sharing `Children`: a spawn stuck before `exec` (a `cwd` on a
//! hung mount) does not stall reaping, and a spawn whose set-up fails is collected by std's
//! `spawn`, never stolen by the reaper. One test in its own binary: the reaper's
//! `waitpid` takes any child of the process, so no other test may spawn beside it.

// The reaper under test collects every child: none is waited for through std.
#![allow(clippy::zombie_processes)]

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd::driver::reap::{reap_all, Children, Reaped};
use herd::supervisor::ExitStatus;

const T: Duration = Duration::from_secs(20);

/// Reaps until `want` holds for what was reaped so far (at most T).
fn reap_until(children: &Children, what: &str, want: impl Fn(&[Reaped]) -> bool) -> Vec<Reaped> {
    let deadline = Instant::now() + T;
    let mut reaped = Vec::new();
    while !want(&reaped) {
        assert!(Instant::now() < deadline, "{what}: reaped only {reaped:?}");
        reaped.extend(reap_all(children));
        std::thread::sleep(Duration::from_millis(5));
    }
    reaped
}

#[test]
fn a_stuck_spawn_stalls_no_reaping_and_a_failed_one_is_never_stolen() {
    let children = Arc::new(Children::default());
    // A worker, running.
    let quick = children
        .spawning(2, || Command::new("sleep").arg("1000").spawn(), |c| c.id())
        .unwrap();

    // A child that tells its pid, then hangs before exec, as in a chdir to a hung mount.
    let (read, write) = nix::unistd::pipe().unwrap();
    let write_fd = write.as_raw_fd();
    let stuck = std::thread::spawn({
        let children = children.clone();
        move || {
            let mut cmd = Command::new("true");
            // SAFETY: getpid, write and pause are async-signal-safe; nothing is allocated.
            unsafe {
                cmd.pre_exec(move || {
                    let pid = libc::getpid().to_ne_bytes();
                    libc::write(write_fd, pid.as_ptr().cast(), pid.len());
                    libc::pause();
                    Ok(())
                });
            }
            children.spawning(1, || cmd.spawn(), |c: &Child| c.id())
        }
    });
    let mut pid = [0u8; 4];
    std::fs::File::from(read).read_exact(&mut pid).unwrap();
    drop(write);
    let stuck_pid = i32::from_ne_bytes(pid);

    // Meanwhile the worker exits: it is reaped while the other spawn still hangs.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(quick.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // On a thread: a reaper that waits for the stuck spawn would never return.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn({
        let (children, quick) = (children.clone(), quick.id());
        move || {
            let _ = tx.send(reap_until(&children, "the quick worker", |r| {
                r.iter().any(|r| r.pid == quick)
            }));
        }
    });
    let kill_stuck = || {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(stuck_pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap()
    };
    let Ok(reaped) = rx.recv_timeout(T) else {
        kill_stuck();
        panic!("reaping waited for a spawn stuck before exec");
    };
    assert_eq!(
        reaped,
        vec![Reaped {
            pid: quick.id(),
            status: ExitStatus::Signal(libc::SIGTERM),
            app: Some(2)
        }]
    );
    assert!(!stuck.is_finished(), "the stuck spawn ended early");

    // Its end: std's spawn sees the child gone before exec as a spawned child, which is
    // then a worker like any other.
    kill_stuck();
    let child = stuck.join().unwrap().unwrap();
    assert_eq!(child.id() as i32, stuck_pid);
    reap_until(&children, "the stuck worker, killed", |r| {
        r.iter().any(|r| r.pid == child.id() && r.app == Some(1))
    });

    // Spawns whose set-up fails, with a reaper running all along: each failure is the
    // set-up's own error, reported by std, which collected the child itself.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reaper = std::thread::spawn({
        let (children, stop) = (children.clone(), stop.clone());
        move || {
            let mut reaped = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                reaped.extend(reap_all(&children));
            }
            reaped
        }
    });
    for _ in 0..200 {
        let mut cmd = Command::new("true");
        // SAFETY: the closure only returns an error.
        unsafe {
            cmd.pre_exec(|| Err(std::io::Error::from_raw_os_error(libc::EDOM)));
        }
        let err = children
            .spawning(3, || cmd.spawn(), |c| c.id())
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EDOM), "{err}");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let stolen = reaper.join().unwrap();
    assert_eq!(stolen, vec![], "the reaper took children of failed spawns");
    assert!(children.lock().is_empty());
}
