//! `herd start`: the apps of a file (herd.toml or a PM2 ecosystem file), or one app from
//! a command and `herd run`'s flags, checked here (errors name the file, line and key
//! before any daemon is involved) and sent to the daemon as a herd.toml text.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::args::{Redo, StartArgs};
use super::client::Client;
use super::protocol::{Apply, Request};
use super::verbs::{answer, fail, tell_previous, usage};
use crate::config::AppConfig;
use crate::config::RunFlags;

/// Runs `herd start`.
pub fn run(client: &Client, args: StartArgs) -> ExitCode {
    let (apps, origin) = if args.command.is_empty() {
        if let Some(flag) = run_flag_given(&args.run) {
            return usage(&format!(
                "{flag} goes with a command (`herd start [FLAGS] -- COMMAND`); for the apps of a file, set it in the file"
            ));
        }
        let file = args
            .file
            .clone()
            .unwrap_or_else(|| PathBuf::from("herd.toml"));
        match load_apps(&file, args.profile.as_deref(), &args.only) {
            Ok(apps) => (apps, file.display().to_string()),
            Err(e) => return fail(&e),
        }
    } else {
        if let Some(file) = &args.file {
            return usage(&format!(
                "give a file ({}) or a command after `--`, not both",
                file.display()
            ));
        }
        match app_from_command(&args) {
            Ok((name, app)) => (
                std::iter::once((name, app)).collect(),
                format!("herd start -- {}", args.command.join(" ")),
            ),
            Err(e) => return fail(&e),
        }
    };
    let toml = crate::config::file::to_toml(&apps);
    send(
        client,
        Request::Start {
            toml,
            origin,
            env: environment(),
            wait: !args.no_wait,
        },
        args.json,
    )
}

/// The first `herd run` flag given, as the command line spells it (`--name` aside: it may
/// select an app of the file): read from the settings the flags make, so a new flag needs
/// no change here.
fn run_flag_given(flags: &RunFlags) -> Option<String> {
    let (_, app) = flags.clone().into_config(vec!["-".into()]);
    let one = std::iter::once(("-".to_string(), app)).collect();
    let toml = crate::config::file::to_toml(&one);
    let key = toml
        .lines()
        .filter_map(|l| l.split_once(" = ").map(|(k, _)| k.trim()))
        .find(|k| *k != "command")?;
    Some(match key {
        "node_cluster" => "--no-node-cluster".to_string(),
        "node_drain" => "--no-node-drain".to_string(),
        key => format!("--{}", key.replace('_', "-")),
    })
}

/// Runs `herd restart FILE` and `herd reload FILE`: the file's apps, checked here as for
/// `start`, take the definition it gives (those not running start).
pub fn apply(client: &Client, args: &Redo, how: Apply) -> ExitCode {
    let file = PathBuf::from(&args.apps[0]);
    let apps = match load_apps(&file, args.profile.as_deref(), &args.only) {
        Ok(apps) => apps,
        Err(e) => return fail(&e),
    };
    send(
        client,
        Request::Apply {
            toml: crate::config::file::to_toml(&apps),
            origin: file.display().to_string(),
            env: environment(),
            how,
        },
        args.json,
    )
}

/// This command's environment: the workers of the apps it defines start from it, as
/// PM2's do from the shell that started them.
fn environment() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect()
}

/// Sends a request that defines apps, starting the daemon when none runs.
fn send(client: &Client, request: Request, json: bool) -> ExitCode {
    match client.request_starting(request) {
        Ok((response, started)) => {
            tell_previous(client, started);
            answer(Ok(response), json)
        }
        Err(e) => fail(&e.to_string()),
    }
}

/// The apps of a herd.toml or an ecosystem file, validated here so that errors name the
/// file and line before anything reaches the daemon; paths are made absolute.
fn load_apps(
    file: &Path,
    profile: Option<&str>,
    only: &[String],
) -> Result<std::collections::BTreeMap<String, AppConfig>, String> {
    let loaded = crate::config::load_any(file, profile).map_err(|e| e.to_string())?;
    for warning in &loaded.warnings {
        eprintln!("herd: warning: {warning}");
    }
    let mut apps = loaded.apps;
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?;
    let dir = file.parent().map(|p| cwd.join(p)).unwrap_or(cwd.clone());
    // The daemon works in HERD_HOME: every path it gets must be absolute. A relative one
    // that survived loading is relative to the file (`load` joined it to the file's
    // folder, which is itself relative when the file is named so).
    // `./herd.toml` and `herd.toml` give the same paths, so the daemon sees one
    // definition (`..` stays: through a symlink it is not the parent it seems).
    let absolute = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = cwd.join(&*p);
        }
        *p = p.components().collect();
    };
    for app in apps.values_mut() {
        app.cwd.get_or_insert_with(|| dir.clone());
        for p in [
            app.cwd.as_mut(),
            app.out_file.as_mut(),
            app.error_file.as_mut(),
            app.log_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            absolute(p);
        }
    }
    if !only.is_empty() {
        for name in only {
            if !apps.contains_key(name) {
                return Err(format!(
                    "--only {name}: {} has no app `{name}` (it has {})",
                    file.display(),
                    apps.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        apps.retain(|name, _| only.contains(name));
    }
    Ok(apps)
}

/// One app from `herd start [FLAGS] -- COMMAND`: the flags as `herd run` reads them, the
/// current directory as its cwd.
fn app_from_command(args: &StartArgs) -> Result<(String, AppConfig), String> {
    let f = &args.run;
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| "no command after `--`".to_string())?;
    let name = match &f.name {
        Some(n) => n.clone(),
        None => default_name(program, rest),
    };
    if !crate::units::is_app_name(&name) {
        return Err(format!(
            "--name `{name}`: an app name is letters, digits, `-` and `_` (and not `all`)"
        ));
    }
    let (_, mut app) = f.clone().into_config(args.command.clone());
    app.cwd = Some(
        std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?,
    );
    app.namespace = args.namespace.clone();
    Ok((name, app))
}

/// The app name PM2 would choose: the script's name for an interpreter (`node server.js`
/// is `server`), else the program's; reduced to the characters an app name may have.
fn default_name(program: &str, args: &[String]) -> String {
    const INTERPRETERS: [&str; 9] = [
        "node", "nodejs", "bun", "deno", "python", "python3", "ruby", "php", "perl",
    ];
    let stem = |p: &str| {
        Path::new(p)
            .file_stem()
            .map_or(p.to_string(), |s| s.to_string_lossy().into_owned())
    };
    let program_name = stem(program);
    // `node -e CODE`, `python3 -c CODE`: no script to name it after.
    let inline = |a: &String| matches!(a.as_str(), "-e" | "--eval" | "-p" | "--print" | "-c");
    let script = INTERPRETERS
        .contains(&program_name.as_str())
        .then(|| args.iter().find(|a| !a.starts_with('-') || inline(a)))
        .flatten()
        .filter(|a| !inline(a));
    crate::units::app_name_from(&stem(script.map_or(program, |s| s.as_str())))
}

#[cfg(test)]
mod tests {
    use super::default_name;

    #[test]
    fn default_names_follow_the_script() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            default_name("node", &v(&["--inspect", "server.js"])),
            "server"
        );
        assert_eq!(default_name("/usr/bin/python3", &v(&["app.py"])), "app");
        assert_eq!(default_name("./my.server", &v(&["x"])), "my");
        assert_eq!(default_name("node", &v(&["-e", "require('x')"])), "node");
        assert_eq!(default_name("python3", &v(&["-c", "print(1)"])), "python3");
    }
}
