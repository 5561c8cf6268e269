//! `herd-testworker`: a small, fast HTTP/1.1 server used by herd's integration
//! tests, benchmarks and demos. It is plain std + threads (no async runtime):
//! one accept thread per listener and one thread per connection.
//!
//! # Sockets
//!
//! In this order of preference:
//!
//! 1. systemd socket activation: if `LISTEN_FDS` is set, `LISTEN_PID` must be
//!    set to our own pid, otherwise we print an error and exit 3 (the tests
//!    rely on this strictness). Every fd in `3..3+LISTEN_FDS` is served; each
//!    must be a listening stream socket (TCP or unix, detected with
//!    `getsockname`). `LISTEN_FDS=0` counts as "no sockets passed".
//! 2. `--port N` (or the `PORT` environment variable): bind `0.0.0.0:N` with
//!    `SO_REUSEPORT`, so two copies can be started by hand as a no-herd
//!    benchmark baseline.
//!
//! # Routes (GET or HEAD; other methods get 405)
//!
//! - `/` → 200, body `pid=<pid> slot=<HERD_WORKER_ID or -> gen=<gen or ->\n`
//! - `/slow?ms=N` → sleeps N ms, then answers like `/` (400 without a valid `ms`)
//! - `/crash` → prints `crashing` to stderr and exits 70 at once, no response
//! - `/env` → 200, `KEY=VALUE` lines for `LISTEN_FDS`, `LISTEN_PID`,
//!   `LISTEN_FDNAMES`, `PORT`, `HERD_WORKER_ID`, `NODE_APP_INSTANCE`,
//!   `NOTIFY_SOCKET`, `NODE_CHANNEL_FD`, `NODE_CHANNEL_SERIALIZATION_MODE`,
//!   `HERD_TRANSPORT` (a line
//!   is left out when the variable is unset), then
//!   `PID=<own pid>` and `PPID=<parent pid>`
//! - `/var?name=KEY` → 200, the value of any environment variable (`<unset>`)
//! - `/whoami` → 200, `uid=<uid> gid=<gid> groups=<g,…> cwd=<dir>`
//! - `/grow?mb=N` → holds N more MiB (touched) until it exits, prints `grew by N MiB`
//! - anything else → 404
//!
//! Connections are keep-alive (HTTP/1.1 default; HTTP/1.0 only with
//! `Connection: keep-alive`) and honour `Connection: close`. Both CRLF and bare
//! LF line endings are accepted. Request bodies are skipped using
//! `Content-Length`; a request with `Transfer-Encoding` is answered and the
//! connection closed. Every response carries `Content-Length`.
//!
//! # Options
//!
//! Given as arguments, and also read from the `HERD_TESTWORKER_OPTS`
//! environment variable (same flags, whitespace-separated, taken before the
//! command-line ones so the command line wins). `--flag=value` also works.
//!
//! - `--port N`: port to bind when no sockets are passed (else env `PORT`)
//! - `--notify`: once serving (after `--startup-ms`), send
//!   `READY=1\nSTATUS=serving` to `NOTIFY_SOCKET` (unix datagram path, `@`
//!   prefix = abstract namespace); nothing if `NOTIFY_SOCKET` is unset
//! - `--startup-ms N`: sleep N ms before serving / notifying
//! - `--never-ready`: serve, but never send `READY=1`
//! - `--exit-now [CODE]`: print `exiting at once` to stderr, exit CODE (default 1)
//! - `--ignore-term`: ignore SIGTERM and SIGINT (a stubborn worker)
//! - `--fail-if-file PATH`: if PATH exists at start-up, print
//!   `failing: PATH exists` to stderr and exit 1
//! - `--print N`: print `line 1` … `line N` to stdout at start-up, then go on
//! - `--print-then-crash N`: print N such lines, then exit 71
//! - `--gen G`: the value shown as `gen=` (else env `HERD_TESTWORKER_GEN`)
//!
//! At start-up, once the sockets are known, one line is printed to stdout:
//! `testworker pid=<pid> slot=<slot> listening fds=<n>`.
//!
//! # Graceful stop
//!
//! On SIGTERM or SIGINT (unless `--ignore-term`) the worker stops accepting
//! and closes its listeners, sends `STOPPING=1` to `NOTIFY_SOCKET` if set,
//! prints `testworker pid=<pid> stopping`, and for one second still answers the
//! next request of each open connection, with `Connection: close` (so a client
//! that is sending on an idle keep-alive connection gets an answer, not a
//! reset). Then it closes the connections still idle, waits for in-flight
//! requests and exits 0.
//!
//! # Exit codes
//!
//! 0 graceful stop · 1 `--exit-now` default, `--fail-if-file`, runtime start-up
//! failure (e.g. bind) · 2 usage error · 3 bad `LISTEN_FDS`/`LISTEN_PID` or
//! passed fds · 70 `/crash` · 71 `--print-then-crash`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram, UnixListener, UnixStream};
use std::path::PathBuf;
use std::process;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::socket::{
    self, getsockopt, setsockopt, sockopt, AddressFamily, Backlog, SockFlag, SockType,
};

