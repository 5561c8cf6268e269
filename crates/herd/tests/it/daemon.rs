//! The daemon through its CLI: `herd start` from a herd.toml or a command, `ls`,
//! `describe`, `reload` under load, `scale`, `stop`/`restart`/`delete`, `save` + `kill` +
//! `resurrect`, and a SIGKILLed daemon taking its workers with it.
//!
//! (A little over 500 lines: the verbs' life-cycle tests belong together, and each drives a
//! real daemon end to end; the edge cases are in `daemon_cli.rs`, files in `daemon_apps.rs`.)

use std::collections::BTreeSet;
use std::time::Instant;

use crate::common::daemon::*;
use crate::common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn start_from_file_lists_both_apps_and_they_answer() {
    let d = Daemon::new();
    let toml = testworker_app("web", 2, "namespace = \"front\"") + &testworker_app("api", 1, "");
    let file = d.file("herd.toml", &toml);
    // One app at a time (`one_start_of_several_apps_starts_them_all` starts both at once).
    for name in ["web", "api"] {
        let r = d.ok(&["start", file.to_str().unwrap(), "--only", name]);
        if !r
            .stdout
            .contains(&format!("{name}: started, every worker ready"))
        {
            d.fail(&format!("start did not report {name} ready:\n{r}"));
        }
    }
    let apps = d.ls();
    let names: BTreeSet<&str> = apps.iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(names, BTreeSet::from(["api", "web"]), "{apps:#?}");
    for (name, n) in [("web", 2), ("api", 1)] {
        let app = d.app(name);
        assert_eq!(app["state"], "running", "{app:#}");
        assert_eq!(app["status"]["instances"], n, "{app:#}");
        let ws = workers_of(&app);
        let slots: BTreeSet<usize> = ws.iter().map(|w| w.slot).collect();
        assert_eq!(slots, (0..n).collect(), "{app:#}");
        let pids: Vec<u32> = ws.iter().filter_map(|w| w.pid).collect();
        assert_eq!(pids.len(), n, "every worker has a pid: {app:#}");
        assert!(pids.iter().all(|p| pid_alive(*p)), "pids alive: {pids:?}");
        d.wait_answers_from(d.port(name), &pids);
    }
    assert_eq!(d.app("web")["namespace"], "front");
    assert_ne!(d.port("web"), d.port("api"));

    let r = d.ok(&["describe", "web", "--json"]);
    let desc: serde_json::Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| d.fail(&format!("describe --json is not JSON ({e}):\n{r}")));
    assert_eq!(
        desc["command"],
        serde_json::json!([worker_bin()]),
        "{desc:#}"
    );
    assert_eq!(
        desc["cwd"].as_str(),
        Some(d.root().to_str().unwrap()),
        "cwd is the file's folder: {desc:#}"
    );
    let logs: Vec<&str> = desc["logs"]
        .as_array()
        .map(|l| l.iter().filter_map(|v| v["path"].as_str()).collect())
        .unwrap_or_default();
    let logdir = d.home().join("logs");
    for f in [
        "web-0.out.log",
        "web-0.err.log",
        "web-1.out.log",
        "web-1.err.log",
    ] {
        let want = logdir.join(f);
        assert!(
            logs.contains(&want.to_str().unwrap()),
            "describe lists {want:?}: {logs:?}"
        );
    }
    // The worker's start-up line reached its log file.
    let out0 = std::fs::read_to_string(logdir.join("web-0.out.log")).unwrap_or_default();
    assert!(out0.contains("testworker pid="), "web-0.out.log: {out0:?}");
    d.refused(&["describe", "nosuch"]);
}

