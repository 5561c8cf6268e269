//! What an app of the daemon starts with and how its workers' exits are treated: the
//! environment of the `herd start` under the app's `env` under the worker contract, `cwd`,
//! `user`, `instance_var` and `increment_var`, `autorestart = false`, `stop_exit_codes`,
//! and a memory limit given as a `herd start` flag.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::daemon::*;
use crate::common::*;

/// GET `path` until every slot in `slots` answered; returns each slot's body.
fn per_slot(d: &Daemon, port: u16, path: &str, slots: usize) -> Vec<String> {
    let mut bodies = vec![None; slots];
    d.wait_until(&format!("every slot answered {path}"), T, || {
        // The slot comes from `/`: ask it on the same connection.
        let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(10)));
        if let (Ok((_, who)), Ok((_, body))) = (
            request_on(&mut conn, "/", false),
            request_on(&mut conn, path, false),
        ) {
            if let Some((_, slot)) = ident(&who) {
                if slot < slots {
                    bodies[slot] = Some(body.trim().to_string());
                }
            }
        }
        bodies.iter().all(Option::is_some)
    });
    bodies.into_iter().map(Option::unwrap_or_default).collect()
}

#[test]
fn workers_start_with_the_start_environment_the_app_env_and_the_contract() {
    let d = Daemon::new();
    let dir = d.root().join("app-dir");
    std::fs::create_dir_all(&dir).unwrap();
    let root = nix::unistd::Uid::effective().is_root();
    let user = if root { "user = \"nobody\"\n" } else { "" };
    let file = d.file(
        "herd.toml",
        &testworker_app(
            "envy",
            2,
            &format!(
                "cwd = \"app-dir\"\n{user}instance_var = \"INSTANCE_ID\"\nincrement_var = \"DEBUG_PORT\"\n\
                 env = {{ DEBUG_PORT = \"9230\", FROM_FILE = \"file\", FROM_BOTH = \"file\", PORT = \"1\" }}"
            ),
        ),
    );
    let mut start = d.command(&["start", file.to_str().unwrap()]);
    start.env("FROM_CLI", "cli").env("FROM_BOTH", "cli");
    let r = d.run_command(start, &["start"]);
    assert_eq!(r.code, 0, "{r}");
    d.wait_online("envy", 2);
    let port = d.port("envy");
    let var = |name: &str| per_slot(&d, port, &format!("/var?name={name}"), 2);
    assert_eq!(
        var("FROM_CLI"),
        ["cli", "cli"],
        "the start's environment is the base"
    );
    assert_eq!(
        var("FROM_BOTH"),
        ["file", "file"],
        "the app's env wins over it"
    );
    assert_eq!(var("FROM_FILE"), ["file", "file"]);
    assert_eq!(
        var("PORT"),
        [port.to_string(), port.to_string()],
        "the contract wins over the app's env"
    );
    assert_eq!(var("INSTANCE_ID"), ["0", "1"]);
    assert_eq!(var("DEBUG_PORT"), ["9230", "9231"]);
    let who = per_slot(&d, port, "/whoami", 2);
    for w in &who {
        assert!(
            w.ends_with(&format!("cwd={}", dir.display())),
            "cwd relative to the file: {w}"
        );
        if root {
            assert!(w.starts_with("uid=65534 gid=65534"), "user = nobody: {w}");
            // Its supplementary groups are its own (`id -G`), not herd's, not none.
            let id = std::process::Command::new("id")
                .args(["-G", "nobody"])
                .output()
                .unwrap();
            let mut want: Vec<String> = String::from_utf8_lossy(&id.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect();
            want.sort();
            let mut got: Vec<String> = w
                .split("groups=")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap_or("")
                .split(',')
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect();
            got.sort();
            got.dedup();
            assert_eq!(got, want, "{w}");
        }
    }
    if !root {
        skip("not root: `user = \"nobody\"` not tested");
    }
}

#[test]
fn a_user_that_does_not_exist_is_an_error_naming_the_app() {
    let d = Daemon::new();
    let file = d.file(
        "herd.toml",
        &testworker_app("who", 1, "user = \"no-such-user-herd\""),
    );
    let r = d.run(&["start", file.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr.contains("who") && r.stderr.contains("no-such-user-herd"),
        "{r}"
    );
}

/// Crashes one worker of `name` (GET /crash) and returns its slot.
fn crash_one(d: &Daemon, name: &str) -> (u32, usize) {
    let port = d.port(name);
    // One connection (no client retry on another): the worker that said who it is is the
    // one that crashes.
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let (_, body) = request_on(&mut conn, "/", false).unwrap_or_else(|e| d.fail(&e));
    let (pid, slot) = ident(&body).unwrap_or_else(|| d.fail(&body));
    let _ = request_on(&mut conn, "/crash", false);
    d.wait_until(&format!("pid {pid} gone"), T, || !pid_alive(pid));
    (pid, slot)
}

#[test]
fn autorestart_off_and_stop_exit_codes_leave_the_slot_empty() {
    let d = Daemon::new();
    let text = testworker_app("once", 2, "autorestart = false")
        + &testworker_app("coded", 2, "stop_exit_codes = [70]")
        + &testworker_app("restarts", 1, "");
    let file = d.file("herd.toml", &text);
    d.ok(&["start", file.to_str().unwrap()]);
    for name in ["once", "coded"] {
        let before: BTreeSet<u32> = d.wait_online(name, 2).into_iter().collect();
        let (crashed, slot) = crash_one(&d, name);
        d.wait_until(&format!("{name}:{slot} listed as stopped"), T, || {
            d.workers(name)
                .iter()
                .any(|w| w.slot == slot && w.pid.is_none() && w.state == "stopped")
        });
        // The other slot still serves, and nothing replaced the crashed worker.
        let port = d.port(name);
        let (pid, _) = who(port).unwrap_or_else(|e| d.fail(&e));
        assert!(before.contains(&pid) && pid != crashed);
        let now: Vec<u32> = d.workers(name).iter().filter_map(|w| w.pid).collect();
        assert_eq!(now.len(), 1, "{name}: {:?}", d.workers(name));
        // herd's own record of why says so in the app's logs.
        let logs = d.ok(&["logs", name, "-n", "50"]);
        assert!(
            logs.stdout.contains(&format!(
                "{name} [herd] INFO worker {name}:{slot} (pid {crashed}) not restarted"
            )),
            "{logs}"
        );
    }
    // Without either, a crashed worker is replaced.
    d.wait_online("restarts", 1);
    let (crashed, _) = crash_one(&d, "restarts");
    d.wait_until("a replacement", T, || {
        d.online_pids("restarts").iter().any(|p| *p != crashed)
    });
    assert_eq!(d.app("restarts")["status"]["workers"][0]["restarts"], 1);
}

#[test]
fn a_memory_limit_from_the_start_flags_replaces_a_grown_worker() {
    let d = Daemon::new();
    let r = d.run(&[
        "start",
        "--name",
        "grow",
        "-i",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--max-memory-restart",
        "64M",
        "--",
        worker_bin(),
    ]);
    assert_eq!(r.code, 0, "{r}");
    let old = d.wait_online("grow", 1)[0];
    let port = d.port("grow");
    http_get(&format!("http://127.0.0.1:{port}/grow?mb=80")).unwrap();
    d.wait_until("the grown worker replaced", T, || {
        let pids = d.online_pids("grow");
        pids.len() == 1 && pids[0] != old && !pid_alive(old)
    });
    let app = d.app("grow");
    assert_eq!(app["status"]["workers"][0]["restarts"], 1, "{app:#}");
    let over = d.daemon_events("worker.memory_over_limit");
    assert!(
        !over.is_empty()
            && over
                .iter()
                .all(|e| e["app"] == "grow" && e["limit"] == 64 << 20),
        "{}",
        d.daemon_log()
    );
}

/// The article's kind of ecosystem file, in each format PM2 reads, started as it is:
/// `server.js` listens on PORT and says "ready" (`wait_ready`).
#[test]
fn pm2_ecosystem_files_start_as_they_are() {
    node();
    let d = Daemon::new();
    let server =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pm2/server.js");
    std::fs::copy(&server, d.root().join("server.js")).unwrap();
    let app = |name: &str, port: u16| {
        format!(
            r#"{{ "name": "{name}", "script": "./server.js", "instances": 2, "exec_mode": "cluster",
                 "port": {port}, "wait_ready": true, "listen_timeout": 10000, "kill_timeout": 5000,
                 "env": {{ "NODE_ENV": "development" }}, "env_production": {{ "NODE_ENV": "production" }},
                 "vizion": true }}"#
        )
    };
    let files = [
        (
            "ecosystem.config.js",
            format!(
                "module.exports = {{ apps: [{}] }};\n",
                app("js", free_port())
            ),
        ),
        (
            "ecosystem.json",
            format!("{{ \"apps\": [{}] }}\n", app("json", free_port())),
        ),
        // JSON is YAML: the flow style keeps the file short.
        (
            "ecosystem.yaml",
            format!("apps: [{}]\n", app("yaml", free_port())),
        ),
    ];
    for (file, text) in &files {
        let path = d.file(file, text);
        let r = d.run(&["start", path.to_str().unwrap(), "--env", "production"]);
        assert_eq!(r.code, 0, "{file}: {r}");
        assert!(
            r.stderr.contains("`vizion`"),
            "{file}: the unsupported key is named: {r}"
        );
    }
    for name in ["js", "json", "yaml"] {
        let pids = d.wait_online(name, 2);
        let port = d.port(name);
        let mut seen = std::collections::HashSet::new();
        d.wait_until(
            &format!("both workers {pids:?} of {name} answer on {port}"),
            T,
            || {
                if let Ok((200, body)) = http_get(&format!("http://127.0.0.1:{port}/")) {
                    if let Some(pid) = body
                        .trim()
                        .strip_prefix("hello from ")
                        .and_then(|p| p.parse::<u32>().ok())
                    {
                        seen.insert(pid);
                    }
                }
                pids.iter().all(|p| seen.contains(p))
            },
        );
    }
}