/// Set by the signal handler; read by connection threads when answering.
static STOP: AtomicBool = AtomicBool::new(false);
/// Write end of the self-pipe, for the signal handler (-1 until set up).
static STOP_PIPE_WR: AtomicI32 = AtomicI32::new(-1);

/// Largest request head we accept before answering 431.
const MAX_HEAD: usize = 64 * 1024;
/// Stack size of connection threads (they need very little).
const CONN_STACK: usize = 128 * 1024;

const ENV_KEYS: [&str; 10] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "PORT",
    "HERD_WORKER_ID",
    "NODE_APP_INSTANCE",
    "NOTIFY_SOCKET",
    "NODE_CHANNEL_FD",
    "NODE_CHANNEL_SERIALIZATION_MODE",
    "HERD_TRANSPORT",
];

#[derive(Default)]
struct Opts {
    port: Option<u16>,
    notify: bool,
    startup_ms: u64,
    never_ready: bool,
    exit_now: Option<i32>,
    ignore_term: bool,
    fail_if_file: Option<PathBuf>,
    print: u64,
    print_then_crash: Option<u64>,
    gen: Option<String>,
}

const USAGE: &str = "usage: herd-testworker [--port N] [--notify] [--startup-ms N] [--never-ready] \
[--exit-now [CODE]] [--ignore-term] [--fail-if-file PATH] [--print N] [--print-then-crash N] [--gen G]
(flags are also read from env HERD_TESTWORKER_OPTS)";

fn usage_error(msg: &str) -> ! {
    eprintln!("herd-testworker: {msg}\n{USAGE}");
    process::exit(2);
}

fn parse_num<T: std::str::FromStr>(flag: &str, v: Option<String>) -> T {
    let Some(v) = v else {
        usage_error(&format!("{flag} needs a value"))
    };
    v.parse()
        .unwrap_or_else(|_| usage_error(&format!("{flag}: invalid number {v:?}")))
}

fn parse_opts(args: Vec<String>) -> Opts {
    let mut o = Opts::default();
    let mut it = args.into_iter().peekable();
    while let Some(arg) = it.next() {
        // Accept `--flag=value` as well as `--flag value`.
        let (flag, mut inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        let mut value = |it: &mut std::iter::Peekable<std::vec::IntoIter<String>>| {
            inline.take().or_else(|| it.next())
        };
        match flag.as_str() {
            "--port" => o.port = Some(parse_num(&flag, value(&mut it))),
            "--notify" => o.notify = true,
            "--startup-ms" => o.startup_ms = parse_num(&flag, value(&mut it)),
            "--never-ready" => o.never_ready = true,
            "--exit-now" => {
                // The code is optional: only take the next word if it is a number.
                let code = match inline.take() {
                    Some(v) => parse_num(&flag, Some(v)),
                    None => match it.peek().and_then(|v| v.parse::<i32>().ok()) {
                        Some(c) => {
                            it.next();
                            c
                        }
                        None => 1,
                    },
                };
                o.exit_now = Some(code);
            }
            "--ignore-term" => o.ignore_term = true,
            "--fail-if-file" => match value(&mut it) {
                Some(p) => o.fail_if_file = Some(PathBuf::from(p)),
                None => usage_error("--fail-if-file needs a path"),
            },
            "--print" => o.print = parse_num(&flag, value(&mut it)),
            "--print-then-crash" => o.print_then_crash = Some(parse_num(&flag, value(&mut it))),
            "--gen" => match value(&mut it) {
                Some(g) => o.gen = Some(g),
                None => usage_error("--gen needs a value"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                process::exit(0);
            }
            other => usage_error(&format!("unknown argument {other:?}")),
        }
        if inline.is_some() {
            usage_error(&format!("{flag} takes no value"));
        }
    }
    o
}

/// Prints a line to stdout, ignoring errors (a closed stdout must not kill us).
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

// ---------------------------------------------------------------------------
// Sockets

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listener {
    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        }
    }

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(true),
            Listener::Unix(l) => l.set_nonblocking(true),
        }
    }

    fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                Ok(Stream::Unix(s))
            }
        }
    }
}

