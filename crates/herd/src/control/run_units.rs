//! `herd startup run …`: the systemd units of one `herd run` app. A `.service` that runs
//! `herd run` with the arguments given, exactly as given, and, with `--socket`, a `.socket`
//! unit that binds the app's addresses and hands them to herd (socket activation).
//!
//! The arguments are checked the way `herd run` would take them (flags, then the plan: the
//! program found, values valid) before any unit is printed, and the plan gives what the
//! units must agree with: the addresses, the balancing, the stop timeouts.
//!
//! Why each setting, in the service:
//! - `Type=notify`, `NotifyAccess=main`: herd says READY=1 once every worker is ready,
//!   RELOADING=1/READY=1 around a rolling reload, STOPPING=1 when it drains, WATCHDOG=1 with
//!   `WatchdogSec=`; its workers never see systemd's socket (they talk to herd's own), so
//!   only the main process may speak.
//! - `ExecReload=/bin/kill -HUP $MAINPID`: SIGHUP is herd's rolling reload.
//! - `KillMode=mixed`: SIGTERM goes to herd alone, which drains its workers in order (stop
//!   signal, then SIGKILL of their process groups after `--kill-timeout`); the default
//!   (`control-group`) would signal every worker at the same moment, racing herd's own stop
//!   and its `--shutdown-delay`. Unlike `process`, what is still there after
//!   `TimeoutStopSec=` (a grandchild that left its group) is SIGKILLed.
//! - `TimeoutStopSec=`: herd's own stop time (`--shutdown-delay` + `--kill-timeout`) plus
//!   [`STOP_MARGIN`], so systemd never kills herd while it is draining on time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use super::startup::{exec_word, quote};
use crate::config::{RunArgs, RunPlan, Transport};
use crate::listen::{Balance, ListenAddr};

/// What herd needs after its workers are gone, beyond their kill timeout: reaping them and
/// writing the last of their output (up to 2 s, `driver`'s OUTPUT_DRAIN), with room to spare.
const STOP_MARGIN: Duration = Duration::from_secs(5);

/// The listen backlog of the socket unit: herd's own (`listen::bind::BACKLOG`, 1024), so a
/// socket behaves the same whether systemd or herd binds it. systemd's default is 4096.
const BACKLOG: u32 = 1024;

/// `herd run`'s command line, parsed with the same definitions as `herd run` itself.
#[derive(Debug, Parser)]
#[command(name = "herd run", no_binary_name = true)]
struct RunLine {
    #[command(flatten)]
    run: RunArgs,
}

/// Where the units are for, besides the arguments.
#[derive(Debug, Clone)]
pub struct Context {
    /// herd's own binary.
    pub exe: PathBuf,
    /// The user the service runs as (`User=`, system units only).
    pub user: String,
    /// System units (root) rather than the user's (`systemctl --user`).
    pub root: bool,
    /// The service's working directory: where relative paths of the command line point.
    pub cwd: PathBuf,
    /// PATH, where `herd run` looks the program up.
    pub path: String,
}

/// The units of one app: `(file name, text)` of the service, then of the socket unit.
#[derive(Debug)]
pub struct Units {
    pub service: (String, String),
    pub socket: Option<(String, String)>,
}

/// Why no unit could be made, with `herd run`'s exit code for it (2 usage, 1 bad value).
#[derive(Debug)]
pub struct Refused {
    pub code: u8,
    pub message: String,
}

fn refused(code: u8, message: impl Into<String>) -> Refused {
    Refused {
        code,
        message: message.into(),
    }
}

/// The units for `herd run <args>`.
pub fn units(
    args: &[String],
    socket: bool,
    watchdog: Option<Duration>,
    ctx: &Context,
) -> Result<Units, Refused> {
    let line = match RunLine::try_parse_from(args) {
        Ok(line) => line,
        Err(e) => return Err(refused(2, with_hint(e.render().to_string(), args))),
    };
    let (name, app) = line.run.flags.into_config(line.run.command);
    let limits = crate::observe::Limits::of_this_process();
    let plan = crate::config::plan(name.as_deref(), &app, None, &limits)
        .map_err(|e| refused(if e.is_usage() { 2 } else { 1 }, e.to_string()))?;
    let unit = format!("herd-{}", crate::units::app_name_from(&plan.name));
    let daemon = if ctx.root {
        format!("herd-{}", ctx.user)
    } else {
        "herd".to_string()
    };
    if unit == daemon {
        return Err(refused(
            1,
            format!("{unit}.service is the name of herd's daemon unit: choose another --name"),
        ));
    }
    let socket = if socket {
        Some((format!("{unit}.socket"), socket_unit(&plan, &ctx.cwd)?))
    } else {
        None
    };
    let service = service_unit(&unit, &plan, args, socket.is_some(), watchdog, ctx);
    Ok(Units {
        service: (format!("{unit}.service"), service),
        socket,
    })
}

/// Flags of `herd startup` put after `run` are `herd run`'s errors: say where they belong.
fn with_hint(error: String, args: &[String]) -> String {
    let ours = ["--socket", "--install", "--watchdog"];
    let misplaced = args.iter().take_while(|a| *a != "--").find(|a| {
        ours.iter()
            .any(|o| a == o || a.starts_with(&format!("{o}=")))
    });
    match misplaced {
        Some(flag) => format!(
            "{}\n`{flag}` is a flag of `herd startup`: put it before `run` (herd startup {flag} run …)",
            error.trim_end()
        ),
        None => error,
    }
}