#[test]
fn start_from_a_command_and_again_does_not_duplicate() {
    let d = Daemon::new();
    // A port picked before the start; another if someone took it meanwhile.
    let (port, args) = (0..5)
        .find_map(|_| {
            let port = free_port().to_string();
            let args = ["start", "--name", "x", "-i", "2", "-p", &port, "--"]
                .map(String::from)
                .to_vec();
            let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
            all.push(worker_bin());
            let r = d.run(&all);
            if r.code != 0 && r.stderr.contains("already in use") {
                let _ = d.run(&["delete", "x"]);
                return None;
            }
            if r.code != 0 {
                d.fail(&format!("expected exit 0:\n{r}"));
            }
            Some((port, args))
        })
        .unwrap_or_else(|| d.fail("five free ports in a row were taken before herd bound them"));
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.push(worker_bin());
    let pids = d.wait_online("x", 2);
    let port: u16 = port.parse().unwrap();
    assert_eq!(d.port("x"), port);
    d.wait_answers_from(port, &pids);
    let app = d.app("x");
    assert_eq!(app["command"], serde_json::json!([worker_bin()]), "{app:#}");

    // Again: said so, and the same workers.
    let r = d.ok(&args);
    if !r.stdout.contains("x: already running") {
        d.fail(&format!("a second start should say the app runs:\n{r}"));
    }
    let ws = d.workers("x");
    assert_eq!(ws.len(), 2, "no worker added: {ws:?}");
    let again: Vec<u32> = ws.iter().filter_map(|w| w.pid).collect();
    assert_eq!(again, pids, "the same workers");
    let apps = d.ls();
    assert_eq!(apps.len(), 1, "one app: {apps:#?}");
    // No third process of the worker's kind: count the home's processes.
    let procs = d.describe_processes();
    let workers = procs.iter().filter(|(_, c)| c == "herd-testworker").count();
    assert_eq!(workers, 2, "processes of the home: {procs:?}");
}

#[test]
fn reload_under_load_replaces_every_worker_without_a_failed_request() {
    let d = Daemon::new();
    let file = d.file("herd.toml", &testworker_app("web", 2, ""));
    d.ok(&["start", file.to_str().unwrap()]);
    let old = d.wait_online("web", 2);
    let port = d.port("web");
    d.wait_answers_from(port, &old);
    let load = Load::start(port, 2);
    d.wait_until("100 answers before the reload", T, || load.ok() >= 100);
    let t0 = Instant::now();
    let r = d.ok(&["reload", "web"]);
    if !r.stdout.contains("web: reloaded, every worker replaced") {
        d.fail(&format!("reload did not say it replaced the workers:\n{r}"));
    }
    // When `herd reload` returns, the reload is over: new pids of the new generation.
    let ws = d.workers("web");
    let new: Vec<u32> = ws.iter().filter_map(|w| w.pid).collect();
    if ws.len() != 2
        || new.iter().any(|p| old.contains(p))
        || ws.iter().any(|w| w.state != "online" || w.generation != 1)
    {
        d.fail(&format!(
            "right after `herd reload` exited, ls shows {ws:?}; old pids {old:?}"
        ));
    }
    d.wait_until(&format!("the old workers {old:?} are gone"), T, || {
        old.iter().all(|p| proc_state(*p).is_none())
    });
    let ok = load.ok();
    d.wait_until("50 more answers after the reload", T, || {
        load.ok() >= ok + 50
    });
    if let Err(e) = load.finish_clean(t0) {
        d.fail(&format!("across the reload (begun at {t0:?}): {e}"));
    }
    d.wait_answers_from(port, &new);
}

#[test]
fn scale_up_and_down_and_refuse_zero() {
    let d = Daemon::new();
    let file = d.file("herd.toml", &testworker_app("web", 1, ""));
    d.ok(&["start", file.to_str().unwrap()]);
    let first = d.wait_online("web", 1);
    let port = d.port("web");

    let r = d.ok(&["scale", "web", "+1"]);
    assert!(r.stdout.contains("scaled from 1 to 2"), "{r}");
    let two = d.wait_online("web", 2);
    assert!(two.contains(&first[0]), "the first worker stays: {two:?}");
    d.wait_answers_from(port, &two);

    let r = d.ok(&["scale", "web", "4"]);
    assert!(r.stdout.contains("scaled from 2 to 4"), "{r}");
    let four = d.wait_online("web", 4);
    let slots: BTreeSet<usize> = d.workers("web").iter().map(|w| w.slot).collect();
    assert_eq!(slots, BTreeSet::from([0, 1, 2, 3]));
    d.wait_answers_from(port, &four);

    let r = d.ok(&["scale", "web", "-1"]);
    assert!(r.stdout.contains("scaled from 4 to 3"), "{r}");
    let three = d.wait_online("web", 3);
    let gone: Vec<u32> = four
        .iter()
        .copied()
        .filter(|p| !three.contains(p))
        .collect();
    assert_eq!(gone.len(), 1, "one worker stopped: {four:?} -> {three:?}");
    d.wait_until("the scaled-down worker is gone", T, || {
        proc_state(gone[0]).is_none()
    });
    d.wait_answers_from(port, &three);

    for to in ["0", "-3", "-10"] {
        let r = d.refused(&["scale", "web", to]);
        assert!(r.stderr.contains("at least 1"), "scale to {to}: {r}");
    }
    assert_eq!(
        d.online_pids("web"),
        three,
        "a refused scale changes nothing"
    );
    d.refused(&["scale", "nosuch", "2"]);
}

