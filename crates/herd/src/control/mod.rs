//! The PM2 side of herd: a per-user daemon that keeps many apps running ([`daemon`]),
//! the CLI verbs that drive it over a Unix socket ([`client`]), the messages between
//! them ([`protocol`]), and the files of HERD_HOME ([`home`]).

pub mod args;
pub mod client;
pub mod daemon;
mod everyday;
pub mod home;
pub mod logs;
mod metrics;
mod monit;
pub mod protocol;
mod run_units;
pub mod start;
pub mod startup;
pub mod table;
pub mod verbs;
