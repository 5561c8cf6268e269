//! herd in a real container limit (a cgroup with a memory limit and a CPU quota, as a
//! Kubernetes pod's `limits`): `-i max` follows the quota, `--max-memory-restart 25%` is a
//! quarter of the memory limit and replaces a worker that grows past it, and workers whose
//! limits add up to more than the container's are warned about at start.

use crate::common::*;

const MIB: u64 = 1 << 20;

/// One CPU of quota, 256 MiB of memory: a small pod.
fn small_pod() -> Option<Cgroup> {
    let quota = CpuQuota {
        quota_us: 100_000,
        period_us: 100_000,
    };
    match Cgroup::create(256 * MIB, quota) {
        Ok(cgroup) => Some(cgroup),
        Err(why) => {
            skip(&format!("cannot make a cgroup with limits here: {why}"));
            None
        }
    }
}

#[test]
fn a_memory_share_is_of_the_cgroup_limit_and_replaces_a_worker_past_it() {
    let Some(pod) = small_pod() else { return };
    let cmd = pod.command(
        herd_bin(),
        &[
            "run",
            "-i",
            "max",
            "--listen",
            "127.0.0.1:0",
            "--max-memory-restart",
            "25%",
            "--",
            worker_bin(),
        ],
    );
    let herd = Herd::spawn(cmd, false, true);
    let starting = herd.wait_event("herd.starting");
    assert_eq!(starting.u64("instances"), 1, "{starting:?}");
    assert!(
        starting.str("reason").contains("cgroup quota 1.0 of")
            || starting.str("reason").contains("max = 1: 1 core"),
        "{starting:?}"
    );
    let limit = herd.wait_event("herd.memory_limit");
    assert_eq!(limit.u64("limit"), 64 * MIB, "{limit:?}");
    assert!(
        limit
            .str("reason")
            .starts_with("25% of the container memory limit 256 MiB (cgroup v"),
        "{limit:?}"
    );
    herd.wait_ready(1);
    assert!(herd.events("herd.memory_overcommitted").is_empty());
    // Past a quarter of the pod's memory (and well within the pod): replaced.
    let (_, body) = http_get(&herd.url("/grow?mb=80")).unwrap();
    let (grower, _) = ident(&body).expect("pid and slot in the answer");
    let over = herd.wait_event("worker.memory_over_limit");
    assert!(
        over.pid() == grower && over.u64("limit") == 64 * MIB,
        "{over:?}"
    );
}

#[test]
fn workers_whose_limits_pass_the_containers_are_warned_about() {
    let Some(pod) = small_pod() else { return };
    let cmd = pod.command(
        herd_bin(),
        &[
            "run",
            "-i",
            "4",
            "--max-memory-restart",
            "100M",
            "--ready",
            "delay:10ms",
            "--",
            "sleep",
            "60",
        ],
    );
    let mut herd = Herd::spawn(cmd, false, true);
    let warning = herd.wait_event("herd.memory_overcommitted");
    assert_eq!(
        (
            warning.u64("instances"),
            warning.u64("limit"),
            warning.u64("total"),
            warning.u64("container_limit")
        ),
        (4, 100 * MIB, 400 * MIB, 256 * MIB),
        "{warning:?}"
    );
    let line = herd
        .lines(Out::Stderr)
        .into_iter()
        .find(|l| l.contains("\"herd.memory_overcommitted\""))
        .unwrap();
    assert!(
        line.contains("4 workers × 100 MiB = 400 MiB exceeds the container memory limit 256 MiB"),
        "{line}"
    );
    assert!(line.contains("\"level\":\"WARN\""), "{line}");
    herd.wait_ready(4);
    herd.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

#[test]
fn a_memory_share_without_a_container_limit_is_refused_naming_it() {
    if let Some(limit) = herd::observe::memory::memory_limit() {
        skip(&format!(
            "the tests run under a memory limit ({limit}): a share would be taken of it"
        ));
        return;
    }
    let mut herd = Herd::start(&["run", "--max-memory-restart", "40%", "--", worker_bin()]);
    assert_eq!(herd.wait_exit(T), 1);
    herd.wait_log(
        "--max-memory-restart 40%: a share of the container memory limit, but this process's cgroup sets no memory limit",
    );
    assert!(herd.spawned().is_empty());
}
