//! The container's memory limit (the cgroup's `memory.max`, v2, or `memory.limit_in_bytes`,
//! v1: Kubernetes `limits.memory`, docker `--memory`), which `max_memory_restart = "40%"` is a
//! share of, and the report at start of what the workers' limit adds up to against it.
//!
//! Why it matters: the kernel enforces the container's limit on the workers *together*, and
//! on cgroup v2 Kubernetes has the OOM killer take the whole container, herd included. herd's
//! memory restarts only help if each worker's limit leaves the others room below it.
//!
//! Reading /proc and /sys is kept to [`memory_limit`]; the parsers are pure functions tested
//! with strings, and [`limit_under`] takes the hierarchies' roots so tests can lay out a
//! fake /sys/fs/cgroup.

use std::fmt;
use std::path::Path;

use super::cgroup::{self, tightest, CgroupPaths, CGROUP1_MEMORY_ROOTS, CGROUP2_ROOT};
use crate::units::human_size;

/// A cgroup v1 limit at or above this is "no limit": the kernel shows an unlimited
/// `memory.limit_in_bytes` as the largest page counter times the page size, i.e. `i64::MAX`
/// rounded down to the page size (9223372036854771712 with 4 KiB pages). Rounding down to
/// 1 MiB covers every page size there is, and no real limit comes near 8 EiB.
const V1_UNLIMITED_FROM: u64 = i64::MAX as u64 & !((1 << 20) - 1);

/// The memory limit of this process's cgroup (the tightest of it and its ancestors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimit {
    /// The limit, in bytes.
    pub bytes: u64,
    /// The file it was read from, for the log: "cgroup v2 memory.max".
    pub source: &'static str,
}

impl fmt::Display for MemoryLimit {
    /// "1 GiB (cgroup v2 memory.max)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", human_size(self.bytes), self.source)
    }
}

/// This process's container memory limit, if its cgroup (v2 or v1) has one.
pub fn memory_limit() -> Option<MemoryLimit> {
    let v1_root = cgroup::v1_root(CGROUP1_MEMORY_ROOTS);
    limit_under(&cgroup::own(), Path::new(CGROUP2_ROOT), v1_root.as_deref())
}

/// The memory limit of the cgroups `paths` names, under the v2 hierarchy at `v2_root` and the
/// v1 memory controller at `v1_root` (if mounted): the smallest limit of the cgroup and its
/// ancestors. A controller is on one hierarchy only, so at most one of the two has limits.
pub(crate) fn limit_under(
    paths: &CgroupPaths,
    v2_root: &Path,
    v1_root: Option<&Path>,
) -> Option<MemoryLimit> {
    let v2 = paths
        .v2
        .as_deref()
        .and_then(|p| tightest(v2_root, p, read_v2))
        .map(|bytes| MemoryLimit {
            bytes,
            source: "cgroup v2 memory.max",
        });
    let v1 = v1_root
        .zip(paths.v1_memory.as_deref())
        .and_then(|(root, p)| tightest(root, p, read_v1))
        .map(|bytes| MemoryLimit {
            bytes,
            source: "cgroup v1 memory.limit_in_bytes",
        });
    [v2, v1].into_iter().flatten().min_by_key(|l| l.bytes)
}

/// Parses a v2 `memory.max`: "max" (no limit) or a number of bytes.
pub(crate) fn parse_memory_max(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => None,
        n => n.parse().ok().filter(|b| *b > 0),
    }
}

/// Parses a v1 `memory.limit_in_bytes`; the huge value the kernel shows for "no limit" is
/// none (see [`V1_UNLIMITED_FROM`]).
pub(crate) fn parse_limit_in_bytes(text: &str) -> Option<u64> {
    text.trim()
        .parse()
        .ok()
        .filter(|b| *b > 0 && *b < V1_UNLIMITED_FROM)
}

fn read_v2(dir: &Path) -> Option<u64> {
    parse_memory_max(&std::fs::read_to_string(dir.join("memory.max")).ok()?)
}

fn read_v1(dir: &Path) -> Option<u64> {
    parse_limit_in_bytes(&std::fs::read_to_string(dir.join("memory.limit_in_bytes")).ok()?)
}

