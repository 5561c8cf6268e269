//! The one error type of the crate: every way the environment herd (or someone else) gave
//! the process can be wrong, each with what a user needs to fix it.

use std::io;
use std::os::fd::RawFd;
use std::path::PathBuf;

/// What went wrong, typed so a program can tell "not our sockets" from "herd went away".
///
/// ```
/// let e = herd_worker::Error::StaleListenPid { listen_pid: 1, pid: 42 };
/// assert!(e.to_string().contains("LISTEN_PID=1"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `LISTEN_PID` names another process: the fds from 3 on were meant for it (typically
    /// a shell wrapper that started the server without `exec`).
    #[error("LISTEN_PID={listen_pid} is not this process (pid {pid}): the inherited sockets are not ours (a wrapper script must `exec` the server)")]
    StaleListenPid {
        /// The value of `LISTEN_PID`.
        listen_pid: u32,
        /// This process's pid.
        pid: u32,
    },
    /// An environment variable of the worker contract has a value that cannot be right.
    #[error("{var}={value:?}: {why}")]
    BadEnv {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An inherited fd is not what the contract says (not open, not a socket, not
    /// listening, not a stream socket, an unknown address family).
    #[error("fd {fd} is not a listening socket: {why}")]
    NotAListener {
        /// The fd.
        fd: RawFd,
        /// Why not.
        why: String,
    },
    /// [`listeners()`](crate::listeners) was already called: the fds belong to the first
    /// caller.
    #[error("the inherited sockets were already taken by an earlier listeners() call")]
    AlreadyTaken,
    /// Standalone (no `LISTEN_FDS`): the socket from `PORT` could not be bound.
    #[error("cannot listen on {addr} (not run under herd, so bound from PORT): {source}")]
    Bind {
        /// The address tried.
        addr: String,
        /// The OS error.
        source: io::Error,
    },
    /// `NOTIFY_SOCKET` names a path (or abstract name) nobody listens on.
    #[error("NOTIFY_SOCKET {} does not exist (is herd still running?)", path.display())]
    NotifySocketMissing {
        /// The socket's path (`@name` for the abstract namespace).
        path: PathBuf,
    },
    /// A datagram to `NOTIFY_SOCKET` could not be sent for another reason.
    #[error("cannot send {state:?} to NOTIFY_SOCKET {}: {source}", path.display())]
    Notify {
        /// The socket's path.
        path: PathBuf,
        /// What was sent.
        state: String,
        /// The OS error.
        source: io::Error,
    },
    /// `NODE_CHANNEL_FD` does not name a unix stream socket.
    #[error("NODE_CHANNEL_FD={fd} is not herd's channel: {why}")]
    BadChannel {
        /// The fd.
        fd: RawFd,
        /// Why not.
        why: String,
    },
    /// herd closed its end of the channel (it is gone or stopped this worker).
    #[error("the channel to herd is closed")]
    ChannelClosed,
    /// herd did not answer a question on the channel in time.
    #[error("herd did not answer {what} within {secs} s")]
    Timeout {
        /// The question.
        what: &'static str,
        /// The wait.
        secs: u64,
    },
    /// Any other I/O error on the channel or a socket.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(what: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { what, source }
    }
}
