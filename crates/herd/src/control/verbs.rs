//! The daemon's verbs on the command line (`herd start`, `ls`, `reload`, …): the request
//! each one sends, and how the answer is printed (their flags are [`super::args`]). Exit codes: 0 done, 1 the
//! request failed (the message says why), 2 usage error (clap's).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use super::args::{DescribeArgs, EnvArgs, Redo, Verb};
use super::client::Client;
use super::home::Home;
use super::protocol::{AppInfo, Apply, Request, Response};

/// `herd dashboard`: the page's URL; the token rides in the fragment, which browsers
/// never send to a server nor put in a Referer.
fn dashboard(client: &Client, args: super::args::DashboardArgs) -> ExitCode {
    let addr = match client.request_starting(Request::Dashboard { addr: args.addr }) {
        Ok((Response::Done { lines, .. }, _)) => lines.into_iter().next().unwrap_or_default(),
        other => return answer(other.map(|(r, _)| r), false),
    };
    let host = match addr.parse::<std::net::SocketAddr>() {
        // A page opened as 0.0.0.0 works, but the address to give is the loopback one.
        Ok(a) if a.ip().is_unspecified() => format!("127.0.0.1:{}", a.port()),
        Ok(a) => a.to_string(),
        Err(_) => return fail(&format!("the daemon's admin listener is on {addr}: a browser cannot open that (use a host:port address: herd kill, then herd dashboard --addr 127.0.0.1:9100)")),
    };
    if args.read_only {
        println!("http://{host}/");
        return ExitCode::SUCCESS;
    }
    let path = client.home().dashboard_token();
    match std::fs::read_to_string(&path) {
        Ok(token) => {
            println!("http://{host}/#token={}", token.trim());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!(
            "cannot read the dashboard's token in {}: {e}",
            path.display()
        )),
    }
}