#[test]
fn save_keeps_the_scaled_number_of_workers() {
    let d = Daemon::new();
    let file = d.file("herd.toml", &testworker_app("web", 1, ""));
    d.ok(&["start", file.to_str().unwrap()]);
    d.ok(&["scale", "web", "3"]);
    d.wait_online("web", 3);
    d.ok(&["save"]);
    d.ok(&["kill"]);
    d.ok(&["resurrect"]);
    d.wait_online("web", 3);
}

#[test]
fn relative_log_paths_are_relative_to_the_file_and_a_stopped_app_keeps_its_logs() {
    let d = Daemon::new();
    d.file(
        "herd.toml",
        &testworker_app("rel", 2, "out_file = \"applogs/rel.log\""),
    );
    // Started with a relative file name from the file's folder, as users do.
    let mut start = d.command(&["start", "herd.toml"]);
    start.current_dir(d.root());
    let r = d.run_command(start, &["start"]);
    assert_eq!(r.code, 0, "{r}");
    d.wait_online("rel", 2);
    for slot in 0..2 {
        let f = d.root().join(format!("applogs/rel-{slot}.log"));
        d.wait_until(&format!("{} written", f.display()), T, || {
            std::fs::read_to_string(&f).is_ok_and(|t| t.contains("listening"))
        });
    }
    d.ok(&["stop", "rel"]);
    // Stopped (no worker to count slots by): every slot's files are still listed.
    let r = d.ok(&["logs", "rel", "-n", "1", "--json"]);
    let slots: BTreeSet<u64> = r
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["slot"].as_u64())
        .collect();
    assert_eq!(slots, BTreeSet::from([0, 1]), "{r}");
}

