//! A backup for PR_SET_PDEATHSIG: a tiny process, forked before herd starts any thread,
//! that outlives herd and SIGKILLs the process groups of the workers still registered
//! when herd disappears.
//!
//! PR_SET_PDEATHSIG only reaches a worker's *direct* child. `herd run -- npm start` makes
//! npm the worker and node its child; if herd is SIGKILLed, npm dies but node would keep
//! running, holding the listening socket. The guardian holds the read end of a pipe whose
//! only write end is herd's: when herd dies, for whatever reason, the read returns EOF and
//! the guardian kills every registered group. herd registers a group when it spawns a
//! worker and unregisters it when it reaps it, so after a clean exit there is nothing left
//! to kill.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};

/// Groups the guardian can track; workers beyond that are still covered by PR_SET_PDEATHSIG.
const MAX_GROUPS: usize = 4096;

/// herd's side of the guardian.
#[derive(Debug)]
pub struct Guardian {
    pipe: std::fs::File,
}

impl Guardian {
    /// Forks the guardian. Must be called while herd has exactly one thread.
    pub fn start() -> io::Result<Guardian> {
        let threads = std::fs::read_dir("/proc/self/task")
            .map(|d| d.count())
            .unwrap_or(0);
        if threads != 1 {
            return Err(io::Error::other(format!(
                "the guardian must be forked before any thread starts ({threads} threads)"
            )));
        }
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        // SAFETY: herd is single-threaded here (checked above), so the child may run any
        // code; it only reads a pipe, calls killpg and exits.
        match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
            nix::unistd::ForkResult::Child => {
                drop(write);
                guard(read)
            }
            nix::unistd::ForkResult::Parent { .. } => {
                drop(read);
                Ok(Guardian {
                    pipe: std::fs::File::from(write),
                })
            }
        }
    }

    /// A worker's process group to kill if herd dies.
    pub fn register(&self, pgid: u32) {
        self.send(pgid as i32);
    }

    /// The group's leader was reaped and the group killed: forget it.
    pub fn unregister(&self, pgid: u32) {
        self.send(-(pgid as i32));
    }

    fn send(&self, v: i32) {
        // Four bytes are below PIPE_BUF: the write is atomic, also from the drivers of
        // several apps at once (the daemon). A failed write only weakens the backup, it
        // must not stop herd.
        let _ = (&self.pipe).write_all(&v.to_le_bytes());
    }
}

/// Closes every descriptor herd had open but the standard streams and `keep`: the
/// guardian outlives herd by a moment, and must not hold what herd held (the daemon's
/// lock, which would keep a new daemon from starting; listening sockets).
fn close_inherited(keep: i32) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds.into_iter().filter(|fd| *fd > 2 && *fd != keep) {
        // SAFETY: closes a descriptor of this single-threaded process that nothing in it
        // uses (the directory's own is already closed: EBADF, harmless).
        unsafe { libc::close(fd) };
    }
}

/// The guardian's whole life.
fn guard(read: OwnedFd) -> ! {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // It shares herd's process group and terminal: Ctrl-C and a `kill` of the group must
    // not take it down before herd is gone.
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR2,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
    ] {
        // SAFETY: SIG_IGN installs no handler code.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    // SAFETY: PR_SET_NAME with a NUL-terminated name of at most 16 bytes.
    unsafe {
        libc::prctl(
            libc::PR_SET_NAME,
            c"herd-guardian".as_ptr() as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    // Its own session: no terminal signal reaches it. It holds none of herd's output
    // pipes either, so a reader of herd's output sees EOF when herd exits.
    let _ = nix::unistd::setsid();
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        for fd in 0..3 {
            // SAFETY: dup2 of a valid fd onto a standard stream.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    close_inherited(read.as_raw_fd());
    let mut groups = [0i32; MAX_GROUPS];
    let mut buf = [0u8; 4];
    let mut have = 0;
    loop {
        match nix::unistd::read(read.as_raw_fd(), &mut buf[have..]) {
            Ok(0) => break,
            Ok(n) => {
                have += n;
                if have < 4 {
                    continue;
                }
                have = 0;
                let v = i32::from_le_bytes(buf);
                if v > 0 {
                    if let Some(free) = groups.iter_mut().find(|g| **g == 0) {
                        *free = v;
                    }
                } else if let Some(g) = groups.iter_mut().find(|g| **g == -v) {
                    *g = 0;
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    for g in groups.iter().filter(|g| **g > 0) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(*g), Signal::SIGKILL);
    }
    // SAFETY: _exit ends the guardian without running herd's atexit handlers or
    // flushing buffers it shares with herd.
    unsafe { libc::_exit(0) }
}
