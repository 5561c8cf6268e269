//! Collecting exit statuses: `waitpid(-1)` for every child, our workers and any orphan
//! re-parented to herd (herd is a child subreaper, or PID 1 in a container), so no zombie
//! is ever left behind.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::supervisor::ExitStatus;

/// The pids of live workers, each with the key of the app it belongs to (0 in `herd run`;
/// the daemon runs many apps and routes each exit to its app's driver). Shared by the
/// spawner, which records a pid before it answers the spawn, and the reaper, which removes
/// it when it reaps it.
///
/// The spawner does not hold the lock while it spawns: a worker whose `cwd` is on a hung
/// mount would keep its spawn from returning, and the reaper, the notify socket and every
/// app with it would wait. Instead it counts spawns in flight, and the reaper leaves alone
/// an exited process it does not know while one is: it may be a child whose set-up failed
/// before `exec`, which std's `spawn` collects itself (and would fail to, were it reaped).
#[derive(Debug, Default)]
pub struct Children {
    live: Mutex<HashMap<u32, AppKey>>,
    in_flight: AtomicUsize,
    /// The reaper left an exit for after a spawn: the spawner wakes it when done.
    deferred: AtomicBool,
}

impl Children {
    /// The live workers, by pid.
    pub fn lock(&self) -> MutexGuard<'_, HashMap<u32, AppKey>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Some spawn has not returned yet: its child may be running, and speaking, with its
    /// pid not recorded.
    pub fn spawns_in_flight(&self) -> bool {
        self.in_flight.load(SeqCst) > 0
    }

    /// Runs `spawn` as a spawn in flight and records the pid of the child it made (given
    /// by `pid`) as a worker of `app`.
    pub fn spawning<T>(
        &self,
        app: AppKey,
        spawn: impl FnOnce() -> std::io::Result<T>,
        pid: impl Fn(&T) -> u32,
    ) -> std::io::Result<T> {
        self.in_flight.fetch_add(1, SeqCst);
        let result = spawn();
        if let Ok(child) = &result {
            self.lock().insert(pid(child), app);
        }
        self.in_flight.fetch_sub(1, SeqCst);
        if self.deferred.swap(false, SeqCst) {
            // The reaper runs on SIGCHLD: the exit it left is now its to take.
            let _ = nix::sys::signal::kill(nix::unistd::getpid(), Signal::SIGCHLD);
        }
        result
    }
}

/// Which app of a process a worker belongs to.
pub type AppKey = u32;

/// One reaped process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    /// Process id of the reaped process.
    pub pid: u32,
    /// How it ended.
    pub status: ExitStatus,
    /// The app of a worker herd spawned; `None` for an orphan re-parented to herd.
    pub app: Option<AppKey>,
}

/// Reaps every child that has exited so far; never blocks on a running child, nor on a
/// spawn in flight.
pub fn reap_all(children: &Children) -> Vec<Reaped> {
    let mut out = Vec::new();
    loop {
        // Look first (WNOWAIT): whose exit it is decides whether to take it.
        let pid = match waitid(
            Id::All,
            WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
        ) {
            Ok(status) => match status.pid() {
                Some(pid) => pid,
                None => break, // StillAlive: nothing has exited
            },
            Err(Errno::EINTR) => continue,
            Err(_) => break, // ECHILD: no children left
        };
        // Read before the record: a spawn that ends in between has recorded its pid
        // by the time it stops counting, so an unknown pid with no spawn counted then is
        // an orphan (its process existed before the count was read).
        let in_flight = children.in_flight.load(SeqCst) > 0;
        let known = children.lock().contains_key(&(pid.as_raw() as u32));
        if !known && in_flight {
            children.deferred.store(true, SeqCst);
            if children.in_flight.load(SeqCst) > 0 {
                // It waits at the head of the queue until the spawn ends; the workers'
                // exits behind it are taken one by one.
                reap_known(children, &mut out);
                break;
            }
            // The spawn ended meanwhile: look again.
            continue;
        }
        match reap(pid, children) {
            Some(r) => out.push(r),
            // std's spawn collected it between the look and now, or an interrupt.
            None => continue,
        }
    }
    out
}

/// Reaps `pid` if it has exited.
fn reap(pid: Pid, children: &Children) -> Option<Reaped> {
    let status = match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::Exited(_, code)) => ExitStatus::Code(code),
        Ok(WaitStatus::Signaled(_, sig, _core)) => ExitStatus::Signal(sig as i32),
        _ => return None,
    };
    let pid = pid.as_raw() as u32;
    Some(Reaped {
        pid,
        status,
        app: children.lock().remove(&pid),
    })
}

/// Reaps the known workers that have exited, each by its pid.
fn reap_known(children: &Children, out: &mut Vec<Reaped>) {
    let pids: Vec<u32> = children.lock().keys().copied().collect();
    out.extend(
        pids.into_iter()
            .filter_map(|pid| reap(Pid::from_raw(pid as i32), children)),
    );
}

/// Makes herd the reaper of every orphan of its workers (double-forked daemons, children
/// of a crashed shell wrapper), so they are collected and cannot outlive herd unnoticed.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) changes only this process's own attribute.
    if unsafe {
        libc::prctl(
            libc::PR_SET_CHILD_SUBREAPER,
            1 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
