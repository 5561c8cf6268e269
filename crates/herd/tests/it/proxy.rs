//! `--proxy`: each worker listens on a private `PORT` of its own on 127.0.0.1 (no inherited
//! socket, no LISTEN_FDS); herd accepts on the public socket and relays the bytes to the
//! worker the balance mode picks (round-robin by default). A worker is ready when herd can
//! connect to its port. `--proxy-protocol v1|v2` starts each relayed connection with a
//! PROXY protocol header, so the worker knows the client's address.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// `herd run --proxy -i N --listen 127.0.0.1:0 <flags> -- <cmd>`.
fn start(n: usize, flags: &[&str], cmd: &[&str]) -> Herd {
    let n = n.to_string();
    let mut args = vec!["run", "--proxy", "-i", &n, "--listen", "127.0.0.1:0"];
    args.extend_from_slice(flags);
    args.push("--");
    args.extend_from_slice(cmd);
    Herd::start(&args)
}

/// Asks `/env` until `n` distinct slots answered; their KEY=VALUE maps by slot.
fn envs(herd: &Herd, n: usize) -> Vec<std::collections::HashMap<String, String>> {
    let mut by_slot = std::collections::BTreeMap::new();
    herd.wait_until(&format!("{n} distinct slots answer /env"), T, || {
        let (status, body) = herd.get("/env");
        assert_eq!(status, 200, "{body}");
        let m = kv(&body);
        by_slot.insert(m.get("HERD_WORKER_ID").cloned().unwrap_or_default(), m);
        by_slot.len() == n
    });
    by_slot.into_values().collect()
}

