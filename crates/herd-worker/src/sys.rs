//! The syscall boundary: the few calls std does not wrap. Every `unsafe` block of the crate
//! is here, each with the reason it is sound; the rest of the crate sees safe functions.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// What an fd turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// AF_INET or AF_INET6.
    Inet,
    /// AF_UNIX.
    Unix,
}

fn getsockopt_int(fd: RawFd, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of the sizes passed; the kernel checks
    // `fd` (EBADF/ENOTSOCK come back as errors, no memory is touched for a bad fd).
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            opt,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// Checks that `fd` is an open stream socket of a family we serve; `listening` also asks
/// that it listens. The error is the reason, for [`crate::Error::NotAListener`].
pub fn stream_socket(fd: RawFd, listening: bool) -> Result<Family, String> {
    // SAFETY: F_GETFD only reads the fd's flags; a closed fd is reported as EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(format!("not open ({})", io::Error::last_os_error()));
    }
    let kind = getsockopt_int(fd, libc::SO_TYPE).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOTSOCK) => "not a socket".to_string(),
        _ => format!("SO_TYPE: {e}"),
    })?;
    if kind != libc::SOCK_STREAM {
        return Err(format!("a socket of type {kind}, not a stream socket"));
    }
    let family = match getsockopt_int(fd, libc::SO_DOMAIN).map_err(|e| format!("SO_DOMAIN: {e}"))? {
        libc::AF_INET | libc::AF_INET6 => Family::Inet,
        libc::AF_UNIX => Family::Unix,
        other => return Err(format!("address family {other}, neither TCP nor unix")),
    };
    if listening {
        let accepting =
            getsockopt_int(fd, libc::SO_ACCEPTCONN).map_err(|e| format!("SO_ACCEPTCONN: {e}"))?;
        if accepting == 0 {
            return Err("a stream socket that is not listening".to_string());
        }
    }
    Ok(family)
}

/// Sets close-on-exec on `fd`, so the programs this worker starts do not inherit it.
pub fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD only change the fd's flags.
    let rc = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            flags
        } else {
            libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC)
        }
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of an inherited fd.
///
/// # Safety
/// `fd` must be open and owned by nothing else in the process (the contract gives it to
/// us; callers take each fd once).
pub unsafe fn adopt(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller's promise above.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Most fds taken from one read: herd sends one per message, and the kernel never merges
/// two SCM_RIGHTS messages into one read; room for more costs nothing.
const MAX_FDS_PER_READ: usize = 16;

/// Control buffer for [`MAX_FDS_PER_READ`] fds, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct ControlBuf([u8; 128]);

/// `recvmsg` on the unix socket `sock`: bytes into `buf`, received fds (close-on-exec)
/// appended to `fds`. Returns the bytes read (0: the peer closed). Retries EINTR.
pub fn recv_with_fds(sock: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut control = ControlBuf([0; 128]);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    loop {
        // SAFETY: a zeroed msghdr is a valid empty one; `iov`, `buf` and `control` outlive
        // the call and their lengths are the ones given; the cmsg walk below only reads
        // within `msg_controllen`, which the kernel set to what it wrote, and each fd it
        // yields was just installed in our table by the kernel, owned by nobody else.
        let (n, truncated) = unsafe {
            let space =
                libc::CMSG_SPACE((MAX_FDS_PER_READ * std::mem::size_of::<libc::c_int>()) as u32)
                    as usize;
            debug_assert!(space <= control.0.len());
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.0.as_mut_ptr().cast();
            msg.msg_controllen = space.min(control.0.len()) as _;
            let n = libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC);
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(cmsg);
                    let bytes = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                    for i in 0..bytes / std::mem::size_of::<libc::c_int>() {
                        let fd = std::ptr::read_unaligned(data.cast::<libc::c_int>().add(i));
                        fds.push(OwnedFd::from_raw_fd(fd));
                    }
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
            (n as usize, msg.msg_flags & libc::MSG_CTRUNC != 0)
        };
        // Truncated: fds beyond our buffer were closed by the kernel (herd never sends
        // that many); the bytes are intact, and the lines without an fd say so later.
        let _ = truncated;
        return Ok(n);
    }
}

/// The write end of the pipe the stop-signal handler writes to; -1 until installed.
static SIGNAL_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    let fd = SIGNAL_PIPE.load(std::sync::atomic::Ordering::Relaxed);
    if fd >= 0 {
        let byte = sig as u8;
        // SAFETY: write(2) is async-signal-safe; `byte` lives for the call. A full pipe
        // (EAGAIN: the pipe is nonblocking) loses nothing: one byte already wakes the reader.
        unsafe {
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
    }
}

/// Installs handlers for SIGTERM and SIGINT that only write the signal's number to a pipe
/// (nothing else is safe in a handler); returns the read end. Call once.
pub fn stop_signal_pipe() -> io::Result<OwnedFd> {
    let mut ends = [0 as libc::c_int; 2];
    // SAFETY: `ends` has room for the two fds pipe2 writes.
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just created both fds; nothing else owns them. The write end is kept
    // open for the life of the process (the handler may run at any time).
    let read = unsafe { OwnedFd::from_raw_fd(ends[0]) };
    SIGNAL_PIPE.store(ends[1], std::sync::atomic::Ordering::Relaxed);
    // The read end blocks: a thread waits on it.
    // SAFETY: F_SETFL on an fd we own.
    unsafe { libc::fcntl(ends[0], libc::F_SETFL, 0) };
    for sig in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction with an empty mask is valid; the handler is an
        // `extern "C" fn(c_int)` that only calls write(2). SA_RESTART keeps the program's
        // blocking calls from failing with EINTR because of us.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction =
                on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(sig, &action, std::ptr::null_mut())
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(read)
}

extern "C" fn on_wake_signal(_: libc::c_int) {}

/// Installs a handler for `sig` that does nothing, without `SA_RESTART`: the signal only
/// makes the blocking call of the thread it is sent to fail with `EINTR` (see
/// `crate::accept`).
pub fn install_wake_handler(sig: libc::c_int) -> io::Result<()> {
    // SAFETY: as in `stop_signal_pipe`: a zeroed sigaction with an empty mask is valid, and
    // the handler does nothing at all.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_wake_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = 0;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, std::ptr::null_mut())
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `accept4` on the listening socket `fd`, the connection close-on-exec. `EINTR` is returned
/// (as `ErrorKind::Interrupted`), not retried: it is how the stop reaches the caller.
pub fn accept(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: null address pointers ask for no address; the kernel checks `fd`.
    let conn = unsafe {
        libc::accept4(
            fd,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    if conn < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: accept4 just installed `conn` in our table; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(conn) })
}

/// The calling thread, for [`signal_thread`].
pub fn this_thread() -> libc::pthread_t {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() }
}

/// Sends `sig` to `thread`, which must be alive (`crate::accept` holds its lock, which a
/// waiting thread takes before it can leave, while it calls this).
pub fn signal_thread(thread: libc::pthread_t, sig: libc::c_int) {
    // SAFETY: the caller guarantees the thread has not exited, so the id is valid.
    unsafe {
        libc::pthread_kill(thread, sig);
    }
}

/// Whether `fd` has `O_NONBLOCK` set (on its open file description).
#[cfg(test)]
pub fn is_nonblocking(fd: RawFd) -> io::Result<bool> {
    // SAFETY: F_GETFL only reads the flags; a bad fd is EBADF.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags & libc::O_NONBLOCK != 0)
}
