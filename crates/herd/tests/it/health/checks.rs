//! What one health check makes of a worker's answer: bytes that are not HTTP, no answer,
//! a 10 MiB body (only the status line is read: herd's memory stays flat, its loop keeps
//! answering `/livez`); a worker that never passes (a failed start with backoff, not a
//! hang); and `/readyz?verbose`, which shows each worker's health.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::node::heartbeat_ms;
use super::*;

/// `VmRSS` and `VmHWM` (peak) of `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One `/livez` probe: its round trip and its answer.
type Probe = (Duration, Result<(u16, String), String>);

/// Probes `/livez` on `admin` every 50 ms until finished; each answer and its round trip.
struct Livez {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Vec<Probe>>>,
}

impl Livez {
    fn start(admin: &str) -> Livez {
        let stop = Arc::new(AtomicBool::new(false));
        let url = format!("http://{admin}/livez");
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut probes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let answer = http_get(&url);
                    probes.push((t.elapsed(), answer));
                    std::thread::sleep(Duration::from_millis(50));
                }
                probes
            }
        });
        Livez {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops probing; fails unless every probe was a 200 within `bound`.
    fn finish(mut self, herd: &Herd, bound: Duration) {
        self.stop.store(true, Ordering::Relaxed);
        let probes = self.thread.take().unwrap().join().unwrap();
        let slowest = probes.iter().map(|(d, _)| *d).max().unwrap_or_default();
        let bad: Vec<_> = probes
            .iter()
            .filter(|(d, a)| *d > bound || !matches!(a, Ok((200, _))))
            .collect();
        if probes.len() < 10 || !bad.is_empty() {
            herd.fail(&format!(
                "/livez: {} probes, the slowest {slowest:?}; failed or slower than {bound:?}: {bad:?}",
                probes.len()
            ));
        }
        eprintln!("/livez: {} probes, the slowest {slowest:?}", probes.len());
    }
}

