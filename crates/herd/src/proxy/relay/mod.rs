//! Relaying one client connection to one worker, both ways, until both sides are done.
//!
//! Two interchangeable implementations with the same signature, so the faster one can be
//! chosen from measurements (see `scripts/bench/proxy.sh` and `examples/relay_bench.rs`):
//!
//! - [`relay`]: tokio's `copy_bidirectional`, through a user-space buffer per direction;
//! - [`relay_splice`] (Linux): `splice(2)` through a pipe per direction, so the bytes
//!   never enter user space, at the cost of two pipes (four fds) per connection.
//!
//! Both connect to the worker, set `TCP_NODELAY` on both sockets (we forward each chunk
//! as it comes; batching is the endpoints' business), write the PROXY header if any, then
//! copy. A half-close is forwarded: when one side shuts down its write half, the relay
//! shuts down the write half towards the other side and keeps copying the other way.

#[cfg(target_os = "linux")]
mod splice;
#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[cfg(target_os = "linux")]
pub use splice::relay_splice;

/// How long a connect to a worker may take. On loopback a connect is answered at once
/// (accepted or refused); it only waits when the worker's accept backlog is full and the
/// kernel drops our SYN, to be retried after 1 s. Two seconds allows that one retry;
/// past it the worker is stuck and another worker serves the client sooner.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Buffer size per direction for [`relay`]. tokio's default is 8 KiB; 64 KiB matches a
/// pipe's capacity in [`relay_splice`], so the two variants move the same chunk sizes and
/// a large transfer takes an eighth of the syscalls.
const COPY_BUF: usize = 64 * 1024;

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
        /// The untouched client connection.
        client: TcpStream,
        /// Why the connect failed.
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
    let (mut client, mut upstream) = connect(client, worker, header).await?;
    tokio::io::copy_bidirectional_with_sizes(&mut client, &mut upstream, COPY_BUF, COPY_BUF)
        .await
        .map_err(|source| RelayError::Io { worker, source })
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
                source,
            })
        }
        Err(_) => {
            let source = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
            return Err(RelayError::Connect {
                worker,
                client,
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
