//! herd: run any server program on every CPU core.
//!
//! One small primary process owns the listening sockets and supervises N worker
//! processes. The lifecycle rules live in [`supervisor`], a pure state machine with
//! no I/O; [`driver`] is the thin tokio layer that turns signals, child exits and
//! notify datagrams into supervisor events and carries out the actions it returns.
//!
//! As a library: [`Cluster`] runs your binary as its own primary and workers (the
//! article's `startCluster`), and [`worker`] (the `herd-worker` crate) makes a Rust server
//! a herd worker.

#![warn(missing_docs)]

pub mod balance;
pub mod channel;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod driver;
pub mod listen;
pub mod observe;
pub mod output;
pub mod proxy;
pub mod supervisor;
pub mod units;

#[cfg(test)]
mod layers;

pub use cluster::Cluster;
pub use config::Instances;
/// The worker side: what a Rust worker of herd (or of a [`Cluster`]) uses.
pub use herd_worker as worker;
pub use listen::Balance;
