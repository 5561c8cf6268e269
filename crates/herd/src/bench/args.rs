//! `herd bench`'s command line, in two stages (as ripgrep does): [`BenchArgs`] are the raw
//! flags as clap reads them, with autocannon's names and meanings; [`BenchArgs::plan`]
//! checks them and turns them into a [`Plan`] that the rest of the module runs. Every error
//! names the flag and the value at fault.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::check::{self, Check};
use super::target::{Target, TargetError};

/// Connections when `-c` is not given (autocannon's default).
pub const DEFAULT_CONNECTIONS: usize = 100;
/// Measured time when neither `-d` nor `-a` is given (autocannon's default).
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);

/// Flags of `herd bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The URL to load, e.g. http://127.0.0.1:3000/ (https is not supported). With --scale:
    /// only its path counts (default `/`), herd picks the address.
    #[arg(value_name = "URL")]
    pub url: Option<String>,

    /// Connections kept open (autocannon's -c).
    #[arg(short = 'c', long, value_name = "N", default_value_t = DEFAULT_CONNECTIONS)]
    pub connections: usize,

    /// How long to measure: `10` (seconds) or `10s`, `2m` (default 10s, or until --amount).
    #[arg(short = 'd', long, value_name = "DUR")]
    pub duration: Option<String>,

    /// Send exactly this many requests, then stop.
    #[arg(short = 'a', long, value_name = "N")]
    pub amount: Option<u64>,

    /// Requests in flight per connection (HTTP/1.1 pipelining).
    #[arg(short = 'p', long, value_name = "N", default_value_t = 1)]
    pub pipelining: usize,

    /// Open loop: this many requests per second in total, on a fixed schedule; latency
    /// counts from each request's intended send time. Needs -d or -a.
    #[arg(short = 'R', long, value_name = "REQ/S")]
    pub rate: Option<f64>,

    /// The request method.
    #[arg(short = 'm', long, value_name = "METHOD", default_value = "GET")]
    pub method: String,

    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// The request body; `@FILE` reads it from a file.
    #[arg(short = 'b', long, value_name = "BODY")]
    pub body: Option<String>,

    /// Load threads (default: the CPUs herd bench may use, less the server's when herd
    /// started it; never more than the connections).
    #[arg(short = 't', long, value_name = "N")]
    pub threads: Option<usize>,

    /// Load sent before measuring starts, not counted (default 0s; 1s for each run of
    /// --scale).
    #[arg(long, value_name = "DUR")]
    pub warmup: Option<String>,

    /// A request not answered in this long fails (timeout), and its connection is reopened.
    #[arg(long, value_name = "DUR", default_value = "10s")]
    pub timeout: String,

    /// Print the result as JSON (schema `herd-bench/1`, see docs/bench.md).
    #[arg(short = 'j', long)]
    pub json: bool,

    /// `text` (default), `json` (as --json) or `autocannon` (autocannon's JSON result).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,

    /// Conditions for the exit code, e.g. `p99<20ms,errors=0,rps>5000`: exit 3 if one fails.
    #[arg(long = "assert", value_name = "EXPR")]
    pub assert: Option<String>,

    /// Search for the highest fixed rate that meets --slo, and print the curve.
    #[arg(long)]
    pub find_max: bool,

    /// The objective of --find-max, e.g. `p99<10ms` (latency percentiles, errors).
    #[arg(long, value_name = "EXPR")]
    pub slo: Option<String>,

    /// Sweep worker counts: run the COMMAND under herd with each count, e.g. `1,2,max`.
    #[arg(long, value_name = "LIST")]
    pub scale: Option<String>,

    /// With --scale: herd run's --balance for each run.
    #[arg(long, value_name = "MODE")]
    pub balance: Option<String>,

    /// With --scale: another flag for `herd run` (repeatable), e.g. `--run-flag=--proxy`.
    #[arg(long = "run-flag", value_name = "FLAG", allow_hyphen_values = true)]
    pub run_flags: Vec<String>,

    /// With --scale: measured runs per worker count (medians are reported).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub runs: usize,

    /// With --scale: longest wait for the COMMAND to become ready.
    #[arg(long, value_name = "DUR", default_value = "30s")]
    pub ready_timeout: String,

    /// With --scale: write the chart (`.svg` or `.html`).
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// With --scale: the COMMAND to run under herd; `--compare -- OTHER COMMAND` after it
    /// runs another setup the same way (without herd), side by side.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// A flag's value is wrong: the flag, the value and why.
