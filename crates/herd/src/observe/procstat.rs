//! CPU time and memory of worker processes, read from `/proc` for `herd ls`, metrics and
//! the memory limit. It owns parsing `/proc/<pid>/stat` and scanning `/proc` for a process
//! group; it keeps no state and decides nothing (the supervisor judges the numbers).
//!
//! One read of `/proc/<pid>/stat` per process gives everything: CPU time (utime + stime,
//! in clock ticks), the number of threads, the process group and the resident set size
//! (in pages, the same value as `statm`'s second field). A group's sample is the sum over
//! its processes, so a worker like `npm start`, whose server is a child of npm, is measured
//! whole; pages shared between processes of the group (after a fork) count once per
//! process, as PM2 and `ps` count them.

use std::fs::File;
use std::io::{self, Read};
use std::sync::OnceLock;
use std::time::Duration;

/// CPU time and memory of one process, or the sum over a process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sample {
    /// Resident memory, bytes.
    pub rss: u64,
    /// CPU time used so far, user + system (children that were not reaped yet excluded).
    pub cpu: Duration,
    /// Threads, over every process counted.
    pub threads: u32,
    /// Processes counted (1 for [`sample`]).
    pub processes: u32,
}

impl Sample {
    fn add(&mut self, other: &Sample) {
        self.rss = self.rss.saturating_add(other.rss);
        self.cpu = self.cpu.saturating_add(other.cpu);
        self.threads = self.threads.saturating_add(other.threads);
        self.processes = self.processes.saturating_add(other.processes);
    }
}

/// The fields of `/proc/<pid>/stat` herd uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// `R`, `S`, `Z`, ...: field 3.
    state: char,
    pgrp: u32,
    /// utime + stime, clock ticks.
    ticks: u64,
    threads: u32,
    rss_pages: u64,
    /// When the process started, clock ticks after boot: with the pid, it names one
    /// process even after the pid is reused.
    start: u64,
}

/// Parses one `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and
/// may itself hold spaces and parentheses, so the fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // Fields 3.. of proc(5): index = field number - 3.
    let mut fields = rest.split_ascii_whitespace();
    let mut nth = |skip: usize| fields.nth(skip);
    let state = nth(0)?.chars().next()?; // field 3
    let pgrp = nth(1)?.parse().ok()?; // field 5
    let utime: u64 = nth(8)?.parse().ok()?; // field 14
    let stime: u64 = nth(0)?.parse().ok()?; // field 15
    let threads = nth(4)?.parse().ok()?; // field 20
    let start = nth(1)?.parse().ok()?; // field 22
    let rss: i64 = nth(1)?.parse().ok()?; // field 24 (signed in the kernel's format)
    Some(Stat {
        state,
        pgrp,
        ticks: utime.saturating_add(stime),
        threads,
        rss_pages: rss.max(0) as u64,
        start,
    })
}

fn sysconf(name: libc::c_int, fallback: u64) -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let v = unsafe { libc::sysconf(name) };
    if v > 0 {
        v as u64
    } else {
        fallback
    }
}

/// Clock ticks per second (`_SC_CLK_TCK`; 100 on every Linux when unknown).
pub fn ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| sysconf(libc::_SC_CLK_TCK, 100))
}

/// Bytes per page (`_SC_PAGESIZE`; 4096 when unknown).
fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| sysconf(libc::_SC_PAGESIZE, 4096))
}

impl Stat {
    fn sample(&self) -> Sample {
        let tps = ticks_per_second();
        let cpu = Duration::from_secs(self.ticks / tps)
            + Duration::from_nanos((self.ticks % tps) * 1_000_000_000 / tps);
        Sample {
            rss: self.rss_pages.saturating_mul(page_size()),
            cpu,
            threads: self.threads,
            processes: 1,
        }
    }
}

/// Reads and parses `/proc/<pid>/stat` into `buf` (reused across calls).
fn read_stat(pid: &str, buf: &mut String) -> io::Result<Stat> {
    buf.clear();
    File::open(format!("/proc/{pid}/stat"))?.read_to_string(buf)?;
    parse_stat(buf).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected /proc/{pid}/stat: {buf:?}"),
        )
    })
}

