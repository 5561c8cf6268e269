//! `herd-testworker`: a small, fast HTTP/1.1 server used by herd's integration
//! tests, benchmarks and demos. It is plain std + threads (no async runtime):
//! one accept thread per listener and one thread per connection.
//!
//! It implements herd's worker contract by itself (the `LISTEN_FDS` sockets, sd_notify,
//! the stop signals), with neither herd's library nor the `herd-worker` SDK: it is the
//! oracle the integration tests hold herd to, so a bug shared by herd and its SDK cannot
//! cancel out. A test below keeps it that way. It is not for users either: its `[[bin]]`
//! requires the `testworker` feature, which only tests turn on (see `Cargo.toml`), so
//! `cargo install` leaves it out.
//!
//! Modules: `flags` (the command line), `sockets` (passed or bound listeners), `stop`
//! (signals and the self-pipe), `notify` (sd_notify), `serve` (accept threads, the open
//! connections, the drain), `http` (parsing and answering), `routes` (what each URL does),
//! `health` (`/healthz` and its modes), `hang` (the hangs of `/hang`), `watchdog`
//! (`--watchdog` and `/watchdog`).
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
//! - `/environ` → 200, every environment variable, `KEY=VALUE` lines sorted by name (for
//!   tests of exactly what a worker inherits)
//! - `/whoami` → 200, `uid=<uid> gid=<gid> groups=<g,…> cwd=<dir>`
//! - `/open?path=P` → 200, `readable` if this process may open P for reading, else the
//!   error's kind (`PermissionDenied`, `NotFound`, …)
//! - `/grow?mb=N` → holds N more MiB (touched) until it exits, prints `grew by N MiB`
//! - `/healthz` → 200 `ok\n`, or as `/health?mode=` set it (the path herd's health-check
//!   tests probe)
//! - anything else → 404
//!
//! The routes below switch the state of the process that answers them (not of other
//! workers), for good or until switched again, so that a test can break exactly one
//! worker at a chosen moment. A missing or unknown `how`/`mode`/`do` → 400, and nothing
//! changes. The state is switched before the answer is written: a client that has the
//! answer meets the new behaviour on its next connection or request.
//!
//! - `/hang?how=busy` → 200 `hanging busy\n`, then the process is hung, as with a
//!   blocked event loop: one thread spins on a CPU forever, and no connection, open or
//!   new, gets any further answer (its thread blocks for good before routing its next
//!   request). The listeners still accept; the watchdog pings stop. It cannot be undone,
//!   and a stop signal goes unnoticed (no `STOPPING=1`, no `stopping` line, the listeners
//!   stay open): only SIGKILL (or another deadly signal) ends the process.
//! - `/hang?how=accept` → 200 `hanging accept\n`, then the accept loops accept no more
//!   (new connections wait in the listen backlog, unless another process shares the
//!   socket); open connections are still served. A stop still works.
//! - `/hang?how=silent` → 200 `hanging silent\n`, then every connection accepted from now
//!   on is read (and what it sends discarded) but never answered, and kept open until the
//!   worker stops; connections already open are still served.
//! - `/health?mode=M` → 200 `health M\n`, then `/healthz` (only it) answers as M says:
//!   - `ok`: 200 `ok\n` (the normal state)
//!   - `fail`: 503 `unhealthy\n`
//!   - `garbage`: the bytes `garbage garbage\n` (not HTTP), then the connection is closed
//!   - `huge`: 200 with a body of 10 MiB (10485760 bytes of `x`, with its
//!     `Content-Length`), written as fast as the client reads
//!   - `hold`: reads the request, never answers, and keeps the connection open (until the
//!     client closes it and the worker stops)
//!   - `slow&ms=N`: sleeps N ms, then 200 `ok\n` (`/health?mode=slow` without a valid `ms`
//!     → 400)
//! - `/watchdog?do=stop` → 200 `watchdog stop\n`: `--watchdog` sends no more pings (none
//!   starts once the answer is written)
//! - `/watchdog?do=start` → 200 `watchdog start\n`: the pings resume, the first at once
//! - `/watchdog?do=trigger` → sends `WATCHDOG=trigger` to `NOTIFY_SOCKET` (if set), then
//!   200 `watchdog trigger\n`
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
//! - `--watchdog`: if `WATCHDOG_USEC` is a positive number of microseconds and
//!   `WATCHDOG_PID` is either unset or our pid (libsystemd's `sd_watchdog_enabled`
//!   rules), send `WATCHDOG=1` to `NOTIFY_SOCKET` from a thread of its own, at once and
//!   then every half of that period (at least 1 ms), until `/watchdog?do=stop` or
//!   `/hang?how=busy`; otherwise no pings, and stderr says why
//!
//! At start-up, once the sockets are known, one line is printed to stdout:
//! `testworker pid=<pid> slot=<slot> listening fds=<n>`; with `--watchdog` and pings,
//! then `testworker pid=<pid> watchdog every <ms> ms` (the time between two pings, in
//! whole ms), before `--startup-ms` is waited out.
//!
//! # Graceful stop
//!
//! On SIGTERM or SIGINT (unless `--ignore-term`) the worker stops accepting
//! and closes its listeners, sends `STOPPING=1` to `NOTIFY_SOCKET` if set,
//! prints `testworker pid=<pid> stopping`, and for one second still answers the
//! next request of each open connection, with `Connection: close` (so a client
//! that is sending on an idle keep-alive connection gets an answer, not a
//! reset). Then it closes the connections still idle, waits for in-flight
//! requests and exits 0. Connections held by `/hang?how=silent` or `/healthz` in
//! `hold` mode are closed then too, unanswered. A worker hung by `/hang?how=busy`
//! ignores the stop altogether.
//!
//! # Exit codes
//!
//! 0 graceful stop · 1 `--exit-now` default, `--fail-if-file`, runtime start-up
//! failure (e.g. bind) · 2 usage error · 3 bad `LISTEN_FDS`/`LISTEN_PID` or
//! passed fds · 70 `/crash` · 71 `--print-then-crash`.

