//! The `herd` command. Exit codes (a contract, documented in the README):
//! 0 every worker stopped in time · 1 herd could not start (bad value, socket error) ·
//! 2 usage error · 3 shutdown finished but some worker had to be SIGKILLed ·
//! 4 the app crash-looped (errored) and no worker was left.

use std::process::ExitCode;

use clap::Parser;
use herd::config::{Cli, Command, LogFormat, RunPlan};
use herd::observe::cpus::cpu_budget;
use herd::supervisor::Outcome;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => {
            init_logging(args.log_format);
            let plan = match RunPlan::from_args(args, &cpu_budget()) {
                Ok(plan) => plan,
                Err(e) if e.is_usage() => {
                    tracing::error!("{e}");
                    return ExitCode::from(2);
                }
                Err(e) => return fail(&anyhow::Error::new(e)),
            };
            let (code, why) = match herd::driver::run(plan) {
                Ok(Outcome::Clean) => (0, "every worker stopped in time"),
                Ok(Outcome::Killed) => (3, "some worker had to be killed"),
                Ok(Outcome::Errored) => (4, "the app errored and no worker is left"),
                Err(e) => return fail(&e),
            };
            tracing::info!(code, "herd exits with code {code}: {why}");
            ExitCode::from(code)
        }
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    tracing::error!("{e:#}");
    ExitCode::from(1)
}

/// herd's own log on stderr: human-readable lines, or JSON objects with every field.
/// `HERD_LOG` filters (e.g. `HERD_LOG=debug`).
fn init_logging(format: LogFormat) {
    use tracing_subscriber::{fmt, EnvFilter};
    let filter = EnvFilter::try_from_env("HERD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(format == LogFormat::Text && std::io::stderr().is_terminal())
        .with_target(false);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder
            // The message already names app, slot and pid; the fields are for JSON.
            .fmt_fields(fmt::format::debug_fn(|w, field, value| {
                if field.name() == "message" {
                    write!(w, "{value:?}")
                } else {
                    Ok(())
                }
            }))
            .init(),
    }
}
