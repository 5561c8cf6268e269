//! The flow control of handed-over connections, end to end: a NACKed handle is sent again
//! (3 tries in all), at most 16 handles are in flight per worker, and at most 4096
//! connections wait while no worker is ready. The worker is a small Python program that
//! takes handles from its channel itself and answers them as each test tells it.

use std::net::Ipv4Addr;

use crate::common::*;
use nix::sys::signal::Signal;

/// A worker that takes handles from its channel itself and answers them as told by its
/// argument: `nack K` NACKs each handle K times, then ACKs it and serves the connection;
/// `hold` ACKs the first handle, holds the next ones unanswered until SIGUSR1, then says
/// how many it held (after reading everything herd had sent), ACKs and serves them all,
/// and every later one at once. It prints `handle N from port P, try T` for each handle.
const HANDLE_WORKER: &str = r#"
import array, json, os, select, signal, socket, sys
ch = socket.socket(fileno=int(os.environ["NODE_CHANNEL_FD"]))
mode = sys.argv[1]
nacks = int(sys.argv[2]) if mode == "nack" else 0
r, w = os.pipe()
os.set_blocking(w, False)
signal.set_wakeup_fd(w)
signal.signal(signal.SIGUSR1, lambda *_: None)
fds, buf, held, tries, count = [], b"", [], {}, 0
state = "first"
def serve(conn):
    ch.sendall(b'{"cmd":"NODE_HANDLE_ACK"}\n')
    conn.settimeout(10)
    head = b""
    while b"\r\n\r\n" not in head:
        d = conn.recv(4096)
        if not d:
            break
        head += d
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
    conn.close()
def take(conn):
    global count, state
    count += 1
    port = conn.getpeername()[1]
    tries[port] = tries.get(port, 0) + 1
    print("handle %d from port %d, try %d" % (count, port, tries[port]), flush=True)
    if mode == "nack":
        if tries[port] <= nacks:
            conn.close()
            ch.sendall(b'{"cmd":"NODE_HANDLE_NACK"}\n')
        else:
            serve(conn)
    elif state == "first":
        state = "hold"
        serve(conn)
    elif state == "hold":
        held.append(conn)
    else:
        serve(conn)
def read_some():
    global buf
    msg, anc, _, _ = ch.recvmsg(65536, socket.CMSG_SPACE(4 * 16))
    if not msg:
        sys.exit(0)
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(data[: len(data) - len(data) % 4])
            fds.extend(a)
    buf += msg
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        m = json.loads(line)
        if isinstance(m, dict) and m.get("cmd") == "NODE_HANDLE":
            take(socket.socket(fileno=fds.pop(0)))
ch.sendall(b'"ready"\n')
while True:
    ready, _, _ = select.select([ch, r], [], [])
    if r in ready:
        os.read(r, 64)
        ch.setblocking(False)
        try:
            while True:
                read_some()
        except BlockingIOError:
            pass
        ch.setblocking(True)
        print("held %d" % len(held), flush=True)
        state = "serve"
        for c in held:
            serve(c)
        held = []
    elif ch in ready:
        read_some()
"#;

/// `herd run -i 1 --balance round-robin` of [`HANDLE_WORKER`] with `args`.
fn handle_worker(args: &[&str]) -> Herd {
    let python = python();
    let mut all = vec![
        "run",
        "-i",
        "1",
        "--balance",
        "round-robin",
        "--ready",
        "notify",
        "--listen",
        "127.0.0.1:0",
        "--",
        &python,
        "-c",
        HANDLE_WORKER,
    ];
    all.extend_from_slice(args);
    let herd = Herd::start(&all);
    herd.wait_ready(1);
    herd
}

/// The tries of the handle of the connection from local port `port`, as the worker printed
/// them, once there are `n` (the worker's output reaches us through herd, behind herd's log).
fn tries_of(herd: &Herd, port: u16, n: usize) -> Vec<String> {
    let tries = || -> Vec<String> {
        herd.output(Out::Stdout)
            .into_iter()
            .filter(|l| l.contains(&format!(" from port {port}, try ")))
            .collect()
    };
    herd.wait_until(&format!("{n} tries printed ({:?})", tries()), T, || {
        tries().len() >= n
    });
    tries()
}

/// "a `NODE_HANDLE_NACK` resends it (3 tries)": NACKed twice, a handle comes a third time
/// and the client is served; NACKed every time, it comes exactly 3 times, then herd closes
/// the connection.
#[test]
fn a_nacked_handle_is_sent_again_3_tries_in_all() {
    let mut herd = handle_worker(&["nack", "2"]);
    let port = herd.port();
    let mut s = connect_from(Ipv4Addr::LOCALHOST, port).unwrap();
    let ours = s.local_addr().unwrap().port();
    let (status, body) = request_on(&mut s, "/", true).unwrap_or_else(|e| herd.fail(&e));
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let tries = tries_of(&herd, ours, 3);
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
    assert_eq!(tries_of(&herd, ours, 3), tries, "no fourth try");

    let mut herd = handle_worker(&["nack", "99"]);
    let port = herd.port();
    let mut s = connect_from(Ipv4Addr::LOCALHOST, port).unwrap();
    let ours = s.local_addr().unwrap().port();
    let answer = request_on(&mut s, "/", true);
    assert!(
        answer.is_err(),
        "a refused connection was answered: {answer:?}"
    );
    herd.wait_log("refused a handle 3 times: closed it");
    let tries = tries_of(&herd, ours, 3);
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
    // Every line of the worker is in once herd has exited: still 3.
    assert_eq!(tries_of(&herd, ours, 3), tries, "no fourth try");
}