/// CPU time and memory of process `pid`. `NotFound` once it is gone.
pub fn sample(pid: u32) -> io::Result<Sample> {
    let mut buf = String::with_capacity(512);
    Ok(read_stat(&pid.to_string(), &mut buf)?.sample())
}

/// When process `pid` started, as Unix time in seconds (its start after boot plus the
/// boot time of `/proc/stat`'s `btime`).
pub fn start_time(pid: u32) -> Option<f64> {
    let mut buf = String::with_capacity(512);
    let ticks = read_stat(&pid.to_string(), &mut buf).ok()?.start;
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(btime as f64 + ticks as f64 / ticks_per_second() as f64)
}

/// When process `pid` started (clock ticks after boot), or `None` when it has ended (a
/// zombie has ended too). Two equal answers for one pid are one process: a waiter that
/// compares them cannot mistake a later process with a reused pid for the one it awaits.
pub fn started(pid: u32) -> Option<u64> {
    let mut buf = String::with_capacity(512);
    let stat = read_stat(&pid.to_string(), &mut buf).ok()?;
    (!matches!(stat.state, 'Z' | 'X' | 'x')).then_some(stat.start)
}

/// The sum over every process whose process group is `pgid` (a worker and its children).
/// One scan of `/proc`; `NotFound` when no process of the group is left.
pub fn sample_group(pgid: u32) -> io::Result<Sample> {
    sample_groups(&[pgid])?.pop().flatten().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no process in group {pgid}"),
        )
    })
}

/// [`sample_group`] for several groups in one scan of `/proc` (one sampling round of every
/// worker costs one scan, not one per worker): one entry per `pgids` entry, in order,
/// `None` for a group with no process left.
pub fn sample_groups(pgids: &[u32]) -> io::Result<Vec<Option<Sample>>> {
    let mut out: Vec<Option<Sample>> = vec![None; pgids.len()];
    // Each process is matched once, not against every group (hundreds of workers).
    let mut index: std::collections::HashMap<u32, Vec<usize>> = std::collections::HashMap::new();
    for (i, g) in pgids.iter().enumerate() {
        index.entry(*g).or_default().push(i);
    }
    let mut buf = String::with_capacity(512);
    for entry in std::fs::read_dir("/proc")? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(pid) = name.to_str() else { continue };
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // A process may end between the listing and the read: it no longer counts.
        let Ok(stat) = read_stat(pid, &mut buf) else {
            continue;
        };
        for i in index.get(&stat.pgrp).into_iter().flatten() {
            out[*i]
                .get_or_insert_with(Sample::default)
                .add(&stat.sample());
        }
    }
    Ok(out)
}