/// Runs a verb.
pub fn run(verb: Verb) -> ExitCode {
    let home = match Home::from_env() {
        Ok(h) => h,
        Err(e) => return fail(&e.to_string()),
    };
    let client = Client::new(home.clone());
    match verb {
        Verb::Daemon(args) => {
            crate::observe::logging::init_daemon(args.log_format, home.logs());
            match super::daemon::run(home, args.resurrect, args.admin) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&format!("{e:#}")),
            }
        }
        Verb::Start(args) => super::start::run(&client, *args),
        Verb::Stop(s) => act(&client, Request::Stop { select: s.apps }, s.json),
        Verb::Restart(r) => redo(&client, r, Apply::Restart),
        Verb::Reload(r) => redo(&client, r, Apply::Reload),
        Verb::Delete(s) => act(&client, Request::Delete { select: s.apps }, s.json),
        Verb::Metrics(args) => super::metrics::run(&client, &args),
        Verb::Flush(a) => act(&client, Request::Flush { select: a.apps }, false),
        Verb::Reset(s) => act(&client, Request::Reset { select: s.apps }, s.json),
        Verb::Jlist => super::everyday::jlist(&client, false),
        Verb::Prettylist => super::everyday::jlist(&client, true),
        Verb::Monit(args) => super::monit::run(&client, args.admin),
        Verb::Dashboard(args) => dashboard(&client, args),
        Verb::Ls(args) if args.sort.is_some() || args.watch.is_some() => {
            super::everyday::ls(&client, &args)
        }
        Verb::Ls(args) => match client.request(Request::List) {
            Ok(Response::Done { apps, .. }) => print_apps(&apps, args.json, args.show_env),
            Err(super::client::ClientError::NoDaemon(_)) if !args.json => {
                print!("{}", super::table::render(&[]));
                ExitCode::SUCCESS
            }
            Err(super::client::ClientError::NoDaemon(_)) => {
                println!("[]");
                ExitCode::SUCCESS
            }
            other => answer(other, false),
        },
        Verb::Describe(args) => describe(&client, &args),
        Verb::Env(args) => env(&client, &args),
        Verb::Logs(args) => super::logs::run(&client, &args),
        Verb::Scale(args) => act(
            &client,
            Request::Scale {
                name: args.name,
                to: args.to,
            },
            false,
        ),
        Verb::Send(args) => {
            let message = serde_json::from_str(&args.message)
                .unwrap_or(serde_json::Value::String(args.message));
            act(
                &client,
                Request::Send {
                    select: vec![args.name],
                    message,
                },
                false,
            )
        }
        Verb::Signal(args) => act(
            &client,
            Request::Signal {
                select: vec![args.name],
                signal: args.signal,
            },
            false,
        ),
        Verb::Save => act(&client, Request::Save, false),
        Verb::Resurrect => match client.request_starting(Request::Resurrect) {
            Ok((r, started)) => {
                tell_previous(&client, started);
                answer(Ok(r), false)
            }
            Err(e) => fail(&e.to_string()),
        },
        Verb::Startup(args) => super::startup::run(&home, args),
        Verb::Kill => kill(&client),
        Verb::Ping => match client.request_starting(Request::Ping) {
            Ok((
                Response::Pong {
                    pid,
                    version,
                    apps,
                    notice,
                    ..
                },
                started,
            )) => {
                if let (true, Some(notice)) = (started, notice) {
                    eprintln!("herd: {notice}");
                }
                println!(
                    "herd daemon {version} (pid {pid}, {apps} app{}){}",
                    if apps == 1 { "" } else { "s" },
                    if started { ", just started" } else { "" }
                );
                ExitCode::SUCCESS
            }
            other => answer(other.map(|(r, _)| r), false),
        },
        Verb::Version => {
            println!("herd {}", env!("CARGO_PKG_VERSION"));
            match client.request(Request::Ping) {
                Ok(Response::Pong {
                    version,
                    pid,
                    protocol,
                    ..
                }) if protocol == super::protocol::VERSION => {
                    println!("daemon {version} (pid {pid})")
                }
                Ok(Response::Pong {
                    version,
                    pid,
                    protocol,
                    ..
                }) => println!(
                    "daemon {version} (pid {pid}), protocol {protocol}: incompatible with this herd (protocol {}); `herd kill` stops it",
                    super::protocol::VERSION
                ),
                Err(super::client::ClientError::NoDaemon(_)) => println!("daemon not running"),
                Ok(other) => println!("daemon: unexpected answer {other:?}"),
                Err(e) => println!("daemon: {e}"),
            }
            ExitCode::SUCCESS
        }
    }
}

pub(super) fn fail(message: &str) -> ExitCode {
    eprintln!("herd: {message}");
    ExitCode::from(1)
}

/// Sends a request that acts on apps; prints what was done and the table.
fn act(client: &Client, request: Request, json: bool) -> ExitCode {
    answer(client.request(request), json)
}

pub(super) fn answer(
    response: Result<Response, super::client::ClientError>,
    json: bool,
) -> ExitCode {
    match response {
        Ok(Response::Done { lines, apps }) => {
            for line in &lines {
                if json {
                    eprintln!("{line}");
                } else {
                    println!("{line}");
                }
            }
            if apps.is_empty() && !json {
                return ExitCode::SUCCESS;
            }
            print_apps(&apps, json, false)
        }
        Ok(Response::Error { message, lines }) => {
            for line in lines {
                println!("{line}");
            }
            fail(&message)
        }
        Ok(Response::Pong { .. }) => fail("the daemon answered a ping to another request"),
        Ok(Response::Env { .. }) => fail("the daemon answered `env` to another request"),
        Err(e) => fail(&e.to_string()),
    }
}

/// The apps as a table, or as JSON with their environment values hidden unless `show_env`.
fn print_apps(apps: &[AppInfo], json: bool, show_env: bool) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let text = if json {
        json_apps(apps, show_env, true) + "\n"
    } else {
        super::table::render(apps)
    };
    let _ = out.write_all(text.as_bytes());
    ExitCode::SUCCESS
}

