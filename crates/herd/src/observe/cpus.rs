//! What `-i max` means: how many CPUs this process may really use, honouring the affinity mask
//! (taskset, cpuset) and the cgroup CPU quota (docker `--cpus`, Kubernetes `limits.cpu`); the `-i` value
//! itself is [`crate::config::Instances`]. Reading /proc and /sys is kept to [`cpu_budget`];
//! every rule is a pure function over the files' text, tested with strings. Where the cgroup
//! files are is [`super::cgroup`]'s business.

use std::fmt;
use std::path::Path;

use super::cgroup::{self, tightest, CGROUP1_CPU_ROOTS, CGROUP2_ROOT};

/// How many CPUs this process may use, and why, e.g. "max = 2: cgroup quota 2.0 of 16 cores",
/// "max = 4: affinity mask allows 4 of 8 cores" or "max = 8: 8 cores".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuBudget {
    /// At least 1.
    pub count: usize,
    /// Why, for the log.
    pub reason: String,
}

/// This process's CPU budget: the cores it may run on (affinity), capped by the cgroup CPU
/// quota of its cgroup and every ancestor (v2 and v1), rounded up.
pub fn cpu_budget() -> CpuBudget {
    let cores = online_cores();
    let allowed = affinity_count();
    let paths = cgroup::own();
    let v2 = paths
        .v2
        .as_deref()
        .and_then(|p| tightest(Path::new(CGROUP2_ROOT), p, read_v2));
    let v1 = paths.v1_cpu.as_deref().and_then(|p| {
        CGROUP1_CPU_ROOTS
            .iter()
            .map(Path::new)
            .filter(|root| root.is_dir())
            .find_map(|root| tightest(root, p, read_v1))
    });
    let quota = [v2, v1].into_iter().flatten().min();
    decide(cores, allowed, quota)
}

/// Online cores of the machine (the "of N cores" in the reason).
fn online_cores() -> Option<usize> {
    use nix::unistd::{sysconf, SysconfVar};
    match sysconf(SysconfVar::_NPROCESSORS_ONLN) {
        Ok(Some(n)) => usize::try_from(n).ok().filter(|n| *n > 0),
        _ => None,
    }
}

/// Cores the affinity mask lets this process run on.
fn affinity_count() -> Option<usize> {
    use nix::sched::{sched_getaffinity, CpuSet};
    let set = sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    let n = (0..CpuSet::count())
        .filter(|cpu| set.is_set(*cpu).unwrap_or(false))
        .count();
    (n > 0).then_some(n)
}

/// A CFS bandwidth limit: `quota` µs of CPU time per `period` µs, i.e. quota/period CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quota {
    pub quota_us: u64,
    pub period_us: u64,
}

impl Quota {
    /// Whole CPUs this quota is worth, rounded up (1.5 → 2), at least 1.
    pub(crate) fn cpus(self) -> usize {
        let whole = self.quota_us.div_ceil(self.period_us).max(1);
        usize::try_from(whole).unwrap_or(usize::MAX)
    }
}

impl Ord for Quota {
    /// The tighter limit is the smaller one: compares quota/period exactly (cross-multiplied).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let lhs = u128::from(self.quota_us) * u128::from(other.period_us);
        let rhs = u128::from(other.quota_us) * u128::from(self.period_us);
        lhs.cmp(&rhs).then(self.period_us.cmp(&other.period_us))
    }
}

impl PartialOrd for Quota {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Quota {
    /// As a number of CPUs with at least one decimal: "2.0", "1.5", "0.25".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cpus = self.quota_us as f64 / self.period_us as f64;
        let text = format!("{cpus:.2}");
        let text = text.trim_end_matches('0');
        if text.ends_with('.') {
            write!(f, "{text}0")
        } else {
            f.write_str(text)
        }
    }
}

/// Parses a v2 `cpu.max`: "max 100000" (no limit) or "200000 100000".
pub(crate) fn parse_cpu_max(text: &str) -> Option<Quota> {
    let mut fields = text.split_whitespace();
    let quota = fields.next()?;
    if quota == "max" {
        return None;
    }
    let quota_us = quota.parse().ok()?;
    // The period is optional when written; the kernel's default is 100 ms.
    let period_us = fields.next().map_or(Some(100_000), |p| p.parse().ok())?;
    valid(quota_us, period_us)
}

/// Parses v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us`; a quota of -1 means no limit.
pub(crate) fn parse_cfs(quota: &str, period: &str) -> Option<Quota> {
    let quota_us: i64 = quota.trim().parse().ok()?;
    let period_us: u64 = period.trim().parse().ok()?;
    valid(u64::try_from(quota_us).ok()?, period_us)
}

fn valid(quota_us: u64, period_us: u64) -> Option<Quota> {
    (quota_us > 0 && period_us > 0).then_some(Quota {
        quota_us,
        period_us,
    })
}

fn read_v2(dir: &Path) -> Option<Quota> {
    parse_cpu_max(&std::fs::read_to_string(dir.join("cpu.max")).ok()?)
}

fn read_v1(dir: &Path) -> Option<Quota> {
    let quota = std::fs::read_to_string(dir.join("cpu.cfs_quota_us")).ok()?;
    let period = std::fs::read_to_string(dir.join("cpu.cfs_period_us")).ok()?;
    parse_cfs(&quota, &period)
}