/// CPU use between two samples taken `elapsed` apart, in percent of one core (above 100
/// for a process busy on several cores, as `top` shows it). 0 when `elapsed` is zero or
/// the CPU time went down (the samples are of different processes).
pub fn cpu_percent(before: &Sample, after: &Sample, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        return 0.0;
    }
    after.cpu.saturating_sub(before.cpu).as_secs_f64() / elapsed.as_secs_f64() * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command};
    use std::time::Instant;

    /// A stat line with the given comm and known numbers: pgrp 77, utime 250, stime 50,
    /// 9 threads, 1000 pages resident.
    fn line(comm: &str) -> String {
        format!(
            "4242 ({comm}) S 1 77 77 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 12345 \
             104857600 1000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
        )
    }

    #[test]
    fn parses_stat_whatever_the_command_name() {
        let want = Stat {
            state: 'S',
            pgrp: 77,
            ticks: 300,
            threads: 9,
            rss_pages: 1000,
            start: 12345,
        };
        for comm in [
            "node",
            "npm start",
            "a) S 1 2 3 (b",
            "))",
            "(",
            ") 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22",
            "",
            "tab\there",
            "new\nline",
        ] {
            assert_eq!(parse_stat(&line(comm)), Some(want), "comm {comm:?}");
        }
    }

    #[test]
    fn refuses_malformed_stat() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("1 (x"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
        assert_eq!(parse_stat("1 (x) S 1 notanumber 3 0 0 0 0 0 0 0 1 1"), None);
        // A kernel that reports a negative rss (never seen, but the field is signed).
        let neg = line("x").replace(" 1000 ", " -5 ");
        assert_eq!(parse_stat(&neg).map(|s| s.rss_pages), Some(0));
    }

    #[test]
    fn samples_this_process() {
        let before = sample(std::process::id()).unwrap();
        assert!(before.rss > 1024 * 1024, "{before:?}");
        assert!(before.threads >= 1 && before.processes == 1);
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(7));
        }
        std::hint::black_box(x);
        let after = sample(std::process::id()).unwrap();
        assert!(after.cpu > before.cpu);
        let pct = cpu_percent(&before, &after, t.elapsed());
        // A busy thread on a shared machine: well above idle, whatever else runs.
        assert!(pct > 10.0, "{pct}");
    }

    #[test]
    fn a_process_that_does_not_exist_is_not_found() {
        // Above the kernel's pid_max limit (4194304).
        let e = sample(u32::MAX - 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let e = sample_group(u32::MAX - 1).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_process_has_started_until_it_ends_even_as_a_zombie() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        let start = started(pid).expect("running");
        assert_eq!(started(pid), Some(start));
        assert!(started(std::process::id()).is_some_and(|mine| mine <= start));
        child.kill().unwrap();
        // Not reaped yet: a zombie, which has ended.
        let deadline = Instant::now() + Duration::from_secs(10);
        while started(pid).is_some() {
            assert!(Instant::now() < deadline, "still running after SIGKILL");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait().unwrap();
        assert_eq!(started(pid), None);
        assert_eq!(started(u32::MAX - 1), None);
    }

    struct Group(Child);

    impl Drop for Group {
        fn drop(&mut self) {
            let pgid = nix::unistd::Pid::from_raw(self.0.id() as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Samples until `done` holds (a new child has its memory only once it has exec'd).
    fn sample_until(f: impl Fn() -> Sample, done: impl Fn(&Sample) -> bool) -> Sample {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = f();
            if done(&s) || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn samples_a_child_and_its_whole_process_group() {
        let child = Group(Command::new("sleep").arg("30").spawn().unwrap());
        let pid = child.0.id();
        let s = sample_until(|| sample(pid).unwrap(), |s| s.rss > 0);
        assert!(s.rss > 0 && s.threads == 1, "{s:?}");
        drop(child);

        // A shell with two sleeping children, all in a new group led by the shell.
        let group = Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .unwrap();
        let group = Group(group);
        let pgid = group.0.id();
        let leader = sample_until(|| sample(pgid).unwrap(), |s| s.rss > 0);
        let whole = sample_until(
            || sample_group(pgid).unwrap(),
            |s| s.processes >= 3 && s.rss > leader.rss,
        );
        assert_eq!(whole.processes, 3, "{whole:?}");
        assert!(whole.rss > leader.rss, "{whole:?} vs {leader:?}");
        assert!(whole.threads >= 3);
        // Several groups in one scan; this test's own group is not the child's.
        let both = sample_groups(&[pgid, u32::MAX - 1]).unwrap();
        assert_eq!(both[0].map(|s| s.processes), Some(3));
        assert_eq!(both[1], None);
    }

    #[test]
    fn cpu_percent_arithmetic() {
        let at = |ms| Sample {
            cpu: Duration::from_millis(ms),
            ..Sample::default()
        };
        let second = Duration::from_secs(1);
        assert_eq!(cpu_percent(&at(0), &at(500), second), 50.0);
        assert_eq!(cpu_percent(&at(0), &at(1500), second), 150.0);
        assert_eq!(cpu_percent(&at(500), &at(0), second), 0.0);
        assert_eq!(cpu_percent(&at(0), &at(500), Duration::ZERO), 0.0);
    }
}
