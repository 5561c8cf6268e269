//! Collecting exit statuses: `waitpid(-1)` for every child, our workers and any orphan
//! re-parented to herd (herd is a child subreaper, or PID 1 in a container), so no zombie
//! is ever left behind.

use std::sync::Mutex;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::supervisor::ExitStatus;

/// Reaps every child that has exited so far; never blocks on a running child.
/// `lock` is the spawner's: see `spawn.rs`.
pub fn reap_all(lock: &Mutex<()>) -> Vec<(u32, ExitStatus)> {
    let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                out.push((pid.as_raw() as u32, ExitStatus::Code(code)))
            }
            Ok(WaitStatus::Signaled(pid, sig, _core)) => {
                out.push((pid.as_raw() as u32, ExitStatus::Signal(sig as i32)))
            }
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