impl Drop for Livez {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sets what the only worker's `/healthz` answers.
fn set_mode(herd: &Herd, mode: &str) {
    let (status, body) = herd.get(&format!("/health?mode={mode}"));
    if status != 200 || body != format!("health {mode}\n") {
        herd.fail(&format!("/health?mode={mode} answered {status}: {body:?}"));
    }
}

/// Waits for a failed check after `mark` whose error contains `says`, then sets `/healthz`
/// back to `ok` and waits for `health.recovered`.
fn fails_then_recovers(herd: &Herd, pid: u32, mode: &str, says: &str) -> String {
    let mark = herd.mark(Out::Stderr);
    set_mode(herd, mode);
    let failed = herd
        .wait_event_from(mark, "health.failed", |e| e.pid() == pid)
        .1;
    let error = failed.str("error").to_string();
    if !error.contains(says) {
        herd.fail(&format!(
            "in mode {mode}, the check failed with {error:?}, not {says:?}"
        ));
    }
    set_mode(herd, "ok");
    herd.wait_event_from(mark, "health.recovered", |e| e.pid() == pid);
    error
}

#[test]
fn garbage_silence_and_a_huge_answer_cost_herd_nothing() {
    let admin = format!("127.0.0.1:{}", free_port());
    let herd = herd_with(
        &[
            "run",
            "-i",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--health-check",
            "http:/healthz",
            "--health-interval",
            "300ms",
            "--health-timeout",
            "200ms",
            // Never hung here: this test is about each check's verdict.
            "--health-failures",
            "1000",
            "--admin",
            &admin,
            "--",
            worker_bin(),
        ],
        &[],
    );
    herd.wait_ready(1);
    let pid = herd.worker_pids()[0];
    wait_check_passed(&herd, 0, pid);
    let livez = Livez::start(&admin);

    let garbage = fails_then_recovers(&herd, pid, "garbage", "not an HTTP answer");
    assert!(
        garbage.contains("garbage garbage"),
        "the bytes are quoted: {garbage}"
    );
    fails_then_recovers(
        &herd,
        pid,
        "hold",
        "no answer within 200ms (--health-timeout)",
    );

    // 10 MiB answers: only the status line is read.
    let before = memory_kib(herd.pid());
    let mark = herd.mark(Out::Stderr);
    set_mode(&herd, "huge");
    let mut from = mark;
    for _ in 0..10 {
        from = wait_check_passed(&herd, from, pid) + 1;
    }
    let after = memory_kib(herd.pid());
    let failed = herd.events_from(mark, "health.failed");
    if !failed.is_empty() {
        herd.fail(&format!(
            "a 200 with a 10 MiB body failed its check: {failed:?}"
        ));
    }
    // The worker did answer 10 MiB.
    let (status, body) = herd.get("/healthz");
    assert_eq!((status, body.len()), (200, 10 << 20));
    eprintln!(
        "herd's memory (VmRSS, VmHWM) before 10 checks answered with 10 MiB each: {before:?} KiB, after: {after:?} KiB"
    );
    // Reading one such body would have raised the peak by 10 MiB.
    let grew = after.1.saturating_sub(before.1);
    if grew > 2 * 1024 || after.0.saturating_sub(before.0) > 2 * 1024 {
        herd.fail(&format!(
            "herd's memory grew from {before:?} to {after:?} KiB (VmRSS, VmHWM) over 10 checks answered with 10 MiB"
        ));
    }
    set_mode(&herd, "ok");
    livez.finish(&herd, Duration::from_secs(1));
    if herd.count_event("worker.hung", |_| true) != 0 {
        herd.fail("nobody was to be found hung");
    }
}

/// `--health-check` of a path the worker does not have (404): each worker is a failed
/// start after `--listen-timeout`, its slot restarts with a growing delay; it is never
/// `worker.hung` (it never passed, so nothing it served is lost).
#[test]
fn a_worker_that_never_passes_is_a_failed_start_with_backoff() {
    let herd = herd_with(
        &[
            "run",
            "-i",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--health-check",
            "http:/nothere",
            "--health-interval",
            "500ms",
            "--health-timeout",
            "300ms",
            "--listen-timeout",
            "2s",
            "--",
            worker_bin(),
        ],
        &[],
    );
    let mut delays = Vec::new();
    let mut from = 0;
    for n in 1..=2 {
        let (i, spawned) = herd.wait_event_from(from, "worker.spawned", |_| true);
        let pid = spawned.pid();
        let (j, never) = herd.wait_event_from(i, "worker.never_healthy", |e| e.pid() == pid);
        assert_eq!(never.u64("within_ms"), 2000, "{never:?}");
        assert!(never.str("last").contains("status 404"), "{never:?}");
        let after = never.at().saturating_duration_since(spawned.at());
        if after < Duration::from_millis(1900) || after > Duration::from_secs(6) {
            herd.fail(&format!(
                "worker {n} (pid {pid}) was judged {after:?} after it started; the bound is 2 s"
            ));
        }
        let stopping = herd
            .wait_event_from(j, "worker.stopping", |e| e.pid() == pid)
            .1;
        assert_eq!(stopping.str("reason"), "not ready in time", "{stopping:?}");
        // A failed start: its exit counts as unstable, as a crash at start-up does.
        herd.wait_event_from(j, "worker.exited", |e| e.pid() == pid);
        let (k, restarting) = herd.wait_event_from(j, "worker.restarting", |_| true);
        assert_eq!(restarting.u64("unstable"), n, "{restarting:?}");
        delays.push(restarting.u64("delay_ms"));
        from = k + 1;
    }
    // 100 ms, then 200 ms (±10 % jitter).
    if !(delays[0] <= 150 && delays[1] >= delays[0] * 3 / 2) {
        herd.fail(&format!("the restart delays do not back off: {delays:?}"));
    }
    if herd.count_event("worker.hung", |_| true) != 0
        || herd.count_event("health.failed", |_| true) != 0
    {
        herd.fail("a worker that never passed is no hung worker, and its failures do not count");
    }
}

/// `/readyz?verbose` with `--admin`: one line per worker with its state, its last check
/// and its last heartbeat; a failing worker says why; readiness itself is unchanged.
#[test]
fn readyz_verbose_lists_each_workers_health() {
    let admin = format!("127.0.0.1:{}", free_port());
    let herd = herd_with(
        &[
            "run",
            "-i",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--health-check",
            "http:/healthz",
            "--health-interval",
            "500ms",
            "--health-timeout",
            "300ms",
            "--health-failures",
            "1000",
            "--watchdog",
            "1s",
            "--admin",
            &admin,
            "--",
            worker_bin(),
        ],
        &[("HERD_TESTWORKER_OPTS", "--watchdog")],
    );
    herd.wait_ready(2);
    let workers = live_workers(&herd);
    let verbose = || {
        http_get(&format!("http://{admin}/readyz?verbose"))
            .unwrap_or_else(|e| herd.fail(&format!("/readyz?verbose: {e}")))
    };
    // `  worker S (pid P): online, health ok in X ms, heartbeat N ms ago`
    let healthy = |body: &str, slot: usize, pid: u32| {
        let head = format!("  worker {slot} (pid {pid}): online, health ok in ");
        body.lines().any(|l| {
            l.strip_prefix(&head).is_some_and(|rest| {
                let (ms, beat) = rest.split_once(" ms, ").unwrap_or_default();
                ms.parse::<f64>().is_ok() && heartbeat_ms(beat).is_some()
            })
        })
    };
    let mut last = String::new();
    herd.wait_until("both workers are listed healthy", T, || {
        last = verbose().1;
        workers.iter().all(|(s, p)| healthy(&last, *s, *p))
    });
    assert!(
        last.starts_with("[+]workers ok: 2 of 2 workers ready"),
        "{last}"
    );
    assert!(last.contains("readyz check passed\n"), "{last}");
    let sick = ask_one_worker(&herd, herd.port(), "/health?mode=fail", "health fail");
    let (other_slot, other_pid) = workers
        .iter()
        .find(|(_, p)| **p != sick.pid)
        .map(|(s, p)| (*s, *p))
        .unwrap();
    let failing = format!(
        "  worker {} (pid {}): online, last health check failed (",
        sick.slot, sick.pid
    );
    let mut code = 0;
    herd.wait_until("the failing worker is listed with its error", T, || {
        (code, last) = verbose();
        last.lines()
            .any(|l| l.starts_with(&failing) && l.contains(" in a row): status 503"))
    });
    assert!(healthy(&last, other_slot, other_pid), "{last}");
    assert_eq!(
        code, 200,
        "one failing worker does not make the app unready: {last}"
    );
    eprintln!("/readyz?verbose:\n{last}");
}
