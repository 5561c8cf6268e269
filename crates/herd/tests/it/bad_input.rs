//! Bad input: the exit code (2 usage, 1 cannot start), one clear message naming the
//! value, and no worker started. Garbage on NOTIFY_SOCKET is reported and survived.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::common::*;

/// Runs herd to its exit; asserts the code, that stderr names every `needles`, and that
/// no worker was started.
fn rejects(args: &[&str], code: i32, needles: &[&str]) -> Herd {
    let mut herd = Herd::start(args);
    check(&mut herd, code, needles);
    herd
}

fn check(herd: &mut Herd, code: i32, needles: &[&str]) {
    let got = herd.wait_exit(T);
    if got != code {
        herd.fail(&format!("exit code {got}, expected {code}"));
    }
    let err = herd.lines(Out::Stderr).join("\n");
    for n in needles {
        if !err.to_lowercase().contains(&n.to_lowercase()) {
            herd.fail(&format!("the message does not name {n:?}"));
        }
    }
    herd.assert_no_spawn();
}

/// `HERD_LOG_FORMAT` (the default of `--log-format`) is checked like the flag.
#[test]
fn unknown_herd_log_format_is_a_usage_error() {
    let mut cmd = Command::new(herd_bin());
    cmd.args(["run", "--listen", "127.0.0.1:0", "--", worker_bin()])
        .env("HERD_LOG_FORMAT", "yaml");
    let mut herd = Herd::spawn(cmd, false, true);
    check(&mut herd, 2, &["HERD_LOG_FORMAT", "yaml", "text or json"]);
}

#[test]
fn unknown_flag_is_a_usage_error() {
    rejects(
        &["run", "--bogus-flag", "--", worker_bin()],
        2,
        &["--bogus-flag"],
    );
}

#[test]
fn missing_command_is_a_usage_error() {
    rejects(&["run", "-i", "2"], 2, &["COMMAND"]);
}

#[test]
fn bad_instance_counts_are_usage_errors() {
    rejects(&["run", "-i", "abc", "--", worker_bin()], 2, &["abc"]);
    rejects(&["run", "-i", "1.5", "--", worker_bin()], 2, &["1.5"]);
}

#[test]
fn command_not_found() {
    rejects(
        &[
            "run",
            "--listen",
            "127.0.0.1:0",
            "--",
            "herd-no-such-program-xyz",
        ],
        1,
        &["herd-no-such-program-xyz", "not found"],
    );
}

#[test]
fn command_not_executable() {
    let f = TempPath::new("not-exec.sh");
    std::fs::write(&f.0, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&f.0, std::fs::Permissions::from_mode(0o644)).unwrap();
    rejects(
        &["run", "--listen", "127.0.0.1:0", "--", f.s()],
        1,
        &[f.s(), "not executable"],
    );
}

#[test]
fn address_already_in_use() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    rejects(
        &["run", "-i", "2", "--listen", &addr, "--", worker_bin()],
        1,
        &[&addr, "already in use"],
    );
}

#[test]
fn privileged_port_as_an_unprivileged_user() {
    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024);
    if start <= 80 {
        skip(&format!(
            "ip_unprivileged_port_start = {start}: port 80 needs no privilege here"
        ));
        return;
    }
    let args = ["run", "-i", "1", "-p", "80", "--", worker_bin()];
    let cmd = if nix::unistd::geteuid().is_root() {
        let mut cmd = Command::new(util_linux("setpriv"));
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            herd_bin(),
        ])
        .args(args);
        cmd
    } else {
        let mut cmd = Command::new(herd_bin());
        cmd.args(args);
        cmd
    };
    let mut herd = Herd::spawn(cmd, false, true);
    check(&mut herd, 1, &["80"]);
    let err = herd.lines(Out::Stderr).join("\n").to_lowercase();
    if !(err.contains("permission") || err.contains("privilege")) {
        herd.fail("the message should say permission/privileges");
    }
}