#[test]
fn each_worker_gets_a_private_port_and_no_socket() {
    let mut herd = start(2, &[], &[worker_bin()]);
    herd.wait_ready(2);
    let public = herd.port();
    let envs = envs(&herd, 2);
    let mut ports = BTreeSet::new();
    for env in &envs {
        let port: u16 = env
            .get("PORT")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| herd.fail(&format!("no PORT in {env:?}")));
        if port == public {
            herd.fail(&format!("a worker was given herd's public port: {env:?}"));
        }
        if env.contains_key("LISTEN_FDS") || env.contains_key("LISTEN_PID") {
            herd.fail(&format!("a proxied worker was given sockets: {env:?}"));
        }
        if env.get("HERD_TRANSPORT").map(String::as_str) != Some("proxy") {
            herd.fail(&format!("HERD_TRANSPORT is not proxy: {env:?}"));
        }
        ports.insert(port);
    }
    if ports.len() != 2 {
        herd.fail(&format!("both workers were given the same port: {envs:?}"));
    }
    // The private ports are on the loopback: herd connects there.
    for p in &ports {
        let (status, _) = http_get(&format!("http://127.0.0.1:{p}/")).unwrap_or_else(|e| {
            herd.fail(&format!(
                "the worker's private port {p} does not answer: {e}"
            ))
        });
        assert_eq!(status, 200);
    }
    // Round-robin is the default with --proxy: consecutive connections alternate.
    let pids: Vec<u32> = (0..6).map(|_| herd.who().0).collect();
    for pair in pids.windows(2) {
        if pair[0] == pair[1] {
            herd.fail(&format!(
                "consecutive connections went to the same worker: {pids:?}"
            ));
        }
    }
    // A keep-alive connection stays with its worker.
    let mut s = connect_from(Ipv4Addr::LOCALHOST, public).unwrap();
    let first = request_on(&mut s, "/", false).unwrap();
    for _ in 0..5 {
        let again = request_on(&mut s, "/", false).unwrap_or_else(|e| herd.fail(&e));
        assert_eq!(again, first);
    }
    drop(s);
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// Slot 1 sleeps 2 s before its program starts listening. Clients that hammer herd from
/// the moment it listens never fail: connections wait for a ready worker, and the slow
/// one gets none before its port accepts.
#[test]
fn a_worker_slow_to_listen_gets_no_connection_before_it_listens() {
    let mut herd = start(
        2,
        &[],
        &[
            "/bin/sh",
            "-c",
            r#"if [ "$HERD_WORKER_ID" = 1 ]; then sleep 2; fi; exec "$@""#,
            "sh",
            worker_bin(),
        ],
    );
    let port = herd.port();
    let load = Load::start(port, 4);
    herd.wait_ready(2);
    let slow = herd.who_until("the slow worker (slot 1)", |_, slot| slot == 1);
    // Some load on both workers after that.
    let ok = load.ok();
    herd.wait_until("100 more answers", T, || load.ok() >= ok + 100);
    let (ok, errors) = load.finish();
    if !errors.is_empty() {
        herd.fail(&format!(
            "{} of {} requests failed while a worker was starting: {:?}",
            errors.len(),
            ok + errors.len(),
            errors.iter().map(|(_, e)| e).take(10).collect::<Vec<_>>()
        ));
    }
    eprintln!("{ok} answers, the slow worker was {slow:?}");
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// A rolling reload under load: the stopping workers get no new connection, the new
/// ones take over once their port accepts, nothing fails.
#[test]
fn reload_under_load_loses_no_request() {
    let mut herd = start(2, &[], &[worker_bin()]);
    herd.wait_ready(2);
    let port = herd.port();
    let load = Load::start(port, 4);
    herd.wait_until("the first 50 answers", T, || load.ok() >= 50);
    let old = reload_under(&herd, load);
    let (pid, _) = herd.who();
    assert!(!old.contains(&pid), "an old worker answered: {pid}");
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// A worker that takes one connection at a time, and whose request in hand lasts until it
/// is asked to stop (at most 30 s), so the connections herd relays to it meanwhile wait in
/// its accept backlog; on SIGTERM it answers the request in hand and closes its listener,
/// as servers do.
const SLOW_ACCEPTER: &str = r#"
import os, select, signal, socket
s = socket.create_server(("127.0.0.1", int(os.environ["PORT"])), backlog=64)
r, w = os.pipe()
os.set_blocking(w, False)
signal.set_wakeup_fd(w)
signal.signal(signal.SIGTERM, lambda *_: None)
while True:
    ready, _, _ = select.select([s, r], [], [])
    if r in ready:
        break
    c, _ = s.accept()
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(4096)
        if not d:
            break
        buf += d
    if buf:
        print("serving", flush=True)
        if os.environ.get("HERD_GENERATION") == "0":
            select.select([r], [], [], 30)  # the first worker's request lasts until SIGTERM
        body = b"pid=%d\n" % os.getpid()
        try:
            c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        except OSError:
            pass
    c.close()
s.close()
print("stopped", flush=True)
"#;

/// ESTABLISHED TCP sockets whose local port is `port` (IPv4, any process).
fn established_on(port: u16) -> usize {
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    tcp.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3
                && f[3] == "01"
                && f[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    == Some(port)
        })
        .count()
}

/// Connections herd has relayed to a worker that has not accepted them yet (they wait in
/// its backlog) when a reload stops that worker: the worker closes its listener, the
/// kernel resets them. herd must not lose them: a connection reset before its worker
/// answered a byte is replayed to another worker with what the client sent. (The old
/// worker holds its one request until it is stopped; the new one answers at once.)
#[test]
fn reload_loses_no_connection_waiting_in_the_old_workers_backlog() {
    let python = python();
    let mut herd = start(
        1,
        &["--kill-timeout", "10s"],
        &[&python, "-c", SLOW_ACCEPTER],
    );
    herd.wait_ready(1);
    let port = herd.port();
    let (_, old) = herd.spawned()[0];
    let private: u16 = std::fs::read(format!("/proc/{old}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(b"PORT="))
        .and_then(|p| std::str::from_utf8(p).ok()?.parse().ok())
        .unwrap_or_else(|| herd.fail("no PORT in the worker's environment"));
    // Clients more patient than the worker's longest request.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = connect_from(Ipv4Addr::LOCALHOST, port).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
                request_on(&mut s, "/", true)
            })
        })
        .collect();
    // All four relayed: the worker's side of each is established (one accepted, three in
    // the backlog).
    herd.wait_until("herd relayed the 4 connections to the worker", T, || {
        established_on(private) >= 4
    });
    herd.signal(Signal::SIGHUP);
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    if !failed.is_empty() {
        herd.fail(&format!(
            "{} of 4 requests relayed to the old worker before the reload were lost: {failed:?}",
            failed.len()
        ));
    }
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// SIGKILL of a worker under load. A request the killed worker was answering at that
/// moment is lost (herd cannot replay it): at most one per client, since each client has
/// one request at a time. Every connection herd accepts after that goes to a live worker
/// (a refused connect to the dead worker's port is retried elsewhere), so nothing fails
/// later than a moment after the kill, and the replacement takes connections once ready.
#[test]
fn a_killed_worker_loses_at_most_the_requests_it_was_answering() {
    const CLIENTS: usize = 4;
    let mut herd = start(2, &[], &[worker_bin()]);
    herd.wait_ready(2);
    let port = herd.port();
    let load = Load::start(port, CLIENTS);
    herd.wait_until("the first 100 answers", T, || load.ok() >= 100);
    let (slot, victim) = live_workers(&herd).into_iter().next().unwrap();
    let killed = Instant::now();
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    herd.wait_event_where("worker.exited", |e| {
        e.pid() == victim && e.str("status") == "SIGKILL"
    });
    herd.wait_ready(3);
    let (replacement, _) = herd.who_until("the replacement of the killed worker", |pid, s| {
        s == slot && pid != victim
    });
    let ok = load.ok();
    herd.wait_until("200 more answers", T, || load.ok() >= ok + 200);
    let (ok, errors) = load.finish();
    let late: Vec<_> = errors
        .iter()
        .filter(|(at, _)| at.duration_since(killed) > Duration::from_secs(1))
        .collect();
    if errors.len() > CLIENTS || !late.is_empty() {
        herd.fail(&format!(
            "{} of {} requests failed around the SIGKILL (at most {CLIENTS} expected, none later than 1 s after it): {:?}",
            errors.len(),
            ok + errors.len(),
            errors
                .iter()
                .map(|(at, e)| (at.saturating_duration_since(killed), e))
                .collect::<Vec<_>>()
        ));
    }
    eprintln!(
        "{ok} answers, {} failed at the kill; replacement {replacement}",
        errors.len()
    );
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// A worker that reads the PROXY protocol header (v1 text or v2 binary) before the HTTP
/// request and answers with the client address it names.
const PROXY_WORKER: &str = r#"
import os, socket, struct, threading
SIG = b"\r\n\r\n\x00\r\nQUIT\n"
def header(c):
    buf = b""
    while True:
        if buf.startswith(b"PROXY ") and b"\r\n" in buf:
            line, rest = buf.split(b"\r\n", 1)
            _, proto, src, dst, sport, dport = line.decode().split(" ")
            return "v1 %s %s:%s %s:%s" % (proto, src, sport, dst, dport), rest
        if len(buf) >= 16 and buf.startswith(SIG):
            ver_cmd, fam, n = buf[12], buf[13], struct.unpack("!H", buf[14:16])[0]
            if len(buf) >= 16 + n:
                a = buf[16:16 + n]
                if fam == 0x11:
                    src, dst = socket.inet_ntoa(a[0:4]), socket.inet_ntoa(a[4:8])
                    sport, dport = struct.unpack("!HH", a[8:12])
                    what = "v2 cmd=%#x TCP4 %s:%d %s:%d" % (ver_cmd, src, sport, dst, dport)
                else:
                    what = "v2 cmd=%#x fam=%#x" % (ver_cmd, fam)
                return what, buf[16 + n:]
        elif len(buf) >= 16 and not buf.startswith(b"PROXY "):
            return "none", buf
        more = c.recv(4096)
        if not more:
            return None, buf
        buf += more
def serve(c):
    with c:
        what, buf = header(c)
        if what is None:
            return
        while b"\r\n\r\n" not in buf:
            more = c.recv(4096)
            if not more:
                return
            buf += more
        body = ("pid=%d header=%s\n" % (os.getpid(), what)).encode()
        c.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
s = socket.create_server(("127.0.0.1", int(os.environ["PORT"])))
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

fn proxy_protocol(version: &str, expect_prefix: &str) {
    let python = python();
    let mut herd = start(
        1,
        &["--proxy-protocol", version],
        &[&python, "-c", PROXY_WORKER],
    );
    herd.wait_ready(1);
    let port = herd.port();
    let src = Ipv4Addr::new(127, 0, 0, 5);
    let mut s = connect_from(src, port).unwrap();
    let sport = s.local_addr().unwrap().port();
    let (status, body) = request_on(&mut s, "/", true).unwrap_or_else(|e| herd.fail(&e));
    assert_eq!(status, 200, "{body}");
    let want = format!("header={expect_prefix} 127.0.0.5:{sport} 127.0.0.1:{port}");
    if !body.contains(&want) {
        herd.fail(&format!(
            "the worker saw {body:?}, expected the client 127.0.0.5:{sport} and herd's 127.0.0.1:{port}: {want:?}"
        ));
    }
    herd.signal(Signal::SIGTERM);
    // The worker has no SIGTERM handler: it dies of the signal herd sent, a clean stop.
    assert_eq!(herd.wait_exit(T), 0);
}

#[test]
fn proxy_protocol_v1_names_the_client() {
    proxy_protocol("v1", "v1 TCP4");
}

#[test]
fn proxy_protocol_v2_names_the_client() {
    // Version 2, command PROXY (0x21), TCP over IPv4.
    proxy_protocol("v2", "v2 cmd=0x21 TCP4");
}

/// Runs herd to its exit: code 2, stderr names every needle, no worker started.
fn usage_error(args: &[&str], needles: &[&str]) {
    let mut herd = Herd::start(args);
    let code = herd.wait_exit(T);
    if code != 2 {
        herd.fail(&format!("{args:?}: exit code {code}, expected 2"));
    }
    let err = herd.lines(Out::Stderr).join("\n");
    for n in needles {
        if !err.contains(n) {
            herd.fail(&format!("{args:?}: the message does not name {n:?}"));
        }
    }
    herd.assert_no_spawn();
}

#[test]
fn proxy_with_a_socket_sharing_balance_is_a_usage_error() {
    for mode in ["reuseport", "shared"] {
        usage_error(
            &[
                "run",
                "--proxy",
                "--balance",
                mode,
                "-p",
                "0",
                "--",
                worker_bin(),
            ],
            &["--proxy", "--balance"],
        );
    }
    usage_error(
        &[
            "run",
            "--proxy-protocol",
            "v1",
            "-p",
            "0",
            "--",
            worker_bin(),
        ],
        &["--proxy-protocol", "--proxy"],
    );
    usage_error(
        &[
            "run",
            "--proxy",
            "--proxy-protocol",
            "v3",
            "-p",
            "0",
            "--",
            worker_bin(),
        ],
        &["v3"],
    );
}
