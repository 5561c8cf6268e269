//! What the user asked for: command-line flags parsed in two stages, as ripgrep does —
//! raw clap arguments ([`cli`]), then a validated [`RunPlan`] ([`plan`]) in which the
//! command is resolved, durations and signals are typed, and every error names the flag
//! and value at fault. Nothing here binds a socket or starts a process.

pub mod app;
pub mod cli;
pub mod file;
pub mod plan;
mod values;

pub use cli::{CheckArgs, Cli, Command, LogFormat, ProxyProtocol, RunArgs, RunFlags};
pub use plan::{Hooks, Launch, PlanError, RunPlan, Transport};
pub use values::{format_duration, parse_duration, parse_readiness, parse_signal};