/// `apps` as JSON, each [`shown`].
pub(super) fn json_apps(apps: &[AppInfo], show_env: bool, pretty: bool) -> String {
    let shown: Vec<AppInfo> = apps.iter().map(|a| shown(a, show_env)).collect();
    let text = if pretty {
        serde_json::to_string_pretty(&shown)
    } else {
        serde_json::to_string(&shown)
    };
    text.unwrap_or_default()
}

/// `app` as printed: its definition's environment values replaced by `(hidden)` unless the
/// user asked for them (`--show-env`), so that output pasted into a ticket or a CI log
/// carries no secret.
fn shown(app: &AppInfo, show_env: bool) -> AppInfo {
    let mut app = app.clone();
    if !show_env {
        app.toml = crate::config::file::redact_env(&app.toml);
    }
    app
}

/// `restart` and `reload`: of apps by name, or of the apps of a file with the definition
/// it gives now. An argument is a file when it has a file's extension (herd.toml, an
/// ecosystem file), a `/`, or names an existing file; app names have none of these, and
/// a namespace (which may hold a `.`) is taken for a file only if such a file exists.
fn redo(client: &Client, args: Redo, how: Apply) -> ExitCode {
    let verb = match how {
        Apply::Restart => "restart",
        Apply::Reload => "reload",
    };
    let is_file = |a: &String| {
        let path = std::path::Path::new(a);
        a.contains('/') || path.is_file() || crate::config::is_apps_file(path)
    };
    match args.apps.iter().any(is_file) {
        true if args.apps.len() > 1 => usage(&format!(
            "`herd {verb}` takes app names or one file, not both: {}",
            args.apps.join(" ")
        )),
        true => super::start::apply(client, &args, how),
        false if args.profile.is_some() || !args.only.is_empty() => usage(&format!(
            "--env and --only go with a file (`herd {verb} herd.toml --env prod`)"
        )),
        false => {
            let request = match how {
                Apply::Restart => Request::Restart { select: args.apps },
                Apply::Reload => Request::Reload { select: args.apps },
            };
            act(client, request, args.json)
        }
    }
}

fn kill(client: &Client) -> ExitCode {
    match client.request_from(Request::Kill) {
        Ok((Response::Done { lines, .. }, daemon)) => {
            for line in lines {
                println!("{line}");
            }
            // The daemon stops its apps (each within its kill timeout), then exits.
            if client.wait_exit(&daemon, Duration::from_secs(600)) {
                println!("daemon stopped");
                ExitCode::SUCCESS
            } else {
                fail("the daemon is still stopping its apps after 10 minutes")
            }
        }
        Err(super::client::ClientError::NoDaemon(_)) => {
            println!("no herd daemon runs");
            ExitCode::SUCCESS
        }
        other => answer(other.map(|(response, _)| response), false),
    }
}

