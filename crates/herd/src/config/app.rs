//! An app of a herd.toml (or of a PM2 ecosystem file) made into the [`RunPlan`] its driver
//! runs: the file's values over `herd run`'s defaults (the same clap definitions, so a
//! default means the same in both places), the program resolved against the app's own
//! PATH and directory, and the user and group looked up. Nothing here starts a process.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Parser;

use super::file::AppConfig;
use super::plan::{env_value, resolve_program, Credentials, Launch, PlanError, RunPlan};
use super::{Cli, Command};
use crate::observe::cpus::CpuBudget;

/// Why an app cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A value that does not work on this machine (program not found, …).
    #[error("app `{app}`: {source}")]
    Plan {
        /// The app.
        app: String,
        /// What is wrong.
        source: PlanError,
    },
    /// `cwd` is not a directory.
    #[error("app `{app}`: cwd `{path}` {why}")]
    Cwd {
        /// The app.
        app: String,
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// `user` or `group` cannot be used, or the app's values do not make a plan.
    #[error("app `{app}`: {what}")]
    Invalid {
        /// The app.
        app: String,
        /// What is wrong.
        what: String,
    },
}

/// Plans the app `name`. `base_env` is the environment its workers start from (the
/// environment of the `herd start` that added it); `budget` is what `max` means here.
pub fn plan(
    name: &str,
    app: &AppConfig,
    base_env: Arc<Vec<(OsString, OsString)>>,
    budget: &CpuBudget,
) -> Result<RunPlan, AppError> {
    let plan_err = |source| AppError::Plan {
        app: name.to_string(),
        source,
    };
    if let Some(cwd) = &app.cwd {
        match std::fs::metadata(cwd) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(cwd_err(name, cwd, "is not a directory")),
            Err(e) => return Err(cwd_err(name, cwd, &format!("cannot be used: {e}"))),
        }
    }
    let path_var = app
        .env
        .get("PATH")
        .map(OsString::from)
        .or_else(|| env_value(&base_env, "PATH").cloned());
    let program = if app.program.contains('/') {
        let p = Path::new(&app.program);
        let p = match (&app.cwd, p.is_relative()) {
            (Some(cwd), true) => cwd.join(p),
            _ => p.to_path_buf(),
        };
        resolve_program(&p.to_string_lossy(), None).map_err(plan_err)?
    } else {
        resolve_program(&app.program, path_var.as_deref()).map_err(plan_err)?
    };
    // `--name=NAME`: a name may start with `-`.
    let mut argv: Vec<String> = vec![
        "herd".into(),
        "run".into(),
        format!("--name={name}"),
        "--".into(),
    ];
    argv.push(program.to_string_lossy().into_owned());
    argv.extend(app.args.iter().cloned());
    let mut args = match Cli::try_parse_from(&argv) {
        Ok(Cli {
            command: Command::Run(args),
        }) => args,
        Ok(_) => unreachable!("the argv above is a `herd run`"),
        Err(e) => {
            return Err(AppError::Invalid {
                app: name.to_string(),
                what: format!("cannot be planned: {e}"),
            })
        }
    };
    macro_rules! set {
        ($($field:ident),*) => {$(
            if let Some(v) = app.$field.clone() {
                args.flags.$field = v;
            }
        )*};
    }
    set!(
        instances,
        ready,
        listen_timeout,
        kill_timeout,
        stop_signal,
        min_uptime,
        max_restarts,
        restart_window,
        restart_delay,
        restart_delay_max,
        reload_parallel,
        log_format,
        sticky_wait
    );
    args.flags.port = app.port;
    args.flags.listen = app.listen.clone();
    args.flags.balance = app.balance;
    args.flags.proxy = app.proxy.unwrap_or(false);
    args.flags.proxy_protocol = app.proxy_protocol;
    args.flags.stop_message = app.stop_message.unwrap_or(false);
    args.flags.no_node_cluster = app.node_cluster == Some(false);
    args.flags.max_memory_restart = app.max_memory_restart;
    let mut plan = RunPlan::from_args(args, budget).map_err(plan_err)?;
    if let Some(autorestart) = app.autorestart {
        plan.policy.autorestart = autorestart;
    }
    plan.policy.stop_exit_codes = app.stop_exit_codes.clone();
    plan.launch = Launch {
        cwd: app.cwd.clone(),
        base_env: Some(base_env),
        env: app
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        instance_var: app.instance_var.clone(),
        increment_var: app.increment_var.clone(),
        credentials: credentials(name, app.user.as_deref(), app.group.as_deref())?,
    };
    Ok(plan)
}