/// "up to 16 are in flight per worker": a worker that holds its handles unanswered has 16
/// of 30 connections; the others wait in herd until it answers, and then every one of the
/// 30 is served.
#[test]
fn sixteen_handles_in_flight_per_worker() {
    let herd = handle_worker(&["hold"]);
    let port = herd.port();
    let base = fd_count(herd.pid());
    // The first handle is acknowledged: the worker is one that takes connections.
    let (status, _) = request_on(
        &mut connect_from(Ipv4Addr::LOCALHOST, port).unwrap(),
        "/",
        true,
    )
    .unwrap_or_else(|e| herd.fail(&e));
    assert_eq!(status, 200);
    herd.wait_until("herd closed its copy of the first connection", T, || {
        fd_count(herd.pid()) == base
    });
    let clients: Vec<std::net::TcpStream> = (0..30)
        .map(|_| {
            let mut s = connect_from(Ipv4Addr::LOCALHOST, port).unwrap();
            std::io::Write::write_all(
                &mut s,
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .unwrap();
            s
        })
        .collect();
    herd.wait_until(
        &format!(
            "herd holds the 30 connections ({} fds, {base} before)",
            fd_count(herd.pid())
        ),
        T,
        || fd_count(herd.pid()) >= base + 30,
    );
    herd.wait_output_from(
        Out::Stdout,
        0,
        "the 17th handle",
        |l| l.contains("handle 17 from"),
        T,
    );
    let worker = herd.worker_pids()[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(worker as i32), Signal::SIGUSR1).unwrap();
    let (_, held) = herd.wait_output_from(
        Out::Stdout,
        0,
        "how many the worker held",
        |l| l.contains("held "),
        T,
    );
    // A handle not answered within 5 s is given up, which lets another one in: that must
    // not have happened before the worker counted.
    let given_up = herd.count_log("did not acknowledge a handle");
    if !held.ends_with("held 16") || given_up > 0 {
        herd.fail(&format!(
            "the worker {held} handles unanswered ({given_up} given up by herd), 16 expected"
        ));
    }
    for (i, mut s) in clients.into_iter().enumerate() {
        let (status, _) =
            read_response(&mut s).unwrap_or_else(|e| herd.fail(&format!("client {i}: {e}")));
        assert_eq!(status, 200);
    }
}

/// "connections wait (up to 4096) while no worker is ready": with the worker not ready,
/// herd holds 4096 connections and closes the ones after; once the worker is ready, the
/// 4096 are served.
#[test]
fn at_most_4096_connections_wait_for_a_ready_worker() {
    const WAITING: usize = 4096;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    let hard = limit.rlim_max;
    if hard < 2 * WAITING as u64 + 1000 {
        skip(&format!(
            "the hard open-file limit {hard} is too low for {WAITING} waiting connections"
        ));
        return;
    }
    // This process holds the clients; herd and the worker inherit the limit.
    // (Raising the soft limit of the test process is harmless to the other tests.)
    limit.rlim_cur = hard;
    // SAFETY: setrlimit reads the struct it is given.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let flag = TempPath::new("ready-flag");
    let python = python();
    let handoff = example("handoff.py");
    let herd = Herd::start(&[
        "run",
        "-i",
        "1",
        "--balance",
        "round-robin",
        "--ready",
        "notify",
        "--listen-timeout",
        "120s",
        "--listen",
        "127.0.0.1:0",
        "--",
        "sh",
        "-c",
        r#"while [ ! -e "$0" ]; do sleep 0.05; done; exec "$1" "$2""#,
        flag.s(),
        &python,
        handoff.to_str().unwrap(),
    ]);
    herd.wait_spawned(1);
    let port = herd.port();
    let base = fd_count(herd.pid());
    let mut waiting = Vec::with_capacity(WAITING);
    for i in 0..WAITING {
        let s = connect_from(Ipv4Addr::LOCALHOST, port)
            .unwrap_or_else(|e| herd.fail(&format!("connection {i}: {e}")));
        waiting.push(s);
    }
    herd.wait_until(
        &format!("herd holds {WAITING} waiting connections"),
        T,
        || fd_count(herd.pid()) >= base + WAITING,
    );
    for i in 0..3 {
        let mut s = connect_from(Ipv4Addr::LOCALHOST, port).unwrap();
        let mut byte = [0u8; 1];
        match std::io::Read::read(&mut s, &mut byte) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => herd.fail(&format!(
                "connection {} past the {WAITING}: {other:?}",
                WAITING + i
            )),
        }
    }
    assert_eq!(fd_count(herd.pid()), base + WAITING, "herd holds no more");
    herd.wait_log(&format!(
        "{WAITING} connections wait for a ready worker: closing one"
    ));
    std::fs::write(&flag.0, "").unwrap();
    herd.wait_ready(1);
    // Every waiting connection is served: requests on all, then the answers.
    for s in &mut waiting {
        std::io::Write::write_all(s, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
    }
    for (i, s) in waiting.iter_mut().enumerate() {
        let (status, _) =
            read_response(s).unwrap_or_else(|e| herd.fail(&format!("waiting connection {i}: {e}")));
        assert_eq!(status, 200);
    }
}
