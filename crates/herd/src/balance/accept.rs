//! The primary's accept loops: one task per listening socket, each accepted connection sent
//! to the driver as an fd with its peer address. The channel is bounded, so a driver that
//! falls behind leaves connections in the kernel's backlog instead of in herd's memory.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::warn;

/// Connections accepted but not yet handed to a worker, across all listeners.
pub const QUEUE: usize = 1024;
/// Pause after an accept error (EMFILE, ENOBUFS…) so that a persistent one does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(50);

/// One accepted connection on its way to a worker.
#[derive(Debug)]
pub struct Conn {
    /// Index of the listener it came in on.
    pub index: usize,
    pub fd: OwnedFd,
    /// The client's address (sticky balancing, PROXY protocol).
    pub peer: SocketAddr,
    /// When herd accepted it (bounds how long it may wait for a worker).
    pub since: Instant,
    /// Workers that could not take it so far (a relay whose worker refused the connect).
    pub tries: u8,
}

/// Starts an accept loop per socket; connections go to `tx`. Must run inside the runtime.
pub fn start(
    sockets: Vec<(usize, std::net::TcpListener)>,
    tx: mpsc::Sender<Conn>,
) -> std::io::Result<()> {
    for (index, socket) in sockets {
        let listener = tokio::net::TcpListener::from_std(socket)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        let Ok(std) = stream.into_std() else { continue };
                        let conn = Conn {
                            index,
                            fd: OwnedFd::from(std),
                            peer,
                            since: Instant::now(),
                            tries: 0,
                        };
                        if tx.send(conn).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        warn!("accept failed: {e}");
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                }
            }
        });
    }
    Ok(())
}