#[test]
fn ping_and_kill_are_understood_in_any_protocol_version() {
    use std::io::{BufRead, BufReader, Write};
    let d = Daemon::new();
    d.ok(&["ping"]);
    let ask = |line: &str| {
        let mut s = std::os::unix::net::UnixStream::connect(d.home().join("herd.sock")).unwrap();
        s.write_all(line.as_bytes()).unwrap();
        let mut answer = String::new();
        BufReader::new(s).read_line(&mut answer).unwrap();
        serde_json::from_str::<serde_json::Value>(&answer).unwrap()
    };
    let list = ask("{\"v\":999,\"cmd\":\"list\"}\n");
    assert_eq!(list["kind"], "error", "{list}");
    assert!(
        list["message"].as_str().unwrap_or("").contains("herd kill"),
        "{list}"
    );
    let pong = ask("{\"v\":999,\"cmd\":\"ping\"}\n");
    assert_eq!(pong["kind"], "pong", "{pong}");
    assert_eq!(pong["protocol"], 1, "{pong}");
    let killed = ask("{\"v\":999,\"cmd\":\"kill\"}\n");
    assert_eq!(killed["kind"], "done", "{killed}");
    d.wait_until("the daemon gone", T, || d.daemon_pid().is_none());
}

#[test]
fn scale_is_bounded() {
    let d = Daemon::new();
    let file = d.file("herd.toml", &testworker_app("web", 1, ""));
    d.ok(&["start", file.to_str().unwrap()]);
    for to in ["+9223372036854775807", "18446744073709551615", "5000"] {
        let r = d.run(&["scale", "web", to]);
        assert_eq!(r.code, 1, "{to}: {r}");
        assert!(r.stderr.contains("at most 1024"), "{to}: {r}");
    }
    assert_eq!(d.online_pids("web").len(), 1);
}