#[test]
fn stop_restart_delete() {
    let d = Daemon::new();
    let toml = testworker_app("web", 2, "") + &testworker_app("other", 1, "");
    let file = d.file("herd.toml", &toml);
    d.start_each(&file, &["web", "other"]);
    let pids = d.wait_online("web", 2);
    let other = d.wait_online("other", 1);
    let port = d.port("web");
    d.wait_answers_from(port, &pids);

    let r = d.ok(&["stop", "web"]);
    assert!(r.stdout.contains("web: stopped"), "{r}");
    let app = d.app("web");
    assert_eq!(app["state"], "stopped", "{app:#}");
    assert!(workers_of(&app).is_empty(), "{app:#}");
    // `herd stop` answers once the workers have exited.
    let alive: Vec<u32> = pids.iter().copied().filter(|p| pid_alive(*p)).collect();
    assert!(alive.is_empty(), "workers alive after stop: {alive:?}");
    assert!(refuses(port), "port {port} still accepts after stop");
    assert_eq!(d.online_pids("other"), other, "the other app is untouched");

    let r = d.ok(&["restart", "web"]);
    assert!(r.stdout.contains("web: restarted"), "{r}");
    let back = d.wait_online("web", 2);
    assert!(
        back.iter().all(|p| !pids.contains(p)),
        "{pids:?} -> {back:?}"
    );
    d.wait_answers_from(d.port("web"), &back);

    let r = d.ok(&["delete", "web"]);
    assert!(r.stdout.contains("web: deleted"), "{r}");
    assert!(d.find("web").is_none(), "deleted app still listed");
    assert!(
        back.iter().all(|p| !pid_alive(*p)),
        "workers alive after delete"
    );
    let names: Vec<String> = d.ls().iter().map(|a| a["name"].to_string()).collect();
    assert_eq!(names, ["\"other\""]);
    d.refused(&["stop", "web"]);
}

#[test]
fn save_kill_resurrect() {
    let d = Daemon::new();
    // One app (plus a stopped one): resurrect starts every saved app at once, which races
    // with two running apps (see `one_start_of_several_apps_starts_them_all`).
    let toml = testworker_app("web", 2, "") + &testworker_app("idle", 1, "");
    let file = d.file("herd.toml", &toml);
    d.start_each(&file, &["web", "idle"]);
    d.ok(&["stop", "idle"]);
    let web = d.wait_online("web", 2);
    let r = d.ok(&["save"]);
    assert!(r.stdout.contains("saved 2 apps"), "{r}");
    let daemon = d.daemon_pid().expect("a daemon runs");

    let r = d.ok(&["kill"]);
    assert!(r.stdout.contains("daemon stopped"), "{r}");
    // `herd kill` returns once the daemon has exited: nothing of it is left.
    let left: Vec<u32> = web.iter().copied().filter(|p| pid_alive(*p)).collect();
    assert!(left.is_empty(), "workers alive after kill: {left:?}");
    assert!(!pid_alive(daemon), "daemon {daemon} alive after kill");
    d.wait_until(
        &format!(
            "no process of the home is left: {:?}",
            d.describe_processes()
        ),
        T,
        || d.processes().is_empty(),
    );
    assert_eq!(d.daemon_pid(), None);
    assert_eq!(d.ok(&["ls", "--json"]).stdout.trim(), "[]");

    let r = d.ok(&["resurrect"]);
    assert!(
        r.stdout.contains("web: resurrected") && r.stdout.contains("idle: restored, stopped"),
        "{r}"
    );
    let new_daemon = d.daemon_pid().expect("resurrect started a daemon");
    assert_ne!(new_daemon, daemon);
    let web2 = d.wait_online("web", 2);
    assert!(web2.iter().all(|p| !web.contains(p)), "{web:?} -> {web2:?}");
    d.wait_answers_from(d.port("web"), &web2);
    assert_eq!(d.app("idle")["state"], "stopped");
    // A second resurrect leaves running apps alone.
    let r = d.ok(&["resurrect"]);
    assert!(r.stdout.contains("web: already running"), "{r}");
    assert_eq!(d.online_pids("web"), web2);
}

