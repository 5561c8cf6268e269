//! herd run as a `Type=notify` service: the test plays systemd, binding the datagram
//! socket it names in herd's `NOTIFY_SOCKET` and asking for watchdog pings with
//! `WATCHDOG_USEC`, and reads what herd says: READY=1 once every worker is ready,
//! RELOADING=1 (with MONOTONIC_USEC) and READY=1 around a reload, STOPPING=1 at shutdown,
//! STATUS= along the way, WATCHDOG=1 from the loop.

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;

/// Every datagram the fake systemd received, with when.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(Instant, String)>>>);

impl Received {
    fn listen(sock: UnixDatagram) -> Received {
        let received = Received::default();
        let keep = received.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                keep.0.lock().unwrap().push((Instant::now(), text));
            }
        });
        received
    }

    fn all(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// The messages that change the service's state, in order (not STATUS, not WATCHDOG).
    fn states(&self) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|m| !m.starts_with("STATUS=") && m != "WATCHDOG=1")
            .map(|m| {
                // RELOADING=1 carries the time, which the test cannot know.
                if m.starts_with("RELOADING=1\nMONOTONIC_USEC=") {
                    "RELOADING=1 + MONOTONIC_USEC".to_string()
                } else {
                    m
                }
            })
            .collect()
    }

    fn wait_for(&self, herd: &Herd, what: &str) {
        if !poll_until(T, Duration::from_millis(20), || {
            self.all().iter().any(|m| m == what)
        }) {
            herd.fail(&format!("systemd never got {what:?}: {:?}", self.all()));
        }
    }
}

/// `herd run -i N` of test workers under a fake systemd, with `watchdog` (WATCHDOG_USEC,
/// WATCHDOG_PID) in herd's environment; returns herd, what systemd receives, the socket's
/// path and its directory (kept while the test runs).
fn under_systemd(
    workers: usize,
    watchdog: &[(&str, &str)],
) -> (Herd, Received, std::path::PathBuf, TempPath) {
    let dir = TempPath::new("systemd");
    std::fs::create_dir_all(&dir.0).unwrap();
    let path = dir.0.join("notify.sock");
    let received = Received::listen(UnixDatagram::bind(&path).unwrap());
    let n = workers.to_string();
    let mut cmd = Command::new(herd_bin());
    cmd.args([
        "run",
        "-i",
        &n,
        "--listen",
        "127.0.0.1:0",
        "--",
        worker_bin(),
    ])
    .env("NOTIFY_SOCKET", &path)
    .envs(watchdog.iter().copied());
    (Herd::spawn(cmd, false, true), received, path, dir)
}

#[test]
fn herd_run_tells_systemd_ready_reloading_stopping_and_pings_the_watchdog() {
    let (mut herd, received, path, _dir) = under_systemd(2, &[("WATCHDOG_USEC", "200000")]);
    herd.wait_ready(2);
    received.wait_for(&herd, "READY=1");
    assert!(
        received
            .all()
            .contains(&"STATUS=2 of 2 workers ready".to_string()),
        "{:?}",
        received.all()
    );
    // The workers do not see herd's NOTIFY_SOCKET: theirs is herd's own socket.
    let (_, env) = herd.get("/env");
    assert!(
        !env.contains(&path.display().to_string()),
        "a worker sees systemd's socket: {env}"
    );
    let mark = herd.mark(Out::Stderr);
    herd.signal(Signal::SIGHUP);
    herd.wait_event_from(mark, "reload.done", |_| true);
    poll_until(T, Duration::from_millis(20), || {
        received.states().len() >= 3
    });
    // Watchdog pings come every 100 ms (half of WATCHDOG_USEC) from the loop.
    let pings_before = received.all().iter().filter(|m| *m == "WATCHDOG=1").count();
    // A measuring window, not a wait for an event: about 10 pings are due in it; a loaded
    // machine may delay some ticks, never add any.
    std::thread::sleep(Duration::from_secs(1));
    let pings = received.all().iter().filter(|m| *m == "WATCHDOG=1").count() - pings_before;
    assert!((3..=15).contains(&pings), "{pings} pings in 1 s");
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
    received.wait_for(&herd, "STOPPING=1");
    assert_eq!(
        received.states(),
        [
            "READY=1",
            "RELOADING=1 + MONOTONIC_USEC",
            "READY=1",
            "STOPPING=1"
        ],
        "{:?}",
        received.all()
    );
}

/// Without WATCHDOG_USEC, or with a WATCHDOG_PID that is another process's, no pings.
#[test]
fn no_watchdog_pings_unless_asked_for_this_process() {
    let (mut herd, received, _, _dir) =
        under_systemd(1, &[("WATCHDOG_USEC", "100000"), ("WATCHDOG_PID", "1")]);
    herd.wait_ready(1);
    received.wait_for(&herd, "READY=1");
    std::thread::sleep(Duration::from_millis(300));
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
    assert!(
        !received.all().iter().any(|m| m == "WATCHDOG=1"),
        "{:?}",
        received.all()
    );
}
