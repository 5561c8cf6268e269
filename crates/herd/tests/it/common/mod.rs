//! The harness of herd's integration tests, by concern:
//!
//! - [`harness`]: the real `herd` binary with its output collected line by line, and
//!   waits on that output (log lines, spawned workers, exit codes);
//! - [`events`]: herd's lifecycle events (JSON log lines with a stable `event` name) and
//!   the waits on them;
//! - [`daemon`]: a temporary `HERD_HOME` driven through the CLI;
//! - [`http`]: HTTP/1.1 clients (ureq, and raw exchanges from chosen source addresses);
//! - [`load`]: the one load generator of the suite;
//! - [`procfs`]: processes, fds and sockets read from /proc;
//! - [`tools`]: the programs the tests run besides herd (node, npm, python3, util-linux,
//!   systemd-socket-activate, systemd-analyze, redis-server),
//!   which must be installed: a missing one fails the test, saying how to install it;
//! - [`skip`]: the few legitimate skips (not root, no user namespaces, …), each recorded
//!   so that a run says what it did not test;
//! - [`cgroup`]: a child cgroup with a memory limit and a CPU quota (a pod's `limits`) that
//!   herd is started in;
//! - [`scenarios`]: steps many tests share (a rolling reload under load, …);
//! - [`ports`] and [`temp`]: free ports and temporary paths.
//!
//! Every helper that waits polls for an event with a generous bound; nothing sleeps to
//! "let things settle".

mod cgroup;
pub mod daemon;
mod events;
mod harness;
mod http;
mod load;
mod ports;
mod procfs;
mod scenarios;
mod skip;
mod temp;
mod tools;

pub use cgroup::*;
pub use events::*;
pub use harness::*;
pub use http::*;
pub use load::*;
pub use ports::*;
pub use procfs::*;
pub use scenarios::*;
pub use skip::*;
pub use temp::*;
pub use tools::*;

use std::time::{Duration, Instant};

/// Default bound for anything we wait for (a noisy 2-core machine, tests in parallel).
pub const T: Duration = Duration::from_secs(20);

/// Calls `cond` every `every` until it is true (true) or `timeout` passed (false).
pub fn poll_until(timeout: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}