/// The `.service` unit.
fn service_unit(
    unit: &str,
    plan: &RunPlan,
    args: &[String],
    socket: bool,
    watchdog: Option<Duration>,
    ctx: &Context,
) -> String {
    let mut exec = vec![exec_word(&ctx.exe.display().to_string()), "run".to_string()];
    exec.extend(args.iter().map(|a| exec_word(a)));
    let command = std::iter::once(plan.program.display().to_string())
        .chain(plan.args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let stop = plan.policy.shutdown_delay + plan.policy.kill_timeout + STOP_MARGIN;
    let stop_secs = stop.as_secs() + u64::from(stop.subsec_nanos() > 0);
    let (user_line, target) = if ctx.root {
        (format!("User={}\n", ctx.user), "multi-user.target")
    } else {
        (String::new(), "default.target")
    };
    let mut s = String::new();
    s.push_str("[Unit]\n");
    s.push_str(&format!(
        "Description=herd run: {} ({})\n",
        plan.name,
        command.replace('%', "%%")
    ));
    s.push_str("After=network.target\n");
    if socket {
        s.push_str(&format!("Requires={unit}.socket\nAfter={unit}.socket\n"));
    }
    s.push_str("\n[Service]\n");
    s.push_str("# READY=1 once every worker is ready, RELOADING=1 and READY=1 around a rolling reload,\n# STOPPING=1 when herd drains. Its workers talk to herd, never to systemd.\n");
    s.push_str("Type=notify\nNotifyAccess=main\n");
    s.push_str(&user_line);
    // Not quoted: systemd reads the rest of the line as the path.
    s.push_str(&format!(
        "WorkingDirectory={}\n",
        ctx.cwd.display().to_string().replace('%', "%%")
    ));
    s.push_str(&format!(
        "Environment={}\n",
        quote(&format!("PATH={}", ctx.path))
    ));
    s.push_str("# The workers get herd's environment: add the app's variables here, e.g.\n# Environment=NODE_ENV=production\n");
    if socket {
        s.push_str(&format!("# The sockets come from {unit}.socket: herd serves them instead of binding its addresses,\n# and they stay open while the service restarts.\n"));
    }
    s.push_str(&format!("ExecStart={}\n", exec.join(" ")));
    s.push_str("# herd's rolling reload, zero downtime. With systemd 253 or newer, Type=notify-reload and\n# ReloadSignal=SIGHUP instead make `systemctl reload` wait until it is done.\n");
    s.push_str("ExecReload=/bin/kill -HUP $MAINPID\n");
    s.push_str("# SIGTERM to herd alone: it stops its workers gracefully itself.\n");
    s.push_str("KillMode=mixed\n");
    s.push_str(&format!(
        "# --shutdown-delay {} + --kill-timeout {} + {} for herd to reap and flush output\n",
        crate::units::format_duration(plan.policy.shutdown_delay),
        crate::units::format_duration(plan.policy.kill_timeout),
        crate::units::format_duration(STOP_MARGIN),
    ));
    s.push_str(&format!("TimeoutStopSec={stop_secs}s\n"));
    if let Some(w) = watchdog {
        s.push_str(&format!(
            "# herd says WATCHDOG=1 every half of it, from its supervising loop\nWatchdogSec={}\n",
            crate::units::format_duration(w)
        ));
    }
    s.push_str("Restart=on-failure\n");
    s.push_str(&format!("\n[Install]\nWantedBy={target}\n"));
    if socket {
        s.push_str(&format!("Also={unit}.socket\n"));
    }
    s
}

/// The `.socket` unit: one `ListenStream=` per address of the app, in its order (the order
/// in which herd hands them to workers, fds 3, 4, …).
fn socket_unit(plan: &RunPlan, cwd: &Path) -> Result<String, Refused> {
    if plan.listen.is_empty() {
        return Err(refused(
            2,
            "--socket needs the addresses to listen on: give `run` --port or --listen",
        ));
    }
    let mut lines = Vec::new();
    for addr in &plan.listen {
        lines.push(match addr {
            ListenAddr::Tcp(a) if a.port() == 0 => {
                return Err(refused(
                    2,
                    format!("--socket needs fixed ports: --listen {addr} asks for any free port"),
                ))
            }
            ListenAddr::Tcp(a) => format!("ListenStream={a}"),
            // systemd takes absolute paths only; herd takes a relative one from its directory.
            // (Not quoted: systemd reads the rest of the line as the path; `%` is a specifier.)
            ListenAddr::Unix(p) => format!(
                "ListenStream={}",
                cwd.join(p).display().to_string().replace('%', "%%")
            ),
        });
    }
    let reuseport = plan.balance == Balance::ReusePort
        && plan.transport == Transport::Inherit
        && plan.listen.iter().any(|a| matches!(a, ListenAddr::Tcp(_)));
    let mut s = String::new();
    s.push_str("[Unit]\n");
    s.push_str(&format!(
        "Description=herd run: the sockets of {}\n",
        plan.name
    ));
    s.push_str("\n[Socket]\n");
    for line in lines {
        s.push_str(&line);
        s.push('\n');
    }
    if reuseport {
        s.push_str("# --balance reuseport: herd adds one SO_REUSEPORT socket per worker to this one's group\n# (without it, herd serves the socket `shared`).\n");
        s.push_str("ReusePort=yes\n");
    }
    s.push_str(&format!("Backlog={BACKLOG}\n"));
    s.push_str("\n[Install]\nWantedBy=sockets.target\n");
    Ok(s)
}

#[cfg(test)]
#[path = "run_units_tests.rs"]
mod tests;