mod flags;
mod hang;
mod health;
mod http;
mod notify;
mod routes;
mod serve;
mod sockets;
mod stop;
mod watchdog;

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process;
use std::thread;

use nix::fcntl::OFlag;

use crate::serve::Ctx;

/// Prints a line to stdout, ignoring errors (a closed stdout must not kill us).
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

/// Start-up in the order the contract needs: flags that end the process at once, the stop
/// handlers, the sockets, the printing flags, then serving, readiness and the wait for a
/// stop.
fn main() {
    let opts = flags::from_env_and_args();

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
    stop::install_signals(opts.ignore_term, &stop_wr);
    // Both ends live for the whole process; the handler and the accept threads use them.
    let stop_rd: &'static OwnedFd = Box::leak(Box::new(stop_rd));
    std::mem::forget(stop_wr);

    let listeners = match sockets::get_listeners(&opts) {
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
    let ctx: &'static Ctx = Box::leak(Box::new(Ctx::new(
        format!("pid={pid} slot={slot} gen={gen}\n"),
        routes::env_body(pid),
    )));

    say(&format!(
        "testworker pid={pid} slot={slot} listening fds={}",
        listeners.len()
    ));
    if opts.watchdog {
        watchdog::start(ctx, pid);
    }

    let mut stopping = false;
    if opts.startup_ms > 0 {
        let timeout = i32::try_from(opts.startup_ms).unwrap_or(i32::MAX);
        stopping = stop::wait(stop_rd.as_fd(), timeout);
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
                .spawn(move || serve::accept_loop(ctx, l, rd))
            {
                Ok(h) => accepters.push(h),
                Err(e) => {
                    eprintln!("herd-testworker: spawn accept thread: {e}");
                    process::exit(1);
                }
            }
        }
        if opts.notify && !opts.never_ready {
            notify::sd_notify("READY=1\nSTATUS=serving\n");
        }
        while !stop::wait(stop_rd.as_fd(), -1) {}
    }
    if ctx.hangs.busy() {
        // Hung: a stop goes unnoticed, and only SIGKILL ends the process.
        hang::block_forever();
    }

    // Graceful stop.
    stop::request();
    for h in accepters {
        let _ = h.join();
    }
    notify::sd_notify("STOPPING=1\n");
    say(&format!("testworker pid={pid} stopping"));
    serve::drain(ctx);
    let _ = io::stdout().flush();
    process::exit(0);
}

#[cfg(test)]
mod tests {
    /// As a binary of the herd package, the test worker could use herd's library or the
    /// herd-worker SDK (both are dependencies) and the compiler would not object; this
    /// test does. (The strings are split so that this file does not match itself.)
    #[test]
    fn uses_neither_herd_nor_its_worker_sdk() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/bin/herd-testworker");
        let forbidden = [concat!("herd", "_worker"), concat!("herd", "::")];
        let entries = std::fs::read_dir(dir).expect("the test worker's sources");
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            let text = std::fs::read_to_string(&path).expect("a source file");
            for word in forbidden {
                assert!(!text.contains(word), "{} uses {word}", path.display());
            }
        }
    }
}
