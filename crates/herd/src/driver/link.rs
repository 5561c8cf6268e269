//! What the driver keeps of each worker besides the supervisor's view: herd's side of its
//! channel ([`Link`]), a spawn not answered yet ([`Pending`]), and how it is to be stopped
//! ([`StopWith`]).

use super::Channel;
use crate::config::RunPlan;

/// herd's side of one worker's channel.
pub(super) struct Link {
    pub(super) channel: Channel,
    /// `seq` of the next cluster message herd sends.
    pub(super) seq: u64,
    /// The worker spoke Node's cluster protocol: it is stopped like Node's `worker.kill()`.
    pub(super) cluster: bool,
    /// It was told to disconnect; when its channel closes, it gets the stop signal.
    pub(super) disconnecting: bool,
    /// The worker closed its end.
    pub(super) closed: bool,
    /// Indexes of herd's listeners whose connections the worker takes as a Node cluster
    /// server (`newconn`, in the handoff modes).
    pub(super) serves: std::collections::HashSet<usize>,
    /// A Node cluster worker that listens on a server of its own (not one of herd's).
    pub(super) own_server: bool,
    /// Connections handed over as `"connection"` messages.
    pub(super) sockets_handed: u64,
    /// Stopping: waiting for Node's `NODE_SOCKET_ALL_CLOSED` before the disconnect.
    pub(super) draining_sockets: bool,
    /// It never acknowledged a handle: it does not read its channel, and gets no more.
    pub(super) deaf: bool,
    /// It said something already (`herd::Cluster`'s `online` event).
    pub(super) spoke: bool,
    /// The liveness question not answered yet (`liveness.rs`).
    pub(super) liveness: Option<super::liveness::Question>,
    /// The round trip of the last liveness answer: the event loop's lag.
    pub(super) loop_lag: Option<std::time::Duration>,
    /// Connections handed or relayed to it (`/metrics`).
    pub(super) handed: u64,
}

impl Link {
    pub(super) fn new(channel: Channel) -> Link {
        Link {
            channel,
            seq: 0,
            cluster: false,
            disconnecting: false,
            closed: false,
            serves: Default::default(),
            own_server: false,
            sockets_handed: 0,
            draining_sockets: false,
            deaf: false,
            spoke: false,
            liveness: None,
            loop_lag: None,
            handed: 0,
        }
    }

    /// In the handoff modes, the worker takes connections as `"connection"` messages: it is
    /// not a Node cluster worker, or one that never listened on herd's sockets (the
    /// article's sticky-session worker listens on a port of its own and takes sockets).
    /// A cluster worker that has not listened yet takes nothing.
    pub(super) fn takes_sockets(&self) -> bool {
        !self.deaf && (!self.cluster || (self.own_server && self.serves.is_empty()))
    }

    /// The `seq` for the next cluster message.
    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq - 1
    }
}

/// A spawn asked of the spawner thread and not answered yet.
pub(super) struct Pending {
    pub(super) slot: usize,
    /// How it is to be stopped, as the plan said when it was spawned.
    pub(super) stop: StopWith,
    /// herd's end of the worker's channel.
    pub(super) channel: std::os::unix::net::UnixStream,
    /// Its private port (`--proxy`).
    pub(super) port: Option<u16>,
    /// Its environment, for `herd env`.
    pub(super) env: super::spawn::StartedEnv,
}

/// How a worker is asked to stop: fixed when it is spawned, so that a reload with a new
/// definition stops the old workers the way their own definition says.
#[derive(Debug, Clone, Copy)]
pub(super) struct StopWith {
    pub(super) signal: nix::sys::signal::Signal,
    /// The `"shutdown"` message rather than the signal (when it has a channel).
    pub(super) message: bool,
}

impl StopWith {
    pub(super) fn of(plan: &RunPlan) -> StopWith {
        StopWith {
            signal: plan.stop_signal,
            message: plan.stop_message,
        }
    }
}