fn cwd_err(app: &str, path: &Path, why: &str) -> AppError {
    AppError::Cwd {
        app: app.to_string(),
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// Who `user` and `group` (names or numeric ids) are: the group defaults to the user's
/// primary group, the supplementary groups are the user's. Switching needs root; as
/// another user, naming oneself is allowed and changes nothing (`None`).
fn credentials(
    app: &str,
    user: Option<&str>,
    group: Option<&str>,
) -> Result<Option<Credentials>, AppError> {
    use nix::unistd::{Gid, Group, Uid, User};
    if user.is_none() && group.is_none() {
        return Ok(None);
    }
    let bad = |what: String| AppError::Invalid {
        app: app.to_string(),
        what,
    };
    let me = User::from_uid(Uid::effective()).ok().flatten();
    let user = match user {
        None => me.clone(),
        Some(u) => {
            let found = match u.parse::<u32>() {
                Ok(id) => User::from_uid(Uid::from_raw(id)),
                Err(_) => User::from_name(u),
            };
            match found {
                Ok(Some(found)) => Some(found),
                Ok(None) => return Err(bad(format!("user `{u}` does not exist"))),
                Err(e) => return Err(bad(format!("cannot look up user `{u}`: {e}"))),
            }
        }
    };
    let uid = user.as_ref().map_or(Uid::effective(), |u| u.uid);
    let gid = match group {
        None => user.as_ref().map_or(Gid::effective(), |u| u.gid),
        Some(g) => {
            let found = match g.parse::<u32>() {
                Ok(id) => Group::from_gid(Gid::from_raw(id)),
                Err(_) => Group::from_name(g),
            };
            match found {
                Ok(Some(found)) => found.gid,
                Ok(None) => return Err(bad(format!("group `{g}` does not exist"))),
                Err(e) => return Err(bad(format!("cannot look up group `{g}`: {e}"))),
            }
        }
    };
    if !Uid::effective().is_root() && (uid != Uid::effective() || gid != Gid::effective()) {
        return Err(bad(format!(
            "running workers as uid {uid} / gid {gid} needs herd to run as root (it runs as uid {})",
            Uid::effective()
        )));
    }
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let groups = match &user {
        Some(u) => {
            let name = std::ffi::CString::new(u.name.clone())
                .map_err(|_| bad(format!("user name `{}` has a NUL byte", u.name)))?;
            nix::unistd::getgrouplist(&name, gid)
                .map_err(|e| bad(format!("cannot list the groups of `{}`: {e}", u.name)))?
                .into_iter()
                .map(Gid::as_raw)
                .collect()
        }
        None => vec![gid.as_raw()],
    };
    Ok(Some(Credentials {
        uid: uid.as_raw(),
        gid: gid.as_raw(),
        groups,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Arc<Vec<(OsString, OsString)>> {
        Arc::new(vec![("PATH".into(), "/bin:/usr/bin".into())])
    }

    #[test]
    fn plans_take_the_file_over_the_defaults() {
        let app = AppConfig {
            program: "sh".into(),
            args: vec!["-c".into(), "exit 0".into()],
            instances: Some(crate::observe::cpus::Instances::Count(3)),
            kill_timeout: Some(std::time::Duration::from_secs(2)),
            autorestart: Some(false),
            stop_exit_codes: vec![3],
            max_memory_restart: Some(1 << 30),
            ..AppConfig::default()
        };
        let plan = plan("-dash", &app, base(), &crate::observe::cpus::cpu_budget()).unwrap();
        assert_eq!(plan.name, "-dash", "a name may start with `-`");
        assert!(plan.program.ends_with("sh"), "found in the app's PATH");
        assert_eq!(plan.policy.instances, 3);
        assert_eq!(plan.policy.kill_timeout, std::time::Duration::from_secs(2));
        assert!(!plan.policy.autorestart);
        assert_eq!(plan.policy.stop_exit_codes, [3]);
        assert_eq!(plan.policy.max_memory, Some(1 << 30));
        // herd run's defaults for the rest.
        assert_eq!(
            plan.policy.listen_timeout,
            crate::supervisor::DEFAULT_LISTEN_TIMEOUT
        );
    }

    #[test]
    fn only_the_sockets_and_balancing_are_fixed_for_a_running_app() {
        let budget = crate::observe::cpus::cpu_budget();
        let app = AppConfig {
            program: "sh".into(),
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            ..AppConfig::default()
        };
        let running = plan("web", &app, base(), &budget).unwrap();
        let worker_side = AppConfig {
            args: vec!["-c".into(), "exit 0".into()],
            instances: Some(crate::observe::cpus::Instances::Count(3)),
            kill_timeout: Some(std::time::Duration::from_secs(2)),
            env: [("A".to_string(), "1".to_string())].into(),
            ..app.clone()
        };
        let new = plan("web", &worker_side, base(), &budget).unwrap();
        assert_eq!(running.fixed_changes(&new), Vec::<String>::new());
        let moved = AppConfig {
            listen: vec!["127.0.0.1:9".parse().unwrap()],
            balance: Some(crate::listen::Balance::RoundRobin),
            ..app.clone()
        };
        let new = plan("web", &moved, base(), &budget).unwrap();
        let changes = running.fixed_changes(&new);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(
            changes[0].starts_with("listen (127.0.0.1:0 → 127.0.0.1:9)"),
            "{changes:?}"
        );
        assert!(changes[1].starts_with("balance ("), "{changes:?}");
    }

    #[test]
    fn a_program_not_in_the_apps_path_is_named() {
        let app = AppConfig {
            program: "no-such-program-herd".into(),
            ..AppConfig::default()
        };
        let err = plan("api", &app, base(), &crate::observe::cpus::cpu_budget()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("app `api`: command `no-such-program-herd`"),
            "{err}"
        );
        let app = AppConfig {
            program: "sh".into(),
            cwd: Some("/no/such/dir".into()),
            ..AppConfig::default()
        };
        let err = plan("api", &app, base(), &crate::observe::cpus::cpu_budget()).unwrap_err();
        assert!(err.to_string().contains("cwd `/no/such/dir`"), "{err}");
    }
}
