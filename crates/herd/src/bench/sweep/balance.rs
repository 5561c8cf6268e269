//! How the load spread over the workers, read from `/proc` without the app's help: each
//! worker's CPU time (its process group, as `herd ls` counts it) and the established
//! connections to the server's port that each worker holds (its socket fds matched to
//! `/proc/net/tcp{,6}`).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::observe::procstat;

/// CPU time of each worker, in order (zero for one that is gone): of its process group when
/// each worker leads one (herd's), else of the process alone.
pub fn cpu(workers: &[u32], groups: bool) -> Vec<Duration> {
    if !groups {
        return workers
            .iter()
            .map(|p| procstat::sample(*p).map_or(Duration::ZERO, |s| s.cpu))
            .collect();
    }
    let samples = procstat::sample_groups(workers).unwrap_or_default();
    (0..workers.len())
        .map(|i| {
            samples
                .get(i)
                .copied()
                .flatten()
                .map_or(Duration::ZERO, |s| s.cpu)
        })
        .collect()
}

/// The machine's busy and total CPU time so far, in clock ticks (`/proc/stat`'s first line),
/// to tell how much CPU everything on the machine used over a window.
pub fn machine() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    // idle and iowait
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

/// The inodes of established TCP sockets whose local port is `port`.
fn established(port: u16) -> HashSet<u64> {
    let mut out = HashSet::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "01" {
                continue;
            }
            let local_port = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                if let Ok(inode) = f[9].parse() {
                    out.insert(inode);
                }
            }
        }
    }
    out
}

/// Socket inodes among a process's fds.
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Connections to `port` each worker (and the processes of its group) holds, in order.
pub fn connections(port: u16, workers: &[u32]) -> Vec<u64> {
    let live = established(port);
    let mut by_group: HashMap<u32, Vec<u32>> = HashMap::new();
    for pid in processes() {
        if let Some(g) = pgrp(pid) {
            if workers.contains(&g) {
                by_group.entry(g).or_default().push(pid);
            }
        }
    }
    workers
        .iter()
        .map(|w| {
            let pids = by_group.get(w).cloned().unwrap_or_else(|| vec![*w]);
            let inodes: HashSet<u64> = pids.iter().flat_map(|p| socket_inodes(*p)).collect();
            inodes.intersection(&live).count() as u64
        })
        .collect()
}

fn processes() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Fields of `/proc/<pid>/stat` after the command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

fn pgrp(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(2)?.parse().ok()
}

/// The child processes of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|p| stat_fields(*p).and_then(|f| f.get(1)?.parse::<u32>().ok()) == Some(pid))
        .collect()
}
