//! The environment a worker starts with: `filter_env` (PM2's option; `--filter-env PREFIX`,
//! `--filter-env-all`) as the worker itself sees it (the test worker's `/environ`, every
//! variable), and `herd env NAME [SLOT]`, which must show exactly that.

use std::collections::HashMap;
use std::process::Command;

use crate::common::daemon::*;
use crate::common::*;

/// Whether `name` is one of the worker contract's variables (or herd's own, `HERD_*`).
fn contract(name: &str) -> bool {
    ["HERD_", "LISTEN_", "NODE_"]
        .iter()
        .any(|p| name.starts_with(p))
        || ["NOTIFY_SOCKET", "PORT"].contains(&name)
}

/// The whole environment of the worker answering on `port`.
fn environ(port: u16) -> (String, HashMap<String, String>) {
    let (status, body) = http_get(&format!("http://127.0.0.1:{port}/environ"))
        .unwrap_or_else(|e| panic!("GET /environ: {e}"));
    assert_eq!(status, 200, "{body}");
    let vars = kv(&body);
    (body, vars)
}

/// `filter_env = true` under the daemon: the worker has the app's `env` and the contract,
/// nothing of the `herd start` environment (PATH included), and `herd env` shows exactly
/// what the worker has.
#[test]
fn filter_env_true_leaves_the_apps_env_and_the_contract_only() {
    let d = Daemon::new();
    let file = d.file(
        "herd.toml",
        &testworker_app("clean", 1, "filter_env = true\nenv = { APP_VAR = \"yes\" }"),
    );
    let args = ["start", file.to_str().unwrap()];
    let mut cmd = d.command(&args);
    cmd.env("HERD_TEST_SECRET", "must not leak");
    let r = d.run_command(cmd, &args);
    assert_eq!(r.code, 0, "{r}");
    let (body, vars) = environ(d.port("clean"));
    assert_eq!(
        vars.get("APP_VAR").map(String::as_str),
        Some("yes"),
        "{body}"
    );
    for gone in ["HERD_TEST_SECRET", "PATH", "HOME"] {
        assert!(
            !vars.contains_key(gone),
            "{gone} reached the worker:\n{body}"
        );
    }
    let stray: Vec<&String> = vars
        .keys()
        .filter(|k| !contract(k) && *k != "APP_VAR")
        .collect();
    assert!(
        stray.is_empty(),
        "not the app's nor the contract's: {stray:?}\n{body}"
    );

    let shown = d.ok(&["env", "clean"]).stdout;
    assert_eq!(shown, body, "herd env shows what the worker has");
}

/// `--filter-env PREFIX` (repeatable) under `herd run`: exactly the variables of herd's
/// environment with those prefixes are gone; everything else is inherited as it was.
#[test]
fn filter_env_prefixes_drop_only_those_variables() {
    let mut cmd = Command::new(herd_bin());
    cmd.args([
        "run",
        "-i",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--filter-env",
        "HERD_TEST_SECRET_",
        "--filter-env",
        "AWS_",
        "--",
        worker_bin(),
    ])
    .env("HERD_TEST_SECRET_TOKEN", "x")
    .env("AWS_SECRET_ACCESS_KEY", "y")
    .env("HERD_TEST_SECRETARY", "kept: no underscore after SECRET")
    .env("HERD_TEST_KEPT", "kept");
    let herd_env: HashMap<String, String> = std::env::vars()
        .chain(
            cmd.get_envs()
                .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v?.to_str()?.to_string()))),
        )
        .collect();
    let herd = Herd::spawn(cmd, false, true);
    herd.wait_ready(1);
    let (body, vars) = environ(herd.port());
    for gone in ["HERD_TEST_SECRET_TOKEN", "AWS_SECRET_ACCESS_KEY"] {
        assert!(
            !vars.contains_key(gone),
            "{gone} reached the worker:\n{body}"
        );
    }
    // Everything else of herd's environment, unchanged (the contract's own are herd's).
    for (k, v) in &herd_env {
        if k.starts_with("HERD_TEST_SECRET_") || k.starts_with("AWS_") || contract(k) {
            continue;
        }
        assert_eq!(vars.get(k), Some(v), "{k} of herd's environment:\n{body}");
    }
    assert_eq!(
        vars["HERD_TEST_SECRETARY"],
        "kept: no underscore after SECRET"
    );
    let stray: Vec<&String> = vars
        .keys()
        .filter(|k| !contract(k) && !herd_env.contains_key(*k))
        .collect();
    assert!(stray.is_empty(), "from nowhere: {stray:?}\n{body}");
}

/// `--filter-env-all` under `herd run`: the worker gets no PATH, yet herd finds the
/// program by name in its own PATH.
#[test]
fn filter_env_all_still_finds_the_program_in_herds_path() {
    let dir = std::path::Path::new(worker_bin()).parent().unwrap();
    let path = format!("{}:/usr/bin:/bin", dir.display());
    let mut cmd = Command::new(herd_bin());
    cmd.args([
        "run",
        "-i",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--filter-env-all",
        "--",
        "herd-testworker",
    ])
    .env("PATH", &path)
    .env("HERD_TEST_SECRET", "x");
    let herd = Herd::spawn(cmd, false, true);
    herd.wait_ready(1);
    let (body, vars) = environ(herd.port());
    let stray: Vec<&String> = vars.keys().filter(|k| !contract(k)).collect();
    assert!(stray.is_empty(), "{stray:?}\n{body}");
    assert!(
        vars.contains_key("HERD_WORKER_ID") && vars.contains_key("LISTEN_FDS"),
        "{body}"
    );
}

/// `herd env`: slot by slot, as JSON, and a clear error for an unknown app or slot.
#[test]
fn herd_env_shows_a_slot_or_says_what_is_missing() {
    let d = Daemon::new();
    let file = d.file(
        "herd.toml",
        &testworker_app("two", 2, "env = { GREETING = \"hello world\" }"),
    );
    d.ok(&["start", file.to_str().unwrap()]);
    let pids = d.wait_online("two", 2);

    let one = d.ok(&["env", "two", "1", "--json"]).stdout;
    let doc: serde_json::Value =
        serde_json::from_str(&one).unwrap_or_else(|e| panic!("{e}: {one}"));
    assert_eq!(doc["app"], "two");
    assert_eq!(doc["slot"], 1);
    let pid = doc["pid"].as_u64().unwrap() as u32;
    assert!(pids.contains(&pid), "{pid} of {pids:?}");
    assert_eq!(doc["env"]["HERD_WORKER_ID"], "1");
    assert_eq!(doc["env"]["LISTEN_PID"], pid.to_string());
    assert_eq!(doc["env"]["GREETING"], "hello world");

    let text = d.ok(&["env", "two"]).stdout;
    let lines: Vec<&str> = text.lines().collect();
    let mut sorted = lines.clone();
    sorted.sort_by_key(|l| l.split_once('=').map_or(*l, |(k, _)| k));
    assert_eq!(lines, sorted, "KEY=VALUE lines sorted by name");
    assert!(lines.contains(&"HERD_WORKER_ID=0"), "{text}");
    assert!(lines.contains(&"GREETING=hello world"), "{text}");

    let r = d.refused(&["env", "nope"]);
    assert!(r.stderr.contains("no app `nope`"), "{r}");
    let r = d.refused(&["env", "two", "5"]);
    assert!(
        r.stderr
            .contains("two: it has no slot 5: its slots are 0-1"),
        "{r}"
    );
    d.ok(&["stop", "two"]);
    let r = d.refused(&["env", "two"]);
    assert!(r.stderr.contains("two: not running"), "{r}");
}
