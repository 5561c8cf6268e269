//! The worker contract: the environment and the fds a worker of a slot starts with.
//! See the README's "The worker contract" table, which this must match.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// What one worker is given, besides herd's own environment.
#[derive(Debug)]
pub struct Contract {
    pub env: Vec<(String, String)>,
    /// Listening sockets then the channel, to be placed at fds 3, 4, ….
    pub fds: Vec<RawFd>,
    pub listen_fds: usize,
}

/// Who the worker is and what it gets.
pub struct Identity<'a> {
    pub app: &'a str,
    pub slot: usize,
    pub generation: u64,
    pub notify_socket: &'a str,
    pub port: Option<u16>,
    /// The slot's listening sockets with their LISTEN_FDNAMES names.
    pub listeners: &'a [(RawFd, String)],
    /// The worker's end of its channel.
    pub channel: &'a OwnedFd,
    /// Set NODE_UNIQUE_ID (Node programs become `cluster` workers of herd).
    pub node_cluster: bool,
    /// How connections reach the worker: `sockets` (inherited), `handoff` (on its
    /// channel) or `proxy` (relayed to its private PORT), for HERD_TRANSPORT.
    pub transport: &'a str,
}

/// Builds the environment and fd list of a worker.
pub fn contract(id: &Identity) -> Contract {
    let slot = id.slot.to_string();
    let mut env = vec![
        ("HERD_WORKER_ID".to_string(), slot.clone()),
        ("NODE_APP_INSTANCE".to_string(), slot),
        ("HERD_APP".to_string(), id.app.to_string()),
        ("HERD_GENERATION".to_string(), id.generation.to_string()),
        ("NOTIFY_SOCKET".to_string(), id.notify_socket.to_string()),
        ("HERD_TRANSPORT".to_string(), id.transport.to_string()),
    ];
    if let Some(port) = id.port {
        env.push(("PORT".to_string(), port.to_string()));
    }
    let n = id.listeners.len();
    if n > 0 {
        env.push(("LISTEN_FDS".to_string(), n.to_string()));
        let names: Vec<&str> = id.listeners.iter().map(|(_, name)| name.as_str()).collect();
        env.push(("LISTEN_FDNAMES".to_string(), names.join(":")));
    }
    // The channel comes right after the listeners, where LISTEN_FDS-aware code ignores it.
    // Node's own child_process uses the same two variables for its IPC channel.
    env.push(("NODE_CHANNEL_FD".to_string(), (3 + n).to_string()));
    env.push((
        "NODE_CHANNEL_SERIALIZATION_MODE".to_string(),
        "json".to_string(),
    ));
    // A Node program run from a file boots as a cluster worker: `cluster.isWorker`, and
    // `listen()` asks herd for the server (see `channel::node_cluster`). Ids start at 1, as in
    // Node's own primary; the slot is `cluster.worker.id - 1` = NODE_APP_INSTANCE.
    if id.node_cluster {
        env.push(("NODE_UNIQUE_ID".to_string(), (id.slot + 1).to_string()));
    }
    let mut fds: Vec<RawFd> = id.listeners.iter().map(|(fd, _)| *fd).collect();
    fds.push(id.channel.as_raw_fd());
    Contract {
        env,
        fds,
        listen_fds: n,
    }
}
