//! herd: run any server program on every CPU core.
//!
//! One small primary process owns the listening sockets and supervises N worker
//! processes. The lifecycle rules live in [`supervisor`], a pure state machine with
//! no I/O; [`driver`] is the thin tokio layer that turns signals, child exits and
//! notify datagrams into supervisor events and carries out the actions it returns.
//!
//! As a library: [`Cluster`] runs your binary as its own primary and workers (the
//! article's `startCluster`), and [`worker`] (the `herd-worker` crate) makes a Rust server
//! a herd worker. That, with the types its methods take and give, is the public API: every
//! other module is private, or `#[doc(hidden)]` where the `herd` binary, herd's own
//! integration tests or its benchmarks need it, and is no part of semver.
//!
//! # Layers
//!
//! Every module imports only from the layers below its own (checked by a unit test,
//! `src/layers.rs`), lowest first:
//!
//! | layer | modules | what |
//! |---|---|---|
//! | 0 | `units` | durations, sizes, percentages, signals, app names as people write them |
//! | 1 | `supervisor`, `balance` | pure decision cores: the lifecycle; which worker gets a connection |
//! | 2 | `listen`, `proxy`, `output` | sockets; the proxy transport's parts; the workers' output lines |
//! | 3 | `channel`, `observe`, `admin` | the worker channel and sd_notify; /proc, the cgroup limits (CPU budget, memory limit), logs and log files; the admin HTTP listener |
//! | 4 | `config` | every source of settings → one `AppConfig` → a validated `RunPlan` |
//! | 5 | `driver` | the I/O around the supervisor for one app |
//! | 6 | `control`, `bench` | the daemon and its CLI client; the load generator (`herd bench`) |
//! | 7 | `cluster`, `cli` | the library face; the `herd` command line |

#![warn(missing_docs)]

mod admin;
mod balance;
mod bench;
mod channel;
#[doc(hidden)]
pub mod cli;
pub mod cluster;
mod config;
mod control;
#[doc(hidden)]
pub mod driver;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod listen;
#[doc(hidden)]
pub mod observe;
#[doc(hidden)]
pub mod output;
#[doc(hidden)]
pub mod proxy;
#[doc(hidden)]
pub mod supervisor;
mod units;

#[cfg(test)]
mod layers;

pub use cluster::{Cluster, Event, Observer, Worker, WorkerRef};
pub use config::Instances;
/// The worker side: what a Rust worker of herd (or of a [`Cluster`]) uses.
pub use herd_worker as worker;
pub use listen::Balance;
