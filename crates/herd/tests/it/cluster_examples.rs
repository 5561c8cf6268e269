//! The article's sections as `herd::Cluster` examples (examples/axum_heavy.rs, graceful.rs,
//! zero_downtime.rs, shared_state.rs, sticky.rs), each run as the real program with two
//! workers and checked over real HTTP and real signals; each also through rolling reloads
//! under load, in which no request may fail.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use crate::common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

/// An example program; `cargo test` builds the examples next to the binaries. (`cargo test
/// --test cluster_examples` alone does not rebuild them: `cargo build --examples` first.)
fn example_bin(name: &str) -> PathBuf {
    let exe = PathBuf::from(herd_bin())
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        exe.exists(),
        "{} is not built (cargo test builds the examples)",
        exe.display()
    );
    exe
}

/// The example `name` with two workers on a free PORT, both ready.
fn start(name: &str) -> (Herd, u16) {
    let exe = example_bin(name);
    start_on_free_port(2, |port| {
        let mut cmd = Command::new(&exe);
        cmd.env("PORT", port.to_string()).env("INSTANCES", "2");
        cmd
    })
}

/// `GET path` on a new connection from 127.0.0.1; the answer must be a 200.
fn get_ok(herd: &Herd, port: u16, path: &str) -> String {
    let (status, body) = http_get(&format!("http://127.0.0.1:{port}{path}"))
        .unwrap_or_else(|e| herd.fail(&format!("GET {path}: {e}")));
    if status != 200 {
        herd.fail(&format!("GET {path} answered {status}: {body:?}"));
    }
    body
}

/// A JSON answer as a value.
fn json(herd: &Herd, body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| herd.fail(&format!("{e} in {body:?}")))
}

/// Requests `path` on new connections until both workers answered (the kernel spreads
/// them over the two reuseport sockets); returns the slots that answered, in order.
fn until_both_slots(herd: &Herd, mut slot_of: impl FnMut() -> usize) -> Vec<usize> {
    let mut slots = Vec::new();
    herd.wait_until("both workers answered", T, || {
        slots.push(slot_of());
        slots.iter().collect::<HashSet<_>>().len() == 2
    });
    slots
}

/// SIGTERM; herd must exit 0.
fn stop(mut herd: Herd) {
    herd.signal(Signal::SIGTERM);
    let code = herd.wait_exit(T);
    if code != 0 {
        herd.fail(&format!("herd exited {code} after SIGTERM"));
    }
}

#[test]
fn axum_heavy_both_workers_answer_root_and_heavy() {
    let (herd, port) = start("axum_heavy");
    for path in ["/", "/heavy"] {
        let slots = until_both_slots(&herd, || {
            let answer = json(&herd, &get_ok(&herd, port, path));
            if path == "/heavy" {
                // 0 + 1 + … + (10^7 - 1): the work was really done.
                assert_eq!(answer["sum"], 49_999_995_000_000u64, "{answer}");
            } else {
                assert_eq!(answer["message"], "Hello", "{answer}");
            }
            answer["slot"]
                .as_u64()
                .unwrap_or_else(|| herd.fail(&format!("no slot in {answer}"))) as usize
        });
        assert!(slots.iter().all(|s| *s < 2), "{path}: slots {slots:?}");
    }
    reloads_under_load(&herd, port, 2);
    stop(herd);
}

#[test]
fn graceful_finishes_the_request_in_progress_on_sigterm_and_exits_0() {
    let (mut herd, port) = start("graceful");
    reloads_under_load(&herd, port, 2);
    let slow = std::thread::spawn(move || get_from(Ipv4Addr::LOCALHOST, port, "/slow"));
    // The signal goes out while the worker is inside the request.
    herd.wait_output_from(
        Out::Stdout,
        0,
        "the slow request to start",
        |l| l.contains("started a slow request"),
        T,
    );
    herd.signal(Signal::SIGTERM);
    let (pid, body) = slow
        .join()
        .unwrap()
        .unwrap_or_else(|e| herd.fail(&format!("the request in progress failed: {e}")));
    assert!(body.contains("finished a slow request"), "{body:?}");
    for (_, worker) in herd.spawned() {
        herd.wait_output_from(
            Out::Stdout,
            0,
            "every worker to close its connections",
            |l| l.contains(&format!("worker {worker} closed all connections")),
            T,
        );
    }
    let code = herd.wait_exit(T);
    if code != 0 {
        herd.fail(&format!("herd exited {code} after SIGTERM"));
    }
    assert!(herd.worker_pids().contains(&pid), "answered by pid {pid}");
}

