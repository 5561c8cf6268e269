//! The article's advice for state, "keep workers stateless, use external storage (Redis)",
//! shown with Express sessions: `examples/node/sessions-redis.js` keeps them in a real
//! Redis (Debian's `redis-server`, started here on a free port), so a session goes on on
//! whichever worker answers, across a rolling reload and a scale up and down under load;
//! `examples/node/sessions-memory.js` keeps them in the worker's memory, which
//! `--balance sticky` serves as long as that worker lives: a reload loses them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::common::*;
use nix::sys::signal::Signal;

/// A `redis-server` of its own on a free port, in memory only (no RDB, no AOF); killed
/// when dropped.
struct Redis {
    child: Child,
    port: u16,
    _dir: TempPath,
}

impl Redis {
    fn start() -> Redis {
        let bin = redis_server();
        for _ in 0..5 {
            let port = free_port();
            let dir = TempPath::new("redis");
            std::fs::create_dir_all(&dir.0).expect("a folder for redis-server");
            let mut child = Command::new(&bin)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .args(["--dir", dir.s()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot start redis-server");
            let mut exited = None;
            let up = poll_until(T, Duration::from_millis(20), || {
                exited = child.try_wait().expect("try_wait");
                exited.is_some() || redis_command(port, "PING").as_deref() == Ok("+PONG")
            });
            if up && exited.is_none() {
                return Redis {
                    child,
                    port,
                    _dir: dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            if !up {
                panic!("redis-server on port {port} did not answer PING within {T:?}");
            }
            // It exited: most likely the port was taken meanwhile; another one.
        }
        panic!("redis-server exited at start on five free ports in a row");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether Redis holds `key`.
    fn exists(&self, key: &str) -> bool {
        match redis_command(self.port, &format!("EXISTS {key}")) {
            Ok(r) => r == ":1",
            Err(e) => panic!("EXISTS {key} in Redis: {e}"),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One inline command to Redis on a new connection; its one-line reply.
fn redis_command(port: u16, command: &str) -> Result<String, String> {
    let mut s = connect_from(Ipv4Addr::LOCALHOST, port).map_err(|e| e.to_string())?;
    s.write_all(format!("{command}\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match s.read(&mut byte) {
            Ok(0) => return Err("closed before a reply".into()),
            Ok(_) => line.push(byte[0]),
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(String::from_utf8_lossy(&line[..line.len() - 2]).into_owned())
}

/// An answer of the sessions app.
struct Answer {
    status: u16,
    json: serde_json::Value,
    /// The server said `Connection: close`.
    close: bool,
    /// `name=value` of its `Set-Cookie`, if any.
    cookie: Option<String>,
}

impl Answer {
    fn pid(&self) -> u32 {
        self.json["pid"].as_u64().unwrap_or(0) as u32
    }
    fn user(&self) -> Option<&str> {
        self.json["user"].as_str()
    }
    fn count(&self) -> Option<u64> {
        self.json["count"].as_u64()
    }
}

/// `METHOD path` on `s` with the session `cookie`; reads one answer (the app's answers all
/// have a Content-Length).
fn exchange(
    s: &mut TcpStream,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    close: bool,
) -> Result<Answer, String> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: herd-test\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    if method == "POST" {
        req.push_str("Content-Length: 0\r\n");
    }
    if close {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("sending {method} {path}: {e}"))?;
    let head = read_head(s).map_err(|e| format!("{method} {path}: {e}"))?;
    let len: usize = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no Content-Length in {:?}", head.text))?;
    let mut body = vec![0; len];
    s.read_exact(&mut body)
        .map_err(|e| format!("{method} {path}: reading {len} bytes of body: {e}"))?;
    let json = serde_json::from_slice(&body).map_err(|e| {
        format!(
            "{method} {path}: not JSON ({e}): {:?}",
            String::from_utf8_lossy(&body)
        )
    })?;
    Ok(Answer {
        status: head.status,
        json,
        close: head
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close")),
        cookie: head
            .header("set-cookie")
            .and_then(|v| Some(v.split(';').next()?.to_string())),
    })
}

/// One request on a new connection from `src`.
fn once(
    src: Ipv4Addr,
    port: u16,
    method: &str,
    path: &str,
    cookie: Option<&str>,
) -> Result<Answer, String> {
    let mut s = connect_from(src, port).map_err(|e| format!("connect from {src}: {e}"))?;
    exchange(&mut s, method, path, cookie, true)
}

/// A logged-in session: its user and its cookie (`connect.sid=…`).
#[derive(Clone, Debug)]
struct Session {
    user: String,
    cookie: String,
}

impl Session {
    /// `POST /login?user=USER` from `src`: the new session, with its counter at 0.
    fn login(herd: &Herd, src: Ipv4Addr, port: u16, user: &str) -> Session {
        let a = once(src, port, "POST", &format!("/login?user={user}"), None)
            .unwrap_or_else(|e| herd.fail(&format!("login of {user}: {e}")));
        if a.status != 200 || a.user() != Some(user) || a.count() != Some(0) {
            herd.fail(&format!("login of {user}: {} {}", a.status, a.json));
        }
        let cookie = a
            .cookie
            .unwrap_or_else(|| herd.fail(&format!("login of {user}: no Set-Cookie")));
        Session {
            user: user.to_string(),
            cookie,
        }
    }

    /// The session id express-session signed into the cookie (`connect.sid=s:ID.SIG`,
    /// URL-encoded): its key in Redis is `sess:ID`.
    fn id(&self) -> String {
        let v = self.cookie.trim_start_matches("connect.sid=");
        let v = v.strip_prefix("s%3A").unwrap_or(v);
        v.split('.').next().unwrap_or_default().to_string()
    }
}

#[derive(Default)]
struct Tally {
    by_pid: BTreeMap<u32, usize>,
    errors: Vec<String>,
    /// The last counter value each client saw.
    last: BTreeMap<String, u64>,
}

/// Client threads, one per session, each calling `GET /count` with its cookie in a loop:
/// every answer must be a 200 for that session's user with the counter one above the
/// last one (anything else is an error, as is a failed request). On a kept-alive
/// connection, made by hand as wrk makes it (a request on a connection the server closed
/// under it fails, it is not retried), or on a new connection per request.
struct SessionLoad {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    threads: Vec<JoinHandle<()>>,
}

impl SessionLoad {
    fn start(port: u16, clients: &[(Session, bool)]) -> SessionLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let threads = clients
            .iter()
            .cloned()
            .map(|(session, keep_alive)| {
                let (stop, tally) = (stop.clone(), tally.clone());
                std::thread::spawn(move || {
                    let mut conn: Option<TcpStream> = None;
                    let mut last = 0u64;
                    let mut after_error = false;
                    while !stop.load(Ordering::Relaxed) {
                        let mut s = match conn.take() {
                            Some(s) => s,
                            None => match connect_from(Ipv4Addr::LOCALHOST, port) {
                                Ok(s) => s,
                                Err(e) => {
                                    tally
                                        .lock()
                                        .unwrap()
                                        .errors
                                        .push(format!("{}: connect: {e}", session.user));
                                    after_error = true;
                                    continue;
                                }
                            },
                        };
                        let r =
                            exchange(&mut s, "GET", "/count", Some(&session.cookie), !keep_alive);
                        let mut t = tally.lock().unwrap();
                        match r {
                            Ok(a) => {
                                let count = a.count().unwrap_or(0);
                                // After a failed request its increment may or may not have
                                // happened: the next one need only be higher.
                                let expected = if after_error {
                                    count > last
                                } else {
                                    count == last + 1
                                };
                                if a.status != 200
                                    || a.user() != Some(session.user.as_str())
                                    || !expected
                                {
                                    t.errors.push(format!(
                                        "{}: after count {last}: {} {}",
                                        session.user, a.status, a.json
                                    ));
                                    after_error = true;
                                } else {
                                    after_error = false;
                                }
                                last = last.max(count);
                                *t.by_pid.entry(a.pid()).or_default() += 1;
                                t.last.insert(session.user.clone(), last);
                                if keep_alive && !a.close {
                                    conn = Some(s);
                                }
                            }
                            Err(e) => {
                                t.errors.push(format!(
                                    "{} (kept alive: {keep_alive}): {e}",
                                    session.user
                                ));
                                after_error = true;
                            }
                        }
                    }
                })
            })
            .collect();
        SessionLoad {
            stop,
            tally,
            threads,
        }
    }

    fn by_pid(&self) -> BTreeMap<u32, usize> {
        self.tally.lock().unwrap().by_pid.clone()
    }

    /// Answers so far from the pids for which `which` holds.
    fn answers_from(&self, which: impl Fn(u32) -> bool) -> usize {
        self.by_pid()
            .iter()
            .filter(|(p, _)| which(**p))
            .map(|(_, n)| n)
            .sum()
    }

    fn errors(&self) -> Vec<String> {
        self.tally.lock().unwrap().errors.clone()
    }

    /// Stops the clients; the tally.
    fn finish(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        std::mem::take(&mut *self.tally.lock().unwrap())
    }
}

impl Drop for SessionLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `herd run -i N -p PORT --ready notify <flags> -- node examples/node/<script>` on a free
/// port, once N workers are ready (a worker of sessions-redis.js listens only once it is
/// connected to Redis).
fn start(script: &str, n: usize, flags: &[&str], env: &[(&str, String)]) -> (Herd, u16) {
    npm_installed();
    let file = example(&format!("node/{script}"));
    node_app_on_free_port(n, flags, &file, env)
}

/// Waits until the load has `more` further answers from the workers for which `which`
/// holds, failing early if a request failed.
fn wait_answers(
    herd: &Herd,
    load: &SessionLoad,
    what: &str,
    more: usize,
    which: impl Fn(u32) -> bool,
) {
    let before = load.answers_from(&which);
    herd.wait_until(
        &format!(
            "{more} more answers {what} (answers by pid: {:?})",
            load.by_pid()
        ),
        T,
        || {
            let errors = load.errors();
            if !errors.is_empty() {
                herd.fail(&format!(
                    "{} requests failed, the first ones: {:?}",
                    errors.len(),
                    &errors[..errors.len().min(10)]
                ));
            }
            load.answers_from(&which) >= before + more
        },
    );
}

/// Sessions in Redis: three users log in, then call `/count` without pause (one on a
/// kept-alive connection, two on a new connection per request) while herd reloads its two
/// workers (SIGHUP), adds a third (SIGTTIN) and removes it again (SIGTTOU). No request may
/// fail; every answer is for the session's user with its counter one higher than the last;
/// the answers come from every worker of each generation, so the session went on across
/// workers. Every worker stopped on the way closes its Redis client and ends in time (no
/// SIGKILL).
#[test]
fn sessions_in_redis_survive_reload_and_scaling_under_load() {
    let redis = Redis::start();
    let (mut herd, port) = start("sessions-redis.js", 2, &[], &[("REDIS_URL", redis.url())]);
    let users = ["ada", "grace", "edsger"];
    let sessions: Vec<Session> = users
        .iter()
        .map(|u| Session::login(&herd, Ipv4Addr::LOCALHOST, port, u))
        .collect();
    for s in &sessions {
        assert!(
            redis.exists(&format!("sess:{}", s.id())),
            "the session of {} is not in Redis (cookie {})",
            s.user,
            s.cookie
        );
    }
    let load = SessionLoad::start(
        port,
        &[
            (sessions[0].clone(), true),
            (sessions[1].clone(), false),
            (sessions[2].clone(), false),
        ],
    );
    let first: BTreeSet<u32> = live_workers(&herd).into_values().collect();
    for pid in &first {
        wait_answers(&herd, &load, &format!("from the worker {pid}"), 10, |p| {
            p == *pid
        });
    }

    // A rolling reload: every answer after it comes from the new workers, both of them.
    let mark = herd.mark(Out::Stderr);
    let at_hup = load.answers_from(|_| true);
    herd.signal(Signal::SIGHUP);
    herd.wait_event_from(mark, "reload.done", |_| true);
    let old: Vec<u32> = first.iter().copied().collect();
    herd.wait_gone(&old, T);
    // The clients went on while it ran (else it proves nothing).
    let during = load.answers_from(|_| true) - at_hup;
    if during == 0 {
        herd.fail("no answer between the SIGHUP and the old workers' exit");
    }
    eprintln!("answers while the reload ran: {during}");
    let second: BTreeSet<u32> = live_workers(&herd).into_values().collect();
    assert!(second.is_disjoint(&first), "{first:?} → {second:?}");
    for pid in &second {
        wait_answers(
            &herd,
            &load,
            &format!("from the new worker {pid}"),
            10,
            |p| p == *pid,
        );
    }

    // One worker more: the sessions go on there too.
    let mark = herd.mark(Out::Stderr);
    herd.signal(Signal::SIGTTIN);
    let added = herd
        .wait_event_from(mark, "worker.ready", |e| e.slot() == 2)
        .1
        .pid();
    wait_answers(
        &herd,
        &load,
        &format!("from the added worker {added}"),
        10,
        |p| p == added,
    );

    // One fewer again.
    herd.signal(Signal::SIGTTOU);
    herd.wait_gone(&[added], T);
    wait_answers(&herd, &load, "after the scale down", 30, |p| {
        second.contains(&p)
    });

    let tally = load.finish();
    if !tally.errors.is_empty() {
        herd.fail(&format!(
            "{} requests failed or answered wrong (answers by pid {:?}): {:?}",
            tally.errors.len(),
            tally.by_pid,
            &tally.errors[..tally.errors.len().min(10)]
        ));
    }
    eprintln!(
        "answers by pid: {:?}; last counts: {:?}",
        tally.by_pid, tally.last
    );
    // Each session's counter as the clients last saw it, from a fresh request.
    for s in &sessions {
        let a = once(Ipv4Addr::LOCALHOST, port, "GET", "/me", Some(&s.cookie))
            .unwrap_or_else(|e| herd.fail(&e));
        assert_eq!(a.status, 200, "{}", a.json);
        assert_eq!(a.user(), Some(s.user.as_str()), "{}", a.json);
        assert_eq!(a.count(), tally.last.get(&s.user).copied(), "{}", a.json);
    }

    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
    let exits = herd.events("worker.exited");
    assert_eq!(
        exits.len(),
        5,
        "2 reloaded, 1 scaled down, 2 at shutdown: {exits:?}"
    );
    // Each closed its Redis client and ended on its own, within the kill timeout: code 0,
    // or SIGTERM, the stop signal herd sends once the worker has closed its channel (as
    // Node's own `worker.kill()` does), which can arrive while Node is already exiting,
    // its handler gone. Never SIGKILL.
    if let Some(e) = exits
        .iter()
        .find(|e| !["code 0", "SIGTERM"].contains(&e.str("status")))
    {
        herd.fail(&format!("a worker did not exit by itself: {e:?}"));
    }
    let closed = herd
        .output(Out::Stdout)
        .iter()
        .filter(|l| l.contains("closed its Redis client"))
        .count();
    assert_eq!(closed, 5, "{}", herd.dump());
}

/// Sessions in memory under `--balance sticky`: a client's address picks its worker, so its
/// session holds over many requests, each on a new connection; a rolling reload replaces
/// that worker and the session is gone (401 from the new worker of the same slot), which is
/// what keeping state in the worker means.
#[test]
fn sessions_in_memory_hold_under_sticky_until_the_worker_is_replaced() {
    let (mut herd, port) = start("sessions-memory.js", 2, &["--balance", "sticky"], &[]);
    let src = Ipv4Addr::new(127, 0, 0, 7);
    let session = Session::login(&herd, src, port, "ada");
    let mut pid = None;
    for n in 1..=50 {
        let a = once(src, port, "GET", "/count", Some(&session.cookie))
            .unwrap_or_else(|e| herd.fail(&e));
        if a.status != 200 || a.user() != Some("ada") || a.count() != Some(n) {
            herd.fail(&format!("request {n} from {src}: {} {}", a.status, a.json));
        }
        if *pid.get_or_insert(a.pid()) != a.pid() {
            herd.fail(&format!(
                "request {n} from {src} was answered by {} after {pid:?}",
                a.pid()
            ));
        }
    }
    let pid = pid.unwrap();

    // The reload replaces every worker: the new one of the same slot has no session.
    let mark = herd.mark(Out::Stderr);
    herd.signal(Signal::SIGHUP);
    herd.wait_event_from(mark, "reload.done", |_| true);
    herd.wait_gone(&[pid], T);
    let a = once(src, port, "GET", "/me", Some(&session.cookie)).unwrap_or_else(|e| herd.fail(&e));
    assert_eq!(a.status, 401, "the session outlived its worker: {}", a.json);
    let slot = herd
        .spawned()
        .into_iter()
        .find(|(_, p)| *p == pid)
        .map(|(s, _)| s)
        .unwrap_or_else(|| herd.fail(&format!("pid {pid} is no worker of herd")));
    let replacement = live_workers(&herd).get(&slot).copied();
    assert_eq!(
        Some(a.pid()),
        replacement,
        "the answer after the reload is not from the new worker of slot {slot}: {}",
        a.json
    );

    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// Why sessions in memory need sticky balancing: under the default `reuseport` the kernel
/// spreads a client's new connections over the workers, and a worker that does not hold the
/// session answers 401.
#[test]
fn sessions_in_memory_without_sticky_reach_a_worker_without_them() {
    let (mut herd, port) = start("sessions-memory.js", 2, &[], &[]);
    let session = Session::login(&herd, Ipv4Addr::LOCALHOST, port, "ada");
    let mut answers = Vec::new();
    herd.wait_until(
        "a 401 from the worker that does not hold the session",
        T,
        || {
            let a = once(
                Ipv4Addr::LOCALHOST,
                port,
                "GET",
                "/me",
                Some(&session.cookie),
            )
            .unwrap_or_else(|e| herd.fail(&e));
            answers.push((a.status, a.pid()));
            a.status == 401
        },
    );
    let holder: BTreeSet<u32> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .map(|(_, pid)| *pid)
        .collect();
    let without = answers.last().unwrap().1;
    assert!(!holder.contains(&without), "{answers:?}");
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}
