//! `--scale`: the COMMAND under herd with each worker count.
use std::process::ExitCode;

use super::args::{Plan, Sweep};
use super::BenchError;

/// Runs the sweep.
pub fn run(_plan: &Plan, _sweep: &Sweep) -> Result<ExitCode, BenchError> {
    Err(BenchError::Sweep("--scale is not done yet".into()))
}