/// Each worker's memory limit (`max_memory_restart`) as the plan resolved it, with the
/// container's limit it was checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerMemory {
    /// Bytes above which a worker is replaced.
    pub limit: u64,
    /// How it was chosen, for the log: "300 MiB", "40% of the container memory limit 1 GiB
    /// (cgroup v2 memory.max)".
    pub reason: String,
    /// The container's limit, if there is one.
    pub container: Option<MemoryLimit>,
}

/// `instances` workers at their memory limit would pass the container's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overcommit {
    /// The number of workers.
    pub instances: usize,
    /// Each worker's limit, in bytes.
    pub per_worker: u64,
    /// `instances × per_worker`, in bytes (saturated).
    pub total: u64,
    /// The container's limit.
    pub container: MemoryLimit,
}

impl fmt::Display for Overcommit {
    /// "4 workers × 300 MiB = 1.2 GiB exceeds the container memory limit 1 GiB (…)".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} × {} = {} exceeds the container memory limit {}",
            super::cpus::plural(self.instances, "worker"),
            human_size(self.per_worker),
            human_size(self.total),
            self.container
        )
    }
}

impl WorkerMemory {
    /// Whether `instances` workers, each at its limit, would pass the container's limit.
    pub fn overcommit(&self, instances: usize) -> Option<Overcommit> {
        let container = self.container?;
        let total = self
            .limit
            .saturating_mul(u64::try_from(instances).unwrap_or(u64::MAX));
        (total > container.bytes).then_some(Overcommit {
            instances,
            per_worker: self.limit,
            total,
            container,
        })
    }

