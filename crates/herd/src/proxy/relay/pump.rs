//! Copying both ways between two sockets, holding a buffer only while bytes wait to be
//! written.
//!
//! tokio's `copy_bidirectional` keeps a buffer per direction for the life of the
//! connection: with 64 KiB buffers an idle keep-alive connection cost herd up to 128 KiB once
//! the allocator had reused that memory (the chaos suite's second wave of 10 000 idle
//! relayed connections peaked at 120 KiB each). Here each direction waits for its source
//! to be readable with no buffer at all, takes one from a small per-thread pool to read and
//! write what came, and gives it back as soon as it is all written; only a peer that does
//! not read keeps one. The buffers stay 64 KiB (a pipe's capacity), so a large transfer
//! still takes one read and one write per 64 KiB.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

/// Bytes read at once per direction.
const BUF: usize = 64 * 1024;
/// Buffers kept for reuse per thread (at most 1 MiB): enough for the directions that are
/// copying at one moment; more are freed.
const POOL: usize = 16;

thread_local! {
    static BUFFERS: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A copy buffer from the thread's pool, back in the pool when dropped.
pub(super) struct Buffer(Box<[u8]>);

impl Buffer {
    /// One of the pool's, or a new one.
    pub(super) fn take() -> Buffer {
        let pooled = BUFFERS.with(|p| p.borrow_mut().pop());
        Buffer(pooled.unwrap_or_else(|| vec![0u8; BUF].into_boxed_slice()))
    }
}

impl std::ops::Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl std::ops::DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // An empty box takes the buffer's place: no allocation.
        let buf = std::mem::take(&mut self.0);
        // A thread that is ending has no pool any more: the buffer is just freed.
        let _ = BUFFERS.try_with(|p| {
            let mut pool = p.borrow_mut();
            if pool.len() < POOL {
                pool.push(buf);
            }
        });
    }
}

/// A read that found nothing to read (or was interrupted): wait for readiness again.
pub(super) fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// One direction: from one socket to the other.
#[derive(Default)]
struct Direction {
    /// Bytes read and not yet all written: `buf[pos..len]`.
    buf: Option<Buffer>,
    pos: usize,
    len: usize,
    /// Bytes written.
    total: u64,
    /// The source said EOF: once the buffer is written, shut the destination's write half.
    eof: bool,
    done: bool,
}

impl Direction {
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        from: &TcpStream,
        to: &mut TcpStream,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if let Some(buf) = &self.buf {
                while self.pos < self.len {
                    match Pin::new(&mut *to).poll_write(cx, &buf[self.pos..self.len]) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()))
                        }
                        Poll::Ready(Ok(n)) => {
                            self.pos += n;
                            self.total += n as u64;
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => return Poll::Pending,
                    }
                }
                self.buf = None;
            }
            if self.eof {
                return match Pin::new(&mut *to).poll_shutdown(cx) {
                    Poll::Ready(Ok(())) => {
                        self.done = true;
                        Poll::Ready(Ok(()))
                    }
                    other => other,
                };
            }
            // Wait with no buffer: an idle connection holds none.
            match from.poll_read_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
            let mut buf = Buffer::take();
            match from.try_read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.buf = Some(buf);
                    self.pos = 0;
                    self.len = n;
                }
                Err(e) if would_block(&e) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// Copies `a` → `b` and `b` → `a` until both sources ended and both ends were shut down
/// (a half-close is forwarded as it comes); the bytes copied each way. The first error of
/// either direction ends both.
pub async fn bidirectional(a: &mut TcpStream, b: &mut TcpStream) -> io::Result<(u64, u64)> {
    let mut ab = Direction::default();
    let mut ba = Direction::default();
    poll_fn(|cx| {
        let there = ab.poll(cx, a, b)?;
        let back = ba.poll(cx, b, a)?;
        match (there, back) {
            (Poll::Ready(()), Poll::Ready(())) => Poll::Ready(Ok((ab.total, ba.total))),
            _ => Poll::Pending,
        }
    })
    .await
}
