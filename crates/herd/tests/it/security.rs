//! What SECURITY.md promises beyond the control socket's uid check and the dashboard's
//! token: environment values stay out of everything herd prints unless asked for, workers
//! run as `user` and cannot read herd's own files, and the daemon's bounds on what one
//! client may ask (apps in one daemon, the size of a request) hold with a clear answer.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;

use crate::common::daemon::*;
use crate::common::*;

const SECRET: &str = "hunter2-do-not-show";

#[test]
fn environment_values_stay_out_of_listings_and_logs_unless_asked_for() {
    let d = Daemon::new();
    let file = d.file(
        "herd.toml",
        &testworker_app(
            "api",
            1,
            &format!("env = {{ API_SECRET = \"{SECRET}\" }}\n[apps.api.env_prod]\nDB_PASSWORD = \"{SECRET}-prod\"\n"),
        ),
    );
    d.start_each(&file, &["api"]);
    d.wait_online("api", 1);
    for args in [
        &["ls", "--json"][..],
        &["ls"],
        &["jlist"],
        &["prettylist"],
        &["describe", "api"],
        &["describe", "api", "--json"],
        &["ls", "--json", "--sort", "name"],
    ] {
        let r = d.ok(args);
        assert!(
            !r.stdout.contains(SECRET),
            "herd {args:?} shows a value: {r}"
        );
    }
    let r = d.ok(&["describe", "api", "--json"]);
    let app: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let toml = app["toml"].as_str().unwrap();
    assert!(
        toml.contains("API_SECRET = \"(hidden)\"") && toml.contains("DB_PASSWORD = \"(hidden)\""),
        "the names stay, the values are hidden: {toml}"
    );
    // Asked for: shown.
    for args in [
        &["ls", "--json", "--show-env"][..],
        &["describe", "api", "--json", "--show-env"],
    ] {
        let r = d.ok(args);
        assert!(
            r.stdout.contains(SECRET) && r.stdout.contains(&format!("{SECRET}-prod")),
            "herd {args:?}: {r}"
        );
    }
    let r = d.ok(&["env", "api"]);
    assert!(r.stdout.contains(&format!("API_SECRET={SECRET}")), "{r}");
    // --show-env means nothing without --json: a usage error, not silently ignored.
    let r = d.run(&["ls", "--show-env"]);
    assert_eq!(r.code, 2, "{r}");
    // Neither the daemon's log nor herd's records of the app carry a value.
    d.ok(&["reload", "api"]);
    d.wait_online("api", 1);
    assert!(!d.daemon_log().contains(SECRET), "{}", d.daemon_log());
    for entry in walk(&d.home().join("logs")) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(!text.contains(SECRET), "{}: {text}", entry.display());
    }
    // The dump keeps the values (a resurrect needs them), readable by the owner alone.
    d.ok(&["save"]);
    let dump = d.home().join("dump.json");
    assert!(std::fs::read_to_string(&dump).unwrap().contains(SECRET));
    for name in ["dump.json", "dashboard.token", "herd.sock"] {
        let path = d.home().join(name);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    }
    let home = std::fs::metadata(d.home()).unwrap().permissions().mode();
    assert_eq!(home & 0o777, 0o700);
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A free TCP port below 1024 on 127.0.0.1 (only root may bind it).
fn privileged_port() -> u16 {
    (600..1000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port below 1024")
}

#[test]
fn as_root_herd_binds_a_privileged_port_for_workers_that_cannot_read_its_files() {
    if skip_unless_root("cannot bind a privileged port nor switch users") {
        return;
    }
    let d = Daemon::new();
    let port = privileged_port();
    let app = testworker_app("low", 2, "user = \"nobody\"")
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"));
    let file = d.file("herd.toml", &app);
    d.start_each(&file, &["low"]);
    d.wait_online("low", 2);
    d.ok(&["save"]);
    let ask = |path: &str| {
        let (code, body) =
            http_get(&format!("http://127.0.0.1:{port}{path}")).unwrap_or_else(|e| d.fail(&e));
        assert_eq!(code, 200, "{path}: {body}");
        body.trim().to_string()
    };
    let who = ask("/whoami");
    assert!(who.starts_with("uid=65534 gid=65534"), "{who}");
    assert!(
        !who.split("groups=")
            .nth(1)
            .unwrap_or("")
            .split(',')
            .any(|g| g == "0"),
        "root's group is not among the worker's: {who}"
    );
    for name in ["dump.json", "dashboard.token", "state.json", "daemon.log"] {
        let path = d.home().join(name);
        if !path.exists() {
            continue;
        }
        let got = ask(&format!("/open?path={}", path.display()));
        assert_eq!(got, "PermissionDenied", "{}", path.display());
    }
    let sock = d.home().join("herd.sock");
    let got = ask(&format!("/open?path={}", sock.display()));
    assert_eq!(
        got, "PermissionDenied",
        "the control socket's directory is closed"
    );
    // The worker's pid is not root's either: herd (root) is only its parent.
    let pid = d.online_pids("low")[0];
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().skip(1).all(|u| u == "65534"),
        "real, effective, saved and fs uids are all nobody's: {uid_line}"
    );
}

/// Only the daemon and its guardian run: no worker was started.
fn assert_no_worker(d: &Daemon) {
    let procs = d.describe_processes();
    assert!(
        procs.iter().all(|(_, name)| !name.contains("testwork")),
        "nothing started: {procs:?}"
    );
}

#[test]
fn a_group_that_does_not_exist_is_an_error_naming_it() {
    let d = Daemon::new();
    let file = d.file(
        "herd.toml",
        &testworker_app("grp", 1, "group = \"no-such-group-herd\""),
    );
    let r = d.run(&["start", file.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr.contains("grp") && r.stderr.contains("no-such-group-herd"),
        "{r}"
    );
    assert_no_worker(&d);
}

#[test]
fn more_apps_than_a_daemon_holds_are_refused_before_any_starts() {
    let d = Daemon::new();
    let mut text = String::new();
    for i in 0..1025 {
        text.push_str(&format!(
            "[apps.a{i}]\ncommand = [\"{}\"]\nlisten = [\"127.0.0.1:0\"]\n",
            worker_bin()
        ));
    }
    let file = d.file("herd.toml", &text);
    let r = d.run(&["start", file.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr.contains("defines 1025 new apps")
            && r.stderr.contains("at most 1024 apps in one daemon")
            && r.stderr.contains("nothing started"),
        "{r}"
    );
    assert!(d.ls().is_empty(), "no app defined");
    assert_no_worker(&d);
}

#[test]
fn a_request_past_the_daemons_limit_gets_an_answer_and_the_daemon_goes_on() {
    let d = Daemon::new();
    d.ok(&["ping"]);
    let mut s = std::os::unix::net::UnixStream::connect(d.home().join("herd.sock")).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    // 17 MiB without a newline: the daemon stops reading at 16 and answers.
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..17 {
        if s.write_all(&chunk).is_err() {
            break; // it answered and closed: the answer is still there to read
        }
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.contains("the request is longer than 16 MiB"),
        "{answer:.300}"
    );
    d.ok(&["ping"]);
}
