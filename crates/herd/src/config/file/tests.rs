//! herd.toml end to end through [`parse`]: a full file, each kind of error with its exact
//! message, profiles.

use std::collections::BTreeMap;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::*;
use crate::config::flags::ProxyProtocol;
use crate::config::Instances;
use crate::listen::{Balance, ListenAddr};
use crate::output::LogFormat;
use crate::supervisor::Readiness;

fn ok(text: &str) -> HerdFile {
    parse(text, "herd.toml", None).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> String {
    match parse(text, "herd.toml", None) {
        Ok(file) => panic!("expected an error, got {file:?}"),
        Err(e) => e.to_string(),
    }
}

const FULL: &str = r#"
[apps.api]
command = ["node", "server.js"]
args = ["--verbose"]
cwd = "/srv/api"
env = { NODE_ENV = "development", PORT = 3000, DEBUG = true }
instances = "max"
port = 3000
listen = ["127.0.0.1:4000", "[::1]:4001"]
balance = "round-robin"
proxy = true
proxy_protocol = "v2"
ready = "delay:250ms"
listen_timeout = "8s"
kill_timeout = "10s"
stop_signal = "SIGINT"
stop_message = true
min_uptime = "1s"
max_restarts = 16
restart_window = "1m"
restart_delay = "100ms"
restart_backoff = "250ms"
restart_delay_max = "30s"
reload_parallel = 2
max_memory_restart = "1G"
user = "www-data"
group = "www-data"
log_format = "json"
sticky_wait = "1500ms"
admin = "127.0.0.1:9100"
min_ready = "all"
shutdown_delay = "5s"
health_check = "http://api.local/healthz"
health_interval = "5s"
health_timeout = "1s"
health_failures = 2
health_start_period = "30s"
watchdog = "10s"
worker_metrics = "/metrics"
cron_restart = "0 3 * * *"
filter_env = ["SECRET_", "AWS_"]
watch = ["src", "config"]
ignore_watch = ["*.log", "tmp/**"]
watch_delay = "500ms"
node_cluster = false
node_drain = false
namespace = "web"
autorestart = true
stop_exit_codes = [0, 3]
instance_var = "INSTANCE_ID"
increment_var = "PORT"
out_file = "/var/log/api.out"
error_file = "/var/log/api.err"
log_file = "/var/log/api.log"
merge_logs = true
log_date_format = "YYYY-MM-DD HH:mm:ss"
log_max_size = "10M"
log_files = 5

[apps.api.env_production]
NODE_ENV = "production"

[apps.worker]
command = "python3 -m worker --queue jobs"
instances = -1
"#;

#[test]
fn a_full_file() {
    let file = ok(FULL);
    assert_eq!(file.apps.len(), 2);
    let api = &file.apps["api"];
    let expected = AppConfig {
        program: "node".into(),
        args: vec!["server.js".into(), "--verbose".into()],
        cwd: Some("/srv/api".into()),
        env: [
            ("DEBUG", "true"),
            ("NODE_ENV", "development"),
            ("PORT", "3000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        profiles: [(
            "production".to_string(),
            [("NODE_ENV".to_string(), "production".to_string())].into(),
        )]
        .into(),
        instances: Some(Instances::Max),
        port: Some(3000),
        listen: vec![
            ListenAddr::Tcp("127.0.0.1:4000".parse().unwrap()),
            ListenAddr::Tcp("[::1]:4001".parse().unwrap()),
        ],
        balance: Some(Balance::RoundRobin),
        proxy: Some(true),
        proxy_protocol: Some(ProxyProtocol::V2),
        ready: Some(Readiness::Delay(Duration::from_millis(250))),
        listen_timeout: Some(Duration::from_secs(8)),
        kill_timeout: Some(Duration::from_secs(10)),
        stop_signal: Some(Signal::SIGINT),
        stop_message: Some(true),
        min_uptime: Some(Duration::from_secs(1)),
        max_restarts: Some(16),
        restart_window: Some(Duration::from_secs(60)),
        restart_delay: Some(Duration::from_millis(100)),
        restart_backoff: Some(Duration::from_millis(250)),
        restart_delay_max: Some(Duration::from_secs(30)),
        reload_parallel: Some(2),
        max_memory_restart: Some(crate::config::MaxMemory::Size(1 << 30)),
        user: Some("www-data".into()),
        group: Some("www-data".into()),
        log_format: Some(LogFormat::Json),
        sticky_wait: Some(Duration::from_millis(1500)),
        admin: Some(ListenAddr::Tcp("127.0.0.1:9100".parse().unwrap())),
        min_ready: Some(crate::config::settings::MinReady::All),
        shutdown_delay: Some(Duration::from_secs(5)),
        health_check: Some("http://api.local/healthz".parse().unwrap()),
        health_interval: Some(Duration::from_secs(5)),
        health_timeout: Some(Duration::from_secs(1)),
        health_failures: Some(2),
        health_start_period: Some(Duration::from_secs(30)),
        watchdog: Some(Duration::from_secs(10)),
        worker_metrics: Some("/metrics".into()),
        cron_restart: Some("0 3 * * *".parse().unwrap()),
        filter_env: Some(crate::config::FilterEnv::Prefixes(vec![
            "SECRET_".into(),
            "AWS_".into(),
        ])),
        watch: vec!["src".into(), "config".into()],
        ignore_watch: vec!["*.log".parse().unwrap(), "tmp/**".parse().unwrap()],
        watch_delay: Some(Duration::from_millis(500)),
        node_cluster: Some(false),
        node_drain: Some(false),
        namespace: Some("web".into()),
        autorestart: Some(true),
        stop_exit_codes: vec![0, 3],
        instance_var: Some("INSTANCE_ID".into()),
        increment_var: Some("PORT".into()),
        out_file: Some("/var/log/api.out".into()),
        error_file: Some("/var/log/api.err".into()),
        log_file: Some("/var/log/api.log".into()),
        merge_logs: Some(true),
        log_date_format: Some("YYYY-MM-DD HH:mm:ss".into()),
        log_max_size: Some(10 << 20),
        log_files: Some(5),
    };
    assert_eq!(api, &expected);
    let worker = &file.apps["worker"];
    assert_eq!(worker.program, "python3");
    assert_eq!(worker.args, ["-m", "worker", "--queue", "jobs"]);
    assert_eq!(worker.instances, Some(Instances::MaxMinus(1)));
    assert_eq!(worker.kill_timeout, None);
    assert!(worker.env.is_empty());
    assert!(worker.stop_exit_codes.is_empty());
    assert_eq!(worker.log_files, None);
}

#[test]
fn every_known_key_is_in_the_full_file() {
    for key in raw::APP_KEYS {
        assert!(FULL.contains(&format!("\n{key} = ")), "{key}");
    }
}

#[test]
fn a_profile_is_merged_over_env() {
    let file = parse(FULL, "herd.toml", Some("production")).unwrap();
    let env = &file.apps["api"].env;
    assert_eq!(env["NODE_ENV"], "production");
    assert_eq!(env["PORT"], "3000");
    // An app without the profile keeps its env.
    assert!(file.apps["worker"].env.is_empty());
    // Applied, the profiles are gone from the definition.
    assert!(file.apps["api"].profiles.is_empty());
}

#[test]
fn without_a_profile_the_profiles_are_kept_and_written_back() {
    let file = parse(FULL, "herd.toml", None).unwrap();
    let api = &file.apps["api"];
    assert_ne!(api.env["NODE_ENV"], "production");
    assert_eq!(api.profiles["production"]["NODE_ENV"], "production");
    let text = to_toml(&file.apps);
    assert!(text.contains("\n[apps.api.env_production]\n"), "{text}");
    let back = parse(&text, "check.toml", None).unwrap();
    assert_eq!(back.apps, file.apps, "\n{text}");
    let prod = parse(&text, "check.toml", Some("production")).unwrap();
    assert_eq!(prod.apps["api"].env["NODE_ENV"], "production");
}

#[test]
fn redacting_hides_every_env_and_profile_value_and_keeps_the_rest() {
    let file = parse(FULL, "herd.toml", None).unwrap();
    let original = to_toml(&file.apps);
    let text = redact_env(&original);
    let mut want: toml::Table = original.parse().unwrap();
    let api = want["apps"]["api"].as_table_mut().unwrap();
    for table in ["env", "env_production"] {
        for (_, value) in api[table].as_table_mut().unwrap().iter_mut() {
            *value = toml::Value::String("(hidden)".into());
        }
    }
    let got: toml::Table = text.parse().unwrap();
    assert_eq!(
        got, want,
        "only the values of env and env_* change:\n{text}"
    );
    for secret in ["\"development\"", "\"production\"", "\"3000\""] {
        assert!(!text.contains(secret), "{secret} in\n{text}");
    }
    assert_eq!(
        redact_env("not = [toml"),
        write::HIDDEN,
        "unparsable text is hidden whole"
    );
}

#[test]
fn an_unknown_profile_is_an_error() {
    let e = parse(FULL, "herd.toml", Some("prod")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "herd.toml: unknown profile `prod`: no app has an `env_prod` table (defined: production)"
    );
}

#[test]
fn an_unknown_key_suggests_the_closest() {
    let text = "[apps.api]\ncommand = \"node\"\ninstance = 4\n";
    assert_eq!(
        err(text),
        "herd.toml:3:1: unknown key `apps.api.instance` — did you mean `instances`?"
    );
    assert_eq!(
        err("[app.api]\ncommand = \"x\"\n"),
        "herd.toml:1:2: unknown key `app` — did you mean `apps`?"
    );
    assert_eq!(
        err("[apps.api]\ncommand = \"x\"\nstop_exit_code = [1]\n"),
        "herd.toml:3:1: unknown key `apps.api.stop_exit_code` — did you mean `stop_exit_codes`?"
    );
    assert_eq!(
        err("[apps.api]\ncommand = \"x\"\nlog_max_sise = \"1M\"\n"),
        "herd.toml:3:1: unknown key `apps.api.log_max_sise` — did you mean `log_max_size`?"
    );
    assert_eq!(
        err("[apps.api]\ncommand = \"x\"\nnamspace = \"a\"\n"),
        "herd.toml:3:1: unknown key `apps.api.namspace` — did you mean `namespace`?"
    );
    assert_eq!(
        err("[apps.api]\ncommand = \"x\"\nfrobnicate = 1\n"),
        "herd.toml:3:1: unknown key `apps.api.frobnicate`"
    );
}

#[test]
fn a_bad_duration_names_key_value_and_form() {
    let e = err("[apps.api]\ncommand = \"node\"\nkill_timeout = \"ten\"\n");
    assert!(
        e.starts_with("herd.toml:3:16: `apps.api.kill_timeout = \"ten\"`: `ten` is not a duration"),
        "{e}"
    );
    assert!(e.ends_with("expected e.g. 500ms, 10s, 1m"), "{e}");
}

#[test]
fn a_bare_number_is_not_a_duration() {
    assert_eq!(
        err("[apps.api]\ncommand = \"node\"\nkill_timeout = 5000\n"),
        "herd.toml:3:16: `apps.api.kill_timeout = 5000`: a bare number is ambiguous (PM2 counts \
         milliseconds, herd's flags seconds): write the unit, e.g. \"10s\" or \"500ms\""
    );
}

#[test]
fn a_wrong_type_names_the_key() {
    assert_eq!(
        err("[apps.api]\ncommand = \"node\"\ncwd = 10\n"),
        "herd.toml:3:7: `apps.api.cwd = 10`: invalid type: integer `10`, expected a string"
    );
    assert_eq!(
        err("[apps.api]\ncommand = \"node\"\nproxy = \"yes\"\n"),
        "herd.toml:3:9: `apps.api.proxy = \"yes\"`: invalid type: string \"yes\", expected a boolean"
    );
}

#[test]
fn bad_values_name_the_expected_form() {
    let cases = [
        ("instances = \"many\"", "`apps.api.instances = \"many\"`: `many` is not a number of instances: expected N, max or -K"),
        ("port = 70000", "`apps.api.port = 70000`: expected a port number, 0-65535"),
        ("balance = \"random\"", "`apps.api.balance = \"random\"`: `random` is not a balance mode: expected one of reuseport, shared, round-robin, least-conn, sticky"),
        ("ready = \"soon\"", "`apps.api.ready = \"soon\"`: `soon` is not a readiness policy: expected auto, notify, message or delay:DURATION"),
        ("stop_signal = \"SIGNOPE\"", "`apps.api.stop_signal = \"SIGNOPE\"`: `SIGNOPE` is not a signal: expected a name such as SIGTERM, INT, QUIT or a number"),
        ("max_memory_restart = \"1X\"", "`apps.api.max_memory_restart = \"1X\"`: `1X` is not a size: expected bytes or a number with K, M, G or T (binary: 1K = 1024), e.g. 200M, 1G, or a share of the container memory limit, e.g. 40%"),
        ("max_memory_restart = \"140%\"", "`apps.api.max_memory_restart = \"140%\"`: `140%` is not a percentage: expected more than 0% and at most 100%, e.g. 40% or 12.5%"),
        ("reload_parallel = 0", "`apps.api.reload_parallel = 0`: expected a number ≥ 1"),
        ("max_restarts = -1", "`apps.api.max_restarts = -1`: expected a number ≥ 0"),
        ("proxy_protocol = \"v2\"", "`apps.api.proxy_protocol = \"v2\"`: needs `proxy = true`"),
        ("log_format = \"xml\"", "`apps.api.log_format = \"xml\"`: expected \"text\" or \"json\""),
        ("listen = [\"nowhere\"]", "`apps.api.listen = \"nowhere\"`: `nowhere` is not an address: expected host:port, [v6]:port or unix:/path"),
        ("env = { A = [1] }", "`apps.api.env.A = [1]`: expected a string, a number or a boolean"),
        ("sticky_wait = 2", "`apps.api.sticky_wait = 2`: a bare number is ambiguous (PM2 counts milliseconds, herd's flags seconds): write the unit, e.g. \"10s\" or \"500ms\""),
        ("node_cluster = \"no\"", "`apps.api.node_cluster = \"no\"`: invalid type: string \"no\", expected a boolean"),
        ("namespace = \" \"", "`apps.api.namespace = \" \"`: expected a name, e.g. \"web\""),
        ("stop_exit_codes = [\"1\"]", "`apps.api.stop_exit_codes = [\"1\"]`: expected exit codes, e.g. [0, 2]"),
        ("stop_exit_codes = [4294967296]", "`apps.api.stop_exit_codes = [4294967296]`: expected exit codes, e.g. [0, 2]"),
        ("instance_var = \"A=B\"", "`apps.api.instance_var = \"A=B\"`: expected an environment variable name, e.g. \"NODE_APP_INSTANCE\""),
        ("increment_var = \"\"", "`apps.api.increment_var = \"\"`: expected an environment variable name, e.g. \"NODE_APP_INSTANCE\""),
        ("out_file = \"\"", "`apps.api.out_file = \"\"`: expected a file path"),
        ("log_date_format = \"\"", "`apps.api.log_date_format = \"\"`: expected a format, e.g. \"YYYY-MM-DD HH:mm:ss\""),
        ("log_max_size = \"big\"", "`apps.api.log_max_size = \"big\"`: `big` is not a size: expected bytes or a number with K, M, G or T (binary: 1K = 1024), e.g. 200M, 1G"),
        ("log_files = 0", "`apps.api.log_files = 0`: expected a number ≥ 1"),
        ("cron_restart = \"0 3 * *\"", "`apps.api.cron_restart = \"0 3 * *\"`: `0 3 * *` is not a schedule: Invalid pattern: Pattern must have between 5 and 7 fields.; expected a cron expression of 5 fields (minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\"), or 6 with seconds first"),
        ("cron_restart = 3", "`apps.api.cron_restart = 3`: invalid type: integer `3`, expected a string"),
        ("filter_env = 1", "`apps.api.filter_env = 1`: expected true, false or prefixes of variable names, e.g. [\"SECRET_\"]"),
        ("filter_env = [\"\"]", "`apps.api.filter_env = [\"\"]`: expected the start of variable names, e.g. SECRET_ (an empty prefix would drop every variable: use filter_env = true)"),
        ("watch = 3", "`apps.api.watch = 3`: expected true, false or paths, e.g. [\"src\", \"config\"]"),
        ("watch = [\"src\", \"\"]", "`apps.api.watch = [\"src\", \"\"]`: expected true, false or paths, e.g. [\"src\", \"config\"]"),
        ("ignore_watch = [\"*.log\", \"a**\"]", "`apps.api.ignore_watch = [\"*.log\", \"a**\"]`: `a**` is not a glob: recursive wildcards must form a single path component"),
        ("ignore_watch = 1", "`apps.api.ignore_watch = 1`: expected globs, e.g. [\"*.log\", \"tmp/**\"]"),
        ("watch_delay = 1000", "`apps.api.watch_delay = 1000`: a bare number is ambiguous (PM2 counts milliseconds, herd's flags seconds): write the unit, e.g. \"10s\" or \"500ms\""),
        ("env_prod = \"x\"", "`apps.api.env_prod = \"x\"`: expected a table of variables, e.g. `{ NODE_ENV = \"production\" }`"),
    ];
    for (line, message) in cases {
        let e = err(&format!("[apps.api]\ncommand = \"node\"\n{line}\n"));
        assert!(e.starts_with("herd.toml:3:"), "{e}");
        assert!(e.ends_with(message), "{line}:\n{e}\n{message}");
    }
}

/// `watch = true` is the app's directory, written back as `true`; `false` watches nothing.
#[test]
fn watch_true_and_false() {
    let file = ok("[apps.a]\ncommand = \"x\"\nwatch = true\nignore_watch = \"dist\"\n");
    assert_eq!(file.apps["a"].watch, [std::path::PathBuf::from(".")]);
    assert_eq!(file.apps["a"].ignore_watch, ["dist".parse().unwrap()]);
    let text = to_toml(&file.apps);
    assert!(
        text.contains("\nwatch = true\nignore_watch = [\"dist\"]\n"),
        "{text}"
    );
    assert_eq!(parse(&text, "check.toml", None).unwrap().apps, file.apps);
    let off = ok("[apps.a]\ncommand = \"x\"\nwatch = false\n");
    assert!(off.apps["a"].watch.is_empty());
}

#[test]
fn filter_env_takes_true_false_a_prefix_or_prefixes() {
    use crate::config::FilterEnv;
    let filter = |line: &str| {
        ok(&format!("[apps.a]\ncommand = \"x\"\n{line}\n")).apps["a"]
            .filter_env
            .clone()
    };
    assert_eq!(filter("filter_env = true"), Some(FilterEnv::All));
    assert_eq!(filter("filter_env = false"), None);
    assert_eq!(filter("filter_env = []"), None);
    assert_eq!(
        filter("filter_env = \"npm_\""),
        Some(FilterEnv::Prefixes(vec!["npm_".into()]))
    );
    let all = AppConfig {
        program: "x".into(),
        filter_env: Some(FilterEnv::All),
        cron_restart: Some("*/5 * * * * *".parse().unwrap()),
        ..AppConfig::default()
    };
    let text = round_trip(&[("a".to_string(), all)].into());
    assert!(text.contains("\nfilter_env = true\n"), "{text}");
    assert!(
        text.contains("\ncron_restart = \"*/5 * * * * *\"\n"),
        "{text}"
    );
}

#[test]
fn a_bad_schedule_names_line_key_and_value() {
    let e = err("[apps.api]\ncommand = \"node\"\ncron_restart = \"61 * * * *\"\n");
    assert!(
        e.starts_with("herd.toml:3:16: `apps.api.cron_restart = \"61 * * * *\"`: `61 * * * *` is not a schedule: "),
        "{e}"
    );
}

#[test]
fn increment_var_needs_a_number_in_env() {
    let ok_file =
        ok("[apps.a]\ncommand = \"x\"\nincrement_var = \"PORT\"\nenv = { PORT = 3000 }\n");
    assert_eq!(ok_file.apps["a"].increment_var.as_deref(), Some("PORT"));
    // Absent from env: counts from 0, as in PM2.
    ok("[apps.a]\ncommand = \"x\"\nincrement_var = \"SHARD\"\n");
    assert_eq!(
        err("[apps.a]\ncommand = \"x\"\nincrement_var = \"PORT\"\nenv = { PORT = \"http\" }\n"),
        "herd.toml:3:17: `apps.a.increment_var = \"PORT\"`: `env.PORT = \"http\"` is not a number \
         to increment"
    );
}

/// Health settings that only fail together are named at the key to change, with its line,
/// as soon as the file is read (so `herd check` and `herd start` refuse it).
#[test]
fn health_keys_that_contradict_each_other_are_named_with_their_line() {
    let app = "[apps.a]\ncommand = \"x\"\nport = 3000\n";
    for (lines, at, message) in [
        (
            "health_check = \"http:/h\"\nhealth_interval = \"1s\"\nhealth_timeout = \"2s\"",
            "herd.toml:6:18: `apps.a.health_timeout = \"2s\"`",
            "--health-timeout (2s) must not exceed --health-interval (1s)",
        ),
        // The default timeout (2 s) is longer than this interval: the interval is named.
        (
            "health_check = \"http:/h\"\nhealth_interval = \"1s\"",
            "herd.toml:5:19: `apps.a.health_interval = \"1s\"`",
            "--health-timeout (2s) must not exceed --health-interval (1s)",
        ),
        (
            "health_start_period = \"5s\"",
            "herd.toml:4:23: `apps.a.health_start_period = \"5s\"`",
            "--health-start-period needs --health-check",
        ),
        (
            "watchdog = \"10ms\"",
            "herd.toml:4:12: `apps.a.watchdog = \"10ms\"`",
            "--watchdog 10ms is too short",
        ),
        (
            "health_check = \"http:/h\"\nbalance = \"shared\"",
            "herd.toml:4:16: `apps.a.health_check = \"http:/h\"`",
            "with --balance shared",
        ),
    ] {
        let e = err(&format!("{app}{lines}\n"));
        assert!(e.starts_with(at) && e.contains(message), "{lines}:\n{e}");
    }
    // Together they work; with --proxy any balance mode may check.
    ok(&format!(
        "{app}health_check = \"http:/h\"\nhealth_interval = \"3s\"\nwatchdog = \"1s\"\n"
    ));
    ok(&format!("{app}health_check = \"http:/h\"\nproxy = true\n"));
}

/// The other settings that only fail together (`herd start` and `herd run` refuse them)
/// are named the same way: `herd check` found them fine before.
#[test]
fn other_keys_that_contradict_each_other_are_named_with_their_line() {
    let app = "[apps.a]\ncommand = \"x\"\n";
    for (lines, at, message) in [
        (
            "port = 3000\nproxy = true\nbalance = \"reuseport\"",
            "herd.toml:5:11: `apps.a.balance = \"reuseport\"`",
            "cannot go with --balance reuseport",
        ),
        (
            "listen = [\"127.0.0.1:3001\", \"unix:/tmp/a.sock\"]\nproxy = true",
            "herd.toml:3:29: `apps.a.listen = \"unix:/tmp/a.sock\"`",
            "relays TCP connections only",
        ),
        (
            "port = 3000\nadmin = \"0.0.0.0:3000\"",
            "herd.toml:4:9: `apps.a.admin = \"0.0.0.0:3000\"`",
            "one of the app's own addresses",
        ),
        (
            "restart_delay_max = \"1s\"\nrestart_delay = \"5s\"",
            "herd.toml:4:17: `apps.a.restart_delay = \"5s\"`",
            "must not exceed --restart-delay-max (1s)",
        ),
    ] {
        let e = err(&format!("{app}{lines}\n"));
        assert!(e.starts_with(at) && e.contains(message), "{lines}:\n{e}");
    }
    ok(&format!(
        "{app}port = 3000\nproxy = true\nbalance = \"sticky\"\nadmin = \"127.0.0.1:9100\"\n"
    ));
}

#[test]
fn one_exit_code_alone() {
    let file = ok("[apps.a]\ncommand = \"x\"\nstop_exit_codes = 0\n");
    assert_eq!(file.apps["a"].stop_exit_codes, [0]);
}

#[test]
fn command_forms() {
    assert_eq!(
        err("[apps.api]\ninstances = 2\n"),
        "herd.toml:1:1: `apps.api.command` is missing: write `command = \"program arg\"` or \
         `command = [\"program\", \"arg\"]`"
    );
    assert!(err("[apps.api]\ncommand = \"\"\n").ends_with("the command is empty"));
    assert!(err("[apps.api]\ncommand = []\n").ends_with("the command is empty"));
    assert!(err("[apps.api]\ncommand = [\"node\", 1]\n").ends_with("expected an array of strings"));
    assert!(err("[apps.api]\ncommand = \"node 'my app.js'\"\n")
        .contains("quotes are not interpreted (there is no shell)"));
}

#[test]
fn app_names_are_plain_words() {
    assert_eq!(
        err("[apps.all]\ncommand = \"x\"\n"),
        "herd.toml:1:7: `apps.all = { … }`: `all` is reserved: it selects every app in commands"
    );
    assert!(err("[apps.\"my app\"]\ncommand = \"x\"\n")
        .ends_with("an app name is letters, digits, `-` and `_`"));
}

#[test]
fn no_apps_is_an_error() {
    let expected = "herd.toml: no apps: add an `[apps.<name>]` table with `command = \"...\"`";
    assert_eq!(err(""), expected);
    assert_eq!(err("# just a comment\n"), expected);
    assert_eq!(err("[apps]\n"), expected);
}

#[test]
fn a_syntax_error_has_a_position() {
    let e = err("[apps.api]\ncommand = \"node\nport = 1\n");
    assert!(e.starts_with("herd.toml:2:"), "{e}");
}

#[test]
fn durations_and_sizes_in_all_their_forms() {
    let file = ok(
        "[apps.a]\ncommand = \"x\"\nkill_timeout = \"1m30s\"\nmin_uptime = \"3s\"\n\
                   max_memory_restart = 4096\nstop_signal = 15\ninstances = 0\n",
    );
    let a = &file.apps["a"];
    assert_eq!(a.kill_timeout, Some(Duration::from_secs(90)));
    assert_eq!(a.min_uptime, Some(Duration::from_secs(3)));
    assert_eq!(
        a.max_memory_restart,
        Some(crate::config::MaxMemory::Size(4096))
    );
    let share = ok("[apps.a]\ncommand = \"x\"\nmax_memory_restart = \"40%\"\n");
    assert_eq!(
        share.apps["a"].max_memory_restart.map(|m| m.to_string()),
        Some("40%".into())
    );
    assert_eq!(a.stop_signal, Some(Signal::SIGTERM));
    assert_eq!(a.instances, Some(Instances::Max));
    // A number in quotes is as ambiguous as a bare one.
    let err = parse(
        "[apps.a]\ncommand = \"x\"\nmin_uptime = \"3\"\n",
        "herd.toml",
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("herd.toml:3:") && err.contains("ambiguous"),
        "{err}"
    );
}

#[test]
fn load_reads_the_file_and_anchors_cwd() {
    let dir = std::env::temp_dir().join(format!("herd-file-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("herd.toml");
    std::fs::write(
        &path,
        "[apps.a]\ncommand = \"x\"\ncwd = \"app\"\nout_file = \"logs/out.log\"\n\
         error_file = \"/abs/err.log\"\nlog_file = \"all.log\"\n",
    )
    .unwrap();
    let file = load(&path, None).unwrap();
    let a = &file.apps["a"];
    assert_eq!(a.cwd, Some(dir.join("app")));
    assert_eq!(a.out_file, Some(dir.join("logs/out.log")));
    assert_eq!(a.error_file, Some("/abs/err.log".into()));
    assert_eq!(a.log_file, Some(dir.join("all.log")));
    std::fs::remove_dir_all(&dir).unwrap();
    let e = load(&dir.join("missing.toml"), None).unwrap_err();
    assert!(e.to_string().contains("missing.toml: cannot read:"), "{e}");
}

/// `to_toml` then `parse` gives back exactly `apps`.
fn round_trip(apps: &BTreeMap<String, AppConfig>) -> String {
    let text = to_toml(apps);
    let back = parse(&text, "written.toml", None).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(&back.apps, apps, "\n{text}");
    assert_eq!(to_toml(&back.apps), text, "the text is deterministic");
    text
}

#[test]
fn the_full_file_round_trips() {
    round_trip(&ok(FULL).apps);
    round_trip(&parse(FULL, "herd.toml", Some("production")).unwrap().apps);
}

#[test]
fn odd_values_round_trip() {
    let env = [
        ("PLAIN", "x"),
        ("QUOTES", "say \"hi\" and 'bye'"),
        ("BACKSLASH", "C:\\path\\n"),
        ("NEWLINES", "line 1\nline 2\r\n\ttabbed"),
        ("UNICODE", "żółw 🐢 \u{7f} \u{1}"),
        ("EMPTY", ""),
        ("with space", "k"),
        ("dotted.name", "k"),
        ("ünï", "k"),
        ("TRIPLE", "'''\"\"\""),
    ];
    let odd = AppConfig {
        program: "/opt/my app/bin/run".into(),
        args: vec!["--flag=\"x\"".into(), "".into(), "a b".into()],
        cwd: Some("/srv/with space/ü".into()),
        env: env
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        instances: Some(Instances::MaxMinus(1)),
        listen: vec![
            ListenAddr::Tcp("[::1]:8080".parse().unwrap()),
            ListenAddr::Tcp("0.0.0.0:0".parse().unwrap()),
            ListenAddr::Unix("/tmp/a sock\"s.sock".into()),
        ],
        ready: Some(Readiness::Delay(Duration::from_secs(2))),
        kill_timeout: Some(Duration::from_millis(1500)),
        listen_timeout: Some(Duration::from_micros(1)),
        min_uptime: Some(Duration::ZERO),
        stop_signal: Some(Signal::SIGUSR2),
        max_memory_restart: Some(crate::config::MaxMemory::Size(1000)),
        log_max_size: Some(10 << 20),
        stop_exit_codes: vec![-1, 0, 255],
        ..AppConfig::default()
    };
    let counted = AppConfig {
        program: "x".into(),
        instances: Some(Instances::Count(3)),
        ready: Some(Readiness::Message),
        max_memory_restart: Some("12.5%".parse().unwrap()),
        ..AppConfig::default()
    };
    let max = AppConfig {
        program: "x".into(),
        instances: Some(Instances::Max),
        ready: Some(Readiness::Notify),
        ..AppConfig::default()
    };
    let apps: BTreeMap<String, AppConfig> = [("odd", odd), ("counted", counted), ("max", max)]
        .into_iter()
        .map(|(n, a)| (n.to_string(), a))
        .collect();
    let text = round_trip(&apps);
    for line in [
        "kill_timeout = \"1500ms\"",
        "ready = \"delay:2s\"",
        "stop_signal = \"SIGUSR2\"",
        "instances = -1",
        "instances = 3",
        "instances = \"max\"",
        "log_max_size = \"10M\"",
        "max_memory_restart = \"1000\"",
        "max_memory_restart = \"12.5%\"",
        "listen = [\"[::1]:8080\", \"0.0.0.0:0\", 'unix:/tmp/a sock\"s.sock']",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}:\n{text}");
    }
}

#[test]
fn written_keys_follow_the_reference_order() {
    let text = to_toml(&ok(FULL).apps);
    let keys: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "[apps.api]")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split(" = ").next())
        .collect();
    assert_eq!(keys.first(), Some(&"command"));
    assert!(keys.len() > 30, "{keys:?}");
    assert!(text.contains("\n[apps.api.env]\n"), "{text}");
}