impl Stream {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).read(buf),
            Stream::Unix(s) => (&*s).read(buf),
        }
    }

    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => (&*s).write_all(buf),
            Stream::Unix(s) => (&*s).write_all(buf),
        }
    }

    fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    fn shutdown_read(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Read),
            Stream::Unix(s) => s.shutdown(Shutdown::Read),
        };
    }
}

/// Failure to get the passed sockets: message + exit code.
type SockError = (String, i32);

/// The systemd-style passed listeners, `None` if none were passed.
fn passed_listeners() -> Result<Option<Vec<Listener>>, SockError> {
    let Some(n) = std::env::var_os("LISTEN_FDS") else {
        return Ok(None);
    };
    let bad = |m: String| Err((m, 3));
    let n = match n.to_str().and_then(|s| s.trim().parse::<i32>().ok()) {
        Some(n) if (0..=4096).contains(&n) => n,
        _ => return bad(format!("invalid LISTEN_FDS={n:?}")),
    };
    let me = process::id();
    match std::env::var("LISTEN_PID") {
        Ok(p) if p.trim().parse::<u32>().ok() == Some(me) => {}
        Ok(p) => return bad(format!("LISTEN_PID={p} is not our pid {me}")),
        Err(_) => return bad(format!("LISTEN_FDS={n} without LISTEN_PID")),
    }
    if n == 0 {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(n as usize);
    for fd in 3..3 + n {
        // SAFETY: `fd` is a borrowed view used only for the checks below; it is
        // not closed here and outlives the borrow.
        let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
        let flags = match fcntl(fd, FcntlArg::F_GETFD) {
            Ok(f) => f,
            Err(e) => return bad(format!("passed fd {fd}: {e}")),
        };
        let flags = FdFlag::from_bits_truncate(flags) | FdFlag::FD_CLOEXEC;
        let _ = fcntl(fd, FcntlArg::F_SETFD(flags));
        match getsockopt(&bfd, sockopt::SockType) {
            Ok(SockType::Stream) => {}
            Ok(t) => return bad(format!("passed fd {fd} is a {t:?} socket, not a stream")),
            Err(e) => return bad(format!("passed fd {fd} is not a socket: {e}")),
        }
        if let Ok(false) = getsockopt(&bfd, sockopt::AcceptConn) {
            return bad(format!("passed fd {fd} is not listening"));
        }
        // SAFETY: fd was handed to us by the parent (LISTEN_PID matched), is a
        // valid open socket (checked above) and nothing else in this process
        // owns it; each fd is taken exactly once.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // Family detection: std's local_addr() calls getsockname and fails
        // unless the family is AF_INET/AF_INET6 (TcpListener) or AF_UNIX.
        let tcp = TcpListener::from(owned);
        if tcp.local_addr().is_ok() {
            out.push(Listener::Tcp(tcp));
            continue;
        }
        let unix = UnixListener::from(OwnedFd::from(tcp));
        if unix.local_addr().is_ok() {
            out.push(Listener::Unix(unix));
            continue;
        }
        std::mem::forget(unix); // not ours to close: report and exit
        return bad(format!("passed fd {fd} is neither a TCP nor a unix socket"));
    }
    Ok(Some(out))
}

/// Binds 0.0.0.0:port with SO_REUSEADDR + SO_REUSEPORT.
fn bind_port(port: u16) -> nix::Result<TcpListener> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    // nix's SockaddrIn needs its "net" feature, which this crate does not
    // enable: build the sockaddr_in by hand.
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::UNSPECIFIED).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `addr` is a fully initialised sockaddr_in and the length passed
    // is its exact size; `fd` is an open socket we own.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::addr_of!(addr).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    Errno::result(rc)?;
    socket::listen(&fd, Backlog::new(1024).unwrap_or(Backlog::MAXCONN))?;
    Ok(TcpListener::from(fd))
}

