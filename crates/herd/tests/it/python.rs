//! Compatibility: the README's Python example (standard library only) adopts fd 3, says
//! READY=1 and STOPPING=1 on NOTIFY_SOCKET, and stops gracefully on SIGTERM.

use std::collections::HashSet;

use crate::common::*;
use nix::sys::signal::Signal;

fn example() -> String {
    format!("{}/../../examples/app.py", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn python_example_serves_from_every_worker_and_stops_cleanly() {
    let python = python();
    let app = example();
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "2",
        "--ready",
        "notify",
        "--listen",
        "127.0.0.1:0",
        "--",
        &python,
        &app,
    ]);
    herd.wait_ready(2);
    let mut slots = HashSet::new();
    herd.wait_until("both python workers answer", T, || {
        let (status, body) = herd.get("/");
        assert_eq!(status, 200, "{body}");
        slots.insert(body.trim().to_string());
        slots.len() == 2
    });
    let mark = herd.mark(Out::Stderr);
    herd.signal(Signal::SIGTERM);
    assert_eq!(
        herd.wait_exit(T),
        0,
        "herd exits 0 when the workers stop in time"
    );
    assert_eq!(
        herd.events_from(mark, "worker.stopping_announced").len(),
        2,
        "both workers sent STOPPING=1"
    );
}
