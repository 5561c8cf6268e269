//! The primary's end of one worker's channel: a unix stream socketpair whose other end
//! the worker inherits at `NODE_CHANNEL_FD`. A reader task turns bytes into [`Frame`]s for
//! the driver; a writer task sends messages, so a worker that does not read its channel
//! can never block the primary.

use std::io;
use std::os::fd::OwnedFd;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::framing::{encode, Decoder, Frame};

/// Bytes read from a channel at a time.
const READ_CHUNK: usize = 16 * 1024;

/// A new socketpair: the primary's end and the worker's end (both close-on-exec; the
/// spawner places the worker's end at its fd without the flag).
pub fn pair() -> io::Result<(std::os::unix::net::UnixStream, OwnedFd)> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    Ok((ours, OwnedFd::from(theirs)))
}

/// Sending side of a worker's channel. Dropping it closes the channel once the queued
/// messages are written.
#[derive(Debug, Clone)]
pub struct Channel {
    tx: mpsc::UnboundedSender<Vec<u8>>,
}

impl Channel {
    /// Starts the reader and writer tasks of the channel of worker `pid`; frames are sent
    /// on `frames` tagged with the pid. Must run inside the runtime.
    pub fn start(
        ours: std::os::unix::net::UnixStream,
        pid: u32,
        frames: mpsc::UnboundedSender<(u32, Frame)>,
    ) -> io::Result<Channel> {
        ours.set_nonblocking(true)?;
        let stream = tokio::net::UnixStream::from_std(ours)?;
        let (mut read, mut write) = stream.into_split();
        tokio::spawn(async move {
            let mut decoder = Decoder::default();
            let mut buf = vec![0u8; READ_CHUNK];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        for frame in decoder.feed(&buf[..n]) {
                            if frames.send((pid, frame)).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if write.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        Ok(Channel { tx })
    }

    /// Queues one message; false if the channel is closed.
    pub fn send(&self, value: &Value) -> bool {
        self.tx.send(encode(value)).is_ok()
    }
}
