//! The `max_memory_restart` value: a size (`300M`, as PM2 writes it) or a share of the
//! container's memory limit (`40%`), and how the plan resolves it against that limit.
//!
//! A share with no container limit is an error, not a share of the machine's RAM: the share
//! is chosen against the limit the kernel enforces, and 40 % of a 64 GiB host is no limit at
//! all for a worker meant to stay under 40 % of a 1 GiB pod. Failing names the value and asks
//! for a size, which means the same everywhere.

use std::fmt;
use std::str::FromStr;

use crate::observe::memory::{MemoryLimit, WorkerMemory};
use crate::units::{format_size, human_size, parse_size, Percent};

/// Each worker's memory limit as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxMemory {
    /// Bytes.
    Size(u64),
    /// A share of the container's memory limit, resolved at plan time.
    Share(Percent),
}

impl FromStr for MaxMemory {
    type Err = String;

    /// "300M", "1G", "4096" (bytes) or "40%".
    fn from_str(value: &str) -> Result<MaxMemory, String> {
        if value.trim_end().ends_with('%') {
            return value.parse().map(MaxMemory::Share);
        }
        parse_size(value).map(MaxMemory::Size).map_err(|e| {
            if e.ends_with("too large") {
                e
            } else {
                format!("{e}, or a share of the container memory limit, e.g. 40%")
            }
        })
    }
}

impl fmt::Display for MaxMemory {
    /// What [`MaxMemory::from_str`] reads back: "1G", "40%".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxMemory::Size(bytes) => f.write_str(&format_size(*bytes)),
            MaxMemory::Share(share) => share.fmt(f),
        }
    }
}

/// A share was asked for, and this process has no container memory limit to take it of.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--max-memory-restart {0}: a share of the container memory limit, but this process's cgroup sets no memory limit (memory.max or memory.limit_in_bytes): give a size instead, e.g. 512M")]
pub struct NoContainerLimit(pub Percent);

/// Each worker's limit in bytes, with how it was chosen and the container's limit it is
/// checked against at start; `None` when `max_memory_restart` is not set.
pub fn resolve(
    max: Option<MaxMemory>,
    container: Option<MemoryLimit>,
) -> Result<Option<WorkerMemory>, NoContainerLimit> {
    let (limit, reason) = match max {
        None => return Ok(None),
        Some(MaxMemory::Size(bytes)) => (bytes, human_size(bytes)),
        Some(MaxMemory::Share(share)) => {
            let of = container.ok_or(NoContainerLimit(share))?;
            let bytes = share.of(of.bytes);
            (
                bytes,
                format!(
                    "{share} of the container memory limit {of} = {}",
                    human_size(bytes)
                ),
            )
        }
    };
    Ok(Some(WorkerMemory {
        limit,
        reason,
        container,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gib() -> Option<MemoryLimit> {
        Some(MemoryLimit {
            bytes: 1 << 30,
            source: "cgroup v2 memory.max",
        })
    }

    #[test]
    fn parses_sizes_and_shares_and_prints_them_back() {
        assert_eq!("1G".parse(), Ok(MaxMemory::Size(1 << 30)));
        assert_eq!("4096".parse(), Ok(MaxMemory::Size(4096)));
        let share: MaxMemory = "40%".parse().unwrap();
        assert_eq!(share, MaxMemory::Share("40%".parse().unwrap()));
        for text in ["1G", "300M", "1000", "40%", "12.5%"] {
            assert_eq!(text.parse::<MaxMemory>().unwrap().to_string(), text);
        }
        assert_eq!(
            "1X".parse::<MaxMemory>(),
            Err("`1X` is not a size: expected bytes or a number with K, M, G or T (binary: 1K = 1024), e.g. 200M, 1G, or a share of the container memory limit, e.g. 40%".into())
        );
        assert!("140%"
            .parse::<MaxMemory>()
            .unwrap_err()
            .starts_with("`140%` is not a percentage"));
    }

    #[test]
    fn a_share_is_of_the_container_limit() {
        let w = resolve(Some("40%".parse().unwrap()), gib())
            .unwrap()
            .unwrap();
        assert_eq!(w.limit, 429_496_729);
        assert_eq!(
            w.reason,
            "40% of the container memory limit 1 GiB (cgroup v2 memory.max) = 409.6 MiB"
        );
        assert_eq!(w.container, gib());
        // A size is taken as it is, and still checked against the container's limit.
        let w = resolve(Some(MaxMemory::Size(300 << 20)), gib())
            .unwrap()
            .unwrap();
        assert_eq!((w.limit, w.reason.as_str()), (300 << 20, "300 MiB"));
        assert!(w.overcommit(4).is_some());
        assert_eq!(resolve(None, gib()), Ok(None));
    }

    #[test]
    fn a_share_without_a_container_limit_is_an_error_naming_it() {
        let err = resolve(Some("40%".parse().unwrap()), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--max-memory-restart 40%: a share of the container memory limit, but this process's cgroup sets no memory limit (memory.max or memory.limit_in_bytes): give a size instead, e.g. 512M"
        );
        // A size needs no container.
        assert!(resolve(Some(MaxMemory::Size(1 << 20)), None).is_ok());
    }
}
