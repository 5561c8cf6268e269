//! `sendmsg(2)` with one fd attached (SCM_RIGHTS), with the control buffer on the stack:
//! nix's `sendmsg` allocates one per call, and this runs once per handed-over connection.

use std::io;
use std::os::fd::RawFd;

/// Room for one `cmsghdr` carrying one `int`, aligned for `cmsghdr` (CMSG_SPACE(4) is 24
/// bytes on 64-bit Linux, 16 on 32-bit).
#[repr(C, align(8))]
struct ControlBuf([u8; 32]);

/// Sends `data` on the unix socket `sock` with `fd` attached; returns the bytes sent (the
/// fd goes with the first of them). Never raises SIGPIPE.
pub fn send_with_fd(sock: RawFd, data: &[u8], fd: RawFd) -> io::Result<usize> {
    let mut control = ControlBuf([0; 32]);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: a zeroed msghdr is a valid empty one; every pointer set below outlives the
    // sendmsg call, and CMSG_SPACE(sizeof int) fits in `control` (checked by the assert).
    let n = unsafe {
        let space = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as usize;
        assert!(space <= control.0.len());
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.0.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd);
        libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL)
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::io::{IoSliceMut, Read, Write};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::net::UnixStream;

    #[test]
    fn the_fd_arrives_with_the_line() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut p, mut q) = UnixStream::pair().unwrap();
        assert_eq!(
            send_with_fd(a.as_raw_fd(), b"hello\n", p.as_raw_fd()).unwrap(),
            6
        );
        let mut buf = [0u8; 16];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg =
            recvmsg::<()>(b.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::empty()).unwrap();
        let fds: Vec<RawFd> = msg
            .cmsgs()
            .unwrap()
            .filter_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => Some(fds),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(msg.bytes, 6);
        assert_eq!(fds.len(), 1);
        // SAFETY: the fd was just received and is owned by nobody else.
        let mut got = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fds[0]) });
        got.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        q.read_exact(&mut one).unwrap();
        assert_eq!(&one, b"x");
        drop(p.flush());
    }

    #[test]
    fn a_closed_peer_is_an_error_not_a_signal() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let (p, _q) = UnixStream::pair().unwrap();
        assert!(send_with_fd(a.as_raw_fd(), b"x\n", p.as_raw_fd()).is_err());
    }
}