fn get_listeners(opts: &Opts) -> Result<Vec<Listener>, SockError> {
    if let Some(ls) = passed_listeners()? {
        return Ok(ls);
    }
    let port = match opts.port {
        Some(p) => p,
        None => match std::env::var("PORT") {
            Ok(p) => p
                .trim()
                .parse()
                .map_err(|_| (format!("invalid PORT={p:?}"), 2))?,
            Err(_) => {
                return Err((
                    "no sockets: set LISTEN_FDS/LISTEN_PID, --port or PORT".into(),
                    2,
                ))
            }
        },
    };
    let l = bind_port(port).map_err(|e| (format!("bind 0.0.0.0:{port}: {e}"), 1))?;
    Ok(vec![Listener::Tcp(l)])
}

// ---------------------------------------------------------------------------
// Signals and sd_notify

extern "C" fn on_stop_signal(_: libc::c_int) {
    // Only async-signal-safe operations: an atomic store and write(2).
    // SAFETY: __errno_location returns this thread's errno slot; we restore
    // errno so the interrupted code does not see it clobbered.
    let errno = unsafe { *libc::__errno_location() };
    STOP.store(true, Ordering::SeqCst);
    let fd = STOP_PIPE_WR.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the buffer is a static byte;
        // the fd is the nonblocking self-pipe, which is never closed.
        unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Installs the stop handlers (or ignores the signals) for SIGTERM and SIGINT.
fn install_signals(ignore: bool, pipe_wr: &OwnedFd) {
    STOP_PIPE_WR.store(pipe_wr.as_raw_fd(), Ordering::SeqCst);
    let handler = if ignore {
        SigHandler::SigIgn
    } else {
        SigHandler::Handler(on_stop_signal)
    };
    let action = SigAction::new(handler, SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only does an atomic store and write(2), both
        // async-signal-safe; SigIgn is always safe.
        if let Err(e) = unsafe { sigaction(sig, &action) } {
            eprintln!("herd-testworker: sigaction {sig}: {e}");
        }
    }
}

/// Sends one datagram to $NOTIFY_SOCKET, if set.
fn sd_notify(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => UnixAddr::from_abstract_name(name),
        None => UnixAddr::from_pathname(OsStr::from_bytes(bytes)),
    };
    let res = addr.and_then(|addr| UnixDatagram::unbound()?.send_to_addr(msg.as_bytes(), &addr));
    if let Err(e) = res {
        eprintln!("herd-testworker: notify {path:?}: {e}");
    }
}

/// poll(2) for readability of `fds` (nix's poll needs a feature this crate
/// does not enable). Returns, per fd, whether it is ready (any revents).
fn poll_readable<const N: usize>(
    fds: [BorrowedFd<'_>; N],
    timeout_ms: i32,
) -> nix::Result<[bool; N]> {
    let mut pfds = fds.map(|fd| libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    });
    // SAFETY: `pfds` is a valid, initialised array of N pollfd structs, the
    // length passed matches it, and the fds are borrowed (open) for the call.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), N as libc::nfds_t, timeout_ms) };
    Errno::result(rc)?;
    Ok(pfds.map(|p| p.revents != 0))
}