#[derive(Debug, thiserror::Error)]
pub enum ArgError {
    /// A flag's value does not fit.
    #[error("{flag} {value}: {why}")]
    Value {
        /// The flag, as typed.
        flag: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// Flags that do not go together, or one that needs another.
    #[error("{0}")]
    Combination(String),
    /// The URL.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// An --assert or --slo expression.
    #[error("{flag}: {error}")]
    Check {
        /// `--assert` or `--slo`.
        flag: &'static str,
        /// The token at fault.
        error: check::CheckError,
    },
}

/// How the load is paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// As fast as the server answers (`pipelining` requests in flight per connection).
    Closed,
    /// This many requests per second in total, on a fixed schedule.
    Rate(f64),
}

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Tables for people.
    Text,
    /// `herd-bench/1`.
    Json,
    /// autocannon's JSON result.
    Autocannon,
}

/// One load run, checked.
#[derive(Debug, Clone)]
pub struct Load {
    /// Where and what.
    pub target: Target,
    /// The request bytes, written as they are.
    pub request: Vec<u8>,
    /// Connections.
    pub connections: usize,
    /// Threads (at most `connections`), 0 = decide from the CPUs.
    pub threads: usize,
    /// Requests in flight per connection.
    pub pipelining: usize,
    /// Closed loop or fixed rate.
    pub pace: Pace,
    /// Measured time (None: until `amount`).
    pub duration: Option<Duration>,
    /// Requests to send in the measured window.
    pub amount: Option<u64>,
    /// Unmeasured load first.
    pub warmup: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// The request is HEAD: answers have no body.
    pub head: bool,
}

/// The sweep of `--scale`.
#[derive(Debug, Clone)]
pub struct Sweep {
    /// Worker counts, `None` = max.
    pub counts: Vec<usize>,
    /// herd run flags.
    pub run_flags: Vec<String>,
    /// The program under herd.
    pub command: Vec<String>,
    /// Another setup, run as it is.
    pub compare: Option<Vec<String>>,
    /// Runs per count.
    pub runs: usize,
    /// Longest wait for readiness.
    pub ready_timeout: Duration,
    /// The chart.
    pub report: Option<PathBuf>,
}

/// Everything `herd bench` was asked to do, checked.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The load of one run.
    pub load: Load,
    /// How to print the result.
    pub format: Format,
    /// --assert.
    pub asserts: Vec<Check>,
    /// --find-max with this objective.
    pub find_max: Option<Vec<Check>>,
    /// --scale.
    pub sweep: Option<Sweep>,
    /// --warmup was given (else --scale warms up for its own default).
    pub warmup_given: bool,
}

fn bad(flag: &'static str, value: impl ToString, why: impl ToString) -> ArgError {
    ArgError::Value {
        flag,
        value: value.to_string(),
        why: why.to_string(),
    }
}

/// `-d 10` (seconds) or a duration with its unit.
fn duration(flag: &'static str, value: &str) -> Result<Duration, ArgError> {
    crate::units::parse_duration(value).map_err(|e| bad(flag, value, e))
}

