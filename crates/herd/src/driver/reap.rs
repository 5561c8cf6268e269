//! Collecting exit statuses: `waitpid(-1)` for every child, our workers and any orphan
//! re-parented to herd (herd is a child subreaper, or PID 1 in a container), so no zombie
//! is ever left behind.

use std::collections::HashMap;
use std::sync::Mutex;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::supervisor::ExitStatus;

/// The pids of live workers, each with the key of the app it belongs to (0 in `herd run`;
/// the daemon runs many apps and routes each exit to its app's driver). Shared by the
/// spawner (which adds a pid under the lock, in the same critical section as the fork) and
/// the reaper (which removes it when it reaps it). Holding the lock while spawning also
/// keeps `waitpid(-1)` from stealing the status std's `spawn` waits for when `exec` fails.
pub type Children = Mutex<HashMap<u32, AppKey>>;

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

/// Reaps every child that has exited so far; never blocks on a running child.
pub fn reap_all(children: &Children) -> Vec<Reaped> {
    let mut workers = children.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::new();
    let mut push = |pid: Pid, status| {
        let pid = pid.as_raw() as u32;
        out.push(Reaped {
            pid,
            status,
            app: workers.remove(&pid),
        });
    };
    // Not `while let`: EINTR and stop/continue reports must not end the loop.
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => push(pid, ExitStatus::Code(code)),
            Ok(WaitStatus::Signaled(pid, sig, _core)) => push(pid, ExitStatus::Signal(sig as i32)),
            Ok(WaitStatus::StillAlive) => break,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(_) => break, // ECHILD: no children left
        }
    }

    out
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
