//! The start of a relay, until the worker's first byte: the client's bytes sent so far are
//! kept (up to [`REPLAY_MAX`]), so that a worker that resets the connection before it
//! answers anything can be replaced by another without the client noticing.
//!
//! Why a reset and only a reset: a worker that closes its listening socket (a graceful stop
//! during a reload) makes the kernel reset every connection still waiting in its accept
//! queue; those were never read, so replaying them elsewhere is safe. A worker that read a
//! whole request and then died closes with a FIN (end of file, no reset): it may have acted
//! on the request, so that one is not replayed (the client sees the connection close, as
//! without herd). A worker that dies with unread bytes in its socket also resets, but then
//! it had not read the whole request.

use std::io;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::pump::{would_block, Buffer};

/// Most client bytes kept for a replay; a client that sends more before the worker answers
/// is not replayed.
pub const REPLAY_MAX: usize = 64 * 1024;

/// The worker answered (its first bytes are already written to the client), or closed
/// without answering: copy both ways from here.
pub(super) struct Answered {
    pub up: u64,
    pub down: u64,
    /// The client has already shut down its side (forwarded to the worker).
    pub client_done: bool,
}

/// Why the first phase failed.
pub(super) enum Failed {
    /// The worker reset the connection before answering, and every byte it was sent is
    /// here: give them to another worker.
    Replay {
        sent: Vec<u8>,
        source: io::Error,
    },
    Io(io::Error),
}

/// Writes `replay` (bytes a previous worker got and lost), then relays client → worker
/// and waits for the worker's first byte, keeping what the client sent.
pub(super) async fn start(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    replay: Vec<u8>,
) -> Result<Answered, Failed> {
    let mut sent = replay;
    let mut replayable = sent.len() <= REPLAY_MAX;
    if !sent.is_empty() {
        if let Err(e) = upstream.write_all(&sent).await {
            return Err(unanswered(e, replayable, sent));
        }
    }
    let mut up = sent.len() as u64;
    let mut client_done = false;
    // Each side is awaited with no buffer (a client that connects and says nothing holds
    // none); one from the relay's pool is taken only to read what came.
    loop {
        tokio::select! {
            r = client.readable(), if !client_done => {
                r.map_err(Failed::Io)?;
                let mut buf = Buffer::take();
                match client.try_read(&mut buf) {
                    Ok(0) => {
                        client_done = true;
                        if let Err(e) = upstream.shutdown().await {
                            return Err(unanswered(e, replayable, sent));
                        }
                    }
                    Ok(n) => {
                        if let Err(e) = upstream.write_all(&buf[..n]).await {
                            if replayable {
                                sent.extend_from_slice(&buf[..n]);
                            }
                            return Err(unanswered(e, replayable, sent));
                        }
                        up += n as u64;
                        if replayable && sent.len() + n <= REPLAY_MAX {
                            sent.extend_from_slice(&buf[..n]);
                        } else {
                            replayable = false;
                            sent = Vec::new();
                        }
                    }
                    Err(e) if would_block(&e) => {}
                    Err(e) => return Err(Failed::Io(e)),
                }
            },
            r = upstream.readable() => {
                if let Err(e) = r {
                    return Err(unanswered(e, replayable, sent));
                }
                let mut buf = Buffer::take();
                match upstream.try_read(&mut buf) {
                    Ok(0) => return Ok(Answered { up, down: 0, client_done }),
                    Ok(n) => {
                        client.write_all(&buf[..n]).await.map_err(Failed::Io)?;
                        return Ok(Answered { up, down: n as u64, client_done });
                    }
                    Err(e) if would_block(&e) => {}
                    Err(e) => return Err(unanswered(e, replayable, sent)),
                }
            },
        }
    }
}

/// A worker that failed before answering: replayed when it reset the connection and the
/// bytes it was sent are all kept.
fn unanswered(source: io::Error, replayable: bool, sent: Vec<u8>) -> Failed {
    let reset = matches!(
        source.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    );
    if reset && replayable {
        Failed::Replay { sent, source }
    } else {
        Failed::Io(source)
    }
}
