//! `herd-worker`: make a Rust server a first-class [herd](https://github.com/) worker.
//!
//! herd starts each worker with the sockets to serve (systemd's socket activation), an
//! sd_notify socket, a slot number and a channel that speaks Node's IPC format. This crate
//! is that contract as plain functions, with std types (tokio ones behind the `tokio`
//! feature), and each of them does the right thing when the program runs on its own:
//!
//! | under herd | standalone |
//! |---|---|
//! | [`listeners()`]: the inherited sockets | a socket bound to `0.0.0.0:$PORT` (default 3000) |
//! | [`ready()`], [`stopping()`], [`status()`], [`watchdog()`]: sd_notify; [`watchdog_period()`], `tokio::spawn_watchdog()` for `--watchdog` | no-ops, `None` |
//! | [`slot()`], [`generation()`], [`is_worker()`] | `None`, `None`, `false` |
//! | [`send()`], [`recv()`], [`stats()`], [`count()`]: the channel | no-ops / `None` |
//! | [`connections()`]: connections herd hands over (`--balance round-robin` …) | none |
//! | [`wait_for_shutdown()`]: SIGTERM/SIGINT or `"shutdown"` | SIGTERM/SIGINT |
//! | [`incoming()`]: a blocking accept loop that ends at the stop | the same |
//!
//! A complete server (std only; `examples/hello.rs` is a fuller one):
//!
//! ```no_run
//! use std::io::{Read, Write};
//! let mut serving = Vec::new();
//! for listener in herd_worker::listeners()? {
//!     let tcp = listener.into_tcp().expect("a TCP listener");
//!     serving.push(std::thread::spawn(move || {
//!         // Ends at the stop, once the connection in hand is answered.
//!         for mut conn in herd_worker::incoming(&tcp).flatten() {
//!             let mut buf = [0u8; 1024];
//!             let _ = conn.read(&mut buf);
//!             herd_worker::count("requests", 1);
//!             let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhi\n");
//!         }
//!     }));
//! }
//! herd_worker::ready()?;
//! herd_worker::wait_for_shutdown();
//! for thread in serving {
//!     let _ = thread.join();
//! }
//! herd_worker::flush()?;
//! # Ok::<(), herd_worker::Error>(())
//! ```
//!
//! Every error is an [`Error`]: a stale `LISTEN_PID`, an inherited fd that is not a
//! listening socket, a `NOTIFY_SOCKET` that does not exist, a closed channel. Nothing in
//! this crate panics on what the environment or herd sends.

#![warn(missing_docs)]

mod accept;
mod channel;
mod counters;
mod env;
mod error;
mod framing;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod listen;
mod notify;
mod shutdown;
mod sys;
#[cfg(feature = "tokio")]
pub mod tokio;

pub use accept::{incoming, Accept, Incoming, WAKE_SIGNAL};
pub use channel::{
    connections, recv, send, stats, Connection, Connections, OpenGuard, Stream,
    MAX_QUEUED_MESSAGES, STATS_TIMEOUT,
};
pub use counters::{count, flush, FLUSH_EVERY};
pub use env::DEFAULT_PORT;
pub use error::Error;
pub use listen::{listeners, Listener, Socket, FIRST_FD};
pub use notify::{notify, ready, status, stopping, watchdog, watchdog_period};
pub use shutdown::{
    requested as shutdown_requested, wait as wait_for_shutdown, watch as watch_shutdown, Reason,
};

/// This worker's slot (`HERD_WORKER_ID`: 0..N-1, kept across restarts and reloads);
/// `None` outside herd.
///
/// ```
/// if herd_worker::slot() == Some(0) {
///     // the one worker that runs the periodic jobs
/// }
/// ```
pub fn slot() -> Option<usize> {
    env::number(env::real, "HERD_WORKER_ID")
}

/// The reload generation this worker belongs to (`HERD_GENERATION`: 0, then one more per
/// rolling reload); `None` outside herd.
///
/// ```
/// println!("generation {:?}", herd_worker::generation());
/// ```
pub fn generation() -> Option<u64> {
    env::number(env::real, "HERD_GENERATION").map(|g| g as u64)
}

/// Whether this process runs as a herd worker (it has a slot).
///
/// ```
/// if !herd_worker::is_worker() {
///     eprintln!("standalone: serving on $PORT");
/// }
/// ```
pub fn is_worker() -> bool {
    slot().is_some()
}
