//! herd run started by socket activation: `systemd-socket-activate` (systemd's own test
//! launcher: binds, waits for the first connection, then execs herd with LISTEN_FDS,
//! LISTEN_PID and LISTEN_FDNAMES) or a small python launcher where a test needs a socket
//! systemd-socket-activate cannot make (SO_REUSEPORT, a datagram socket). herd serves the
//! inherited sockets in every balancing mode, and refuses bad ones before any worker starts.
//! The units of `herd startup --socket run …` pass `systemd-analyze verify` and serve when
//! run as they say.

use std::os::unix::net::UnixStream;
use std::process::Command;

use crate::common::*;
use nix::sys::signal::Signal;

/// `systemd-socket-activate -l ADDR… <launcher flags> herd run <herd_args> -- herd-testworker`,
/// once the launcher listens. herd itself starts at the first connection.
fn activate(listen: &[&str], launcher: &[&str], herd_args: &[&str]) -> Herd {
    activate_program(listen, launcher, herd_args, &[worker_bin()])
}

/// [`activate`] with another worker program.
fn activate_program(
    listen: &[&str],
    launcher: &[&str],
    herd_args: &[&str],
    program: &[&str],
) -> Herd {
    let mut cmd = Command::new(systemd_socket_activate());
    for addr in listen {
        cmd.args(["-l", addr]);
    }
    // The launcher passes herd only PATH, TERM, USER, HOME and what -E names.
    cmd.args(["-E", "HERD_LOG_FORMAT=json"]).args(launcher);
    cmd.args([herd_bin(), "run"])
        .args(herd_args)
        .arg("--")
        .args(program);
    let herd = Herd::spawn(cmd, false, true);
    let mut from = 0;
    for addr in listen {
        from = herd
            .wait_log_from(from, &format!("Listening on {addr} as"))
            .0
            + 1;
    }
    herd
}

/// A launcher of one socket on 127.0.0.1:PORT made by python: `stream`, `reuseport` (a
/// stream socket with SO_REUSEPORT, as systemd's `ReusePort=yes` makes) or `dgram`. It
/// places it at fd 3 and execs herd with LISTEN_FDS=1 and its own pid in LISTEN_PID.
fn python_launcher(kind: &str, port: u16, herd_args: &[&str]) -> Herd {
    const LAUNCHER: &str = r#"
import os, socket, sys
kind, port, herd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
if kind == "dgram":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if kind == "reuseport":
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="web")
os.execv(herd[0], herd)
"#;
    let mut cmd = Command::new(python());
    cmd.args(["-c", LAUNCHER, kind, &port.to_string(), herd_bin(), "run"])
        .args(herd_args)
        .args(["--", worker_bin()]);
    Herd::spawn(cmd, false, true)
}

/// The first request: it wakes the launcher, which execs herd; the connection waits in the
/// inherited socket's queue until a worker (or herd, in the handoff modes) accepts it.
fn first_request(herd: &Herd, port: u16) {
    let url = format!("http://127.0.0.1:{port}/");
    match http_get(&url) {
        Ok((200, _)) => {}
        other => herd.fail(&format!("the first request to {url}: {other:?}")),
    }
}

/// herd's `herd.listening` record: inherited, in mode `balance`.
fn listens_inherited(herd: &Herd, addr: &str, balance: &str) {
    let e = herd.wait_event("herd.listening");
    if e.str("addr") != addr || !e.bool("inherited") || e.str("balance") != balance {
        herd.fail(&format!(
            "expected {addr} inherited in mode {balance}, got {e:?}"
        ));
    }
}

/// Both slots answer, then SIGTERM drains and herd exits 0.
fn both_slots_answer_then_stop(mut herd: Herd) {
    herd.wait_ready(2);
    herd.who_until("slot 0", |_, slot| slot == 0);
    herd.who_until("slot 1", |_, slot| slot == 1);
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// The default, reuseport: systemd-socket-activate's socket has no SO_REUSEPORT, so herd
/// serves it shared and says why. The workers get it the herd way: herd's own LISTEN_FDNAMES
/// and their own LISTEN_PID, not the launcher's.
#[test]
fn reuseport_serves_a_socket_without_so_reuseport_shared() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let herd = activate(&[&addr], &["--fdname=web"], &["-i", "2"]);
    first_request(&herd, port);
    herd.wait_log("served `shared` instead of `reuseport`");
    listens_inherited(&herd, &addr, "shared");
    let (_, env) = herd.get("/env");
    let env = kv(&env);
    let worker_pid = env.get("PID").cloned().unwrap_or_default();
    if env.get("LISTEN_FDNAMES").map(String::as_str) != Some(&format!("tcp-{port}"))
        || env.get("LISTEN_FDS").map(String::as_str) != Some("1")
        || env.get("LISTEN_PID") != Some(&worker_pid)
    {
        herd.fail(&format!("the worker's LISTEN_* are not herd's: {env:?}"));
    }
    both_slots_answer_then_stop(herd);
}