/// Waits until the stop pipe is readable, or `timeout_ms` elapses (-1: no
/// timeout). True if stopping.
fn wait_stop(stop_rd: BorrowedFd<'_>, timeout_ms: i32) -> bool {
    loop {
        match poll_readable([stop_rd], timeout_ms) {
            Ok([ready]) => return ready || STOP.load(Ordering::SeqCst),
            Err(Errno::EINTR) => {
                if STOP.load(Ordering::SeqCst) {
                    return true;
                }
            }
            Err(e) => {
                eprintln!("herd-testworker: poll: {e}");
                return STOP.load(Ordering::SeqCst);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Shared state

struct Ctx {
    /// Body of `/`.
    ident: String,
    /// Body of `/env`, without the PPID line.
    env_body: String,
    /// Live connections (a dup of each stream), to wake idle ones at stop.
    conns: Mutex<Conns>,
    /// Signalled when a connection ends.
    conn_gone: Condvar,
}

#[derive(Default)]
struct Conns {
    next: u64,
    live: HashMap<u64, Stream>,
}

impl Ctx {
    fn register(&self, s: &Stream) -> Option<u64> {
        let dup = s.try_clone().ok()?;
        let mut c = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let id = c.next;
        c.next += 1;
        c.live.insert(id, dup);
        Some(id)
    }

    fn unregister(&self, id: u64) {
        let mut c = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        c.live.remove(&id);
        self.conn_gone.notify_all();
    }
}

fn accept_loop(ctx: &'static Ctx, l: Listener, stop_rd: BorrowedFd<'static>) {
    loop {
        let (conn_ready, stop_ready) = match poll_readable([l.fd(), stop_rd], -1) {
            Ok([c, s]) => (c, s),
            Err(Errno::EINTR) => (false, false),
            Err(e) => {
                eprintln!("herd-testworker: poll: {e}");
                thread::sleep(Duration::from_millis(10));
                (false, false)
            }
        };
        if stop_ready || STOP.load(Ordering::SeqCst) {
            return; // drops (closes) the listener
        }
        if !conn_ready {
            continue;
        }
        let stream = match l.accept() {
            Ok(s) => s,
            Err(e) => {
                match e.raw_os_error().map(Errno::from_raw) {
                    // Another worker won the race, or the client went away.
                    Some(Errno::EAGAIN | Errno::ECONNABORTED | Errno::EINTR | Errno::EPROTO) => {}
                    _ => {
                        eprintln!("herd-testworker: accept: {e}");
                        thread::sleep(Duration::from_millis(10));
                    }
                }
                continue;
            }
        };
        let Some(id) = ctx.register(&stream) else {
            continue;
        };
        let spawned = thread::Builder::new()
            .name("conn".into())
            .stack_size(CONN_STACK)
            .spawn(move || {
                serve_conn(ctx, &stream);
                ctx.unregister(id);
            });
        if let Err(e) = spawned {
            eprintln!("herd-testworker: spawn: {e}");
            ctx.unregister(id);
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP

/// Index just past the blank line ending the head, if complete.
fn head_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = b[i..].iter().position(|&c| c == b'\n') {
        let p = i + p;
        match (b.get(p + 1), b.get(p + 2)) {
            (Some(b'\n'), _) => return Some(p + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(p + 3),
            _ => i = p + 1,
        }
    }
    None
}

fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

struct Request<'a> {
    method: &'a str,
    target: &'a str,
    http11: bool,
    keep_alive: bool,
    content_length: u64,
    chunked: bool,
}

fn parse_head(head: &[u8]) -> Option<Request<'_>> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let mut parts = lines.next()?.split_ascii_whitespace();
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return None,
    };
    let mut req = Request {
        method,
        target,
        http11,
        keep_alive: http11,
        content_length: 0,
        chunked: false,
    };
    for line in lines {
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            req.content_length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(value, "close") {
                req.keep_alive = false;
            } else if has_token(value, "keep-alive") {
                req.keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            req.chunked = true;
        }
    }
    Some(req)
}

/// Appends a full response to `out`.
fn respond(out: &mut Vec<u8>, code: u16, body: &str, head_only: bool, keep_alive: bool, v10: bool) {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let conn = match (keep_alive, v10) {
        (false, _) => "Connection: close\r\n",
        (true, true) => "Connection: keep-alive\r\n",
        (true, false) => "",
    };
    let allow = if code == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let _ = write!(
        out,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{allow}{conn}\r\n",
        body.len()
    );
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
}

/// Routes one request; returns status and body.
fn route<'a>(ctx: &'a Ctx, target: &str, scratch: &'a mut String) -> (u16, &'a str) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/" => (200, &ctx.ident),
        "/slow" => {
            let ms = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("ms="))
                .and_then(|v| v.parse::<u64>().ok());
            match ms {
                Some(ms) => {
                    thread::sleep(Duration::from_millis(ms));
                    (200, &ctx.ident)
                }
                None => (400, "slow needs ?ms=N\n"),
            }
        }
        "/crash" => {
            eprintln!("crashing");
            process::exit(70);
        }
        "/var" => {
            // Any variable, for tests of the environment herd builds.
            let name = query.split('&').find_map(|kv| kv.strip_prefix("name="));
            scratch.clear();
            match name.map(std::env::var) {
                Some(Ok(v)) => scratch.push_str(&v),
                Some(Err(_)) => scratch.push_str("<unset>"),
                None => return (400, "var needs ?name=KEY\n"),
            }
            scratch.push('\n');
            (200, scratch)
        }
        "/whoami" => {
            scratch.clear();
            let cwd = std::env::current_dir().unwrap_or_default();
            let groups: Vec<String> = nix::unistd::getgroups()
                .unwrap_or_default()
                .iter()
                .map(|g| g.to_string())
                .collect();
            let _ = writeln!(
                scratch,
                "uid={} gid={} groups={} cwd={}",
                nix::unistd::getuid(),
                nix::unistd::getgid(),
                groups.join(","),
                cwd.display()
            );
            (200, scratch)
        }
        "/grow" => {
            // Holds N more MiB for the rest of its life (memory-limit tests).
            let mb = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("mb="))
                .and_then(|v| v.parse::<usize>().ok());
            let Some(mb) = mb else {
                return (400, "grow needs ?mb=N\n");
            };
            let block = vec![1u8; mb << 20];
            std::mem::forget(block);
            println!("grew by {mb} MiB");
            (200, &ctx.ident)
        }
        "/env" => {
            scratch.clear();
            scratch.push_str(&ctx.env_body);
            let _ = writeln!(scratch, "PPID={}", nix::unistd::getppid());
            (200, scratch)
        }
        _ => (404, "not found\n"),
    }
}