impl BenchArgs {
    /// Checks the flags and builds the plan. `cpus` is how many CPUs this process may use.
    pub fn plan(&self) -> Result<Plan, ArgError> {
        if self.connections == 0 {
            return Err(bad("-c", 0, "at least 1 connection is needed"));
        }
        if self.pipelining == 0 {
            return Err(bad("-p", 0, "at least 1 request in flight is needed"));
        }
        if self.threads == Some(0) {
            return Err(bad("-t", 0, "at least 1 thread is needed"));
        }
        if self.amount == Some(0) {
            return Err(bad("-a", 0, "at least 1 request is needed"));
        }
        let duration = self
            .duration
            .as_deref()
            .map(|d| duration("-d", d))
            .transpose()?;
        if duration == Some(Duration::ZERO) {
            return Err(bad("-d", "0", "the run needs a duration above 0"));
        }
        let pace = match self.rate {
            None => Pace::Closed,
            Some(r) if !(r.is_finite() && r > 0.0) => {
                return Err(bad(
                    "-R",
                    r,
                    "a rate is a number of requests per second above 0",
                ))
            }
            Some(r) => {
                if duration.is_none() && self.amount.is_none() {
                    return Err(ArgError::Combination(format!(
                        "-R {r} needs -d (how long) or -a (how many requests): a fixed rate has no end of its own"
                    )));
                }
                Pace::Rate(r)
            }
        };
        let duration = match (duration, self.amount) {
            (None, None) => Some(DEFAULT_DURATION),
            (d, _) => d,
        };
        let warmup = match &self.warmup {
            Some(w) => duration_flag("--warmup", w)?,
            None => Duration::ZERO,
        };
        let timeout = duration_flag("--timeout", &self.timeout)?;
        if timeout.is_zero() {
            return Err(bad("--timeout", &self.timeout, "must be above 0"));
        }
        let format = match (self.format.as_deref(), self.json) {
            (None, false) | (Some("text"), false) => Format::Text,
            (None, true) | (Some("json"), _) => Format::Json,
            (Some("autocannon"), _) => Format::Autocannon,
            (Some(f), _) => return Err(bad("--format", f, "expected text, json or autocannon")),
        };
        let asserts = match &self.assert {
            Some(e) => check::parse(e).map_err(|error| ArgError::Check {
                flag: "--assert",
                error,
            })?,
            None => Vec::new(),
        };
        let find_max = match (self.find_max, &self.slo) {
            (true, Some(e)) => Some(check::parse_slo(e).map_err(|error| ArgError::Check {
                flag: "--slo",
                error,
            })?),
            (true, None) => {
                return Err(ArgError::Combination(
                    "--find-max needs --slo, e.g. --slo 'p99<10ms'".into(),
                ))
            }
            (false, Some(_)) => {
                return Err(ArgError::Combination("--slo goes with --find-max".into()))
            }
            (false, None) => None,
        };
        let sweep = self.sweep()?;
        let url = match (&self.url, &sweep) {
            (Some(u), None) => u.clone(),
            (None, None) => {
                return Err(ArgError::Combination(
                    "a URL is needed, e.g. herd bench http://127.0.0.1:3000/".into(),
                ))
            }
            // The sweep picks the address; a URL gives the path.
            (u, Some(_)) => {
                let path = match u.as_deref() {
                    None => "/".to_string(),
                    Some(u) if u.starts_with('/') => u.to_string(),
                    Some(u) => Target::parse(u)?.path,
                };
                format!("http://127.0.0.1:1{path}")
            }
        };
        if sweep.is_none() && !self.command.is_empty() {
            return Err(ArgError::Combination(format!(
                "a COMMAND ({}) goes with --scale",
                self.command.join(" ")
            )));
        }
        let target = Target::parse(&url)?;
        let body = match self.body.as_deref() {
            Some(b) => Some(match b.strip_prefix('@') {
                Some(path) => std::fs::read(path)
                    .map_err(|e| bad("-b", b, format!("cannot read {path}: {e}")))?,
                None => b.as_bytes().to_vec(),
            }),
            None => None,
        };
        let method = self.method.to_ascii_uppercase();
        if method.is_empty() || !method.bytes().all(|c| c.is_ascii_alphabetic()) {
            return Err(bad("-m", &self.method, "not an HTTP method"));
        }
        let mut headers = Vec::new();
        for h in &self.headers {
            match h.split_once(':') {
                Some((k, v)) if !k.trim().is_empty() && !k.contains(char::is_whitespace) => {
                    headers.push((k.trim().to_string(), v.trim().to_string()))
                }
                _ => return Err(bad("-H", h, "expected `Name: value`")),
            }
        }
        let request = target.request(&method, &headers, body.as_deref());
        Ok(Plan {
            load: Load {
                head: method == "HEAD",
                target,
                request,
                connections: self.connections,
                threads: self.threads.unwrap_or(0),
                pipelining: self.pipelining,
                pace,
                duration,
                amount: self.amount,
                warmup,
                timeout,
            },
            format,
            asserts,
            find_max,
            sweep,
            warmup_given: self.warmup.is_some(),
        })
    }

    fn sweep(&self) -> Result<Option<Sweep>, ArgError> {
        let Some(list) = &self.scale else {
            for (set, flag) in [
                (self.balance.is_some(), "--balance"),
                (!self.run_flags.is_empty(), "--run-flag"),
                (self.report.is_some(), "--report"),
            ] {
                if set {
                    return Err(ArgError::Combination(format!("{flag} goes with --scale")));
                }
            }
            return Ok(None);
        };
        let counts = scale_list(list)?;
        for (set, flag) in [
            (self.amount.is_some(), "-a"),
            (self.find_max, "--find-max"),
            (
                self.rate.is_some() && self.duration.is_none(),
                "-R without -d",
            ),
        ] {
            if set {
                return Err(ArgError::Combination(format!(
                    "--scale measures each run for -d: {flag} does not go with it"
                )));
            }
        }
        if self.runs == 0 {
            return Err(bad("--runs", 0, "at least 1 run is needed"));
        }
        let (command, compare) = split_compare(&self.command);
        if command.is_empty() {
            return Err(ArgError::Combination(
                "--scale needs a COMMAND after `--`, e.g. herd bench --scale 1,2 -- node app.js"
                    .into(),
            ));
        }
        if compare.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(ArgError::Combination(
                "--compare needs a command after it: --compare -- OTHER COMMAND".into(),
            ));
        }
        let mut run_flags = self.run_flags.clone();
        if let Some(b) = &self.balance {
            run_flags.push("--balance".into());
            run_flags.push(b.clone());
        }
        if let Some(r) = &self.report {
            let ext = r.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !matches!(ext, "svg" | "html") {
                return Err(bad(
                    "--report",
                    r.display(),
                    "the file name must end in .svg or .html",
                ));
            }
        }
        Ok(Some(Sweep {
            counts,
            run_flags,
            command,
            compare,
            runs: self.runs,
            ready_timeout: duration_flag("--ready-timeout", &self.ready_timeout)?,
            report: self.report.clone(),
        }))
    }
}