/// A socket with SO_REUSEPORT (systemd's `ReusePort=yes`): it becomes slot 0's, herd binds
/// slot 1's into its group, and the kernel spreads connections over both.
#[test]
fn reuseport_joins_an_inherited_so_reuseport_socket() {
    let port = free_port();
    let herd = python_launcher("reuseport", port, &["-i", "2"]);
    listens_inherited(&herd, &format!("127.0.0.1:{port}"), "reuseport");
    both_slots_answer_then_stop(herd);
}

#[test]
fn shared_serves_the_inherited_socket() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let herd = activate(&[&addr], &[], &["-i", "2", "--balance", "shared"]);
    first_request(&herd, port);
    listens_inherited(&herd, &addr, "shared");
    both_slots_answer_then_stop(herd);
}

/// herd accepts on the inherited socket and hands connections over (to the Python
/// channel worker of `examples/handoff.py`); the workers get no socket, and no LISTEN_* of
/// the launcher's.
#[test]
fn round_robin_accepts_on_the_inherited_socket() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let handoff = example("handoff.py");
    let herd = activate_program(
        &[&addr],
        &[],
        &["-i", "2", "--balance", "round-robin", "--ready", "notify"],
        &[&python(), handoff.to_str().unwrap()],
    );
    first_request(&herd, port);
    listens_inherited(&herd, &addr, "round-robin");
    herd.wait_ready(2);
    for pid in herd.worker_pids() {
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if String::from_utf8_lossy(&env).contains("LISTEN_") {
            herd.fail(&format!("handoff worker {pid} sees LISTEN_* variables"));
        }
    }
    both_slots_answer_then_stop(herd);
}

#[test]
fn proxy_relays_from_the_inherited_socket() {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let herd = activate(&[&addr], &[], &["-i", "2", "--proxy"]);
    first_request(&herd, port);
    listens_inherited(&herd, &addr, "round-robin");
    both_slots_answer_then_stop(herd);
}

/// A unix socket the launcher made: served, and its file left to the launcher.
#[test]
fn a_unix_socket_is_served_and_its_file_kept() {
    let sock = TempPath::new("activated.sock");
    let herd = activate(&[sock.s()], &[], &["-i", "2"]);
    let ask = || {
        let s = UnixStream::connect(&sock.0).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(T)).ok();
        raw_exchange(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .map_err(|e| e.to_string())
    };
    match ask() {
        Ok(answer) if answer.contains("pid=") => {}
        other => herd.fail(&format!("over {}: {other:?}", sock.s())),
    }
    // A unix socket is one socket for every worker whatever the mode (as when herd binds it).
    listens_inherited(&herd, &format!("unix:{}", sock.s()), "reuseport");
    let mut herd = herd;
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
    assert!(sock.0.exists(), "herd removed the launcher's socket file");
}

/// `--listen` picks its socket by address among the inherited ones; the others are not
/// served, and the log says so.
#[test]
fn listen_picks_the_inherited_socket_with_its_address() {
    let (unused, served) = (free_port(), free_port());
    let (unused_addr, served_addr) = (format!("127.0.0.1:{unused}"), format!("127.0.0.1:{served}"));
    let herd = activate(
        &[&unused_addr, &served_addr],
        &[],
        &["-i", "2", "--listen", &served_addr],
    );
    first_request(&herd, served);
    listens_inherited(&herd, &served_addr, "shared");
    herd.wait_log(&format!(
        "inherited socket fd 3 = {unused_addr} matches no --listen"
    ));
    if herd.events("herd.listening").len() != 1 {
        herd.fail("herd listens on more than the address it was given");
    }
    both_slots_answer_then_stop(herd);
}

/// Exit 1, one line naming `needles`, no worker started.
fn refused(mut herd: Herd, needles: &[&str]) {
    let code = herd.wait_exit(T);
    if code != 1 {
        herd.fail(&format!("exit code {code}, expected 1"));
    }
    let err = herd.lines(Out::Stderr).join("\n");
    for n in needles {
        if !err.contains(n) {
            herd.fail(&format!("the message does not name {n:?}"));
        }
    }
    herd.assert_no_spawn();
}

#[test]
fn an_address_that_matches_no_inherited_socket_is_refused_listing_them() {
    let (inherited, asked) = (free_port(), free_port());
    let inherited_addr = format!("127.0.0.1:{inherited}");
    let asked_addr = format!("127.0.0.1:{asked}");
    let herd = activate(
        &[&inherited_addr],
        &["--fdname=web"],
        &["--listen", &asked_addr],
    );
    // The connection wakes the launcher; herd refuses and closes it.
    let _ = http_get(&format!("http://{inherited_addr}/"));
    refused(
        herd,
        &[&asked_addr, &format!("fd 3 = {inherited_addr} (`web`)")],
    );
}

/// `sh -c '<setup>; exec herd run --listen 127.0.0.1:0 -- herd-testworker'`, with `$$` (the
/// shell's pid, which `exec` gives herd) available to the setup.
fn shell(setup: &str) -> Herd {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        &format!("{setup}; exec \"$0\" run --listen 127.0.0.1:0 -- \"$1\""),
        herd_bin(),
        worker_bin(),
    ]);
    Herd::spawn(cmd, false, true)
}