/// SIGKILLs the daemon of `d` (which runs the app `web`); returns the old daemon's pid.
fn sigkill_daemon(d: &Daemon) -> u32 {
    let workers = d.wait_online("web", 2);
    let daemon = d.daemon_pid().expect("a daemon runs");
    let guardian: Vec<u32> = children_of(daemon)
        .into_iter()
        .filter(|s| s.comm.starts_with("herd-guardian"))
        .map(|s| s.pid)
        .collect();
    kill(Pid::from_raw(daemon as i32), Signal::SIGKILL).expect("kill the daemon");
    d.wait_until(
        &format!(
            "the workers {workers:?} and guardian {guardian:?} die with the daemon (states {:?})",
            states(&workers)
        ),
        T,
        || workers.iter().chain(&guardian).all(|p| !pid_alive(*p)),
    );
    // Its workers can die before the daemon is a zombie: PR_SET_PDEATHSIG fires when the
    // spawning thread exits, while the daemon's other threads may still be exiting.
    d.wait_until("the daemon dies", T, || !pid_alive(daemon));
    daemon
}

#[test]
fn sigkilled_daemon_takes_its_workers_and_the_next_ping_starts_another() {
    let d = Daemon::new();
    let file = d.file("herd.toml", &testworker_app("web", 2, ""));
    d.ok(&["start", file.to_str().unwrap()]);
    let old = sigkill_daemon(&d);
    let r = d.ok(&["ping"]);
    assert!(r.stdout.contains("just started"), "{r}");
    let new = d.daemon_pid().expect("ping started a daemon");
    assert_ne!(new, old);
    assert_eq!(d.ls().len(), 0, "the new daemon knows no app");
    // The new daemon noticed, and its log says so (the CLI too: see the next test).
    let log = d.daemon_log();
    assert!(
        log.contains(&format!(
            "the previous herd daemon (pid {old}) ended without `herd kill`"
        )),
        "daemon.log lacks the notice:\n{log}"
    );
}

#[test]
fn after_a_sigkilled_daemon_the_cli_says_so() {
    let d = Daemon::new();
    let file = d.file("herd.toml", &testworker_app("web", 2, ""));
    d.ok(&["start", file.to_str().unwrap()]);
    sigkill_daemon(&d);
    let r = d.ok(&["ping"]);
    let said = format!("{}{}", r.stdout, r.stderr);
    assert!(
        said.contains("ended without `herd kill`"),
        "`herd ping` after the daemon was SIGKILLed does not tell the user:\n{r}"
    );
}

/// The apps of one file (or of a dump) start on a thread each; every driver binds its
/// NOTIFY_SOCKET at `$TMPDIR/herd-<daemon pid>/notify.sock`, removing that folder first.
#[test]
fn one_start_of_several_apps_starts_them_all() {
    let d = Daemon::new();
    let names = ["a", "b", "c", "e"];
    let toml: String = names.iter().map(|n| testworker_app(n, 1, "")).collect();
    let file = d.file("herd.toml", &toml);
    for round in 0..3 {
        let r = d.run(&["start", file.to_str().unwrap()]);
        if r.code != 0 {
            d.fail(&format!("round {round}: one start of {names:?}:\n{r}"));
        }
        for n in names {
            d.wait_online(n, 1);
        }
        d.ok(&["save"]);
        d.ok(&["kill"]);
        let r = d.run(&["resurrect"]);
        if r.code != 0 {
            d.fail(&format!("round {round}: resurrect of {names:?}:\n{r}"));
        }
        d.ok(&["delete", "all"]);
    }
}

