//! A std-only HTTP server that is a first-class herd worker:
//!
//! ```sh
//! cargo build -p herd-worker --examples
//! herd run -i 2 -p 3000 --ready notify -- target/debug/examples/hello
//! herd run -i 2 -p 3000 --balance round-robin -- target/debug/examples/hello
//! PORT=3000 target/debug/examples/hello          # standalone: the same binary
//! ```
//!
//! It serves `pid=<pid> slot=<slot>` on every inherited listener (a thread each) and on
//! the connections herd hands over in the handoff modes (one more thread), counts each
//! request with the batching counter `requests`, says `READY=1` once it serves, and on
//! SIGTERM/SIGINT or herd's `"shutdown"` stops accepting, answers the connections it
//! accepted, flushes its counts and exits 0. `/stats` answers
//! herd's counters (`{"herd":"stats"}`).
//!
//! HTTP is the least that curl and the tests need: one request per connection
//! (`Connection: close`), the request head read up to its blank line.

use std::io::{Read, Write};
use std::process::ExitCode;

/// Largest request head read.
const MAX_HEAD: usize = 16 * 1024;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hello: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), herd_worker::Error> {
    // The inherited sockets first, before anything opens an fd of its own: a closed fd 3
    // would otherwise be taken by that and mistaken for herd's.
    let listeners = herd_worker::listeners()?;
    // From here on SIGTERM is ours to handle.
    herd_worker::watch_shutdown();
    let mut serving = Vec::new();
    for listener in listeners {
        println!(
            "hello: serving {} on {}",
            listener.name(),
            listener.local_addr()
        );
        // `incoming()` ends at the stop; the scope then waits for the connections in hand.
        serving.push(std::thread::spawn(move || match listener.into_socket() {
            herd_worker::Socket::Tcp(tcp) => std::thread::scope(|s| {
                for conn in herd_worker::incoming(&tcp).flatten() {
                    s.spawn(move || serve(conn));
                }
            }),
            herd_worker::Socket::Unix(unix) => std::thread::scope(|s| {
                for conn in herd_worker::incoming(&unix).flatten() {
                    s.spawn(move || serve(conn));
                }
            }),
        }));
    }
    // The handoff modes: connections come over the channel (none outside herd).
    let handed = herd_worker::connections();
    std::thread::spawn(move || {
        for conn in handed {
            std::thread::spawn(move || serve(conn));
        }
    });
    herd_worker::ready()?;
    let why = herd_worker::wait_for_shutdown();
    println!("hello: stopping ({why:?})");
    let _ = herd_worker::stopping();
    for thread in serving {
        let _ = thread.join();
    }
    herd_worker::flush()
}

fn serve(mut conn: impl Read + Write) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > MAX_HEAD {
            return;
        }
    }
    herd_worker::count("requests", 1);
    let path = head.split(|b| *b == b' ').nth(1).unwrap_or(b"/");
    let body = if path == b"/stats" {
        match herd_worker::stats() {
            Ok(Some(v)) => format!("{v}\n"),
            Ok(None) => "{}\n".to_string(),
            Err(e) => format!("{{\"error\":{:?}}}\n", e.to_string()),
        }
    } else {
        let slot = herd_worker::slot().map_or("-".to_string(), |s| s.to_string());
        format!("pid={} slot={slot}\n", std::process::id())
    };
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}