#[test]
fn a_start_during_a_kill_waits_for_the_old_daemon_then_starts_a_new_one() {
    let d = Daemon::new();
    let file = d.file(
        "herd.toml",
        &testworker_args_app("stubborn", &["--ignore-term"], 1, "kill_timeout = \"2s\""),
    );
    d.ok(&["start", file.to_str().unwrap()]);
    let old = d.daemon_pid().expect("a daemon");
    let kill = d.command(&["kill"]).spawn().unwrap();
    // The old daemon has closed its socket and waits for the stubborn worker.
    d.wait_until("the socket gone", T, || {
        !d.home().join("herd.sock").exists()
    });
    let r = d.run(&[
        "start",
        "--name",
        "fresh",
        "-i",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--",
        worker_bin(),
    ]);
    assert_eq!(r.code, 0, "{r}");
    let new = d.daemon_pid().expect("a new daemon");
    assert_ne!(new, old);
    assert!(!pid_alive(old) || stat(old).is_some_and(|s| s.state == 'Z'));
    d.wait_online("fresh", 1);
    let mut kill = kill;
    assert!(kill.wait().unwrap().success());
}

#[test]
fn kill_waits_for_the_daemon_it_stopped_not_for_whoever_holds_the_lock_next() {
    let d = Daemon::new();
    let file = d.file(
        "herd.toml",
        &testworker_args_app("stubborn", &["--ignore-term"], 1, "kill_timeout = \"1s\""),
    );
    d.ok(&["start", file.to_str().unwrap()]);
    let old = d.daemon_pid().expect("a daemon");
    // Stands for a new daemon that takes the lock the moment the old one lets it go.
    let lock = std::fs::File::open(d.home().join("daemon.lock")).unwrap();
    let (taken, was_taken) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
        taken.send(()).unwrap();
        // Held until the test lets go (the sender dropped).
        let _ = released.recv();
        drop(held);
    });
    let mut kill = d.command(&["kill"]).spawn().unwrap();
    was_taken
        .recv_timeout(Duration::from_secs(60))
        .expect("the old daemon let the lock go");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = kill.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = kill.kill();
            let _ = kill.wait();
            panic!("`herd kill` still waits after its daemon ended");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
    assert!(!pid_alive(old) || stat(old).is_some_and(|s| s.state == 'Z'));
    drop(release);
    holder.join().unwrap();
}

#[test]
fn the_guardian_holds_none_of_the_daemons_files() {
    let d = Daemon::new();
    let file = d.file("herd.toml", &testworker_app("web", 1, ""));
    d.ok(&["start", file.to_str().unwrap()]);
    let daemon = d.daemon_pid().expect("a daemon");
    let guardian = all_procs()
        .into_iter()
        .find(|p| p.ppid == daemon && p.comm == "herd-guardian")
        .expect("the daemon's guardian");
    let held: Vec<_> = std::fs::read_dir(format!("/proc/{}/fd", guardian.pid))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .collect();
    assert!(
        !held.contains(&d.home().join("daemon.lock")),
        "the guardian holds the daemon's lock: {held:?}"
    );
    // Only its standard streams (/dev/null) and its pipe from the daemon.
    assert_eq!(held.len(), 4, "{held:?}");
}