fn duration_flag(flag: &'static str, value: &str) -> Result<Duration, ArgError> {
    duration(flag, value)
}

/// `1,2,max` → worker counts, in order; `max` is 0 until resolved. No 0, no duplicates.
pub fn scale_list(list: &str) -> Result<Vec<usize>, ArgError> {
    let mut counts = Vec::new();
    for item in list.split(',') {
        let item = item.trim();
        let n = match item {
            "max" => usize::MAX,
            _ => match item.parse::<usize>() {
                Ok(0) => {
                    return Err(bad(
                        "--scale",
                        list,
                        "0 workers cannot serve: counts start at 1",
                    ))
                }
                Ok(n) => n,
                Err(_) => {
                    return Err(bad(
                        "--scale",
                        list,
                        format!("`{item}` is not a worker count (a number or max)"),
                    ))
                }
            },
        };
        if counts.contains(&n) {
            return Err(bad("--scale", list, format!("`{item}` is there twice")));
        }
        counts.push(n);
    }
    Ok(counts)
}

/// The COMMAND, and the OTHER COMMAND after `--compare --`.
fn split_compare(command: &[String]) -> (Vec<String>, Option<Vec<String>>) {
    match command.iter().position(|a| a == "--compare") {
        Some(at) => {
            let rest = &command[at + 1..];
            let rest = rest.strip_prefix(&["--".to_string()]).unwrap_or(rest);
            (command[..at].to_vec(), Some(rest.to_vec()))
        }
        None => (command.to_vec(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: BenchArgs,
    }

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let t = T::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        t.a.plan().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_autocannons() {
        let p = plan(&["http://127.0.0.1:3000/"]).unwrap();
        assert_eq!(p.load.connections, 100);
        assert_eq!(p.load.duration, Some(Duration::from_secs(10)));
        assert_eq!(p.load.pace, Pace::Closed);
        assert_eq!(p.format, Format::Text);
        let p = plan(&["-d", "3", "-a", "50", "http://h:1/"]).unwrap();
        assert_eq!(p.load.duration, Some(Duration::from_secs(3)));
        let p = plan(&["-a", "50", "http://h:1/"]).unwrap();
        assert_eq!(p.load.duration, None);
    }

    #[test]
    fn bad_values_name_the_flag() {
        for (args, needle) in [
            (&["-c", "0", "http://h:1/"][..], "-c 0"),
            (&["-R", "100", "http://h:1/"][..], "-R 100 needs -d"),
            (
                &["-b", "@/nonexistent/x", "http://h:1/"][..],
                "-b @/nonexistent/x: cannot read",
            ),
            (&["-d", "soon", "http://h:1/"][..], "-d soon"),
            (
                &["--assert", "q99<3ms", "http://h:1/"][..],
                "--assert: unknown metric `q99`",
            ),
            (&["--find-max", "http://h:1/"][..], "--find-max needs --slo"),
            (&["--scale", "1,0", "--", "x"][..], "--scale 1,0: 0 workers"),
            (&["--scale", "1,2,1", "--", "x"][..], "`1` is there twice"),
            (&["--scale", "1,2"][..], "--scale needs a COMMAND"),
            (&["https://h/"][..], "https is not supported"),
            (&["-H", "nocolon", "http://h:1/"][..], "-H nocolon"),
        ] {
            let e = plan(args).unwrap_err();
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn the_compare_command_follows_the_first() {
        let p = plan(&[
            "--scale",
            "1,max",
            "/heavy",
            "--",
            "node",
            "a.js",
            "--compare",
            "--",
            "node",
            "b.js",
        ])
        .unwrap();
        let s = p.sweep.unwrap();
        assert_eq!(s.command, ["node", "a.js"]);
        assert_eq!(s.compare.unwrap(), ["node", "b.js"]);
        assert_eq!(s.counts, [1, usize::MAX]);
        assert_eq!(p.load.target.path, "/heavy");
    }
}
