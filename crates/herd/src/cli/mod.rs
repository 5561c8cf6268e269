//! The `herd` command line: the top-level verbs, and the foreground ones (`run`, `check`,
//! `import`); the daemon's verbs are `control::verbs`. Exit codes (a contract,
//! documented in the README): 0 every worker stopped in time · 1 herd could not start (bad
//! value, socket error) · 2 usage error · 3 shutdown finished but some worker had to be
//! SIGKILLed · 4 the app crash-looped (errored) and no worker was left.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::RunArgs;

/// herd runs any server program on every CPU core.
#[derive(Debug, Parser)]
#[command(name = "herd", version, about, propagate_version = true)]
pub struct Cli {
    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run N workers of a program in the foreground, sharing the listening sockets.
    ///
    /// Signals: SIGTERM/SIGINT drain and exit (a second one kills at once), SIGHUP/SIGUSR2
    /// reload with zero downtime, SIGTTIN/SIGTTOU add/remove one worker.
    ///
    /// Started by systemd's socket activation (LISTEN_FDS, LISTEN_PID), it serves the
    /// inherited sockets instead of binding: those matching --listen/--port, or all of them.
    /// `herd startup run …` writes the systemd units.
    Run(RunArgs),
    /// Check a herd.toml or a PM2 ecosystem file: print each app as herd understands it
    /// (and, for an ecosystem file, the PM2 options herd ignores), or the first error with
    /// its file, line and key (exit 1).
    Check(CheckArgs),
    /// Convert a PM2 ecosystem file (.js, .cjs, .mjs, .json, .yaml) to a herd.toml, printed
    /// on stdout; the PM2 options herd ignores are listed on stderr. Exit 1 on bad input.
    Import(ImportArgs),
    /// Load an HTTP server and measure it (autocannon's flags), or sweep worker counts of a
    /// COMMAND under herd (`--scale 1,2,max -- COMMAND`). See docs/bench.md.
    Bench(crate::bench::args::BenchArgs),
    /// The daemon's verbs (PM2 style).
    #[command(flatten)]
    Daemon(crate::control::args::Verb),
}

/// Flags of `herd import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The ecosystem file, e.g. ecosystem.config.js.
    #[arg(value_name = "FILE")]
    pub file: std::path::PathBuf,

    /// Merge the `env_<PROFILE>` objects over `env` (PM2's `--env`).
    #[arg(long = "env", value_name = "PROFILE")]
    pub profile: Option<String>,
}

/// Flags of `herd check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The file to check: a herd.toml, or a PM2 ecosystem file (.js, .json, .yaml, …).
    #[arg(value_name = "FILE", default_value = "herd.toml")]
    pub file: std::path::PathBuf,

    /// Select the `env_<PROFILE>` tables.
    #[arg(long = "env", value_name = "PROFILE")]
    pub profile: Option<String>,
}

/// The `herd` command: parses the command line, runs the verb, and returns the exit code.
pub fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Daemon(verb) => crate::control::verbs::run(verb),
        Command::Run(RunArgs { flags, command }) => {
            let (name, app) = flags.into_config(command);
            crate::driver::run_foreground(name.as_deref(), app, Vec::new(), None)
        }
        Command::Check(args) => check(&args),
        Command::Import(args) => import(&args),
        Command::Bench(args) => crate::bench::main(&args),
    }
}

/// `herd check`: the apps of a herd.toml or an ecosystem file as herd reads them (with
/// the warnings), or the error.
fn check(args: &CheckArgs) -> ExitCode {
    match crate::config::load_any(&args.file, args.profile.as_deref()) {
        Ok(file) => {
            for warning in &file.warnings {
                eprintln!("herd: warning: {warning}");
            }
            // As herd reads them: every value normalised (units, signal names, absolute
            // paths), in the form a herd.toml takes.
            print!("{}", crate::config::file::to_toml(&file.apps));
            println!(
                "{}: {} app{} OK",
                args.file.display(),
                file.apps.len(),
                if file.apps.len() == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("herd: {e}");
            ExitCode::from(1)
        }
    }
}

/// `herd import`: the ecosystem file as a herd.toml on stdout, warnings on stderr.
fn import(args: &ImportArgs) -> ExitCode {
    match crate::config::import(&args.file, args.profile.as_deref()) {
        Ok((toml, warnings)) => {
            for warning in &warnings {
                eprintln!("herd: warning: {warning}");
            }
            print!("{toml}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("herd: {e}");
            ExitCode::from(1)
        }
    }
}
