//! The `-i` / `instances` value, and what it means against the CPUs this process may use
//! ([`CpuBudget`], read from the machine by [`crate::observe::cpus`]).

use std::fmt;
use std::str::FromStr;

use crate::observe::cpus::{plural, CpuBudget};

/// The `-i` / `instances` value: how many workers to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instances {
    /// Exactly this many (at least 1).
    Count(usize),
    /// One per CPU of the [`CpuBudget`].
    Max,
    /// One per CPU of the budget minus K, at least 1 (`-1` leaves a core to the rest).
    MaxMinus(usize),
}

impl FromStr for Instances {
    type Err = String;

    /// "4", "max", "-1". "0" means max, as in PM2 (`-i 0` = as many as CPUs).
    fn from_str(value: &str) -> Result<Self, String> {
        let err = || format!("`{value}` is not a number of instances: expected N, max or -K");
        if value.eq_ignore_ascii_case("max") {
            return Ok(Instances::Max);
        }
        let digits = |s: &str| -> Result<usize, String> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err());
            }
            s.parse().map_err(|_| err())
        };
        match value.strip_prefix('-') {
            Some(k) => match digits(k)? {
                0 => Ok(Instances::Max),
                k => Ok(Instances::MaxMinus(k)),
            },
            None => match digits(value)? {
                0 => Ok(Instances::Max),
                n => Ok(Instances::Count(n)),
            },
        }
    }
}

impl fmt::Display for Instances {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Instances::Count(n) => write!(f, "{n}"),
            Instances::Max => f.write_str("max"),
            Instances::MaxMinus(k) => write!(f, "-{k}"),
        }
    }
}

impl Instances {
    /// The number of workers, at least 1, and the explanation for the log line, e.g.
    /// "-i -1 = 1 worker: max = 2: 2 cores, minus 1".
    pub fn resolve(self, budget: &CpuBudget) -> (usize, String) {
        let max = budget.count.max(1);
        match self {
            Instances::Count(n) => {
                let n = n.max(1);
                let mut why = format!("-i {n} = {}", plural(n, "worker"));
                if n > max {
                    why.push_str(&format!(" (more than {})", budget.reason));
                }
                (n, why)
            }
            Instances::Max => (
                max,
                format!("-i max = {}: {}", plural(max, "worker"), budget.reason),
            ),
            Instances::MaxMinus(k) => {
                let n = max.saturating_sub(k).max(1);
                let floor = if max <= k { ", at least 1" } else { "" };
                (
                    n,
                    format!(
                        "-i -{k} = {}: {}, minus {k}{floor}",
                        plural(n, "worker"),
                        budget.reason
                    ),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_instances() {
        assert_eq!("4".parse(), Ok(Instances::Count(4)));
        assert_eq!("max".parse(), Ok(Instances::Max));
        assert_eq!("MAX".parse(), Ok(Instances::Max));
        assert_eq!("-1".parse(), Ok(Instances::MaxMinus(1)));
        assert_eq!("0".parse(), Ok(Instances::Max), "PM2: 0 = max");
        assert_eq!("-0".parse(), Ok(Instances::Max));
        for bad in [
            "abc",
            "1.5",
            "",
            "-",
            "+3",
            " 4",
            "--1",
            "-max",
            "99999999999999999999999",
        ] {
            assert_eq!(
                bad.parse::<Instances>(),
                Err(format!(
                    "`{bad}` is not a number of instances: expected N, max or -K"
                )),
                "{bad:?}"
            );
        }
        for text in ["4", "max", "-1"] {
            assert_eq!(text.parse::<Instances>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn resolves_instances_against_the_budget() {
        let two = CpuBudget {
            count: 2,
            reason: "max = 2: 2 cores".into(),
        };
        assert_eq!(
            Instances::MaxMinus(1).resolve(&two),
            (1, "-i -1 = 1 worker: max = 2: 2 cores, minus 1".into())
        );
        assert_eq!(
            Instances::MaxMinus(5).resolve(&two),
            (
                1,
                "-i -5 = 1 worker: max = 2: 2 cores, minus 5, at least 1".into()
            )
        );
        assert_eq!(
            Instances::Max.resolve(&two),
            (2, "-i max = 2 workers: max = 2: 2 cores".into())
        );
        assert_eq!(
            Instances::Count(4).resolve(&two),
            (4, "-i 4 = 4 workers (more than max = 2: 2 cores)".into())
        );
        assert_eq!(
            Instances::Count(1).resolve(&two),
            (1, "-i 1 = 1 worker".into())
        );
        assert_eq!(Instances::Count(0).resolve(&two).0, 1);
    }
}
