//! Ecosystem files end to end, from the fixtures in tests/fixtures/pm2/: JSON, YAML, and
//! JavaScript evaluated by the real node (skipped, with a note, where node is missing).

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::*;
use crate::config::file::{parse, to_toml};
use crate::config::Instances;
use crate::output::LogFormat;
use crate::supervisor::Readiness;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pm2")
}

fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

fn ok(name: &str, profile: Option<&str>) -> Ecosystem {
    load(&fixture(name), profile).unwrap_or_else(|e| panic!("{e}"))
}

fn err(name: &str) -> String {
    match load(&fixture(name), None) {
        Ok(eco) => panic!("expected an error, got {eco:?}"),
        Err(e) => e.to_string(),
    }
}

/// False, with a note, when node is not installed: the JavaScript tests then skip.
fn have_node() -> bool {
    let found = node::find_in_path("node").is_some();
    if !found {
        eprintln!("note: node is not in PATH: skipping the JavaScript ecosystem test");
    }
    found
}

/// The apps survive `to_toml` and `parse` unchanged.
fn round_trips(eco: &Ecosystem) {
    let text = to_toml(&eco.apps);
    let back = parse(&text, "imported.toml", None).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back.apps, eco.apps, "\n{text}");
}

fn has_warning(eco: &Ecosystem, needle: &str) {
    assert!(
        eco.warnings.iter().any(|w| w.contains(needle)),
        "no warning with {needle:?} in {:#?}",
        eco.warnings
    );
}

fn from_json(text: &str) -> Result<Ecosystem, EcosystemError> {
    let value = parse_json(text, "eco.json")?;
    from_value(&value, "eco.json", Path::new("/srv/app"), None)
}