/// The budget from the machine's cores, the affinity mask's count and the cgroup quota (each
/// unknown = not limiting).
pub(crate) fn decide(
    cores: Option<usize>,
    allowed: Option<usize>,
    quota: Option<Quota>,
) -> CpuBudget {
    let cores = cores.or(allowed).unwrap_or(1).max(1);
    let allowed = allowed.unwrap_or(cores).clamp(1, cores);
    let of_cores = format!("of {}", plural(cores, "core"));
    match quota {
        Some(q) if q.cpus() < allowed => {
            let note = if q.quota_us < q.period_us {
                ", at least 1"
            } else if q.quota_us % q.period_us != 0 {
                ", rounded up"
            } else {
                ""
            };
            CpuBudget {
                count: q.cpus(),
                reason: format!("max = {}: cgroup quota {q} {of_cores}{note}", q.cpus()),
            }
        }
        _ if allowed < cores => CpuBudget {
            count: allowed,
            reason: format!("max = {allowed}: affinity mask allows {allowed} {of_cores}"),
        },
        _ => CpuBudget {
            count: cores,
            reason: format!("max = {cores}: {}", plural(cores, "core")),
        },
    }
}

pub(crate) fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(quota_us: u64, period_us: u64) -> Quota {
        Quota {
            quota_us,
            period_us,
        }
    }

    #[test]
    fn parses_cgroup_v2_cpu_max() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(q(150_000, 100_000)));
        assert_eq!(parse_cpu_max("200000"), Some(q(200_000, 100_000)));
        assert_eq!(parse_cpu_max(""), None);
        assert_eq!(parse_cpu_max("garbage 100000"), None);
        assert_eq!(parse_cpu_max("100000 0"), None);
    }

    #[test]
    fn parses_cgroup_v1_cfs_files() {
        assert_eq!(parse_cfs("-1\n", "100000\n"), None);
        assert_eq!(parse_cfs("50000\n", "100000\n"), Some(q(50_000, 100_000)));
        assert_eq!(parse_cfs("400000", "100000"), Some(q(400_000, 100_000)));
        assert_eq!(parse_cfs("", "100000"), None);
        assert_eq!(parse_cfs("100000", "0"), None);
    }

    #[test]
    fn the_tightest_quota_of_the_cgroup_and_its_ancestors_wins() {
        let root = std::env::temp_dir().join(format!("herd-cpus-{}", std::process::id()));
        let leaf = root.join("kubepods/pod1/c1");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(root.join("kubepods/cpu.max"), "150000 100000\n").unwrap();
        std::fs::write(leaf.join("cpu.max"), "max 100000\n").unwrap();
        std::fs::write(leaf.join("cpu.cfs_quota_us"), "-1\n").unwrap();
        std::fs::write(leaf.join("cpu.cfs_period_us"), "100000\n").unwrap();
        std::fs::write(root.join("kubepods/pod1/cpu.cfs_quota_us"), "300000\n").unwrap();
        std::fs::write(root.join("kubepods/pod1/cpu.cfs_period_us"), "100000\n").unwrap();
        let v2 = tightest(&root, "/kubepods/pod1/c1", read_v2);
        let v1 = tightest(&root, "/kubepods/pod1/c1", read_v1);
        // A path this view of the hierarchy does not have finds nothing, not an error.
        let elsewhere = tightest(&root, "/docker/abc", read_v2);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(v2, Some(q(150_000, 100_000)));
        assert_eq!(v1, Some(q(300_000, 100_000)));
        assert_eq!(elsewhere, None);
    }

    #[test]
    fn quota_rounds_up_never_below_one_and_compares_exactly() {
        assert_eq!(q(150_000, 100_000).cpus(), 2);
        assert_eq!(q(200_000, 100_000).cpus(), 2);
        assert_eq!(q(10_000, 100_000).cpus(), 1);
        assert!(q(50_000, 100_000) < q(100_000, 100_000));
        assert!(q(1_000, 1_000) < q(150_000, 100_000));
        assert_eq!(
            [q(300_000, 100_000), q(150_000, 100_000)].into_iter().min(),
            Some(q(150_000, 100_000))
        );
        assert_eq!(q(200_000, 100_000).to_string(), "2.0");
        assert_eq!(q(150_000, 100_000).to_string(), "1.5");
        assert_eq!(q(25_000, 100_000).to_string(), "0.25");
    }

    #[test]
    fn budget_explains_what_limits_it() {
        assert_eq!(
            decide(Some(16), Some(16), Some(q(200_000, 100_000))),
            CpuBudget {
                count: 2,
                reason: "max = 2: cgroup quota 2.0 of 16 cores".into()
            }
        );
        assert_eq!(
            decide(Some(16), Some(16), Some(q(150_000, 100_000))).reason,
            "max = 2: cgroup quota 1.5 of 16 cores, rounded up"
        );
        assert_eq!(
            decide(Some(8), Some(8), Some(q(50_000, 100_000))).reason,
            "max = 1: cgroup quota 0.5 of 8 cores, at least 1"
        );
        assert_eq!(
            decide(Some(8), Some(4), None),
            CpuBudget {
                count: 4,
                reason: "max = 4: affinity mask allows 4 of 8 cores".into()
            }
        );
        // The quota only counts when it is tighter than the affinity mask.
        assert_eq!(decide(Some(8), Some(4), Some(q(600_000, 100_000))).count, 4);
        assert_eq!(
            decide(Some(8), Some(8), None),
            CpuBudget {
                count: 8,
                reason: "max = 8: 8 cores".into()
            }
        );
        assert_eq!(decide(Some(1), None, None).reason, "max = 1: 1 core");
        assert_eq!(decide(None, None, None).count, 1);
    }

    #[test]
    fn budget_of_this_process_is_sane() {
        let budget = cpu_budget();
        assert!(budget.count >= 1);
        assert!(budget
            .reason
            .starts_with(&format!("max = {}: ", budget.count)));
        if let Some(allowed) = affinity_count() {
            assert!(budget.count <= allowed, "{}", budget.reason);
        }
    }
}
