//! What the driver tells a program that embeds herd ([`crate::cluster::Cluster`]): worker
//! lifecycle events in Node's `cluster` vocabulary, and the app messages of workers, whose
//! answer goes back to the sender. The CLI has no hooks; the daemon neither.

use std::sync::Arc;

use serde_json::Value;

use crate::supervisor::{ExitStatus, Log};

/// Which worker a message or event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerRef {
    /// The worker's slot, 0..N-1, kept across restarts and reloads.
    pub slot: usize,
    /// The worker's process id.
    pub pid: u32,
}

/// A worker's lifecycle, as Node's `cluster` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The worker process was started (Node's `fork`).
    Fork(WorkerRef),
    /// The worker said something for the first time: its code runs (Node's `online`).
    Online(WorkerRef),
    /// The worker is ready for connections (Node's `listening`).
    Listening(WorkerRef),
    /// The worker exited with `code`, or was killed by `signal` (Node's `exit`).
    Exit {
        /// Which worker.
        worker: WorkerRef,
        /// Its exit code, when it exited by itself.
        code: Option<i32>,
        /// The signal that ended it, when one did.
        signal: Option<i32>,
    },
}

impl Event {
    /// The event a lifecycle log record stands for, if any.
    pub(crate) fn from_log(log: &Log) -> Option<Event> {
        Some(match *log {
            Log::Spawned { slot, pid } => Event::Fork(WorkerRef { slot, pid }),
            Log::Ready { slot, pid, .. } => Event::Listening(WorkerRef { slot, pid }),
            Log::Exited {
                slot, pid, status, ..
            } => {
                let (code, signal) = match status {
                    ExitStatus::Code(c) => (Some(c), None),
                    ExitStatus::Signal(s) => (None, Some(s)),
                };
                Event::Exit {
                    worker: WorkerRef { slot, pid },
                    code,
                    signal,
                }
            }
            _ => return None,
        })
    }
}

/// What the primary's driver tells an embedding program. Called on the driver's thread:
/// keep it quick.
pub trait Observer: Send + Sync {
    /// A lifecycle event.
    fn event(&self, _event: &Event) {}
    /// An app message from a worker; the answer, if any, is sent back to it.
    fn message(&self, _from: WorkerRef, _msg: &Value) -> Option<Value> {
        None
    }
}

/// The embedding program's observer, shared with the driver.
pub type Hooks = Arc<dyn Observer>;
