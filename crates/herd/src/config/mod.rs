//! What the user asked for: command-line flags parsed in two stages, as ripgrep does —
//! raw clap arguments ([`cli`]), then a validated [`RunPlan`] ([`plan`]) in which the
//! command is resolved, durations and signals are typed, and every error names the flag
//! and value at fault. Apps kept in files come from a herd.toml ([`file`](mod@file)) or a PM2
//! ecosystem file ([`ecosystem`]), either through [`load_any`]. Nothing here binds a
//! socket or starts a process (node evaluates a JavaScript ecosystem file, nothing else).

pub mod ecosystem;
pub mod file;
pub mod flags;
pub mod health;
mod instances;
mod launch;
mod load;
mod memory;
pub mod plan;
pub mod schedule;
pub mod settings;
mod values;
mod watch;

pub use flags::{ProxyProtocol, RunArgs, RunFlags};
pub use instances::Instances;
pub use launch::{Credentials, FilterEnv};
pub use load::{import, is_apps_file, load_any};
pub use memory::MaxMemory;
pub use plan::{plan, RunPlan, Transport};
pub use schedule::Schedule;
pub use settings::AppConfig;