fn describe(client: &Client, args: &DescribeArgs) -> ExitCode {
    let apps = match client.request(Request::List) {
        Ok(Response::Done { apps, .. }) => apps,
        other => return answer(other, false),
    };
    let Some(app) = apps.into_iter().find(|a| a.name == args.name) else {
        return fail(&format!("no app `{}` (`herd ls` lists them)", args.name));
    };
    if args.json {
        let app = shown(&app, args.show_env);
        println!("{}", serde_json::to_string_pretty(&app).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    let mut out = String::new();
    let mut field = |k: &str, v: &str| out.push_str(&format!("{k:<11} {v}\n"));
    field("name", &app.name);
    field("namespace", app.namespace.as_deref().unwrap_or("-"));
    field("state", &app.state);
    if let Some(r) = &app.reason {
        field("reason", r);
    }
    field("command", &app.command.join(" "));
    field("cwd", app.cwd.as_deref().unwrap_or("-"));
    field("from", &app.origin);
    if let Some(s) = &app.status {
        field("balance", &s.balance);
        field("listen", &s.listen.join(", "));
        field("instances", &s.instances.to_string());
        if s.counters.as_object().is_some_and(|o| !o.is_empty()) {
            field("counters", &s.counters.to_string());
        }
        let reasons: Vec<String> = s
            .restarts_by_reason
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        if !reasons.is_empty() {
            field("restarts", &reasons.join(", "));
        }
        if let Some(at) = s.next_reload_ms {
            field("next reload", &next_reload(at));
        }
        for w in &s.workers {
            if let Some(h) = &w.health {
                field(&format!("health {}", w.slot), &health_line(h));
            }
        }
        let mut exits: Vec<(usize, String)> = s
            .workers
            .iter()
            .filter_map(|w| {
                let how = w.last_exit.as_ref()?;
                let ago = w.last_exit_ms.map(|t| {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    format!(", {} ago", super::table::duration(now.saturating_sub(t)))
                });
                Some((w.slot, format!("{how}{}", ago.unwrap_or_default())))
            })
            .collect();
        exits.dedup_by_key(|(slot, _)| *slot);
        for (slot, text) in exits {
            field(&format!("last exit {slot}"), &text);
        }
    }
    for log in &app.logs {
        field("log", &log.path);
    }
    print!(
        "{out}\n{}",
        super::table::render(std::slice::from_ref(&app))
    );
    ExitCode::SUCCESS
}

/// `herd env NAME [SLOT]`: sorted `KEY=VALUE` lines (a value with a newline spans lines,
/// as with `env`), or one JSON document.
fn env(client: &Client, args: &EnvArgs) -> ExitCode {
    let request = Request::Env {
        name: args.name.clone(),
        slot: args.slot,
    };
    match client.request(request) {
        Ok(Response::Env { slot, pid, vars }) => {
            let text = if args.json {
                let env: serde_json::Map<String, serde_json::Value> = vars
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect();
                let doc =
                    serde_json::json!({"app": args.name, "slot": slot, "pid": pid, "env": env});
                serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"
            } else {
                vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
            };
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(super::client::ClientError::NoDaemon(_)) => fail(&format!(
            "no app `{}`: the daemon is not running",
            args.name
        )),
        other => answer(other, false),
    }
}

/// When the next scheduled reload is, in local time, and how far ahead:
/// `2026-12-06 03:00:00 +01:00 (in 14h)`.
fn next_reload(unix_ms: u64) -> String {
    let Ok(at) = jiff::Timestamp::from_millisecond(i64::try_from(unix_ms).unwrap_or(i64::MAX))
    else {
        return format!("{unix_ms} ms after the epoch");
    };
    let local = at.to_zoned(jiff::tz::TimeZone::system());
    let now = jiff::Timestamp::now().as_millisecond();
    let left = u64::try_from(at.as_millisecond().saturating_sub(now)).unwrap_or(0);
    format!(
        "{} (in {})",
        local.strftime("%Y-%m-%d %H:%M:%S %:z"),
        super::table::duration(left)
    )
}

/// One worker's health for `describe`: the last check in full, its heartbeat, its loop.
fn health_line(h: &crate::driver::status::HealthStatus) -> String {
    let mut parts = Vec::new();
    match (&h.error, h.latency_ms, h.passed) {
        (Some(e), _, _) => parts.push(format!("last check failed ({} in a row): {e}", h.failures)),
        (None, Some(ms), _) => parts.push(format!("last check ok in {ms:.1} ms")),
        (None, None, false) => {}
        (None, None, true) => parts.push("last check ok".into()),
    }
    if let Some(ms) = h.heartbeat_age_ms {
        parts.push(format!("heartbeat {ms} ms ago"));
    }
    if let Some(ms) = h.loop_lag_ms {
        parts.push(format!("event-loop lag {ms:.1} ms"));
    }
    if parts.is_empty() {
        parts.push("not checked yet".into());
    }
    parts.join("; ")
}

/// After this CLI started the daemon: what the daemon found of its predecessor.
pub(super) fn tell_previous(client: &Client, started: bool) {
    if !started {
        return;
    }
    if let Ok(Response::Pong {
        notice: Some(notice),
        ..
    }) = client.request(Request::Ping)
    {
        eprintln!("herd: {notice}");
    }
}

pub(super) fn usage(message: &str) -> ExitCode {
    eprintln!("herd: {message}");
    ExitCode::from(2)
}
