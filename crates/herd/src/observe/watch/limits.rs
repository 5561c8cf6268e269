//! The kernel's inotify limits, named the way an operator raises them: a watch that fails
//! for a limit says which sysctl, its value now, and the command.

/// `fs.inotify.max_user_watches`: watches of one user, all programs together (each watched
/// directory is one).
const WATCHES: &str = "/proc/sys/fs/inotify/max_user_watches";
/// The same limit inside this user namespace (a container's), which may be lower than the
/// host's; in the host's namespace it is the sysctl itself.
const WATCHES_HERE: &str = "/proc/sys/user/max_inotify_watches";
/// `fs.inotify.max_user_instances`: inotify instances of one user (herd uses one per
/// watching app).
const INSTANCES: &str = "/proc/sys/fs/inotify/max_user_instances";

fn read(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Why a watch failed with ENOSPC, with the values of this machine; `watched`: the
/// directories this app watches already.
pub fn watches_text(watched: usize) -> String {
    limit_text(read(WATCHES), read(WATCHES_HERE), watched)
}

/// Why inotify could not start (EMFILE), with the value of this machine.
pub fn instances_text() -> String {
    let now = read(INSTANCES).map_or_else(|| "?".into(), |n| n.to_string());
    format!(
        "too many inotify instances for this user (fs.inotify.max_user_instances = {now}): \
         raise it with `sysctl -w fs.inotify.max_user_instances=1024` (and in /etc/sysctl.d/ \
         to keep it)"
    )
}

fn limit_text(host: Option<u64>, here: Option<u64>, watched: usize) -> String {
    let shown = |n: Option<u64>| n.map_or_else(|| "?".into(), |n| n.to_string());
    let namespace = match (host, here) {
        (Some(h), Some(n)) if n < h => format!(
            ", and {n} in this user namespace (/proc/sys/user/max_inotify_watches, set by \
             the container's host)"
        ),
        _ => String::new(),
    };
    format!(
        "the inotify watch limit is reached (fs.inotify.max_user_watches = {}{namespace}; \
         every watched directory of every program of this user counts, and this app \
         watches {watched}): raise it with `sysctl -w fs.inotify.max_user_watches=524288` \
         (and in /etc/sysctl.d/ to keep it), or ignore more directories with ignore_watch",
        shown(host)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_names_the_sysctl_and_its_value() {
        let t = limit_text(Some(8192), Some(8192), 8191);
        assert!(t.contains("fs.inotify.max_user_watches = 8192;"), "{t}");
        assert!(t.contains("sysctl -w fs.inotify.max_user_watches="), "{t}");
        assert!(t.contains("this app watches 8191"), "{t}");
        assert!(!t.contains("namespace"), "{t}");
        let t = limit_text(Some(8192), Some(50), 49);
        assert!(t.contains("and 50 in this user namespace"), "{t}");
        assert!(limit_text(None, None, 0).contains("= ?"));
        assert!(instances_text().contains("fs.inotify.max_user_instances = "));
        assert!(watches_text(3).contains("fs.inotify.max_user_watches = "));
    }
}