fn json_err(text: &str) -> String {
    match from_json(text) {
        Ok(eco) => panic!("expected an error, got {eco:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_article_file_evaluated_by_node() {
    if !have_node() {
        return;
    }
    let eco = ok("ecosystem.config.js", Some("production"));
    let dir = std::fs::canonicalize(fixtures()).unwrap();
    let api = &eco.apps["api"];
    let expected = AppConfig {
        program: "node".into(),
        args: vec!["./server.js".into()],
        cwd: Some(dir),
        env: [("NODE_ENV".to_string(), "production".to_string())].into(),
        instances: Some(Instances::Max),
        max_memory_restart: Some(crate::config::MaxMemory::Size(1 << 30)),
        ready: Some(Readiness::Message),
        listen_timeout: Some(Duration::from_secs(10)),
        kill_timeout: Some(Duration::from_secs(5)),
        ..AppConfig::default()
    };
    assert_eq!(api, &expected);
    has_warning(&eco, "ecosystem.config.js: app apps[0] (api): `wait_ready`: a worker that does not send \"ready\"");
    round_trips(&eco);
    // Without --env, the development env, and a note that env_production was not applied.
    let dev = ok("ecosystem.config.js", None);
    assert_eq!(dev.apps["api"].env["NODE_ENV"], "development");
    has_warning(&dev, "`env_production` applied only with --env production");
    // Kept for `herd import`, which writes it as an `env_production` table.
    assert_eq!(
        dev.apps["api"].profiles["production"]["NODE_ENV"],
        "production"
    );
    round_trips(&dev);
}

#[test]
fn json_maps_every_option() {
    let eco = ok("ecosystem.json", Some("production"));
    let dir = std::fs::canonicalize(fixtures()).unwrap();
    let web = &eco.apps["web"];
    let expected = AppConfig {
        program: "node".into(),
        args: vec![
            "--max-old-space-size=512".into(),
            "server.js".into(),
            "--color".into(),
            "--verbose".into(),
        ],
        cwd: Some(dir.clone()),
        env: [
            ("NODE_ENV", "production"),
            ("WORKERS", "4"),
            ("DEBUG", "false"),
            ("BASE_PORT", "9000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        instances: Some(Instances::MaxMinus(1)),
        port: Some(8080),
        instance_var: Some("INSTANCE_ID".into()),
        increment_var: Some("BASE_PORT".into()),
        max_memory_restart: Some(crate::config::MaxMemory::Size(300 << 20)),
        listen_timeout: Some(Duration::from_secs(8)),
        kill_timeout: Some(Duration::from_millis(1600)),
        stop_message: Some(true),
        // exp_backoff_restart_delay: 100
        restart_backoff: Some(Duration::from_millis(100)),
        max_restarts: Some(10),
        min_uptime: Some(Duration::from_secs(5)),
        autorestart: Some(true),
        stop_exit_codes: vec![0],
        out_file: Some(dir.join("logs/web.out.log")),
        error_file: Some(dir.join("logs/web.err.log")),
        merge_logs: Some(true),
        log_date_format: Some("YYYY-MM-DD HH:mm Z".into()),
        namespace: Some("frontend".into()),
        stop_signal: Some(Signal::SIGINT),
        watch: vec![".".into()],
        ignore_watch: vec!["node_modules".parse().unwrap(), "*.log".parse().unwrap()],
        watch_delay: Some(Duration::from_millis(1500)),
        ..AppConfig::default()
    };
    assert_eq!(web, &expected);

    let jobs = &eco.apps["jobs"];
    assert_eq!(jobs.program, "python3");
    assert_eq!(jobs.args, ["worker.py"]);
    assert_eq!(jobs.instances, Some(Instances::Count(1)));
    assert_eq!(jobs.restart_delay, Some(Duration::from_secs(3)));
    assert_eq!(jobs.restart_delay_max, Some(Duration::from_secs(3)));
    assert_eq!(jobs.autorestart, Some(false));
    // herd keeps SIGTERM (its default) unless the file sets kill_signal.
    assert_eq!(jobs.stop_signal, None);
    // cron_restart is a rolling reload at those times; filter_env keeps its prefixes.
    assert_eq!(jobs.cron_restart, Some("0 * * * *".parse().unwrap()));
    assert_eq!(
        jobs.filter_env,
        Some(crate::config::FilterEnv::Prefixes(vec![
            "SECRET_".into(),
            "AWS_".into()
        ]))
    );
    assert!(
        !eco.warnings
            .iter()
            .any(|w| w.contains("cron_restart") || w.contains("filter_env")),
        "{:?}",
        eco.warnings
    );

    // No name: the script's file stem; interpreter none runs the script itself.
    let env = &eco.apps["env"];
    assert_eq!(env.program, "/usr/bin/env");
    assert_eq!(env.args, ["sleep", "1000"]);

    for needle in [
        "ecosystem.json: app apps[0] (web): `watch_options`: not supported by herd, ignored",
        "app apps[0] (web): `vizion`: not supported",
        "app apps[0] (web): `instanse`: unknown PM2 option, ignored — did you mean `instances`?",
        "ecosystem.json: `deploy`: herd does not deploy",
    ] {
        has_warning(&eco, needle);
    }
    round_trips(&eco);
}

#[test]
fn yaml() {
    let eco = ok("ecosystem.yaml", None);
    let api = &eco.apps["api"];
    assert_eq!(api.program, "node");
    assert_eq!(api.instances, Some(Instances::Count(2)));
    assert_eq!(api.env["PORT"], "3000");
    assert_eq!(
        api.max_memory_restart,
        Some(crate::config::MaxMemory::Size(200 << 20))
    );
    assert_eq!(api.listen_timeout, Some(Duration::from_secs(3)));
    assert_eq!(api.restart_delay, Some(Duration::from_millis(250)));
    assert_eq!(api.restart_delay_max, Some(Duration::from_millis(250)));
    round_trips(&eco);
    let e = parse_yaml("apps:\n  - name: [\n", "eco.yaml").unwrap_err();
    assert!(e.to_string().starts_with("eco.yaml:"), "{e}");
}

#[test]
fn es_modules_and_other_shapes() {
    if !have_node() {
        return;
    }
    // .js in a "type": "module" package: require() fails, import() reads it.
    let esm = ok("esm/ecosystem.config.js", None);
    assert_eq!(esm.apps["esm-api"].instances, Some(Instances::Count(2)));
    // .mjs with output on stdout and an app without a name.
    let mjs = ok("ecosystem.config.mjs", None);
    assert_eq!(mjs.apps["server"].program, "node");
    assert_eq!(mjs.apps["server"].instances, Some(Instances::Count(1)));
    // One app exported alone.
    let single = ok("single.config.cjs", None);
    assert_eq!(single.apps["solo"].instances, Some(Instances::Count(3)));
}

#[test]
fn node_errors_say_what_happened() {
    if !have_node() {
        return;
    }
    let e = err("throws.config.js");
    assert!(
        e.starts_with(&format!(
            "{}: node could not evaluate it",
            fixture("throws.config.js").display()
        )),
        "{e}"
    );
    assert!(e.contains("no DATABASE_URL in this environment"), "{e}");
    let path = fixture("hangs.config.js");
    let e = node::evaluate_within(&path, "hangs.config.js", Duration::from_millis(300))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "hangs.config.js: node did not finish evaluating it within 300ms: does it wait for \
         something (a connection, input)?"
    );
}

#[test]
fn syntax_errors_have_a_position() {
    let e = err("bad.json");
    assert!(
        e.starts_with(&format!(
            "{}:3:45: trailing comma",
            fixture("bad.json").display()
        )),
        "{e}"
    );
}

#[test]
fn value_errors_name_file_app_and_key() {
    let cases = [
        (r#"{"apps": [{"name": "api"}]}"#, "eco.json: app apps[0] (api): `script`: missing: the program to run, e.g. `script: \"./server.js\"`"),
        (r#"[{"script": "a.js", "instances": "many"}]"#, "eco.json: app apps[0]: `instances`: `many` is not a number of instances: expected N, max or -K"),
        (r#"[{"script": "a.js"}, {"name": "b", "script": "b.js", "max_memory_restart": "1X"}]"#, "eco.json: app apps[1] (b): `max_memory_restart`: `1X` is not a size: expected bytes or a number with K, M, G or T (binary: 1K = 1024), e.g. 200M, 1G, or a share of the container memory limit, e.g. 40%"),
        (r#"[{"script": "a.js", "exec_mode": "thread"}]"#, "eco.json: app apps[0]: `exec_mode`: `thread`: expected \"cluster\" or \"fork\""),
        (r#"[{"script": "a.js", "kill_timeout": -5}]"#, "eco.json: app apps[0]: `kill_timeout`: -5: expected milliseconds or e.g. \"5s\""),
        (r#"[{"script": "a.js", "port": 70000}]"#, "eco.json: app apps[0]: `port`: 70000: expected a port number, 0-65535"),
        (r#"[{"script": "a.js", "env": {"A": {"b": 1}}}]"#, "eco.json: app apps[0]: `env.A`: {\"b\":1}: expected a string, a number or a boolean"),
        (r#"[{"script": "a.js", "kill_signal": "SIGNOPE"}]"#, "eco.json: app apps[0]: `kill_signal`: `SIGNOPE` is not a signal: expected a name such as SIGTERM, INT, QUIT or a number"),
        (r#"[{"script": "a.js", "wait_ready": "yes"}]"#, "eco.json: app apps[0]: `wait_ready`: \"yes\": expected true or false"),
        (r#"[{"script": "a.js", "increment_var": "PORT", "env": {"PORT": "http"}}]"#, "eco.json: app apps[0]: `increment_var`: `env.PORT` = \"http\" is not a number to increment"),
        (r#"{"apps": []}"#, "eco.json: no apps: add one to `apps` with a `script`"),
        (r#"{"apps": 3}"#, "eco.json: `apps` is not an array: expected `{ apps: [ { script: \"…\" } ] }`, an array of apps or one app"),
        (r#""server.js""#, "eco.json: expected `{ apps: [ { script: \"…\" } ] }`, an array of apps or one app"),
        (r#"[3]"#, "eco.json: apps[0] is not an object: expected { script: \"…\", … }"),
        (r#"[{"script": "a.js", "cron_restart": "0 3 * *"}]"#, "eco.json: app apps[0]: `cron_restart`: `0 3 * *` is not a schedule: Invalid pattern: Pattern must have between 5 and 7 fields.; expected a cron expression of 5 fields (minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\"), or 6 with seconds first"),
        (r#"[{"script": "a.js", "cron": 5}]"#, "eco.json: app apps[0]: `cron`: 5: expected a cron expression, e.g. \"0 3 * * *\""),
        (r#"[{"script": "a.js", "filter_env": [1]}]"#, "eco.json: app apps[0]: `filter_env`: 1: expected a string"),
        (r#"[{"script": "a.js", "filter_env": 1}]"#, "eco.json: app apps[0]: `filter_env`: 1: expected true, false or prefixes of variable names"),
    ];
    for (text, message) in cases {
        assert_eq!(json_err(text), message, "{text}");
    }
}

#[test]
fn pm2_units_and_loose_types() {
    let eco = from_json(
        r#"[{"script": "a.js", "instances": "0", "kill_timeout": "3000", "min_uptime": "1m",
             "listen_timeout": 1500.0, "max_memory_restart": 1048576, "port": "3000",
             "stop_exit_codes": 2, "uid": 1000, "gid": "www", "args": [1, true, "x y"],
             "interpreter_args": "--inspect --trace-warnings", "log_type": "json",
             "exp_backoff_restart_delay": 20000, "restart_delay": 10,
             "log_file": "all.log", "combine_logs": "true"}]"#,
    )
    .unwrap();
    let a = &eco.apps["a"];
    assert_eq!(a.instances, Some(Instances::Max));
    assert_eq!(a.kill_timeout, Some(Duration::from_secs(3)));
    assert_eq!(a.min_uptime, Some(Duration::from_secs(60)));
    assert_eq!(a.listen_timeout, Some(Duration::from_millis(1500)));
    assert_eq!(
        a.max_memory_restart,
        Some(crate::config::MaxMemory::Size(1 << 20))
    );
    assert_eq!(a.port, Some(3000));
    // herd's share of the container's memory limit passes through an ecosystem file too.
    let share = from_json(r#"[{"script": "a.js", "max_memory_restart": "40%"}]"#).unwrap();
    assert_eq!(
        share.apps["a"].max_memory_restart,
        Some(crate::config::MaxMemory::Share("40%".parse().unwrap()))
    );
    assert_eq!(a.stop_exit_codes, [2]);
    assert_eq!(a.user.as_deref(), Some("1000"));
    assert_eq!(a.group.as_deref(), Some("www"));
    assert_eq!(
        a.args,
        ["--inspect", "--trace-warnings", "a.js", "1", "true", "x y"]
    );
    assert_eq!(a.log_format, Some(LogFormat::Json));
    assert_eq!(a.log_file, Some(PathBuf::from("/srv/app/all.log")));
    assert_eq!(a.merge_logs, Some(true));
    assert_eq!(a.cwd, Some(PathBuf::from("/srv/app")));
    // The exponential backoff wins; a first delay past herd's default cap raises the cap.
    // It is herd's `restart_backoff`, not `restart_delay`: PM2 resets it after a stable
    // run, so a stable worker is still restarted at once.
    assert_eq!(a.restart_delay, None);
    assert_eq!(a.restart_backoff, Some(Duration::from_secs(20)));
    assert_eq!(a.restart_delay_max, Some(Duration::from_secs(20)));
    has_warning(
        &eco,
        "`restart_delay`: ignored: exp_backoff_restart_delay takes precedence",
    );
    round_trips(&eco);
}

#[test]
fn cron_restart_and_filter_env_in_pm2_forms() {
    let eco = from_json(
        r#"[{"name": "a", "script": "a.js", "cron": "*/10 * * * * *", "filter_env": true},
            {"name": "b", "script": "b.js", "cron_restart": 0, "filter_env": "npm_"},
            {"name": "c", "script": "c.js", "cron_restart": "0", "filter_env": false}]"#,
    )
    .unwrap();
    let (a, b, c) = (&eco.apps["a"], &eco.apps["b"], &eco.apps["c"]);
    assert_eq!(a.cron_restart, Some("*/10 * * * * *".parse().unwrap()));
    assert_eq!(a.filter_env, Some(crate::config::FilterEnv::All));
    // 0 turns cron_restart off, as in PM2.
    assert_eq!(
        (b.cron_restart.clone(), c.cron_restart.clone()),
        (None, None)
    );
    assert_eq!(
        b.filter_env,
        Some(crate::config::FilterEnv::Prefixes(vec!["npm_".into()]))
    );
    assert_eq!(c.filter_env, None);
    round_trips(&eco);
}

#[test]
fn interpreters_by_extension() {
    let eco = from_json(
        r#"[{"name": "sh", "script": "run.sh"}, {"name": "rb", "script": "app.rb"},
            {"name": "bin", "script": "./bin/server", "args": "--port 1"},
            {"name": "npm", "script": "npm", "args": "start"},
            {"name": "custom", "script": "app.js", "interpreter": "/opt/node22/bin/node"},
            {"name": "ts", "script": "src/main.ts"}]"#,
    )
    .unwrap();
    let cmd = |n: &str| {
        let a = &eco.apps[n];
        let mut words = vec![a.program.clone()];
        words.extend(a.args.iter().cloned());
        words
    };
    assert_eq!(cmd("sh"), ["bash", "run.sh"]);
    assert_eq!(cmd("rb"), ["ruby", "app.rb"]);
    assert_eq!(cmd("bin"), ["/srv/app/bin/server", "--port", "1"]);
    assert_eq!(cmd("npm"), ["npm", "start"]);
    assert_eq!(cmd("custom"), ["/opt/node22/bin/node", "app.js"]);
    assert_eq!(cmd("ts"), ["bun", "src/main.ts"]);
    has_warning(
        &eco,
        "app apps[0] (sh): `script`: `run.sh` does not exist in /srv/app",
    );
}

#[test]
fn names_become_herd_names() {
    let eco = from_json(
        r#"[{"name": "api.v2", "script": "a.js"}, {"name": "all", "script": "b.js"},
            {"name": "api-v2", "script": "c.js"}]"#,
    )
    .unwrap();
    let names: Vec<&String> = eco.apps.keys().collect();
    assert_eq!(names, ["all-app", "api-v2", "api-v2-2"]);
    has_warning(&eco, "app apps[0] (api.v2): `name`: `api.v2`: herd app names are letters, digits, `-` and `_`: imported as `api-v2`");
    has_warning(
        &eco,
        "app apps[1] (all): `name`: `all`: `all` selects every app",
    );
    has_warning(
        &eco,
        "app apps[2] (api-v2): `name`: `api-v2` is already taken: imported as `api-v2-2`",
    );
}

#[test]
fn profiles() {
    let text = r#"[{"script": "a.js", "env": {"A": "1", "B": "1"}, "env_prod": {"A": "2"}}]"#;
    let value = parse_json(text, "eco.json").unwrap();
    let prod = from_value(&value, "eco.json", Path::new("/"), Some("prod")).unwrap();
    assert_eq!(prod.apps["a"].env["A"], "2");
    assert_eq!(prod.apps["a"].env["B"], "1");
    let e = from_value(&value, "eco.json", Path::new("/"), Some("staging")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "eco.json: unknown profile `staging`: no app has an `env_staging` object (defined: prod)"
    );
}

#[test]
fn fork_mode_defaults_to_one_instance() {
    let eco = from_json(
        r#"[{"name": "one", "script": "a.js", "exec_mode": "fork"},
            {"name": "many", "script": "a.js", "exec_mode": "fork", "instances": 4},
            {"name": "cluster", "script": "a.js", "exec_mode": "cluster"}]"#,
    )
    .unwrap();
    assert_eq!(eco.apps["one"].instances, Some(Instances::Count(1)));
    assert_eq!(eco.apps["many"].instances, Some(Instances::Count(4)));
    assert_eq!(eco.apps["cluster"].instances, Some(Instances::Count(1)));
    has_warning(
        &eco,
        "app apps[1] (many): `exec_mode`: fork with instances 4",
    );
}

/// PM2's watch options: `watch: false` and an `ignore_watch` without a watch are taken
/// silently; a RegExp (which reaches herd as `{}`) is left out with a warning; a glob
/// that cannot be read is an error naming the key.
#[test]
fn watch_options() {
    let eco = from_json(
        r#"[{"name": "off", "script": "a.js", "watch": false, "ignore_watch": ["node_modules", "logs"]},
            {"name": "one", "script": "a.js", "watch": "src", "watch_delay": "2s"},
            {"name": "many", "script": "a.js", "watch": ["src", "config"], "ignore_watch": "*.log", "watch_delay": 250},
            {"name": "cwd", "script": "a.js", "watch": "true", "ignore_watch": [{}, "tmp/**"]},
            {"name": "empty", "script": "a.js", "watch": []}]"#,
    )
    .unwrap();
    let off = &eco.apps["off"];
    assert!(off.watch.is_empty());
    assert_eq!(off.ignore_watch.len(), 2);
    assert_eq!(eco.apps["one"].watch, [PathBuf::from("src")]);
    assert_eq!(eco.apps["one"].watch_delay, Some(Duration::from_secs(2)));
    let many = &eco.apps["many"];
    assert_eq!(many.watch, [PathBuf::from("src"), PathBuf::from("config")]);
    assert_eq!(many.ignore_watch, ["*.log".parse().unwrap()]);
    assert_eq!(many.watch_delay, Some(Duration::from_millis(250)));
    assert_eq!(eco.apps["cwd"].watch, [PathBuf::from(".")]);
    assert_eq!(eco.apps["cwd"].ignore_watch, ["tmp/**".parse().unwrap()]);
    assert_eq!(eco.apps["empty"].watch, [PathBuf::from(".")]);
    let about_watch: Vec<&String> = eco
        .warnings
        .iter()
        .filter(|w| w.contains("watch"))
        .collect();
    assert_eq!(about_watch.len(), 1, "{:#?}", eco.warnings);
    has_warning(
        &eco,
        "app apps[3] (cwd): `ignore_watch`: {}: not a glob (a RegExp?)",
    );
    round_trips(&eco);
    assert!(to_toml(&eco.apps).contains("watch = true\n"));

    assert_eq!(
        json_err(r#"[{"script": "a.js", "ignore_watch": ["a**"]}]"#),
        "eco.json: app apps[0]: `ignore_watch`: `a**` is not a glob: recursive wildcards must form a single path component"
    );
    assert_eq!(
        json_err(r#"[{"script": "a.js", "watch": 3}]"#),
        "eco.json: app apps[0]: `watch`: 3: expected true, false or paths"
    );
    let e = json_err(r#"[{"script": "a.js", "watch": true, "watch_delay": "soon"}]"#);
    assert!(
        e.starts_with("eco.json: app apps[0]: `watch_delay`: `soon` is not a duration"),
        "{e}"
    );
}
