//! The primary's accept loops: one task per listening socket, each accepted connection sent
//! to the driver as an fd. The channel is bounded, so a driver that falls behind leaves
//! connections in the kernel's backlog instead of in herd's memory.

use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::warn;

/// Connections accepted but not yet handed to a worker, across all listeners.
pub const QUEUE: usize = 1024;
/// Pause after an accept error (EMFILE, ENOBUFS…) so that a persistent one does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Starts an accept loop per socket; `(listener index, connection)` pairs go to `tx`.
/// Must run inside the runtime.
pub fn start(
    sockets: Vec<(usize, std::net::TcpListener)>,
    tx: mpsc::Sender<(usize, OwnedFd)>,
) -> std::io::Result<()> {
    for (index, socket) in sockets {
        let listener = tokio::net::TcpListener::from_std(socket)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _peer)) => {
                        let Ok(std) = stream.into_std() else { continue };
                        if tx.send((index, OwnedFd::from(std))).await.is_err() {
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