    /// Logs, as an app of `instances` workers starts, each worker's limit (`herd.memory_limit`)
    /// and, if they add up to more than the container's, a warning (`herd.memory_overcommitted`).
    pub fn log_start(&self, app: &str, instances: usize) {
        tracing::info!(app, event = "herd.memory_limit", limit = self.limit, reason = %self.reason,
            "max_memory_restart of {app}: {}", self.reason);
        if let Some(over) = self.overcommit(instances) {
            tracing::warn!(app, event = "herd.memory_overcommitted", instances,
                limit = over.per_worker, total = over.total, container_limit = over.container.bytes,
                "{over}: the workers together can reach it before any one reaches max_memory_restart, \
                 and then the kernel's OOM killer acts, not herd (under Kubernetes with cgroup v2, on \
                 the whole container); lower max_memory_restart or the number of workers");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn parses_cgroup_v2_memory_max() {
        assert_eq!(parse_memory_max("max\n"), None);
        assert_eq!(parse_memory_max("1073741824\n"), Some(1 << 30));
        assert_eq!(parse_memory_max(""), None);
        assert_eq!(parse_memory_max("0"), None);
        assert_eq!(parse_memory_max("1G"), None);
    }

    #[test]
    fn parses_cgroup_v1_limit_in_bytes_with_its_no_limit_value() {
        assert_eq!(parse_limit_in_bytes("536870912\n"), Some(512 << 20));
        // "No limit" with 4 KiB and 64 KiB pages.
        assert_eq!(parse_limit_in_bytes("9223372036854771712\n"), None);
        assert_eq!(parse_limit_in_bytes("9223372036854710272\n"), None);
        assert_eq!(parse_limit_in_bytes("-1"), None);
        assert_eq!(parse_limit_in_bytes(""), None);
        // A real limit of a big machine is one.
        assert_eq!(parse_limit_in_bytes("4398046511104"), Some(4 << 40));
    }

    /// A fake /sys/fs/cgroup under the temp dir, removed when dropped.
    struct Root(PathBuf);

    impl Root {
        fn new(name: &str) -> Root {
            let dir = std::env::temp_dir().join(format!("herd-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Root(dir)
        }

        fn write(&self, rel: &str, file: &str, text: &str) {
            let dir = self.0.join(rel);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(file), text).unwrap();
        }
    }

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn paths(text: &str) -> CgroupPaths {
        cgroup::parse_proc_cgroup(text)
    }

    #[test]
    fn v2_the_tightest_of_the_cgroup_and_its_ancestors() {
        let root = Root::new("memory-v2");
        // Kubernetes: the pod's cgroup limits too; the container's own says "max" here.
        root.write("kubepods/pod1", "memory.max", "1073741824\n");
        root.write("kubepods/pod1/c1", "memory.max", "max\n");
        let found = limit_under(&paths("0::/kubepods/pod1/c1\n"), &root.0, None);
        assert_eq!(
            found,
            Some(MemoryLimit {
                bytes: 1 << 30,
                source: "cgroup v2 memory.max"
            })
        );
        root.write("kubepods/pod1/c1", "memory.max", "536870912\n");
        let found = limit_under(&paths("0::/kubepods/pod1/c1\n"), &root.0, None);
        assert_eq!(found.map(|l| l.bytes), Some(512 << 20));
        assert_eq!(found.unwrap().to_string(), "512 MiB (cgroup v2 memory.max)");
    }

    #[test]
    fn v2_in_a_cgroup_namespace_reads_the_root_it_sees() {
        // Inside a container with its own cgroup namespace, /proc/self/cgroup says `0::/`
        // and /sys/fs/cgroup is the container's cgroup, with its memory.max.
        let root = Root::new("memory-v2ns");
        root.write("", "memory.max", "268435456\n");
        let found = limit_under(&paths("0::/\n"), &root.0, None);
        assert_eq!(found.map(|l| l.bytes), Some(256 << 20));
    }

    #[test]
    fn v1_limit_and_a_host_path_the_container_cannot_see() {
        let root = Root::new("memory-v1");
        let v2 = root.0.join("v2-unused");
        let v1 = root.0.join("memory");
        // The container's view: its own cgroup mounted at the controller's root, while
        // /proc/self/cgroup still names the host's path, which does not exist here.
        root.write("memory", "memory.limit_in_bytes", "536870912\n");
        let hybrid = "4:memory:/docker/abc\n0::/\n";
        let found = limit_under(&paths(hybrid), &v2, Some(&v1));
        assert_eq!(
            found,
            Some(MemoryLimit {
                bytes: 512 << 20,
                source: "cgroup v1 memory.limit_in_bytes"
            })
        );
        // No memory controller mounted: nothing.
        assert_eq!(limit_under(&paths(hybrid), &v2, None), None);
    }

    #[test]
    fn no_limit_anywhere_is_none() {
        let root = Root::new("memory-none");
        root.write("memory", "memory.limit_in_bytes", "9223372036854771712\n");
        root.write("memory/a", "memory.limit_in_bytes", "9223372036854771712\n");
        root.write("v2/a", "memory.max", "max\n");
        let both = "4:memory:/a\n0::/a\n";
        let found = limit_under(
            &paths(both),
            &root.0.join("v2"),
            Some(&root.0.join("memory")),
        );
        assert_eq!(found, None);
        // The real machine's answer is at least well-formed.
        if let Some(limit) = memory_limit() {
            assert!(
                limit.bytes > 0 && limit.bytes < V1_UNLIMITED_FROM,
                "{limit}"
            );
        }
    }

    fn worker(limit: u64, container: Option<u64>) -> WorkerMemory {
        WorkerMemory {
            limit,
            reason: human_size(limit),
            container: container.map(|bytes| MemoryLimit {
                bytes,
                source: "cgroup v2 memory.max",
            }),
        }
    }

    #[test]
    fn overcommit_names_the_numbers() {
        let w = worker(300 << 20, Some(1 << 30));
        let over = w.overcommit(4).expect("4 × 300 MiB > 1 GiB");
        assert_eq!(
            over.to_string(),
            "4 workers × 300 MiB = 1.2 GiB exceeds the container memory limit 1 GiB (cgroup v2 memory.max)"
        );
        assert_eq!(over.total, 1200 << 20);
        // Three fit (900 MiB), and exactly the limit is no overcommit.
        assert_eq!(w.overcommit(3), None);
        assert_eq!(worker(256 << 20, Some(1 << 30)).overcommit(4), None);
        // Without a container limit there is nothing to exceed.
        assert_eq!(worker(300 << 20, None).overcommit(64), None);
        // No overflow.
        assert!(worker(u64::MAX, Some(1)).overcommit(usize::MAX).is_some());
    }
}
