//! Where this process's cgroup limits are written: which cgroups /proc/self/cgroup names,
//! where their directories are, and the walk from a cgroup up to the root whose tightest
//! limit applies. The CPU quota ([`super::cpus`]) and the memory limit ([`super::memory`])
//! read their own files through this; what the numbers mean is theirs.
//!
//! Every reader takes the hierarchy's root as a parameter, so tests point it at a temporary
//! directory laid out like /sys/fs/cgroup.
//!
//! Simplifications: cgroup v2 is assumed mounted at /sys/fs/cgroup and each v1 controller at
//! /sys/fs/cgroup/<controller> (or a joined name such as cpu,cpuacct), where every
//! distribution and container runtime puts them; mountinfo is not read. A hybrid system's v2
//! hierarchy at /sys/fs/cgroup/unified carries no controllers, so it is never looked at.

use std::path::{Path, PathBuf};

/// Where cgroup v2 is mounted.
pub(crate) const CGROUP2_ROOT: &str = "/sys/fs/cgroup";
/// Where the cgroup v1 `cpu` controller may be mounted, in the order tried.
pub(crate) const CGROUP1_CPU_ROOTS: &[&str] = &["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"];
/// Where the cgroup v1 `memory` controller is mounted.
pub(crate) const CGROUP1_MEMORY_ROOTS: &[&str] = &["/sys/fs/cgroup/memory"];

/// This process's cgroups, from /proc/self/cgroup.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct CgroupPaths {
    /// The unified (v2) hierarchy's path: the `0::/path` line.
    pub v2: Option<String>,
    /// The path in the v1 hierarchy that has the `cpu` controller.
    pub v1_cpu: Option<String>,
    /// The path in the v1 hierarchy that has the `memory` controller.
    pub v1_memory: Option<String>,
}

/// This process's cgroups; none known if /proc/self/cgroup cannot be read.
pub(crate) fn own() -> CgroupPaths {
    std::fs::read_to_string("/proc/self/cgroup")
        .map(|text| parse_proc_cgroup(&text))
        .unwrap_or_default()
}

/// Parses /proc/self/cgroup: `hierarchy-id:controllers:path` lines.
pub(crate) fn parse_proc_cgroup(text: &str) -> CgroupPaths {
    let mut paths = CgroupPaths::default();
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            paths.v2 = Some(path.to_string());
            continue;
        }
        for controller in controllers.split(',') {
            match controller {
                "cpu" => paths.v1_cpu = Some(path.to_string()),
                "memory" => paths.v1_memory = Some(path.to_string()),
                _ => {}
            }
        }
    }
    paths
}

/// The first of `roots` that is a directory: where a v1 controller is mounted.
pub(crate) fn v1_root(roots: &[&str]) -> Option<PathBuf> {
    roots.iter().map(PathBuf::from).find(|root| root.is_dir())
}

/// The directories whose limits apply to the cgroup `path` under `root`: the cgroup itself and
/// each ancestor up to the root, as std's `available_parallelism` walks them. Missing ones
/// (a container that sees its host's path) are simply not found by the reader; the root itself
/// is then the container's own cgroup, mounted there by the runtime.
pub(crate) fn cgroup_dirs(root: &Path, path: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut dir = root.join(path.trim_start_matches('/'));
    while dir.starts_with(root) {
        dirs.push(dir.clone());
        if !dir.pop() {
            break;
        }
    }
    dirs
}

/// The tightest (smallest) limit that `read` finds in `path` and its ancestors under `root`.
pub(crate) fn tightest<T: Ord>(
    root: &Path,
    path: &str,
    read: impl Fn(&Path) -> Option<T>,
) -> Option<T> {
    cgroup_dirs(root, path).iter().filter_map(|d| read(d)).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_self_cgroup_v1_v2_and_hybrid() {
        let v2 = parse_proc_cgroup("0::/system.slice/app.service\n");
        assert_eq!(v2.v2.as_deref(), Some("/system.slice/app.service"));
        assert_eq!(v2.v1_cpu, None);
        assert_eq!(v2.v1_memory, None);

        let hybrid = "9:name=systemd:/\n4:memory:/x\n2:cpu,cpuacct:/docker/abc\n1:cpuset:/\n0::/\n";
        let paths = parse_proc_cgroup(hybrid);
        assert_eq!(paths.v1_cpu.as_deref(), Some("/docker/abc"));
        assert_eq!(paths.v1_memory.as_deref(), Some("/x"));
        assert_eq!(paths.v2.as_deref(), Some("/"));

        // "cpuacct" and "cpuset" alone are not the cpu controller, nor "name=memory" the
        // memory controller.
        let paths = parse_proc_cgroup("2:cpuacct:/a\n3:cpuset:/b\n1:cpu:/c\n5:name=memory:/d\n");
        assert_eq!(paths.v1_cpu.as_deref(), Some("/c"));
        assert_eq!(paths.v1_memory, None);
        // A ':' in the path is kept.
        let paths = parse_proc_cgroup("0::/a:b\n");
        assert_eq!(paths.v2.as_deref(), Some("/a:b"));
    }

    #[test]
    fn walks_from_the_cgroup_up_to_the_root() {
        let root = Path::new("/sys/fs/cgroup");
        assert_eq!(
            cgroup_dirs(root, "/kubepods/pod1/c1"),
            vec![
                PathBuf::from("/sys/fs/cgroup/kubepods/pod1/c1"),
                PathBuf::from("/sys/fs/cgroup/kubepods/pod1"),
                PathBuf::from("/sys/fs/cgroup/kubepods"),
                PathBuf::from("/sys/fs/cgroup"),
            ]
        );
        assert_eq!(
            cgroup_dirs(root, "/"),
            vec![PathBuf::from("/sys/fs/cgroup")]
        );
    }
}
