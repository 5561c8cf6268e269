//! The test worker's hangs, found by `--health-check`: `/hang?how=busy` (a spinning
//! process that answers nothing and ignores SIGTERM), `accept` (new connections wait in
//! the backlog), `silent` (new connections are read, never answered) and
//! `/health?mode=fail` (503 on `/healthz`, everything else served), with reuseport (checks
//! steered to their slot by source address) and with `--proxy` (checks on the worker's
//! private port).

use super::*;

/// `herd run -i 2` of test workers (`env` for them) with short health-check timings,
/// `extra` flags, and both workers past their first passed check (failures before it do
/// not count).
fn start(extra: &[&str], env: &[(&str, &str)]) -> Herd {
    let mut args = vec![
        "run",
        "-i",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--health-check",
        "http:/healthz",
    ];
    args.extend(TIMINGS);
    args.extend(extra);
    args.extend(["--", worker_bin()]);
    let herd = herd_with(&args, env);
    herd.wait_ready(2);
    for pid in herd.worker_pids() {
        wait_check_passed(&herd, 0, pid);
    }
    herd
}

/// One way of hanging a worker.
struct Case<'a> {
    /// For the record.
    what: &'a str,
    /// More flags of `herd run`.
    flags: &'a [&'a str],
    /// Environment of the test workers.
    env: &'a [(&'a str, &'a str)],
    /// The request that hangs the worker, and what its answer says.
    path: &'a str,
    answer: &'a str,
    /// What the failed checks say.
    error: &'a str,
    /// The hung worker ignores its stop and must be SIGKILLed at the kill timeout.
    killed: bool,
    kill_timeout: &'a str,
}

impl Default for Case<'_> {
    fn default() -> Self {
        Case {
            what: "",
            flags: &[],
            env: &[],
            path: "",
            answer: "",
            error: "no answer within 300ms (--health-timeout)",
            killed: false,
            // A worker that stops gracefully drains its open connections for 1 s: its
            // kill timeout leaves room for that.
            kill_timeout: "5s",
        }
    }
}

/// Hangs one worker as `case` says under a load of new-connection clients and checks the
/// whole replacement (see the module docs of `health`).
fn hang_under_load(case: Case) {
    let mut flags = vec!["--kill-timeout", case.kill_timeout];
    flags.extend(case.flags);
    let herd = start(&flags, case.env);
    let port = herd.port();
    let load = Load::within(
        port,
        &[Client::NewConnection; 2],
        REQUEST_TIMEOUT,
        REQUEST_TIMEOUT,
    );
    herd.wait_until("20 answers before the hang", T, || load.ok() >= 20);
    let mark = herd.mark(Out::Stderr);
    let victim = ask_one_worker(&herd, port, case.path, case.answer);
    let done = expect_replaced(&herd, mark, &victim, "health", check_detection_bound());
    // The failures that made it hung: `FAILURES` in a row, one interval apart.
    let failed: Vec<Event> = herd
        .events_from(mark, "health.failed")
        .into_iter()
        .filter(|e| e.pid() == victim.pid)
        .collect();
    let counts: Vec<u64> = failed.iter().map(|e| e.u64("failures")).collect();
    if counts != [1, 2] || failed.iter().any(|e| !e.str("error").contains(case.error)) {
        herd.fail(&format!(
            "expected 2 health.failed of pid {} saying {:?}: {failed:?}",
            victim.pid, case.error
        ));
    }
    let apart = failed[1].at().saturating_duration_since(failed[0].at());
    if apart < INTERVAL * 4 / 5 {
        herd.fail(&format!(
            "two failed checks only {apart:?} apart; the interval is {INTERVAL:?}"
        ));
    }
    if !done.hung.str("detail").contains(case.error) {
        herd.fail(&format!("the hung event does not say why: {:?}", done.hung));
    }
    let status = done.exited.str("status");
    let kill_timeouts = herd.count_event("worker.kill_timeout", |e| e.pid() == victim.pid);
    match case.killed {
        true if status != "SIGKILL" || kill_timeouts != 1 => herd.fail(&format!(
            "the hung worker ignores SIGTERM: it must be SIGKILLed at the kill timeout: {:?}",
            done.exited
        )),
        false if status != "code 0" || kill_timeouts != 0 => herd.fail(&format!(
            "the hung worker still stops gracefully: {:?}",
            done.exited
        )),
        _ => {}
    }
    let failed_before = no_failure_after_hung(&herd, load, &done);
    report(case.what, &done, failed_before);
}

#[test]
fn a_busy_worker_is_found_hung_and_sigkilled_under_load() {
    hang_under_load(Case {
        what: "reuseport, busy",
        path: "/hang?how=busy",
        answer: "hanging busy",
        killed: true,
        kill_timeout: "1s",
        ..Case::default()
    });
}

#[test]
fn a_worker_that_stops_accepting_is_found_hung_under_load() {
    hang_under_load(Case {
        what: "reuseport, accept",
        path: "/hang?how=accept",
        answer: "hanging accept",
        ..Case::default()
    });
}

#[test]
fn a_worker_that_answers_nothing_new_is_found_hung_under_load() {
    hang_under_load(Case {
        what: "reuseport, silent",
        path: "/hang?how=silent",
        answer: "hanging silent",
        ..Case::default()
    });
}

/// The worst hung worker for reuseport: it still accepts from its slot's socket (and
/// answers nothing), and ignores SIGTERM, so it holds the socket until the kill timeout
/// while its replacement serves the same slot.
#[test]
fn a_hung_worker_that_still_accepts_and_ignores_sigterm_loses_nothing_after_hung() {
    hang_under_load(Case {
        what: "reuseport, silent + --ignore-term",
        env: &[("HERD_TESTWORKER_OPTS", "--ignore-term")],
        path: "/hang?how=silent",
        answer: "hanging silent",
        killed: true,
        kill_timeout: "3s",
        ..Case::default()
    });
}

#[test]
fn a_worker_whose_check_fails_is_replaced_under_load() {
    hang_under_load(Case {
        what: "reuseport, /healthz 503",
        path: "/health?mode=fail",
        answer: "health fail",
        error: "status 503",
        ..Case::default()
    });
}

/// `--proxy`: the test worker listens on its private PORT; checks go there.
#[test]
fn with_proxy_a_busy_worker_is_found_hung_under_load() {
    hang_under_load(Case {
        what: "proxy, busy",
        flags: &["--proxy"],
        path: "/hang?how=busy",
        answer: "hanging busy",
        killed: true,
        kill_timeout: "1s",
        ..Case::default()
    });
}

#[test]
fn with_proxy_a_worker_whose_check_fails_is_replaced_under_load() {
    hang_under_load(Case {
        what: "proxy, /healthz 503",
        flags: &["--proxy"],
        path: "/health?mode=fail",
        answer: "health fail",
        error: "status 503",
        ..Case::default()
    });
}
