//! Processes, fds and sockets as /proc shows them.

use std::collections::HashSet;
use std::path::Path;

/// The parts of /proc/PID/stat the tests use.
#[derive(Debug, Clone)]
pub struct Stat {
    pub pid: u32,
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    pub starttime: u64,
}

/// Parses /proc/PID/stat; None if there is no such process.
pub fn stat(pid: u32) -> Option<Stat> {
    stat_at(Path::new(&format!("/proc/{pid}/stat")), pid)
}

fn stat_at(path: &Path, pid: u32) -> Option<Stat> {
    let s = std::fs::read_to_string(path).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    let f: Vec<&str> = s[close + 1..].split_whitespace().collect();
    Some(Stat {
        pid,
        comm,
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        starttime: f.get(19)?.parse().ok()?,
    })
}

/// The process state letter (R, S, Z, …), or None if there is no such process.
pub fn proc_state(pid: u32) -> Option<char> {
    stat(pid).map(|s| s.state)
}

/// Alive = exists and is not a zombie. A zombie (dead but unreaped) counts as not alive;
/// `proc_state` tells the two apart.
pub fn pid_alive(pid: u32) -> bool {
    matches!(proc_state(pid), Some(c) if c != 'Z')
}

pub fn states(pids: &[u32]) -> Vec<(u32, Option<char>)> {
    pids.iter().map(|p| (*p, proc_state(*p))).collect()
}

/// Every process on the machine.
pub fn all_procs() -> Vec<Stat> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if let Some(s) = stat(pid) {
                    out.push(s);
                }
            }
        }
    }
    out
}

/// Processes whose parent is `pid` (zombies included).
pub fn children_of(pid: u32) -> Vec<Stat> {
    all_procs().into_iter().filter(|s| s.ppid == pid).collect()
}

/// Processes in any of the process groups `groups`.
pub fn in_groups(groups: &[u32]) -> Vec<Stat> {
    let set: HashSet<u32> = groups.iter().copied().collect();
    all_procs()
        .into_iter()
        .filter(|s| set.contains(&s.pgrp))
        .collect()
}

/// True if some thread of `pid` named `conn` (the test worker's connection threads) is
/// sleeping in nanosleep, i.e. serving `/slow`.
pub fn worker_in_slow_request(pid: u32) -> bool {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    for e in rd.flatten() {
        let dir = e.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != "conn" {
            continue;
        }
        let sys = std::fs::read_to_string(dir.join("syscall")).unwrap_or_default();
        let nr: Option<i64> = sys.split_whitespace().next().and_then(|n| n.parse().ok());
        if nr == Some(libc::SYS_clock_nanosleep) || nr == Some(libc::SYS_nanosleep) {
            return true;
        }
    }
    false
}

/// Number of open fds of `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `fd->target` of every open fd of `pid`, for failure messages.
pub fn fd_list(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            format!(
                "{}->{}",
                e.file_name().to_string_lossy(),
                std::fs::read_link(e.path())
                    .map(|t| t.display().to_string())
                    .unwrap_or_default()
            )
        })
        .collect()
}