#[test]
fn zero_downtime_reload_under_load_fails_no_request_and_serves_generation_1() {
    let (herd, port) = start("zero_downtime");
    let generation = |herd: &Herd| kv_words(&get_ok(herd, port, "/"))["generation"].clone();
    assert_eq!(generation(&herd), "0");
    // A few clients requesting in a loop through the whole reload.
    let load = Load::start(port, 4);
    herd.wait_until("the load to get answers", T, || load.ok() >= 20);
    let old = reload_under(&herd, load);
    // Only the new generation is left.
    for _ in 0..20 {
        assert_eq!(generation(&herd), "1");
    }
    for pid in old {
        herd.wait_output_from(
            Out::Stdout,
            0,
            "the primary to report the old worker's exit",
            |l| l.contains("Exit {") && l.contains(&format!("pid: {pid} }}")),
            T,
        );
    }
    stop(herd);
}

#[test]
fn shared_state_stats_total_every_workers_requests() {
    let (herd, port) = start("shared_state");
    // Which slot answered each request, as the client saw it.
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    let mut count = |herd: &Herd| {
        let body = get_ok(herd, port, "/");
        let slot = kv_words(&body)["slot"].clone();
        *seen.entry(slot.clone()).or_default() += 1;
        slot.parse::<usize>().unwrap()
    };
    until_both_slots(&herd, || count(&herd));
    for _ in 0..20 {
        count(&herd);
    }
    let sent: u64 = seen.values().sum();
    // Counts are batched in the workers (up to 100 ms): poll until every one arrived.
    let mut last = Value::Null;
    herd.wait_until(&format!("/stats to total {sent}"), T, || {
        last = json(&herd, &get_ok(&herd, port, "/stats"));
        let total = last["requests"]["total"].as_u64().unwrap_or(0);
        assert!(total <= sent, "more counted than sent ({sent}): {last}");
        total == sent
    });
    let slots: BTreeMap<String, u64> = serde_json::from_value(last["requests"]["slots"].clone())
        .unwrap_or_else(|e| herd.fail(&format!("{e} in {last}")));
    assert_eq!(slots, seen, "per-worker totals: herd's vs the client's");
    reloads_under_load(&herd, port, 2);
    stop(herd);
}

#[test]
fn sticky_keeps_each_client_address_on_one_worker() {
    let (herd, port) = start("sticky");
    let addrs: Vec<Ipv4Addr> = (2..=21).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
    // Each address in three orders (ascending, descending, twice in a row), so that no
    // other way of spreading connections (round-robin, say) could look sticky.
    let twice = addrs.iter().flat_map(|a| [a, a]);
    let order = addrs.iter().chain(addrs.iter().rev()).chain(twice);
    let mut worker_of: HashMap<Ipv4Addr, u32> = HashMap::new();
    for (n, &src) in order.enumerate() {
        let (pid, _) = get_from(src, port, "/").unwrap_or_else(|e| herd.fail(&e));
        let first = *worker_of.entry(src).or_insert(pid);
        if pid != first {
            herd.fail(&format!(
                "{src} went to worker {first}, then to {pid} (request {n})"
            ));
        }
    }
    let used: HashSet<u32> = worker_of.values().copied().collect();
    let workers: HashSet<u32> = herd.worker_pids().into_iter().collect();
    assert_eq!(
        used, workers,
        "20 addresses reach both workers: {worker_of:?}"
    );
    reloads_under_load(&herd, port, 2);
    stop(herd);
}

/// `key=value` words of a one-line body (`worker pid=1 slot=0 generation=0`).
fn kv_words(body: &str) -> HashMap<String, String> {
    body.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
