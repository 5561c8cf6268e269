//! `herd bench`: a load generator, and the scaling sweep of `--scale`.
//!
//! Theory of operation. The flags become a checked [`args::Plan`]. A run ([`run`]) starts
//! `-t` threads, each with a current-thread tokio runtime and its share of the `-c`
//! connections ([`conn`]); each connection writes prebuilt request bytes (pipelined up to
//! `-p`), parses the answers itself ([`response`]) and records them in its thread's
//! HdrHistograms ([`stats`]); the threads' counts are merged at the end. In rate mode
//! (`-R`) each connection follows a fixed [`schedule`] and latency counts from the intended
//! send time. The result is printed as text ([`text`]) or JSON ([`json`]), checked against
//! `--assert` ([`check`]); `--find-max` ([`find_max`]) runs a search of fixed rates, and
//! `--scale` ([`sweep`]) runs a COMMAND under `herd run` with each worker count.
//!
//! It owns nothing of herd's supervision: `--scale` starts herd as a user would, as a child
//! process, and reads what herd shows (`/readyz`, `/status`, `/proc`).
//!
//! Exit codes (README): 0 done (every --assert condition held) · 1 a bad value, or the load
//! could not run (the URL does not resolve, the server refuses, the COMMAND never became
//! ready) · 2 usage error · 3 an --assert condition failed, or --find-max found no rate that
//! meets the objective.

pub mod args;
pub(crate) mod check;
mod conn;
mod find_max;
mod json;
pub(crate) mod response;
mod run;
mod schedule;
mod stats;
mod sweep;
mod target;
mod text;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;

use args::{BenchArgs, Format, Load, Plan};
use stats::Summary;

/// Exit code: an --assert condition failed (or --find-max found no rate).
pub const EXIT_ASSERT: u8 = 3;

/// The error of `herd bench`, printed as `herd bench: …`, exit 1.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A flag's value.
    #[error(transparent)]
    Args(#[from] args::ArgError),
    /// The server cannot be reached at the start.
    #[error("cannot connect to {url} ({addr}): {why}")]
    Connect {
        /// The URL.
        url: String,
        /// The address tried.
        addr: SocketAddr,
        /// The error.
        why: std::io::Error,
    },
    /// The sweep could not run.
    #[error("{0}")]
    Sweep(String),
    /// Writing the report.
    #[error("cannot write {path}: {why}")]
    Report {
        /// The file.
        path: String,
        /// The error.
        why: std::io::Error,
    },
}

/// `herd bench …`: runs the plan and returns the exit code.
pub fn main(args: &BenchArgs) -> ExitCode {
    let plan = match args.plan() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("herd bench: {e}");
            return ExitCode::from(1);
        }
    };
    match execute(&plan) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("herd bench: {e}");
            ExitCode::from(1)
        }
    }
}

fn execute(plan: &Plan) -> Result<ExitCode, BenchError> {
    if let Some(sweep) = &plan.sweep {
        return sweep::run(plan, sweep);
    }
    let addr = reachable(&plan.load)?;
    let threads = threads_for(&plan.load, default_threads(0));
    if let Some(slo) = &plan.find_max {
        return find_max::run(plan, slo, addr, threads);
    }
    let progress = plan.format == Format::Text && std::io::stderr().is_terminal();
    let started = std::time::SystemTime::now();
    let summary = run::run(&plan.load, addr, threads, progress);
    print_result(plan, &summary, started);
    Ok(assert_code(plan, &summary))
}

/// The address of the URL, after one connection to it succeeded.
fn reachable(load: &Load) -> Result<SocketAddr, BenchError> {
    let addr = load.target.resolve().map_err(args::ArgError::from)?;
    std::net::TcpStream::connect_timeout(&addr, load.timeout).map_err(|why| {
        BenchError::Connect {
            url: load.target.url.clone(),
            addr,
            why,
        }
    })?;
    Ok(addr)
}

/// Threads when -t is not given: the CPUs this process may use, less `server` CPUs (the
/// server's, when herd started it on the same CPUs), at least 1.
fn default_threads(server: usize) -> usize {
    let cpus = crate::observe::cpus::cpu_budget().count;
    cpus.saturating_sub(server).max(1)
}

/// `-t`, or the default; never more than the connections.
fn threads_for(load: &Load, default: usize) -> usize {
    let t = if load.threads > 0 {
        load.threads
    } else {
        default
    };
    t.clamp(1, load.connections)
}

/// Writes the result to stdout; a closed pipe (`| head`) is not an error.
pub(crate) fn emit(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

fn print_result(plan: &Plan, s: &Summary, started: std::time::SystemTime) {
    let out = match plan.format {
        Format::Text => {
            let mut out = text::report(&plan.load, s);
            for c in &plan.asserts {
                let v = s.metric(c.metric);
                out += &format!(
                    "assert {c}: {} (is {})\n",
                    if c.holds(v) { "ok" } else { "FAILED" },
                    check_value(c, v)
                );
            }
            out
        }
        Format::Json => format!("{:#}\n", json::document(&plan.load, s, &plan.asserts)),
        Format::Autocannon => format!("{:#}\n", json::autocannon(&plan.load, s, started)),
    };
    emit(&out);
}

/// A value as its condition reads it: latencies in ms.
fn check_value(c: &check::Check, v: f64) -> String {
    if c.metric.is_latency() {
        text::ms(v)
    } else {
        format!("{v:.0}")
    }
}

fn assert_code(plan: &Plan, s: &Summary) -> ExitCode {
    let failed: Vec<String> = plan
        .asserts
        .iter()
        .filter(|c| !c.holds(s.metric(c.metric)))
        .map(|c| format!("{c} (is {})", check_value(c, s.metric(c.metric))))
        .collect();
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("herd bench: assert failed: {}", failed.join(", "));
        ExitCode::from(EXIT_ASSERT)
    }
}