/// Two apps with `ready = "notify"`: after the second started, the first one's new
/// workers send READY=1 to the second one's socket (same path), so the first cannot
/// reload (nor scale, nor restart a crashed worker) any more.
#[test]
fn two_notify_apps_each_get_their_own_ready_messages() {
    let d = Daemon::new();
    let extra = "ready = \"notify\"\nlisten_timeout = \"5s\"";
    let toml = testworker_app("a", 1, extra) + &testworker_app("b", 1, extra);
    let toml = toml.replace(
        &format!("command = [{:?}]", worker_bin()),
        &format!("command = [{:?}, \"--notify\"]", worker_bin()),
    );
    let file = d.file("herd.toml", &toml);
    d.start_each(&file, &["a", "b"]);
    let old = d.wait_online("a", 1);
    let r = d.ok(&["scale", "a", "2"]);
    assert!(r.stdout.contains("scaled from 1 to 2"), "{r}");
    let two = d.wait_online("a", 2);
    assert!(two.contains(&old[0]));
}

/// A reload whose new worker cannot start is aborted (the old worker keeps serving);
/// `herd reload` must then fail.
#[test]
fn a_reload_aborted_at_the_first_slot_fails() {
    let d = Daemon::new();
    let flag = d.root().join("fail-now");
    let toml = testworker_app("web", 1, "listen_timeout = \"5s\"\nmax_restarts = 2").replace(
        &format!("command = [{:?}]", worker_bin()),
        &format!(
            "command = [{:?}, \"--fail-if-file\", {:?}]",
            worker_bin(),
            flag
        ),
    );
    let file = d.file("herd.toml", &toml);
    d.ok(&["start", file.to_str().unwrap()]);
    let old = d.wait_online("web", 1);
    std::fs::write(&flag, "").unwrap();
    let r = d.run(&["reload", "web"]);
    let still = d.online_pids("web");
    assert_eq!(still, old, "the old worker keeps serving");
    if r.code != 1 {
        d.fail(&format!(
            "a reload whose new worker exits at once must fail:\n{r}"
        ));
    }
}

/// `herd send NAME JSON` reaches every worker's channel: Node workers print what their
/// `process.on('message')` gets, into their log files.
#[test]
fn send_reaches_every_workers_process_on_message() {
    let node = node();
    let d = Daemon::new();
    d.file(
        "recv.js",
        "process.on('message', (m) => console.log('got ' + JSON.stringify(m)));\n\
         require('http').createServer((q, s) => s.end('ok\\n')).listen({ fd: 3 });\n",
    );
    let file = d.file(
        "herd.toml",
        &format!(
            "[apps.recv]\ncommand = [{node:?}, \"recv.js\"]\ninstances = 2\nlisten = [\"127.0.0.1:0\"]\n"
        ),
    );
    d.ok(&["start", file.to_str().unwrap()]);
    d.wait_online("recv", 2);
    let r = d.ok(&["send", "recv", r#"{"hello":"world","n":[1,2]}"#]);
    let logs = d.home().join("logs");
    for slot in 0..2 {
        let log = logs.join(format!("recv-{slot}.out.log"));
        d.wait_until(
            &format!("{} shows the message (send said: {r})", log.display()),
            T,
            || {
                std::fs::read_to_string(&log)
                    .is_ok_and(|t| t.contains(r#"got {"hello":"world","n":[1,2]}"#))
            },
        );
    }
    let r = d.refused(&["send", "nosuch", "{}"]);
    assert!(r.stderr.contains("nosuch"), "{r}");
}

/// `herd start --no-wait` answers at once: with workers that never become ready (and a
/// listen timeout of 5 minutes), a waiting start would not return before the CLI deadline.
#[test]
fn start_no_wait_answers_before_the_workers_are_ready() {
    let d = Daemon::new();
    let file = d.file(
        "herd.toml",
        &testworker_args_app(
            "slow",
            &["--notify", "--never-ready"],
            2,
            "ready = \"notify\"\nlisten_timeout = \"5m\"",
        ),
    );
    let t0 = Instant::now();
    let r = d.ok(&["start", file.to_str().unwrap(), "--no-wait"]);
    let took = t0.elapsed();
    // The daemon's own start included (about 0.1 s): far from any readiness wait.
    assert!(took < std::time::Duration::from_secs(5), "{took:?}\n{r}");
    let ws = d.workers("slow");
    assert!(
        ws.iter().all(|w| w.state != "online"),
        "right after `start --no-wait`: {ws:?}\n{r}"
    );
    d.wait_until("both workers spawned (and still not ready)", T, || {
        let ws = d.workers("slow");
        ws.len() == 2 && ws.iter().all(|w| w.pid.is_some() && w.state != "online")
    });
}
