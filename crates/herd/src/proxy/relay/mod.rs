//! Relaying one client connection to one worker, both ways, until both sides are done.
//!
//! [`relay`] copies through a user-space buffer per direction, held only while bytes wait
//! to be written ([`pump`]).
//! A `splice(2)` variant (a pipe per direction, the bytes never in user space, four more fds
//! per connection) was measured against it and was no faster (`scripts/bench/proxy.sh`:
//! 0.94× keep-alive), so it was removed; `examples/relay_bench.rs` measures the copy against
//! no relay at all.
//!
//! It connects to the worker, set `TCP_NODELAY` on both sockets (we forward each chunk
//! as it comes; batching is the endpoints' business), write the PROXY header if any, then
//! copy. A half-close is forwarded: when one side shuts down its write half, the relay
//! shuts down the write half towards the other side and keeps copying the other way.

mod pump;
mod replay;
#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

pub use replay::REPLAY_MAX;

/// How long a connect to a worker may take. On loopback a connect is answered at once
/// (accepted or refused); it only waits when the worker's accept backlog is full and the
/// kernel drops our SYN, to be retried after 1 s. Two seconds allows that one retry;
/// past it the worker is stuck and another worker serves the client sooner.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a relay ended in failure.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The worker could not be reached (refused, timed out, ...). Nothing was read from
    /// the client yet, so the caller gets the client back and may hand it to another
    /// worker.
    #[error("could not connect to worker {worker}: {source}")]
    Connect {
        /// The worker's address.
        worker: SocketAddr,
        /// The client connection, nothing read from it since `sent`.
        client: TcpStream,
        /// The client's bytes a previous worker got and lost, to send first.
        sent: Vec<u8>,
        /// Why the connect failed.
        #[source]
        source: io::Error,
    },
    /// The worker reset the connection before it answered a byte (a worker that closed its
    /// listening socket resets the connections still waiting to be accepted). `sent` is
    /// every byte the client sent so far: the caller may replay the client to another
    /// worker with them.
    #[error("worker {worker} reset the connection before answering: {source}")]
    Unanswered {
        /// The worker's address.
        worker: SocketAddr,
        /// The client connection.
        client: TcpStream,
        /// What the client sent so far (all of it, at most [`REPLAY_MAX`] bytes).
        sent: Vec<u8>,
        /// The reset.
        #[source]
        source: io::Error,
    },
    /// Connected, but sending the PROXY header, copying or shutting down failed (often
    /// just a peer that reset the connection). The client connection is gone.
    #[error("relay to worker {worker}: {source}")]
    Io {
        /// The worker's address.
        worker: SocketAddr,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// Relays `client` to the worker at `worker` with tokio's buffered copy.
///
/// `header` (a PROXY protocol header, see [`super::header`]) is sent to the worker before
/// any client byte. Returns the bytes copied client→worker and worker→client, header not
/// counted, once both directions have reached end of file.
pub async fn relay(
    client: TcpStream,
    worker: SocketAddr,
    header: Option<&[u8]>,
) -> Result<(u64, u64), RelayError> {
    relay_replaying(client, worker, header, Vec::new()).await
}

/// [`relay`], sending `replay` first: the bytes the client sent to a worker that reset
/// the connection before answering ([`RelayError::Unanswered`]). Until this worker answers,
/// the client's bytes are kept, so that it too can be replaced (see `replay`).
pub async fn relay_replaying(
    client: TcpStream,
    worker: SocketAddr,
    header: Option<&[u8]>,
    replay: Vec<u8>,
) -> Result<(u64, u64), RelayError> {
    let (mut client, mut upstream) = match connect(client, worker, header).await {
        Ok(pair) => pair,
        Err(RelayError::Connect {
            worker,
            client,
            source,
            ..
        }) => {
            return Err(RelayError::Connect {
                worker,
                client,
                sent: replay,
                source,
            })
        }
        Err(e) => return Err(e),
    };
    let io_err = |source| RelayError::Io { worker, source };
    let start = match replay::start(&mut client, &mut upstream, replay).await {
        Ok(a) => a,
        Err(replay::Failed::Replay { sent, source }) => {
            return Err(RelayError::Unanswered {
                worker,
                client,
                sent,
                source,
            })
        }
        Err(replay::Failed::Io(e)) => return Err(io_err(e)),
    };
    let (up, down) = if start.client_done {
        let down = tokio::io::copy(&mut upstream, &mut client)
            .await
            .map_err(io_err)?;
        client.shutdown().await.map_err(io_err)?;
        (0, down)
    } else {
        pump::bidirectional(&mut client, &mut upstream)
            .await
            .map_err(io_err)?
    };
    Ok((start.up + up, start.down + down))
}

/// Connects to `worker` (bounded by [`CONNECT_TIMEOUT`]), sets `TCP_NODELAY` on both
/// sockets and sends `header`. Shared by both relay variants.
async fn connect(
    client: TcpStream,
    worker: SocketAddr,
    header: Option<&[u8]>,
) -> Result<(TcpStream, TcpStream), RelayError> {
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(worker)).await;
    let mut upstream = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(source)) => {
            return Err(RelayError::Connect {
                worker,
                client,
                sent: Vec::new(),
                source,
            })
        }
        Err(_) => {
            let source = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
            return Err(RelayError::Connect {
                worker,
                client,
                sent: Vec::new(),
                source,
            });
        }
    };
    // Only a latency tweak: the relay is correct without it, so a failure is not worth
    // failing the connection for.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    if let Some(h) = header {
        upstream
            .write_all(h)
            .await
            .map_err(|source| RelayError::Io { worker, source })?;
    }
    Ok((client, upstream))
}
