//! herd's integration tests, one test crate (one link instead of one per file): each module
//! runs the real `herd` binary with real workers over real sockets and signals. The shared
//! harness is in `common/`. `tests/reap.rs` stays a binary of its own: the reaper it tests
//! takes any child of the process.

mod common;

mod admin;
mod app_metrics;
mod article;
mod bad_input;
mod bench;
mod channel;
mod cluster;
mod cluster_examples;
mod crash;
mod daemon;
mod daemon_apps;
mod daemon_cli;
mod daemon_logs;
mod daemon_redefine;
mod dashboard;
mod everyday;
mod handoff_flow;
mod handoff_plain;
mod handoff_unix;
mod health;
mod import;
mod kubernetes;
mod least_conn;
mod limits;
mod memory;
mod messages;
mod metrics;
mod monit;
mod node;
mod node_cluster;
mod orphans;
mod output;
mod proxy;
mod proxy_limits;
mod python;
mod reload;
mod round_robin;
mod run;
mod scheduled;
mod security;
mod sessions;
mod shutdown;
mod socket_activation;
mod sticky;
mod systemd;
mod watch;
mod worker_env;
