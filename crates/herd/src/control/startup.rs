//! `herd startup`: a systemd unit that runs the daemon at boot and brings back the apps
//! of the last `herd save`. Printed by default; written and enabled only with `--install`.

use std::path::PathBuf;
use std::process::ExitCode;

use super::home::Home;

/// Prints (or installs) the unit for the daemon of `home`.
pub fn run(home: &Home, install: bool) -> ExitCode {
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
    let unit = unit(&exe, home, &user, root);
    let path = if root {
        PathBuf::from(format!("/etc/systemd/system/herd-{user}.service"))
    } else {
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .unwrap_or_else(|| PathBuf::from(".config"));
        config.join("systemd/user/herd.service")
    };
    let systemctl = if root {
        "systemctl"
    } else {
        "systemctl --user"
    };
    let name = path
        .file_name()
        .map_or("herd.service".into(), |n| n.to_string_lossy().into_owned());
    if !install {
        print!("{unit}");
        eprintln!(
            "# write it to {} and run `{systemctl} daemon-reload && {systemctl} enable --now {name}`,\n# or run `herd startup --install`; `herd save` chooses the apps it starts.",
            path.display()
        );
        return ExitCode::SUCCESS;
    }
    if let Some(dir) = path.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("herd: cannot create {}: {e}", dir.display());
            return ExitCode::from(1);
        }
    }
    if let Err(e) = super::home::write_atomic(&path, unit.as_bytes()) {
        eprintln!("herd: cannot write {}: {e}", path.display());
        return ExitCode::from(1);
    }
    println!("wrote {}", path.display());
    let mut args: Vec<&str> = if root { vec![] } else { vec!["--user"] };
    args.extend(["enable", &name]);
    let reload: Vec<&str> = if root {
        vec!["daemon-reload"]
    } else {
        vec!["--user", "daemon-reload"]
    };
    for a in [reload, args] {
        match std::process::Command::new("systemctl").args(&a).status() {
            Ok(s) if s.success() => println!("ran systemctl {}", a.join(" ")),
            Ok(s) => {
                eprintln!("herd: `systemctl {}` failed ({s})", a.join(" "));
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("herd: cannot run systemctl ({e}): enable {name} by hand");
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
fn quote(word: &str) -> String {
    let word = word.replace('%', "%%");
    if !word.contains([' ', '"', '\\', '\'', '\t']) {
        return word;
    }
    let escaped = word.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
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