#[test]
fn unix_socket_in_a_missing_folder() {
    let dir = TempPath::new("missing-dir");
    let sock = dir.0.join("sub").join("app.sock");
    let arg = format!("unix:{}", sock.display());
    let folder = sock.parent().unwrap().display().to_string();
    rejects(
        &["run", "-i", "1", "--listen", &arg, "--", worker_bin()],
        1,
        &[&folder],
    );
}

/// A worker that writes a non-KEY=VALUE datagram, then READY=1, to NOTIFY_SOCKET, then
/// becomes the test worker (same pid).
const GARBAGE_SENDER: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
p = os.environ["NOTIFY_SOCKET"]
s.sendto(b"hello there", p)
s.sendto(b"READY=1", p)
os.execv(sys.argv[1], sys.argv[1:])
"#;

#[test]
fn garbage_on_notify_socket_is_reported_and_survived() {
    let python = python();
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "1",
        "--ready",
        "notify",
        "--listen",
        "127.0.0.1:0",
        "--",
        &python,
        "-c",
        GARBAGE_SENDER,
        worker_bin(),
    ]);
    let line = herd.wait_log("garbage on NOTIFY_SOCKET");
    assert!(
        line.contains("hello there"),
        "the garbage is quoted: {line:?}"
    );
    herd.wait_event_where("worker.ready", |e| e.str("how") == "READY=1");
    let (pid, slot) = herd.who();
    assert_eq!(slot, 0);
    assert_eq!(herd.worker_pids(), vec![pid]);
    assert!(herd.try_exit().is_none(), "herd keeps running");
}

/// A handoff mode with workers that take no handed-over connection (a program that knows
/// nothing of the channel): after its first handle goes unacknowledged the worker gets no
/// more, and herd says, once, what a worker must do, instead of letting connections wait
/// in silence.
#[test]
fn handoff_mode_with_workers_that_take_no_connection_is_explained() {
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "1",
        "--balance",
        "round-robin",
        "--ready",
        "delay:50ms",
        "--listen",
        "127.0.0.1:0",
        "--",
        "sleep",
        "30",
    ]);
    herd.wait_ready(1);
    let port = herd.port();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    let line = herd.wait_log("does not read connections from its channel");
    assert!(line.contains("--proxy"), "{line}");
    assert!(line.contains("NODE_CHANNEL_FD"), "{line}");
    // Later connections wait, and herd says why, once.
    for _ in 0..3 {
        clients.push(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    herd.wait_log("take no handed-over connection");
    clients.push(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(herd.count_log("take no handed-over connection"), 1);
    herd.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// `herd check herd.toml`: a typo is reported with its file, line, column, key path and a
/// suggestion (exit 1); a good file is accepted (exit 0).
#[test]
fn herd_check_names_the_file_line_and_key_of_a_typo() {
    let bad = TempPath::new("bad-herd.toml");
    std::fs::write(
        &bad.0,
        "[apps.api]\ncommand = \"node server.js\"\ninstance = 4\n",
    )
    .unwrap();
    let mut herd = Herd::start(&["check", bad.s()]);
    assert_eq!(herd.wait_exit(T), 1);
    let err = herd.lines(Out::Stderr).join("\n");
    assert!(
        err.contains(&format!(
            "{}:3:1: unknown key `apps.api.instance` — did you mean `instances`?",
            bad.s()
        )),
        "{err}"
    );
    let good = TempPath::new("good-herd.toml");
    std::fs::write(
        &good.0,
        "[apps.api]\ncommand = [\"node\", \"server.js\"]\ninstances = 4\n",
    )
    .unwrap();
    let mut herd = Herd::start(&["check", good.s()]);
    assert_eq!(herd.wait_exit(T), 0);
    let out = herd.output(Out::Stdout).join("\n");
    assert!(out.contains("1 app OK"), "{out}");
}
