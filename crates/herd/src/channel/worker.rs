//! The primary's end of one worker's channel: a unix stream socketpair whose other end
//! the worker inherits at `NODE_CHANNEL_FD`. A reader task turns bytes into [`Frame`]s for
//! the driver; a writer task sends messages, so a worker that does not read its channel
//! can never block the primary.
//!
//! Handles (fds) follow Node's format: the `NODE_HANDLE` line and its fd go in one
//! `sendmsg`, and the worker answers each with `NODE_HANDLE_ACK` (`NODE_HANDLE_NACK`: send
//! it again, at most [`HANDLE_TRIES`] times). Unlike Node's sender, herd does not wait for
//! each answer before the next handle: up to [`HANDLE_WINDOW`](super::flow::HANDLE_WINDOW) are in flight. A handle not
//! answered within [`HANDLE_ACK_TIMEOUT`] is given up on; its fd is closed, never leaked.
//! Those decisions are [`super::flow`]'s; this module only reads, writes and waits.

use std::borrow::Cow;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;

use super::flow::{Answered, HandleFlow, Reply as HandleReply};
use super::framing::{encode, Decoder, Frame};

/// Bytes read from a channel at a time.
const READ_CHUNK: usize = 16 * 1024;
pub use super::flow::HANDLE_ACK_TIMEOUT;
use super::flow::HANDLE_TRIES;

/// A new socketpair: the primary's end and the worker's end (both close-on-exec; the
/// spawner places the worker's end at its fd without the flag).
pub fn pair() -> io::Result<(std::os::unix::net::UnixStream, OwnedFd)> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
    Ok((ours, OwnedFd::from(theirs)))
}

/// One message to send.
#[derive(Debug)]
enum Outgoing {
    Message(Cow<'static, [u8]>),
    /// A `NODE_HANDLE` line and the fd that goes with it.
    Handle(HandleLine, OwnedFd),
    /// Answered once everything queued before it is written and every handle sent is
    /// answered (or given up on).
    Delivered(tokio::sync::oneshot::Sender<()>),
}

/// The line of a handle, kept until it is answered (a NACK sends it again).
#[derive(Debug)]
enum HandleLine {
    Bytes(Cow<'static, [u8]>),
    /// Node cluster `newconn`, written by the writer task into its own buffer (once per
    /// connection: no allocation).
    NewConn {
        key_json: Arc<str>,
        seq: u64,
    },
}

impl HandleLine {
    fn render<'a>(&'a self, buf: &'a mut Vec<u8>) -> &'a [u8] {
        match self {
            HandleLine::Bytes(b) => b,
            HandleLine::NewConn { key_json, seq } => {
                super::node_cluster::newconn_line(key_json, *seq, buf);
                buf
            }
        }
    }
}

/// Sending side of a worker's channel. Dropping it closes the channel once the queued
/// messages are written.
#[derive(Debug, Clone)]
pub struct Channel {
    tx: mpsc::UnboundedSender<Outgoing>,
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
        let (mut read, write) = stream.into_split();
        let frames_w = frames.clone();
        let (replies_tx, replies) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut decoder = Decoder::default();
            let mut buf = vec![0u8; READ_CHUNK];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = frames.send((pid, Frame::Closed));
                        break;
                    }
                    Ok(n) => {
                        let mut gone = false;
                        decoder.feed_each(&buf[..n], |frame| {
                            if let Some(reply) = handle_reply(&frame) {
                                let _ = replies_tx.send(reply);
                            } else if frames.send((pid, frame)).is_err() {
                                gone = true;
                            }
                        });
                        if gone {
                            return;
                        }
                    }
                }
            }
        });
        let (tx, rx) = mpsc::unbounded_channel::<Outgoing>();
        tokio::spawn(write_loop(write, rx, replies, pid, frames_w));
        Ok(Channel { tx })
    }

    /// Queues one message; false if the channel is closed.
    pub fn send(&self, value: &Value) -> bool {
        self.tx
            .send(Outgoing::Message(encode(value).into()))
            .is_ok()
    }

    /// Queues one line already encoded (ending in a newline); false if the channel is closed.
    pub fn send_line(&self, line: impl Into<Cow<'static, [u8]>>) -> bool {
        self.tx.send(Outgoing::Message(line.into())).is_ok()
    }

    /// Queues a whole `NODE_HANDLE` line already encoded, with `fd`; an error if the channel
    /// is closed, with the fd given back.
    pub fn send_handle_line(
        &self,
        line: impl Into<Cow<'static, [u8]>>,
        fd: OwnedFd,
    ) -> Result<(), OwnedFd> {
        self.queue_handle(HandleLine::Bytes(line.into()), fd)
    }

    /// Queues a Node cluster `newconn` of the connection `fd` (see
    /// [`super::node_cluster::newconn_line`]); an error if the channel is closed, with the fd
    /// given back.
    pub fn send_newconn(&self, key_json: &Arc<str>, seq: u64, fd: OwnedFd) -> Result<(), OwnedFd> {
        let line = HandleLine::NewConn {
            key_json: key_json.clone(),
            seq,
        };
        self.queue_handle(line, fd)
    }

    fn queue_handle(&self, line: HandleLine, fd: OwnedFd) -> Result<(), OwnedFd> {
        match self.tx.send(Outgoing::Handle(line, fd)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(Outgoing::Handle(_, fd))) => Err(fd),
            Err(_) => unreachable!("a handle was sent"),
        }
    }

    /// Resolves once every message queued so far is written and every handle sent is
    /// answered by the worker (or given up on after [`HANDLE_ACK_TIMEOUT`]), or the channel
    /// closed. A worker told to stop afterwards has read every connection handed to it.
    pub fn delivered(&self) -> tokio::sync::oneshot::Receiver<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let _ = self.tx.send(Outgoing::Delivered(tx));
        rx
    }

    /// Queues a `NODE_HANDLE` message of `type` carrying `fd`; false if the channel is closed.
    pub fn send_handle(&self, kind: &str, msg: Value, fd: OwnedFd) -> bool {
        let line = encode(&serde_json::json!({"cmd": "NODE_HANDLE", "type": kind, "msg": msg}));
        self.tx
            .send(Outgoing::Handle(HandleLine::Bytes(line.into()), fd))
            .is_ok()
    }
}

