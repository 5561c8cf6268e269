//! Hung workers: `--health-check` and `--watchdog`. Each test hangs exactly one known worker
//! (a keep-alive connection learns who answers, then asks that same worker to hang) and
//! holds herd to the contract: `worker.hung` with the right cause within the bound the
//! timings give, a replacement in the same slot, the hung worker stopped (SIGKILLed if it
//! ignores the stop), and, under a client load, no failed request sent after the
//! `worker.hung` event. Times are measured from herd's own event timestamps against the
//! test's clock around the request that hung the worker, and printed (`detection`, the
//! hang to `worker.hung`; `recovery`, `worker.hung` to the replacement's `worker.ready`).
//!
//! By concern: `hang` (the test worker's hangs, with reuseport and `--proxy`), `node`
//! (an unmodified Node program whose event loop blocks: watchdog and checks, reuseport and
//! round-robin), `watchdog` (`WATCHDOG=1` pings, their stop, `WATCHDOG=trigger`),
//! `checks` (what a check makes of garbage, silence and 10 MiB; a worker that never
//! passes; `/readyz?verbose`), `daemon` (`herd ls`, `describe`, restarts by reason),
//! `bad_input` (flags and herd.toml keys refused before any worker starts).

mod bad_input;
mod checks;
mod daemon;
mod hang;
mod node;
mod watchdog;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::common::*;

/// The short timings of these tests: a check every 500 ms, 300 ms to answer, 2 failures
/// in a row make a worker hung.
pub const INTERVAL: Duration = Duration::from_millis(500);
pub const TIMEOUT: Duration = Duration::from_millis(300);
pub const FAILURES: u32 = 2;
pub const TIMINGS: [&str; 6] = [
    "--health-interval",
    "500ms",
    "--health-timeout",
    "300ms",
    "--health-failures",
    "2",
];

/// Longest a health-check detection may take: interval × failures + timeout + one
/// interval (when the hang falls just after a check), doubled for a loaded 2-core machine.
pub fn check_detection_bound() -> Duration {
    (INTERVAL * FAILURES + TIMEOUT + INTERVAL) * 2
}

/// A request sent after `worker.hung` by more than this must not fail: the steering (or
/// herd's choice of worker) changes in the same step as the event is written.
pub const EPSILON: Duration = Duration::from_millis(100);

