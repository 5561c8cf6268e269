//! `--max-memory-restart`: a worker whose memory grows over the limit is replaced, the
//! replacement first, then the old worker stopped gracefully, with no failed request.

use std::time::Instant;

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
    let (_, over) = herd.wait_event_from(mark, "worker.memory_over_limit", |_| true);
    assert!(
        over.pid() == grower && over.u64("limit") == 64 * 1024 * 1024,
        "{over:?}"
    );
    // The slot's new worker is ready before the old one is told to stop.
    let (stop_at, _) = herd.wait_event_from(mark, "worker.stopping", |e| {
        e.slot() == slot && e.pid() == grower
    });
    let replacement = herd
        .wait_event_from(mark, "worker.spawned", |e| e.slot() == slot)
        .1
        .pid();
    let ready = herd
        .indexed_events("worker.ready")
        .iter()
        .any(|(i, e)| (mark..stop_at).contains(i) && e.pid() == replacement);
    if !ready {
        herd.fail(&format!(
            "the replacement {replacement} of slot {slot} was not ready before the grown worker {grower} was stopped"
        ));
    }
    herd.wait_gone(&[grower], T);
    herd.who_until(
        &format!("the replacement {replacement} in slot {slot}"),
        |p, s| p == replacement && s == slot,
    );
    let since = Instant::now();
    let ok = load.ok();
    herd.wait_until("50 more answers", T, || load.ok() >= ok + 50);
    if let Err(e) = load.finish_clean(since) {
        herd.fail(&format!("while the grown worker was replaced: {e}"));
    }
    // The other slot was left alone.
    let after = live_workers(&herd);
    for (s, pid) in before {
        if s != slot {
            assert_eq!(after.get(&s), Some(&pid), "slot {s} untouched");
        }
    }
}
