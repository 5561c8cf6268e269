//! A real container limit for herd: a child cgroup of the test process's own, with a memory
//! limit and a CPU quota, that a command joins before it `exec`s. herd then reads the limits
//! as it would in a Kubernetes pod (`limits.memory`, `limits.cpu`): no test-only override of
//! herd's own is involved.
//!
//! cgroup v1 (memory and cpu controllers mounted under /sys/fs/cgroup) takes a child of any
//! cgroup; cgroup v2 only where the test's cgroup already delegates the controllers to its
//! children (the root, or a delegated subtree), since a v2 cgroup with processes in it cannot
//! enable them. Where neither works (not root, a read-only /sys/fs/cgroup) the caller skips.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::poll_until;

/// A CPU quota: `quota_us` of CPU time per `period_us`.
#[derive(Debug, Clone, Copy)]
pub struct CpuQuota {
    pub quota_us: u64,
    pub period_us: u64,
}

/// Child cgroups (one per hierarchy that holds a limit), removed when dropped.
pub struct Cgroup {
    dirs: Vec<PathBuf>,
}

impl Cgroup {
    /// A new cgroup under this process's own with a memory limit of `memory` bytes and the
    /// CPU quota `cpu`, or why this machine cannot make one.
    pub fn create(memory: u64, cpu: CpuQuota) -> Result<Cgroup, String> {
        if !nix::unistd::Uid::effective().is_root() {
            return Err("not root: cannot create a cgroup".into());
        }
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "herd-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let v1_memory = v1_dir(&own, "memory", &["/sys/fs/cgroup/memory"]);
        let v1_cpu = v1_dir(
            &own,
            "cpu",
            &["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"],
        );
        let mut cgroup = Cgroup { dirs: Vec::new() };
        if let (Some(memory_dir), Some(cpu_dir)) = (v1_memory, v1_cpu) {
            let memory_dir = cgroup.make(&memory_dir, &name)?;
            write(
                &memory_dir.join("memory.limit_in_bytes"),
                &memory.to_string(),
            )?;
            let cpu_dir = cgroup.make(&cpu_dir, &name)?;
            write(
                &cpu_dir.join("cpu.cfs_period_us"),
                &cpu.period_us.to_string(),
            )?;
            write(&cpu_dir.join("cpu.cfs_quota_us"), &cpu.quota_us.to_string())?;
            return Ok(cgroup);
        }
        let path = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or("no cgroup v1 memory and cpu controllers, and no cgroup v2 path")?;
        let parent = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        let delegated = std::fs::read_to_string(parent.join("cgroup.subtree_control"))
            .map_err(|e| format!("cgroup v2 at {}: {e}", parent.display()))?;
        let has = |c: &str| delegated.split_whitespace().any(|d| d == c);
        if !has("memory") || !has("cpu") {
            return Err(format!(
                "cgroup v2: {} does not delegate the memory and cpu controllers (subtree_control: {:?}); \
                 a cgroup with processes in it cannot",
                parent.display(),
                delegated.trim()
            ));
        }
        let dir = cgroup.make(&parent, &name)?;
        write(&dir.join("memory.max"), &memory.to_string())?;
        write(
            &dir.join("cpu.max"),
            &format!("{} {}", cpu.quota_us, cpu.period_us),
        )?;
        Ok(cgroup)
    }

    fn make(&mut self, parent: &Path, name: &str) -> Result<PathBuf, String> {
        let dir = parent.join(name);
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        self.dirs.push(dir.clone());
        Ok(dir)
    }

    /// `program args…` made to join this cgroup first: a shell writes its own pid into each
    /// hierarchy's `cgroup.procs`, then `exec`s the program (same pid).
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let joins: Vec<String> = self
            .dirs
            .iter()
            .map(|d| format!("echo $$ > '{}/cgroup.procs'", d.display()))
            .collect();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("{} && exec \"$0\" \"$@\"", joins.join(" && ")))
            .arg(program)
            .args(args);
        cmd
    }
}

impl Drop for Cgroup {
    /// Waits (briefly) for the processes to be gone, then removes the cgroups. A cgroup
    /// still busy is left behind empty-handed rather than failing the test.
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            let procs = dir.join("cgroup.procs");
            poll_until(
                std::time::Duration::from_secs(10),
                std::time::Duration::from_millis(20),
                || std::fs::read_to_string(&procs).map_or(true, |p| p.trim().is_empty()),
            );
            if let Err(e) = std::fs::remove_dir(dir) {
                eprintln!("cannot remove the test cgroup {}: {e}", dir.display());
            }
        }
    }
}

/// This process's directory in the v1 hierarchy of `controller`, if one is mounted at one of
/// `roots`. In a container the path /proc/self/cgroup names is the host's and is not there:
/// the mount's root is then the container's own cgroup.
fn v1_dir(own: &str, controller: &str, roots: &[&str]) -> Option<PathBuf> {
    let path = own.lines().find_map(|line| {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        controllers
            .split(',')
            .any(|c| c == controller)
            .then_some(path)
    })?;
    let root = roots.iter().map(Path::new).find(|r| r.is_dir())?;
    let dir = root.join(path.trim_start_matches('/'));
    Some(if dir.is_dir() {
        dir
    } else {
        root.to_path_buf()
    })
}

fn write(file: &Path, value: &str) -> Result<(), String> {
    std::fs::write(file, value)
        .map_err(|e| format!("cannot write {value} to {}: {e}", file.display()))
}
