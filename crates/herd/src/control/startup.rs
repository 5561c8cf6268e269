//! `herd startup`: systemd units. For the daemon, a unit that runs it at boot and brings back
//! the apps of the last `herd save`; with `run …`, the units of one `herd run` app
//! ([`super::run_units`]). Printed by default; written and enabled only with `--install`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::args::{StartupApp, StartupArgs};
use super::home::Home;
use super::run_units;

/// Prints (or installs) the unit for the daemon of `home`, or the units of a `herd run` app.
pub fn run(home: &Home, args: StartupArgs) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("herd: cannot find herd's own binary: {e}");
            return ExitCode::from(1);
        }
    };
    let root = nix::unistd::Uid::effective().is_root();
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::effective())
        .ok()
        .flatten()
        .map_or_else(|| "root".to_string(), |u| u.name);
    let dir = unit_dir(root);
    let systemctl = if root {
        "systemctl"
    } else {
        "systemctl --user"
    };
    let Some(StartupApp::Run(app)) = args.app else {
        if args.socket || args.watchdog.is_some() {
            eprintln!("herd: --socket and --watchdog go with `run`: herd startup [--socket] [--watchdog DURATION] run <herd run flags> -- COMMAND");
            return ExitCode::from(2);
        }
        let name = if root {
            format!("herd-{user}.service")
        } else {
            "herd.service".to_string()
        };
        let unit = unit(&exe, home, &user, root);
        if !args.install {
            print!("{unit}");
            eprintln!(
                "# write it to {} and run `{systemctl} daemon-reload && {systemctl} enable --now {name}`,\n# or run `herd startup --install`; `herd save` chooses the apps it starts.",
                dir.join(&name).display()
            );
            return ExitCode::SUCCESS;
        }
        return install(&dir, &[(name, unit)], root);
    };
    let ctx = run_units::Context {
        exe,
        user,
        root,
        cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        path: std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into()),
    };
    let units = match run_units::units(&app.args, args.socket, args.watchdog, &ctx) {
        Ok(units) => units,
        Err(refused) => {
            eprintln!("{}", refused.message.trim_end());
            return ExitCode::from(refused.code);
        }
    };
    // The socket first: enabled and started before its service, it is there when herd starts.
    let files: Vec<(String, String)> = units.socket.into_iter().chain([units.service]).collect();
    if args.install {
        return install(&dir, &files, root);
    }
    for (i, (name, text)) in files.iter().enumerate() {
        if i > 0 {
            println!();
        }
        println!("# {}", dir.join(name).display());
        print!("{text}");
    }
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    eprintln!(
        "# write {} to {} and run `{systemctl} daemon-reload && {systemctl} enable --now {}`,\n# or add --install (herd startup --install …).",
        if files.len() == 1 { "it" } else { "them" },
        dir.display(),
        names.join(" ")
    );
    ExitCode::SUCCESS
}

/// PATH when herd has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Where units go: the system's folder for root, the user's otherwise.
fn unit_dir(root: bool) -> PathBuf {
    if root {
        PathBuf::from("/etc/systemd/system")
    } else {
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .unwrap_or_else(|| PathBuf::from(".config"));
        config.join("systemd/user")
    }
}

/// Writes `files` (name, text) to `dir`, reloads systemd and enables them.
fn install(dir: &std::path::Path, files: &[(String, String)], root: bool) -> ExitCode {
    if let Err(e) = std::fs::create_dir_all(dir) {
        eprintln!("herd: cannot create {}: {e}", dir.display());
        return ExitCode::from(1);
    }
    for (name, text) in files {
        let path = dir.join(name);
        if let Err(e) = super::home::write_atomic(&path, text.as_bytes()) {
            eprintln!("herd: cannot write {}: {e}", path.display());
            return ExitCode::from(1);
        }
        println!("wrote {}", path.display());
    }
    let scope: Vec<&str> = if root { vec![] } else { vec!["--user"] };
    let reload: Vec<&str> = scope.iter().copied().chain(["daemon-reload"]).collect();
    let enable: Vec<&str> = scope
        .iter()
        .copied()
        .chain(["enable"])
        .chain(files.iter().map(|(n, _)| n.as_str()))
        .collect();
    for a in [reload, enable] {
        match std::process::Command::new("systemctl").args(&a).status() {
            Ok(s) if s.success() => println!("ran systemctl {}", a.join(" ")),
            Ok(s) => {
                eprintln!("herd: `systemctl {}` failed ({s})", a.join(" "));
                return ExitCode::from(1);
            }
            Err(e) => {
                let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
                eprintln!(
                    "herd: cannot run systemctl ({e}): enable {} by hand",
                    names.join(" ")
                );
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}

/// The unit's text.
fn unit(exe: &std::path::Path, home: &Home, user: &str, root: bool) -> String {
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    let exe = quote(&exe.display().to_string());
    let (user_line, target) = if root {
        (format!("User={user}\n"), "multi-user.target")
    } else {
        (String::new(), "default.target")
    };
    format!(
        "[Unit]
Description=herd daemon ({user}): keeps the apps of `herd save` running
After=network.target

[Service]
# The daemon says READY=1 once its control socket answers.
Type=notify
{user_line}Environment={home}
Environment={path}
ExecStart={exe} daemon --resurrect
# SIGTERM makes the daemon stop every app gracefully (each within its kill_timeout).
KillMode=mixed
TimeoutStopSec=120
Restart=on-failure
LimitNOFILE=1048576

[Install]
WantedBy={target}
",
        home = quote(&format!("HERD_HOME={}", home.dir().display())),
        path = quote(&format!("PATH={path}")),
    )
}

/// A word of a unit file: quoted (systemd's double-quote rules) when it has a space, a
/// quote or a backslash; `%` is doubled, as systemd expands specifiers.
pub(super) fn quote(word: &str) -> String {
    let word = word.replace('%', "%%");
    if !word.contains([' ', '"', '\\', '\'', '\t']) {
        return word;
    }
    let escaped = word.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

/// A word of an `Exec…=` line: [`quote`]d, with `$` doubled (systemd substitutes `$NAME`
/// there) and a lone `;` escaped (it separates commands).
pub(super) fn exec_word(word: &str) -> String {
    if word == ";" {
        return "\\;".to_string();
    }
    quote(&word.replace('$', "$$"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_runs_the_daemon_with_resurrect() {
        let u = unit(
            std::path::Path::new("/usr/bin/herd"),
            &Home::at("/home/a/.herd".into()),
            "a",
            false,
        );
        assert!(u.contains("ExecStart=/usr/bin/herd daemon --resurrect"));
        let spaced = unit(
            std::path::Path::new("/opt/my tools/herd"),
            &Home::at("/home/a b/.herd".into()),
            "a",
            false,
        );
        assert!(
            spaced.contains("ExecStart=\"/opt/my tools/herd\" daemon --resurrect"),
            "{spaced}"
        );
        assert!(
            spaced.contains("Environment=\"HERD_HOME=/home/a b/.herd\""),
            "{spaced}"
        );
        assert_eq!(quote("50%"), "50%%");
        assert_eq!(exec_word("$HOME"), "$$HOME");
        assert_eq!(exec_word("a b$"), "\"a b$$\"");
        assert_eq!(exec_word(";"), "\\;");
        assert!(u.contains("Environment=HERD_HOME=/home/a/.herd"));
        assert!(u.contains("Type=notify"));
        assert!(!u.contains("User="));
        assert!(unit(
            std::path::Path::new("/usr/bin/herd"),
            &Home::at("/root/.herd".into()),
            "root",
            true
        )
        .contains("User=root\n"));
    }
}
