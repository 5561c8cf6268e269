//! sd_notify: one datagram per state change to the unix datagram socket named by
//! `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). herd reads
//! `READY=1`, `STOPPING=1`, `STATUS=…` and `WATCHDOG=1`; so does systemd, so the same
//! calls work under a `Type=notify` unit.
//!
//! Outside herd (no `NOTIFY_SOCKET`) every call is a no-op that returns `Ok(())`, so a
//! server calls them unconditionally.
//!
//! ```
//! herd_worker::ready()?;
//! herd_worker::status("serving")?;
//! # Ok::<(), herd_worker::Error>(())
//! ```

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;

use crate::Error;

/// Tells herd the worker serves (`READY=1`). With a channel, also the message `"ready"`,
/// so herd's `--ready message` (PM2's `wait_ready`) counts it too.
pub fn ready() -> Result<(), Error> {
    notify("READY=1")?;
    crate::channel::ready_message()
}

/// Tells herd the worker is stopping (`STOPPING=1`).
pub fn stopping() -> Result<(), Error> {
    notify("STOPPING=1")
}

/// A one-line status for herd's log and `systemctl status` (`STATUS=…`; a newline in
/// `text` would start another assignment, so newlines become spaces).
pub fn status(text: &str) -> Result<(), Error> {
    notify(&format!("STATUS={}", text.replace('\n', " ")))
}

/// A watchdog keep-alive (`WATCHDOG=1`).
pub fn watchdog() -> Result<(), Error> {
    notify("WATCHDOG=1")
}

/// The watchdog period herd (or systemd) expects heartbeats within: `WATCHDOG_USEC`, when
/// `WATCHDOG_PID` is unset or this process (libsystemd's `sd_watchdog_enabled`). Send
/// [`watchdog()`] at least every half of it; `None` when no watchdog is set.
pub fn watchdog_period() -> Option<std::time::Duration> {
    period_of(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

fn period_of(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<std::time::Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok() != Some(me) {
            return None;
        }
    }
    match usec?.trim().parse::<u64>().ok()? {
        0 | u64::MAX => None,
        us => Some(std::time::Duration::from_micros(us)),
    }
}

/// Sends one raw sd_notify datagram (`"READY=1\nSTATUS=up"`). `Ok(())` without
/// `NOTIFY_SOCKET`.
pub fn notify(state: &str) -> Result<(), Error> {
    match std::env::var_os("NOTIFY_SOCKET") {
        None => Ok(()),
        Some(path) => send_to(&PathBuf::from(path), state),
    }
}

/// Sends `state` to the socket `path` (`@name`: abstract namespace).
pub(crate) fn send_to(path: &PathBuf, state: &str) -> Result<(), Error> {
    let fail = |source: std::io::Error| {
        // ENOENT for a path, ECONNREFUSED for an abstract name nobody holds.
        if matches!(
            source.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
        ) {
            Error::NotifySocketMissing { path: path.clone() }
        } else {
            Error::Notify {
                path: path.clone(),
                state: state.to_string(),
                source,
            }
        }
    };
    let sock = UnixDatagram::unbound().map_err(fail)?;
    let bytes = path.as_os_str().as_encoded_bytes();
    match bytes.strip_prefix(b"@") {
        Some(name) => {
            let addr = abstract_addr(name).map_err(fail)?;
            sock.send_to_addr(state.as_bytes(), &addr).map_err(fail)?;
        }
        None => {
            sock.send_to(state.as_bytes(), path).map_err(fail)?;
        }
    }
    Ok(())
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> std::io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_name: &[u8]) -> std::io::Result<SocketAddr> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract unix socket names exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_watchdog_period_follows_sd_watchdog_enabled() {
        use super::period_of;
        use std::time::Duration;
        assert_eq!(
            period_of(Some("2000000"), None, 7),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            period_of(Some("2000000"), Some("7"), 7),
            Some(Duration::from_secs(2))
        );
        assert_eq!(period_of(Some("2000000"), Some("8"), 7), None);
        assert_eq!(period_of(Some("0"), None, 7), None);
        assert_eq!(period_of(Some("soon"), None, 7), None);
        assert_eq!(period_of(None, None, 7), None);
    }

    use super::*;

    #[test]
    fn a_datagram_reaches_a_path_socket() {
        let path = std::env::temp_dir().join(format!("herd-worker-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        send_to(&path, "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_file(&path);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_datagram_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("herd-worker-notify-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(&PathBuf::from(format!("@{name}")), "WATCHDOG=1").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }

    #[test]
    fn a_missing_path_is_a_typed_error_naming_it() {
        let path = PathBuf::from("/nonexistent/herd-notify.sock");
        match send_to(&path, "READY=1") {
            Err(Error::NotifySocketMissing { path: p }) => assert_eq!(p, path),
            other => panic!("{other:?}"),
        }
        let e = send_to(&PathBuf::from("@herd-worker-nobody-here"), "READY=1").unwrap_err();
        assert!(matches!(e, Error::NotifySocketMissing { .. }), "{e:?}");
    }
}