fn handle_reply(frame: &Frame) -> Option<HandleReply> {
    let v = match frame {
        Frame::HandleAck => return Some(HandleReply::Ack),
        Frame::Internal(v) => v,
        _ => return None,
    };
    match v.get("cmd").and_then(Value::as_str)? {
        "NODE_HANDLE_ACK" => Some(HandleReply::Ack),
        "NODE_HANDLE_NACK" => Some(HandleReply::Nack),
        _ => None,
    }
}

/// A handle sent and not yet answered: its line (a NACK sends it again) and herd's copy of
/// its fd (closed when dropped).
type Handle = (HandleLine, OwnedFd);

/// The flow's clock: tokio's, so that tests with paused time see the same instants.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

async fn write_loop(
    mut write: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    mut replies: mpsc::UnboundedReceiver<HandleReply>,
    pid: u32,
    frames: mpsc::UnboundedSender<(u32, Frame)>,
) {
    let mut flow: HandleFlow<Handle> = HandleFlow::default();
    let mut buf = Vec::with_capacity(256);
    // `delivered()` waiters: answered when no handle is in flight.
    let mut delivered: Vec<tokio::sync::oneshot::Sender<()>> = Vec::new();
    loop {
        if flow.is_idle() {
            for d in delivered.drain(..) {
                let _ = d.send(());
            }
        }
        let deadline = flow.deadline().map(tokio::time::Instant::from_std);
        let timeout = async move {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            reply = replies.recv(), if !flow.is_idle() => {
                let Some(reply) = reply else { return };
                match flow.answered(reply) {
                    // Acknowledged: herd's copy of the fd is closed here.
                    Answered::Done(_) | Answered::Nothing => {}
                    Answered::GaveUp(_) => {
                        tracing::warn!(pid, "worker (pid {pid}) refused a handle {HANDLE_TRIES} times: closed it");
                    }
                    Answered::Resend(retry) => {
                        let (line, fd) = retry.handle();
                        if send_with_fd(&mut write, line.render(&mut buf), fd).await.is_err() {
                            return;
                        }
                        flow.resent(retry, now());
                    }
                }
            }
            _ = timeout => {
                if let Some(expired) = flow.expired(now()) {
                    tracing::warn!(pid, "worker (pid {pid}) did not acknowledge a handle within {} s: closed it",
                        HANDLE_ACK_TIMEOUT.as_secs());
                    let _ = frames.send((pid, Frame::Unacknowledged { ever_acknowledged: expired.ever_acknowledged }));
                    // Closes its fd: the client sees the connection end.
                    drop(expired.handle);
                }
            }
            out = rx.recv(), if flow.can_send() => match out {
                None => return,
                Some(Outgoing::Message(bytes)) => {
                    if write.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Some(Outgoing::Handle(line, fd)) => {
                    if send_with_fd(&mut write, line.render(&mut buf), &fd).await.is_err() {
                        return;
                    }
                    flow.sent((line, fd), now());
                }
                Some(Outgoing::Delivered(done)) => delivered.push(done),
            },
        }
    }
}

/// Sends `line` with `fd` attached to its first byte(s) (SCM_RIGHTS), then the rest.
async fn send_with_fd(write: &mut OwnedWriteHalf, line: &[u8], fd: &OwnedFd) -> io::Result<()> {
    let stream = write.as_ref();
    let sent = loop {
        stream.writable().await?;
        let raw = stream.as_raw_fd();
        let res = stream.try_io(Interest::WRITABLE, || {
            super::scm::send_with_fd(raw, line, fd.as_raw_fd())
        });
        match res {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    };
    if sent < line.len() {
        write.write_all(&line[sent..]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::time::Duration;

    #[tokio::test]
    async fn delivered_waits_until_every_handle_is_answered() {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let (frames, _frames_rx) = mpsc::unbounded_channel();
        let channel = Channel::start(ours, 1, frames).unwrap();
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        channel
            .send_handle_line(&b"{\"cmd\":\"NODE_HANDLE\"}\n"[..], OwnedFd::from(a))
            .unwrap();
        let mut delivered = channel.delivered();
        // The worker side reads the handle but has not answered: not delivered.
        let theirs = tokio::net::UnixStream::from_std({
            theirs.set_nonblocking(true).unwrap();
            theirs
        })
        .unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"\n") {
            theirs.readable().await.unwrap();
            let mut buf = [0u8; 256];
            match theirs.try_read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => panic!("{e}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(delivered.try_recv().is_err(), "not answered yet");
        let theirs = theirs.into_std().unwrap();
        theirs.set_nonblocking(false).unwrap();
        (&theirs)
            .write_all(b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n")
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), delivered)
            .await
            .expect("delivered once the handle is answered")
            .unwrap();
        // With nothing in flight it resolves at once.
        tokio::time::timeout(Duration::from_secs(5), channel.delivered())
            .await
            .unwrap()
            .unwrap();
    }
}
