//! `herd import` and `herd check` on PM2 ecosystem files, through the real binary: the
//! herd.toml that import prints is read back by `herd check` as exactly the apps that
//! `herd check` reads from the ecosystem file itself; warnings go to stderr naming file,
//! app and key; bad input exits 1 with the error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn herd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herd"))
        .args(args)
        .output()
        .expect("run herd")
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pm2")
        .join(name)
        .display()
        .to_string()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The app lines of `herd check`: all but the closing "FILE: N apps OK".
fn checked_apps(file: &str, profile: Option<&str>) -> Vec<String> {
    let mut args = vec!["check", file];
    if let Some(p) = profile {
        args.extend(["--env", p]);
    }
    let out = herd(&args);
    assert!(
        out.status.success(),
        "herd check {file}: {}",
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    let mut lines: Vec<String> = stdout.lines().map(str::to_string).collect();
    let last = lines.pop().unwrap_or_default();
    assert!(last.ends_with(" OK"), "{stdout}");
    lines
}

/// Imports `name`, checks the printed herd.toml, and compares its apps with the
/// ecosystem file's. Returns import's stderr.
fn import_round_trip(name: &str, profile: Option<&str>) -> String {
    let source = fixture(name);
    let mut args = vec!["import", source.as_str()];
    if let Some(p) = profile {
        args.extend(["--env", p]);
    }
    let out = herd(&args);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "herd import {name}: {stderr}");
    let dir = std::env::temp_dir().join(format!("herd-import-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml: PathBuf = dir.join("herd.toml");
    std::fs::write(&toml, &out.stdout).unwrap();
    let imported = checked_apps(&toml.display().to_string(), None);
    let original = checked_apps(&source, profile);
    assert_eq!(imported, original, "\n{}", text(&out.stdout));
    std::fs::remove_dir_all(&dir).unwrap();
    stderr
}

#[test]
fn a_json_ecosystem_imports_and_round_trips() {
    let stderr = import_round_trip("ecosystem.json", Some("production"));
    for needle in [
        "herd: warning: ",
        "ecosystem.json: app apps[0] (web): `watch_options`: not supported by herd, ignored",
        "app apps[0] (web): `instanse`: unknown PM2 option, ignored — did you mean `instances`?",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
    // cron_restart and filter_env are herd keys now: imported, not warned about.
    assert!(
        !stderr.contains("cron_restart") && !stderr.contains("filter_env"),
        "{stderr}"
    );
    let out = herd(&["import", &fixture("ecosystem.json"), "--env", "production"]);
    let stdout = text(&out.stdout);
    for line in [
        "cron_restart = \"0 * * * *\"",
        "filter_env = [\"SECRET_\", \"AWS_\"]",
    ] {
        assert!(
            stdout.lines().any(|l| l == line),
            "{line:?} not in:\n{stdout}"
        );
    }
}

#[test]
fn without_env_the_profiles_are_imported_as_tables_that_env_selects() {
    import_round_trip("ecosystem.json", None);
    let out = herd(&["import", &fixture("ecosystem.json")]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("\n[apps.web.env_production]\nNODE_ENV = \"production\"\n"),
        "{stdout}"
    );
    // The imported file with --env production reads as the ecosystem file with it.
    let dir = std::env::temp_dir().join(format!("herd-import-{}-profiles", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let toml = dir.join("herd.toml");
    std::fs::write(&toml, &out.stdout).unwrap();
    assert_eq!(
        checked_apps(&toml.display().to_string(), Some("production")),
        checked_apps(&fixture("ecosystem.json"), Some("production"))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_yaml_ecosystem_imports_and_round_trips() {
    import_round_trip("ecosystem.yaml", None);
}

#[test]
fn a_js_ecosystem_imports_and_round_trips() {
    crate::common::node();
    let stderr = import_round_trip("ecosystem.config.js", Some("production"));
    assert!(
        stderr.contains("app apps[0] (api): `wait_ready`"),
        "{stderr}"
    );
    let out = herd(&["import", &fixture("ecosystem.config.js")]);
    let stdout = text(&out.stdout);
    for line in [
        "[apps.api]",
        "instances = \"max\"",
        "ready = \"message\"",
        "listen_timeout = \"10s\"",
        "kill_timeout = \"5s\"",
        "max_memory_restart = \"1G\"",
        "NODE_ENV = \"development\"",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line}:\n{stdout}");
    }
}

#[test]
fn bad_input_exits_1_with_the_error() {
    let out = herd(&["import", &fixture("bad.json")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bad.json:3:45: trailing comma"), "{stderr}");

    let out = herd(&["import", &fixture("ecosystem.json"), "--env", "staging"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("unknown profile `staging`"), "{stderr}");

    let out = herd(&["import", &fixture("server.js.txt")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("unknown kind of file"));

    let out = herd(&["check", &fixture("missing.json")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("missing.json: cannot read"));
}
