//! The `herd` command. Exit codes (a contract, documented in the README):
//! 0 every worker stopped in time · 1 herd could not start (bad value, socket error) ·
//! 2 usage error · 3 shutdown finished but some worker had to be SIGKILLed ·
//! 4 the app crash-looped (errored) and no worker was left.

use std::process::ExitCode;

use herd::config::{Cli, Command, RunPlan};
use herd::observe::cpus::cpu_budget;
use herd::supervisor::Outcome;

fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Daemon(verb) => herd::control::verbs::run(verb, &explicit_flags(&matches)),
        Command::Run(args) => {
            herd::observe::logging::init(args.flags.log_format);
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
        Command::Check(args) => check(&args),
        Command::Import(args) => import(&args),
    }
}

/// `herd check`: the apps of a herd.toml or an ecosystem file as herd reads them (with
/// the warnings), or the error.
fn check(args: &herd::config::CheckArgs) -> ExitCode {
    match herd::config::load_any(&args.file, args.profile.as_deref()) {
        Ok(file) => {
            for warning in &file.warnings {
                eprintln!("herd: warning: {warning}");
            }
            // As herd reads them: every value normalised (units, signal names, absolute
            // paths), in the form a herd.toml takes.
            print!("{}", herd::config::file::to_toml(&file.apps));
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

/// The flags of the subcommand that were given on the command line (not defaults).
fn explicit_flags(matches: &clap::ArgMatches) -> Vec<String> {
    let Some((_, sub)) = matches.subcommand() else {
        return Vec::new();
    };
    sub.ids()
        .filter(|id| sub.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
        .map(|id| id.to_string())
        .collect()
}

/// `herd import`: the ecosystem file as a herd.toml on stdout, warnings on stderr.
fn import(args: &herd::config::ImportArgs) -> ExitCode {
    match herd::config::import(&args.file, args.profile.as_deref()) {
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

fn fail(e: &anyhow::Error) -> ExitCode {
    tracing::error!("{e:#}");
    ExitCode::from(1)
}