#[test]
fn listen_fds_that_is_not_a_number_is_refused() {
    refused(
        shell("export LISTEN_PID=$$ LISTEN_FDS=two"),
        &["LISTEN_FDS=`two`"],
    );
}

#[test]
fn an_inherited_fd_that_is_not_a_socket_is_refused() {
    refused(
        shell("exec 3</dev/null; export LISTEN_PID=$$ LISTEN_FDS=1"),
        &["fd 3", "/dev/null", "not a socket"],
    );
}

#[test]
fn an_inherited_datagram_socket_is_refused() {
    let port = free_port();
    refused(
        python_launcher("dgram", port, &["--listen", "127.0.0.1:0"]),
        &["fd 3", "not a listening stream socket", "datagram"],
    );
}

/// sd_listen_fds' rule: LISTEN_FDS meant for another process (LISTEN_PID is not herd's) is
/// ignored, said at debug level, and herd binds its addresses as usual.
#[test]
fn sockets_for_another_pid_are_ignored() {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "exec 3</dev/null; LISTEN_PID=1 LISTEN_FDS=1 exec \"$0\" run -i 1 --listen 127.0.0.1:0 -- \"$1\"",
        herd_bin(),
        worker_bin(),
    ])
    .env("HERD_LOG", "debug");
    let mut herd = Herd::spawn(cmd, false, true);
    herd.wait_log("LISTEN_PID=1 is not herd's pid");
    if herd.wait_event("herd.listening").bool("inherited") {
        herd.fail("herd took sockets meant for another process");
    }
    herd.wait_ready(1);
    herd.who();
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// `herd startup --socket run …`: both units pass `systemd-analyze verify` (no running systemd
/// needed) without a warning, and what they say (the socket unit's ListenStream=, the
/// service's ExecStart=) serves under a real socket-activation launcher.
#[test]
fn startup_units_verify_and_serve_under_socket_activation() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let home = TempPath::new("startup-home");
    let out = Command::new(herd_bin())
        .env("HERD_HOME", home.s())
        .args(["startup", "--socket", "--watchdog", "10s", "run", "-i", "2"])
        .args(["--listen", &listen, "--name", "web", "--", worker_bin()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Printed as `# /etc/systemd/system/NAME` (or the user's folder), then the unit.
    let dir = TempPath::new("units");
    std::fs::create_dir_all(&dir.0).unwrap();
    let mut units: Vec<(String, String)> = Vec::new();
    for line in stdout.lines() {
        match line.strip_prefix("# /") {
            Some(path) => units.push((path.rsplit('/').next().unwrap().to_string(), String::new())),
            None => {
                let (_, text) = units.last_mut().expect("a unit's path first");
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    let names: Vec<&str> = units.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["herd-web.socket", "herd-web.service"], "{stdout}");
    for (name, text) in &units {
        std::fs::write(dir.0.join(name), text).unwrap();
    }
    let verify = Command::new(systemd_analyze())
        .arg("verify")
        .args(names.iter().map(|n| dir.0.join(n)))
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&verify.stderr).into_owned();
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {:?}\n{complaints}\n{stdout}",
        verify.status
    );
    let value = |unit: &str, key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(key))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        value(&units[0].1, "ListenStream="),
        std::slice::from_ref(&listen)
    );
    let exec = value(&units[1].1, "ExecStart=").remove(0);
    // What systemd would run: the socket's address, the service's command (no quotes here).
    let mut cmd = Command::new(systemd_socket_activate());
    cmd.args(["-l", &listen, "-E", "HERD_LOG_FORMAT=json"])
        .args(exec.split_whitespace());
    let mut herd = Herd::spawn(cmd, false, true);
    herd.wait_log(&format!("Listening on {listen} as"));
    first_request(&herd, port);
    listens_inherited(&herd, &listen, "shared");
    herd.wait_ready(2);
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// `herd::Cluster` (the `hello_cluster` example) started by socket activation with no PORT:
/// it serves the inherited socket, and listens on nothing else (not its default port).
#[test]
fn a_cluster_serves_the_inherited_socket_instead_of_its_default_port() {
    let exe = std::path::PathBuf::from(herd_bin())
        .parent()
        .unwrap()
        .join("examples/hello_cluster");
    assert!(
        exe.exists(),
        "{} is not built (cargo test builds the examples)",
        exe.display()
    );
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(systemd_socket_activate());
    cmd.args([
        "-l",
        &listen,
        "-E",
        "HERD_LOG_FORMAT=json",
        "-E",
        "INSTANCES=2",
    ])
    .arg(&exe);
    let mut herd = Herd::spawn(cmd, false, true);
    herd.wait_log(&format!("Listening on {listen} as"));
    first_request(&herd, port);
    listens_inherited(&herd, &listen, "shared");
    herd.wait_event("herd.starting");
    if herd.events("herd.listening").len() != 1 {
        herd.fail("the cluster listens on more than the inherited socket");
    }
    herd.wait_ready(2);
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}
