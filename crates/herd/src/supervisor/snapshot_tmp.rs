//! TEMPORARY stand-in for the supervisor snapshot being written on another branch.
use std::time::Instant;

use super::{State, Supervisor};

/// One worker as `herd ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerView {
    /// Slot.
    pub slot: usize,
    /// Pid.
    pub pid: Option<u32>,
    /// Generation.
    pub generation: u64,
    /// State.
    pub state: WorkerState,
    /// Start.
    pub started: Instant,
    /// Restarts of its slot.
    pub restarts: u32,
    /// A reload's replacement.
    pub replacement: bool,
}

/// Worker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Spawning.
    Spawning,
    /// Starting.
    Starting,
    /// Ready.
    Ready,
    /// Stopping.
    Stopping,
    /// Waiting.
    Waiting,
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WorkerState::Spawning => "spawning",
            WorkerState::Starting => "starting",
            WorkerState::Ready => "online",
            WorkerState::Stopping => "stopping",
            WorkerState::Waiting => "waiting-restart",
        })
    }
}

impl Supervisor {
    /// Every worker.
    pub fn snapshot(&self) -> Vec<WorkerView> {
        self.workers
            .values()
            .map(|w| WorkerView {
                slot: w.slot,
                pid: w.pid,
                generation: w.generation,
                state: match w.state {
                    State::Spawning => WorkerState::Spawning,
                    State::Starting { .. } => WorkerState::Starting,
                    State::Ready => WorkerState::Ready,
                    State::Stopping { .. } => WorkerState::Stopping,
                },
                started: w.started,
                restarts: 0,
                replacement: false,
            })
            .collect()
    }
}
