//! Watching workers from the outside: what this process may use (the CPU budget behind
//! `-i max`, the container memory limit behind `max_memory_restart = "40%"`), the lifecycle
//! log, the workers' output in rotated log files, and changes of the app's files (`watch`)
//! (later: /proc sampling, metrics, health endpoints, status tables). Reads the system and
//! reports; decides nothing.

pub mod app_events;
mod cgroup;
pub mod cpus;
pub mod lifecycle;
pub mod logfiles;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod procstat;
pub mod watch;

/// What this process may use, read once: the plan resolves `-i max` and a
/// `max_memory_restart` share against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The CPUs (affinity mask, cgroup CPU quota).
    pub cpus: cpus::CpuBudget,
    /// The container's memory limit, if its cgroup has one.
    pub memory: Option<memory::MemoryLimit>,
}

impl Limits {
    /// This process's limits, read from /proc and /sys.
    pub fn of_this_process() -> Limits {
        Limits {
            cpus: cpus::cpu_budget(),
            memory: memory::memory_limit(),
        }
    }
}