/// Each load request's bound for connecting and for each read: a request that went to the
/// hung worker fails after it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// `herd <args>` with `HERD_LOG=debug` (each check's result is logged) and `env`.
pub fn herd_with(args: &[&str], env: &[(&str, &str)]) -> Herd {
    let mut cmd = std::process::Command::new(herd_bin());
    cmd.args(args).env("HERD_LOG", "debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Herd::spawn(cmd, false, true)
}

/// Index of the first debug line at stderr index >= `from` that says a health check of
/// `pid` passed (`"health check of pid N"` with `result: Ok(…)`; needs `HERD_LOG=debug`).
pub fn wait_check_passed(herd: &Herd, from: usize, pid: u32) -> usize {
    herd.wait_line_from(
        Out::Stderr,
        from,
        &format!("a passed health check of pid {pid}"),
        |l| check_result(l, pid).is_some_and(|r| r.starts_with("Ok(")),
        T,
    )
    .0
}

/// The `result` of a `"health check of pid N"` debug line of `pid`, if `line` is one.
pub fn check_result(line: &str, pid: u32) -> Option<String> {
    let v = json(line)?;
    let ours = v["message"].as_str()? == format!("health check of pid {pid}");
    ours.then(|| v["result"].as_str().map(str::to_string))?
}

/// A worker asked to misbehave, and when.
pub struct Victim {
    pub pid: u32,
    pub slot: usize,
    /// Just before the request that changed it was sent.
    pub sent: Instant,
    /// Its answer to that request.
    pub body: String,
}

/// On one keep-alive connection to 127.0.0.1:`port`: `GET /` (who answers: the pid and
/// slot of the test worker's `/`, or the pid and `slot=` of the Node fixture), then `GET
/// path` to that same worker, which must answer 200 with `answer` in its body. The
/// connection is closed then (an open one would hold up a graceful stop of the worker).
pub fn ask_one_worker(herd: &Herd, port: u16, path: &str, answer: &str) -> Victim {
    let mut conn = connect_from(Ipv4Addr::LOCALHOST, port)
        .unwrap_or_else(|e| herd.fail(&format!("connect to {port}: {e}")));
    let (status, body) = request_on(&mut conn, "/", false)
        .unwrap_or_else(|e| herd.fail(&format!("GET / on port {port}: {e}")));
    let (pid, slot) = match (status, ident(&body)) {
        (200, Some(who)) => who,
        _ => herd.fail(&format!("GET / answered {status}: {body:?}")),
    };
    let sent = Instant::now();
    let (status, body) = request_on(&mut conn, path, false)
        .unwrap_or_else(|e| herd.fail(&format!("GET {path} of pid {pid}: {e}")));
    if status != 200 || !body.contains(answer) {
        herd.fail(&format!(
            "GET {path} of pid {pid} answered {status}: {body:?}"
        ));
    }
    drop(conn);
    Victim {
        pid,
        slot,
        sent,
        body,
    }
}

/// What herd did about a hung worker.
pub struct Replaced {
    /// The `worker.hung` event.
    pub hung: Event,
    /// From the request that hung the worker to `worker.hung`.
    pub detection: Duration,
    /// From `worker.hung` to the replacement's `worker.ready`.
    pub recovery: Duration,
    /// The replacement's pid.
    pub replacement: u32,
    /// The hung worker's `worker.exited` event.
    pub exited: Event,
}

/// Waits for `victim` to be found hung (`cause`) after stderr index `mark`, replaced in
/// its slot by a worker that became ready before the hung one was stopped, and gone.
/// Fails if detection took longer than `bound`.
pub fn expect_replaced(
    herd: &Herd,
    mark: usize,
    victim: &Victim,
    cause: &str,
    bound: Duration,
) -> Replaced {
    let (hung_i, hung) = herd.wait_event_from(mark, "worker.hung", |e| e.pid() == victim.pid);
    if hung.str("cause") != cause || hung.slot() != victim.slot {
        herd.fail(&format!(
            "expected pid {} of slot {} hung with cause {cause}: {hung:?}",
            victim.pid, victim.slot
        ));
    }
    let detection = hung.at().saturating_duration_since(victim.sent);
    if detection > bound {
        herd.fail(&format!(
            "pid {} was found hung {detection:?} after it hung; the bound is {bound:?}",
            victim.pid
        ));
    }
    let spawned = herd
        .wait_event_from(hung_i, "worker.spawned", |e| e.slot() == victim.slot)
        .1;
    let replacement = spawned.pid();
    let (ready_i, ready) = herd.wait_event_from(hung_i, "worker.ready", |e| e.pid() == replacement);
    let recovery = ready.at().saturating_duration_since(hung.at());
    let (stop_i, stopping) =
        herd.wait_event_from(hung_i, "worker.stopping", |e| e.pid() == victim.pid);
    if stopping.str("reason") != "hung" || stop_i < ready_i {
        herd.fail(&format!(
            "the hung pid {} must be stopped (reason hung) after its replacement {replacement} is ready: {stopping:?}",
            victim.pid
        ));
    }
    let exited = herd
        .wait_event_from(hung_i, "worker.exited", |e| e.pid() == victim.pid)
        .1;
    if !exited.bool("expected") {
        herd.fail(&format!(
            "the hung worker's exit counts as a crash: {exited:?}"
        ));
    }
    herd.wait_gone(&[victim.pid], T);
    if herd.count_event("worker.hung", |e| e.pid() == victim.pid) != 1 {
        herd.fail(&format!("pid {} was found hung more than once", victim.pid));
    }
    Replaced {
        hung,
        detection,
        recovery,
        replacement,
        exited,
    }
}

/// Keeps `load` running until the hung worker is gone (see [`expect_replaced`]), the
/// replacement has answered and 50 more answers came; then fails the test if a request
/// sent more than [`EPSILON`] after `worker.hung` failed. Returns the failures before.
pub fn no_failure_after_hung(herd: &Herd, load: Load, done: &Replaced) -> usize {
    herd.wait_until(
        &format!(
            "the replacement {} answers the load (answers by pid: {:?})",
            done.replacement,
            load.by_pid()
        ),
        T,
        || load.by_pid().contains_key(&done.replacement),
    );
    let ok = load.ok();
    herd.wait_until("50 more answers", T, || load.ok() >= ok + 50);
    let hung_at = done.hung.at();
    let (answers, failures) = load.finish_failures();
    let (before, after): (Vec<&Failure>, Vec<&Failure>) =
        failures.iter().partition(|f| f.sent <= hung_at + EPSILON);
    if !after.is_empty() {
        let shown: Vec<String> = after
            .iter()
            .take(10)
            .map(|f| {
                format!(
                    "sent {} ms after worker.hung, failed {} ms after: {}",
                    f.sent.saturating_duration_since(hung_at).as_millis(),
                    f.at.saturating_duration_since(hung_at).as_millis(),
                    f.what
                )
            })
            .collect();
        herd.fail(&format!(
            "{} of {} requests sent after worker.hung failed ({} failed before it, allowed): {shown:#?}",
            after.len(),
            answers + failures.len(),
            before.len()
        ));
    }
    before.len()
}

/// Prints what a test measured, for the record.
pub fn report(what: &str, done: &Replaced, failed_before: usize) {
    eprintln!(
        "MEASURED {what}: detection {:.1} ms, recovery {:.1} ms (hung -> replacement ready); {failed_before} requests failed before worker.hung",
        done.detection.as_secs_f64() * 1000.0,
        done.recovery.as_secs_f64() * 1000.0
    );
}
