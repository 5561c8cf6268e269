//! `--find-max --slo 'p99<10ms'`: the highest fixed rate whose run meets the objective.
use std::net::SocketAddr;
use std::process::ExitCode;

use super::args::Plan;
use super::check::Check;
use super::BenchError;

/// Runs the search and prints the curve.
pub fn run(
    _plan: &Plan,
    _slo: &[Check],
    _addr: SocketAddr,
    _threads: usize,
) -> Result<ExitCode, BenchError> {
    Err(BenchError::Sweep("--find-max is not done yet".into()))
}