/// How long a stopping worker keeps answering the next request of its open connections
/// (with `Connection: close`) before closing the idle ones.
const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_millis(1000);

fn serve_conn(ctx: &Ctx, s: &Stream) {
    let mut buf = vec![0u8; 8192];
    let (mut start, mut end) = (0usize, 0usize);
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut skip: u64 = 0; // body bytes still to discard
    let mut scratch = String::new();
    loop {
        // Discard body bytes of the previous request.
        if skip > 0 {
            let n = skip.min((end - start) as u64) as usize;
            start += n;
            skip -= n as u64;
        }
        // Tolerate blank lines between requests.
        if skip == 0 {
            while start < end && matches!(buf[start], b'\r' | b'\n') {
                start += 1;
            }
        }
        if start == end {
            start = 0;
            end = 0;
        }
        let complete = if skip == 0 {
            head_end(&buf[start..end])
        } else {
            None
        };
        let Some(n) = complete else {
            // Need more bytes: flush pending responses first.
            if !out.is_empty() {
                if s.write_all(&out).is_err() {
                    return;
                }
                out.clear();
            }
            if skip == 0 && end - start >= MAX_HEAD {
                respond(
                    &mut out,
                    431,
                    "request head too large\n",
                    false,
                    false,
                    false,
                );
                let _ = s.write_all(&out);
                return;
            }
            if end == buf.len() {
                if start > 0 {
                    buf.copy_within(start..end, 0);
                    end -= start;
                    start = 0;
                } else {
                    buf.resize(buf.len() * 2, 0);
                }
            }
            match s.read(&mut buf[end..]) {
                Ok(0) => return,
                Ok(k) => end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
            continue;
        };
        let head = &buf[start..start + n];
        let Some(req) = parse_head(head) else {
            respond(&mut out, 400, "bad request\n", false, false, false);
            let _ = s.write_all(&out);
            return;
        };
        let head_only = req.method == "HEAD";
        let (code, body) = if req.method == "GET" || head_only {
            route(ctx, req.target, &mut scratch)
        } else {
            (405, "method not allowed\n")
        };
        let keep_alive = req.keep_alive && !req.chunked && !STOP.load(Ordering::SeqCst);
        respond(&mut out, code, body, head_only, keep_alive, !req.http11);
        skip = req.content_length;
        start += n;
        if !keep_alive {
            let _ = s.write_all(&out);
            return;
        }
    }
}

// ---------------------------------------------------------------------------

fn main() {
    let mut args: Vec<String> = std::env::var("HERD_TESTWORKER_OPTS")
        .map(|v| v.split_whitespace().map(String::from).collect())
        .unwrap_or_default();
    args.extend(std::env::args().skip(1));
    let opts = parse_opts(args);

    if let Some(code) = opts.exit_now {
        eprintln!("exiting at once");
        process::exit(code);
    }
    if let Some(path) = &opts.fail_if_file {
        if path.exists() {
            eprintln!("failing: {} exists", path.display());
            process::exit(1);
        }
    }

    let (stop_rd, stop_wr) = match nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("herd-testworker: pipe: {e}");
            process::exit(1);
        }
    };
    install_signals(opts.ignore_term, &stop_wr);
    // Both ends live for the whole process; the handler and the accept threads use them.
    let stop_rd: &'static OwnedFd = Box::leak(Box::new(stop_rd));
    std::mem::forget(stop_wr);

    let listeners = match get_listeners(&opts) {
        Ok(l) => l,
        Err((msg, code)) => {
            eprintln!("herd-testworker: {msg}");
            process::exit(code);
        }
    };

    for i in 1..=opts.print.max(opts.print_then_crash.unwrap_or(0)) {
        say(&format!("line {i}"));
    }
    if opts.print_then_crash.is_some() {
        process::exit(71);
    }

    let pid = process::id();
    let slot = std::env::var("HERD_WORKER_ID").unwrap_or_else(|_| "-".into());
    let gen = opts
        .gen
        .clone()
        .or_else(|| std::env::var("HERD_TESTWORKER_GEN").ok())
        .unwrap_or_else(|| "-".into());
    let mut env_body = String::new();
    for key in ENV_KEYS {
        if let Some(v) = std::env::var_os(key) {
            env_body.push_str(&format!("{key}={}\n", v.to_string_lossy()));
        }
    }
    env_body.push_str(&format!("PID={pid}\n"));
    let ctx: &'static Ctx = Box::leak(Box::new(Ctx {
        ident: format!("pid={pid} slot={slot} gen={gen}\n"),
        env_body,
        conns: Mutex::new(Conns::default()),
        conn_gone: Condvar::new(),
    }));

    say(&format!(
        "testworker pid={pid} slot={slot} listening fds={}",
        listeners.len()
    ));

    let mut stopping = false;
    if opts.startup_ms > 0 {
        let timeout = i32::try_from(opts.startup_ms).unwrap_or(i32::MAX);
        stopping = wait_stop(stop_rd.as_fd(), timeout);
    }

    let mut accepters = Vec::new();
    if !stopping {
        for l in listeners {
            let rd = stop_rd.as_fd();
            // Nonblocking, so losing an accept race to another worker sharing
            // the socket never blocks this thread.
            if let Err(e) = l.set_nonblocking() {
                eprintln!("herd-testworker: set nonblocking: {e}");
            }
            match thread::Builder::new()
                .name("accept".into())
                .spawn(move || accept_loop(ctx, l, rd))
            {
                Ok(h) => accepters.push(h),
                Err(e) => {
                    eprintln!("herd-testworker: spawn accept thread: {e}");
                    process::exit(1);
                }
            }
        }
        if opts.notify && !opts.never_ready {
            sd_notify("READY=1\nSTATUS=serving\n");
        }
        while !wait_stop(stop_rd.as_fd(), -1) {}
    }

    // Graceful stop.
    STOP.store(true, Ordering::SeqCst);
    for h in accepters {
        let _ = h.join();
    }
    sd_notify("STOPPING=1\n");
    say(&format!("testworker pid={pid} stopping"));
    // Drain like a well-behaved HTTP/1.1 server: for a grace period, a connection's next
    // request (or the first one of a connection accepted just before the stop) is still
    // answered, with `Connection: close`. Closing an idle keep-alive connection at once
    // would race with a client that is sending on it, which sees a reset.
    let grace_end = std::time::Instant::now() + DRAIN_GRACE;
    let mut c = ctx.conns.lock().unwrap_or_else(|e| e.into_inner());
    while !c.live.is_empty() {
        let left = grace_end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        c = ctx
            .conn_gone
            .wait_timeout(c, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    // Then wake the connections still idle: their blocked read returns EOF. Busy ones
    // finish their response (marked Connection: close) first.
    for s in c.live.values() {
        s.shutdown_read();
    }
    while !c.live.is_empty() {
        c = ctx.conn_gone.wait(c).unwrap_or_else(|e| e.into_inner());
    }
    drop(c);
    let _ = io::stdout().flush();
    process::exit(0);
}
