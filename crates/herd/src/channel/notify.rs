//! The `NOTIFY_SOCKET` of systemd's sd_notify protocol: one unix datagram socket that
//! every worker may write `READY=1`, `STOPPING=1`, `STATUS=…`, `WATCHDOG=1` to.
//!
//! Each datagram is attributed to its sender by SCM_CREDENTIALS (the kernel fills in the
//! sender's pid when SO_PASSCRED is set, whether or not the sender sends credentials), so a
//! worker cannot speak for another. The socket lives in a private 0700 folder that is
//! removed on drop.

use std::io::{self, IoSliceMut};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::sys::socket::{self, sockopt, ControlMessageOwned, MsgFlags};
use tokio::io::Interest;
use tokio::net::UnixDatagram;

use crate::supervisor::NotifyMsg;

/// Largest datagram read; systemd itself reads at most a page of state.
const MAX_DATAGRAM: usize = 4096;

/// What one datagram said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Datagram {
    /// The sender's pid, from the kernel.
    pub pid: Option<u32>,
    /// Messages the supervisor acts on, in order.
    pub messages: Vec<NotifyMsg>,
    /// Lines that were not `KEY=VALUE` text, or a reason the datagram was unreadable.
    pub garbage: Vec<String>,
}

/// The primary's notify socket.
#[derive(Debug)]
pub struct NotifySocket {
    socket: UnixDatagram,
    dir: PathBuf,
    path: PathBuf,
    buf: Vec<u8>,
}

impl NotifySocket {
    /// Binds a socket in a new private folder under `parent`, named after herd's pid and
    /// `app` (each app of the daemon has its own socket: a worker's `READY=1` must reach
    /// its own app). Must run inside a tokio runtime.
    pub fn bind(parent: &Path, app: u32) -> io::Result<NotifySocket> {
        let dir = match app {
            0 => parent.join(format!("herd-{}", std::process::id())),
            n => parent.join(format!("herd-{}-{n}", std::process::id())),
        };
        // A folder left by an earlier herd that had this pid (killed with SIGKILL) is stale.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let path = dir.join("notify.sock");
        let std_sock = std::os::unix::net::UnixDatagram::bind(&path)?;
        socket::setsockopt(&std_sock, sockopt::PassCred, &true).map_err(io::Error::from)?;
        std_sock.set_nonblocking(true)?;
        let socket = UnixDatagram::from_std(std_sock)?;
        Ok(NotifySocket {
            socket,
            dir,
            path,
            buf: vec![0; MAX_DATAGRAM],
        })
    }

    /// herd's private folder the socket is in (removed with everything in it at drop).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The value for the workers' `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the next datagram.
    pub async fn recv(&mut self) -> io::Result<Datagram> {
        loop {
            self.socket.readable().await?;
            let fd = self.socket.as_raw_fd();
            let buf = &mut self.buf;
            let got = self.socket.try_io(Interest::READABLE, || {
                let mut iov = [IoSliceMut::new(buf)];
                let mut cmsg = nix::cmsg_space!(socket::UnixCredentials);
                let msg =
                    socket::recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_DONTWAIT)
                        .map_err(io::Error::from)?;
                let mut pid = None;
                for c in msg.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmCredentials(creds) = c {
                        pid = u32::try_from(creds.pid()).ok();
                    }
                }
                let truncated = msg.flags.contains(MsgFlags::MSG_TRUNC);
                Ok((msg.bytes, pid, truncated))
            });
            match got {
                Ok((n, pid, truncated)) => {
                    let mut d = parse(&self.buf[..n]);
                    d.pid = pid;
                    if truncated {
                        d.garbage
                            .push(format!("datagram longer than {MAX_DATAGRAM} bytes, cut"));
                    }
                    return Ok(d);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        // The folder is herd's own (created private, named after its pid): the socket and
        // what else herd put there (the Node drain preload) go with it.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Parses the newline-separated `KEY=VALUE` assignments of one datagram.
pub fn parse(bytes: &[u8]) -> Datagram {
    let mut d = Datagram::default();
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(_) => {
            d.garbage
                .push(format!("not UTF-8: {:?}", String::from_utf8_lossy(bytes)));
            return d;
        }
    };
    for line in text.split('\n').filter(|l| !l.is_empty()) {
        let Some((key, value)) = line.split_once('=') else {
            d.garbage.push(format!("not KEY=VALUE: {line:?}"));
            continue;
        };
        if key.is_empty()
            || !key
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        {
            d.garbage.push(format!("bad key: {line:?}"));
            continue;
        }
        match (key, value) {
            ("READY", "1") => d.messages.push(NotifyMsg::Ready),
            ("STOPPING", "1") => d.messages.push(NotifyMsg::Stopping),
            ("WATCHDOG", "1") => d.messages.push(NotifyMsg::Watchdog),
            ("WATCHDOG", "trigger") => d.messages.push(NotifyMsg::WatchdogTrigger),
            ("STATUS", text) => d.messages.push(NotifyMsg::Status(text.to_string())),
            // Other sd_notify keys (MAINPID, RELOADING, ERRNO, EXTEND_TIMEOUT_USEC, …) are
            // valid but have no meaning here.
            _ => {}
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_assignments() {
        let d = parse(
            b"READY=1\nSTATUS=serving 3 conns\nMAINPID=4\nWATCHDOG=1\nSTOPPING=1\nWATCHDOG=trigger",
        );
        assert_eq!(
            d.messages,
            vec![
                NotifyMsg::Ready,
                NotifyMsg::Status("serving 3 conns".into()),
                NotifyMsg::Watchdog,
                NotifyMsg::Stopping,
                NotifyMsg::WatchdogTrigger
            ]
        );
        assert!(d.garbage.is_empty());
    }

    #[test]
    fn garbage_is_reported_not_fatal() {
        let d = parse(b"hello\nREADY=1\nready=1");
        assert_eq!(d.messages, vec![NotifyMsg::Ready]);
        assert_eq!(d.garbage.len(), 2);
        let d = parse(&[0xff, 0xfe, b'\n']);
        assert!(d.messages.is_empty() && d.garbage[0].contains("UTF-8"));
    }

    #[tokio::test]
    async fn attributes_datagrams_to_the_sender_pid() {
        let dir = std::env::temp_dir().join(format!("herd-notify-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut sock = NotifySocket::bind(&dir, 0).unwrap();
        let client = std::os::unix::net::UnixDatagram::unbound().unwrap();
        client.send_to(b"READY=1\nSTATUS=up", sock.path()).unwrap();
        let d = sock.recv().await.unwrap();
        assert_eq!(d.pid, Some(std::process::id()));
        assert_eq!(
            d.messages,
            vec![NotifyMsg::Ready, NotifyMsg::Status("up".into())]
        );
        // Past the buffer: cut, said so, and what fits still read; the next one is whole.
        let mut long = b"READY=1\nSTATUS=".to_vec();
        long.resize(MAX_DATAGRAM + 1000, b'x');
        client.send_to(&long, sock.path()).unwrap();
        client.send_to(b"WATCHDOG=1", sock.path()).unwrap();
        let d = sock.recv().await.unwrap();
        assert_eq!(d.messages[0], NotifyMsg::Ready);
        assert!(d
            .garbage
            .iter()
            .any(|g| g.contains("longer than 4096 bytes, cut")));
        let d = sock.recv().await.unwrap();
        assert_eq!(d.messages, vec![NotifyMsg::Watchdog]);
        let path = sock.path().to_path_buf();
        drop(sock);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
