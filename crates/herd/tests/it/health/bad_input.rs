//! Health settings that cannot work, refused before any worker starts: a malformed check
//! (usage error, exit 2), contradictory or untargetable settings (exit 1), each named in
//! one line; and the same keys in a herd.toml, named with the file, line and key by `herd
//! check` and by `herd start` (which then starts no daemon).

use crate::common::daemon::Daemon;

use super::*;

/// `herd run --listen <listen> <flags> -- herd-testworker` must exit `code` before any
/// worker starts, with one line of stderr that contains every `needles`, and leave no
/// process behind.
fn refused(listen: &str, flags: &[&str], code: i32, needles: &[&str]) {
    let mut args = vec!["run", "--listen", listen];
    args.extend(flags);
    args.extend(["--", worker_bin()]);
    let mut herd = Herd::start(&args);
    let got = herd.wait_exit(T);
    if got != code {
        herd.fail(&format!("{flags:?}: exit code {got}, expected {code}"));
    }
    herd.assert_no_spawn();
    let lines = herd.lines(Out::Stderr);
    let naming: Vec<&String> = lines
        .iter()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .collect();
    if naming.len() != 1 {
        herd.fail(&format!(
            "{flags:?}: expected one line naming {needles:?}, got {naming:?}"
        ));
    }
    let left = in_groups(&[herd.pid()]);
    if !left.is_empty() {
        herd.fail(&format!("{flags:?}: processes left behind: {left:?}"));
    }
}

#[test]
fn malformed_health_checks_are_usage_errors() {
    refused(
        "127.0.0.1:0",
        &["--health-check", "healthz"],
        2,
        &["`healthz` is not a health check", "http:/PATH"],
    );
    refused(
        "127.0.0.1:0",
        &["--health-check", "http:healthz"],
        2,
        &["`http:healthz`", "path must start with `/`"],
    );
}

#[test]
fn health_settings_that_cannot_work_are_refused_before_any_worker_starts() {
    let check = ["--health-check", "http:/healthz"];
    for (listen, flags, needles) in [
        (
            "127.0.0.1:0",
            [
                &check[..],
                &["--health-interval", "1s", "--health-timeout", "2s"],
            ]
            .concat(),
            vec!["--health-timeout (2s) must not exceed --health-interval (1s)"],
        ),
        (
            "127.0.0.1:0",
            vec!["--watchdog", "50ms"],
            vec!["--watchdog 50ms is too short: at least 100ms"],
        ),
        (
            "127.0.0.1:0",
            [&check[..], &["--balance", "shared"]].concat(),
            vec!["--health-check cannot reach one specific worker with --balance shared"],
        ),
        (
            "127.0.0.1:0",
            vec!["--health-interval", "1s"],
            vec!["--health-interval needs --health-check"],
        ),
        (
            "127.0.0.1:0",
            vec!["--worker-metrics", "metrics"],
            vec!["`metrics` is not a path", "/metrics"],
        ),
        (
            "127.0.0.1:0",
            vec!["--worker-metrics", "/metrics", "--balance", "shared"],
            vec!["--worker-metrics cannot reach one specific worker with --balance shared"],
        ),
        (
            "127.0.0.1:0",
            [&check[..], &["--health-failures", "0"]].concat(),
            vec!["--health-failures must be at least 1"],
        ),
        (
            "[::1]:0",
            check.to_vec(),
            vec!["through [::1]:0", "needs an IPv4 or wildcard"],
        ),
    ] {
        refused(listen, &flags, 1, &needles);
    }
    let dir = TempPath::new("health-unix");
    std::fs::create_dir_all(&dir.0).unwrap();
    let unix = format!("unix:{}", dir.0.join("app.sock").display());
    refused(
        &unix,
        &check,
        1,
        &["--health-check cannot reach one specific worker without a TCP listener"],
    );
}

/// An app of test workers on 127.0.0.1:0 with `extra` lines from line 4 on.
fn app(extra: &str) -> String {
    format!(
        "[apps.api]\ncommand = [{:?}]\nlisten = [\"127.0.0.1:0\"]\n{extra}\n",
        worker_bin()
    )
}

/// The same mistakes in a herd.toml: `herd check` and `herd start` name the file, the
/// line and the key (and `herd start` starts no daemon).
#[test]
fn health_keys_of_a_herd_toml_are_checked_with_file_line_and_key() {
    let check = "health_check = \"http:/healthz\"\n";
    for (extra, line, key, says) in [
        (
            "health_check = \"healthz\"".to_string(),
            4,
            "apps.api.health_check",
            "is not a health check",
        ),
        (
            "health_check = \"http:healthz\"".to_string(),
            4,
            "apps.api.health_check",
            "must start with `/`",
        ),
        (
            format!("{check}health_interval = \"1s\"\nhealth_timeout = \"2s\""),
            6,
            "apps.api.health_timeout",
            "must not exceed",
        ),
        (
            "watchdog = \"50ms\"".to_string(),
            4,
            "apps.api.watchdog",
            "too short: at least 100ms",
        ),
        (
            format!("{check}balance = \"shared\""),
            4,
            "apps.api.health_check",
            "with --balance shared",
        ),
        (
            "health_interval = \"1s\"".to_string(),
            4,
            "apps.api.health_interval",
            "needs --health-check",
        ),
        (
            format!("{check}health_failures = 0"),
            5,
            "apps.api.health_failures",
            "expected a number ≥ 1",
        ),
    ] {
        let toml = app(&extra);
        let d = Daemon::new();
        // `herd check`: exit 1, one line: FILE:LINE:COLUMN: `KEY = VALUE`: why.
        let file = d.file("check.toml", &toml);
        let r = d.run(&["check", file.to_str().unwrap()]);
        let at = format!("{}:{line}:", file.display());
        let lines: Vec<&str> = r.stderr.lines().collect();
        if r.code != 1
            || lines.len() != 1
            || !lines[0].contains(&at)
            || !lines[0].contains(key)
            || !lines[0].contains(says)
        {
            panic!("`herd check` of\n{toml}\nshould name {at}, `{key}` and {says:?}:\n{r}");
        }
        // `herd start`: the same, before any daemon starts.
        let r = d.refuses_file(&toml, line, key);
        assert!(r.stderr.contains(says), "{r}");
    }
    // Reuseport with only a unix socket.
    let dir = TempPath::new("health-toml-unix");
    let toml = format!(
        "[apps.api]\ncommand = [{:?}]\nlisten = [\"unix:{}/app.sock\"]\n{check}",
        worker_bin(),
        dir.s()
    );
    let r = Daemon::new().refuses_file(&toml, 4, "apps.api.health_check");
    assert!(r.stderr.contains("without a TCP listener"), "{r}");
}
