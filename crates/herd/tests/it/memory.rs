//! `--max-memory-restart`: a worker whose memory grows over the limit is replaced, the
//! replacement first, then the old worker stopped gracefully, with no failed request.

use crate::common::*;

#[test]
fn a_worker_over_the_memory_limit_is_replaced_without_a_gap() {
    let herd = Herd::start(&[
        "run",
        "-i",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--max-memory-restart",
        "64M",
        "--",
        worker_bin(),
    ]);
    herd.wait_ready(2);
    let before = live_workers(&herd);
    let mark = herd.mark(Out::Stderr);
    // Well under the limit: nothing happens.
    http_get(&herd.url("/grow?mb=8")).unwrap();
    // Over it (the worker's own RSS counts: the block is touched).
    let load = Load::start(herd.port(), 2);
    let (_, body) = http_get(&herd.url("/grow?mb=80")).unwrap();
    let (grower, slot) = ident(&body).expect("pid and slot in the answer");
    let (_, line) = herd.wait_log_from(mark, "over the limit of 64.0 MiB");
    assert!(line.contains(&format!("(pid {grower})")), "{line}");
    // The slot's new worker is ready before the old one is told to stop.
    let (stop_at, _) = herd.wait_log_from(
        mark,
        &format!("stopping worker {APP}:{slot} (pid {grower})"),
    );
    let ready = herd.lines(Out::Stderr)[mark..stop_at]
        .iter()
        .any(|l| l.contains(&format!("worker {APP}:{slot} (pid ")) && l.contains(" ready after "));
    assert!(ready, "replacement ready before the stop:\n{}", herd.dump());
    herd.who_until("the grown worker gone", |p, _| p != grower);
    while pid_alive(grower) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (answers, errors) = load.finish();
    assert!(answers > 0);
    assert!(errors.is_empty(), "{errors:?}\n{}", herd.dump());
    // The other slot was left alone.
    let after = live_workers(&herd);
    for (s, pid) in before {
        if s != slot {
            assert_eq!(after.get(&s), Some(&pid), "slot {s} untouched");
        }
    }
}
