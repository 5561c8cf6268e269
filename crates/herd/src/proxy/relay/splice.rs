//! The `splice(2)` relay: socket → pipe → socket, so the bytes stay in the kernel.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{splice, OFlag, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::{connect, RelayError};

/// Bytes asked for per `splice` call: a pipe's default capacity (16 pages), so one call
/// can fill the pipe and the next empties it.
const CHUNK: usize = 64 * 1024;

/// Like [`super::relay`], but moves the bytes with `splice(2)` through one pipe per
/// direction instead of copying them through user space. Costs four more fds for the
/// life of the connection.
pub async fn relay_splice(
    client: TcpStream,
    worker: SocketAddr,
    header: Option<&[u8]>,
) -> Result<(u64, u64), RelayError> {
    let (client, upstream) = connect(client, worker, header).await?;
    let io_err = |source| RelayError::Io { worker, source };
    let up_pipe = pipe().map_err(io_err)?;
    let down_pipe = pipe().map_err(io_err)?;
    tokio::try_join!(
        pump(&client, &upstream, &up_pipe),
        pump(&upstream, &client, &down_pipe),
    )
    .map_err(io_err)
}

/// A nonblocking pipe: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?)
}

/// Moves everything from `src` to `dst` until `src` reaches end of file, then shuts down
/// `dst`'s write half. Returns the number of bytes moved.
///
/// The pipe is always empty when we splice into it, so a `WouldBlock` while filling it
/// can only mean "the socket has no data", and clearing the socket's readiness (what
/// `try_io` does on `WouldBlock`) is right; likewise when draining, the pipe holds data,
/// so `WouldBlock` means "the socket's send buffer is full".
async fn pump(src: &TcpStream, dst: &TcpStream, pipe: &(OwnedFd, OwnedFd)) -> io::Result<u64> {
    let (pipe_rd, pipe_wr) = pipe;
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    let mut total = 0u64;
    loop {
        let n = loop {
            src.readable().await?;
            let filled = src.try_io(Interest::READABLE, || {
                Ok(splice(src.as_fd(), None, pipe_wr, None, CHUNK, flags)?)
            });
            match filled {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            socket2::SockRef::from(dst).shutdown(Shutdown::Write)?;
            return Ok(total);
        }
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            let drained = dst.try_io(Interest::WRITABLE, || {
                Ok(splice(pipe_rd, None, dst.as_fd(), None, left, flags)?)
            });
            match drained {
                Ok(m) => {
                    left -= m;
                    total += m as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
