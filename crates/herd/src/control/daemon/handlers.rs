//! One handler per control request. Each takes the registry, does what was asked, and
//! says what happened in lines a user can read (which the CLI prints).

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use super::registry::{self, Registry, Running, State};
use crate::control::home::write_atomic;
use crate::control::protocol::{AppInfo, Response, Scale};
use crate::driver::signals::Intent;
use crate::driver::Control;

/// How long `start` and `scale` wait for workers beyond the app's listen timeout.
const READY_SLACK: Duration = Duration::from_secs(2);
/// How long `ls` waits for one app's driver to answer: a driver answers in microseconds
/// unless its thread is stuck, and one stuck app must not hang `ls`.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

fn done(lines: Vec<String>, apps: Vec<AppInfo>) -> Response {
    Response::Done { lines, apps }
}

fn failed(message: String, lines: Vec<String>) -> Response {
    Response::Error { message, lines }
}

/// `ping`.
pub fn ping(registry: &Registry) -> Response {
    Response::Pong {
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        apps: registry.names().len(),
        since_ms: unix_ms(registry.started),
        notice: registry.previous_notice(),
    }
}

/// `start`: define the apps of a herd.toml text and start those not running.
pub async fn start(
    registry: &Arc<Registry>,
    toml: &str,
    origin: &str,
    env: Vec<(String, String)>,
    wait: bool,
) -> Response {
    let file = match crate::config::file::parse(toml, origin, None) {
        Ok(f) => f,
        Err(e) => return failed(e.to_string(), Vec::new()),
    };
    let base_env: Arc<Vec<(OsString, OsString)>> = Arc::new(
        env.into_iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect(),
    );
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut started = Vec::new();
    for (name, config) in file.apps {
        let timeout = config
            .listen_timeout
            .unwrap_or(crate::supervisor::DEFAULT_LISTEN_TIMEOUT);
        if !registry.define(&name, config, toml, origin, base_env.clone()) {
            lines.push(format!(
                "{name}: already running (`herd reload {name}` replaces its workers, `herd delete {name}` forgets it)"
            ));
            continue;
        }
        match registry.launch(&name) {
            Ok(run) => started.push((name, run, timeout)),
            Err(e) => errors.push(e),
        }
    }
    if !wait {
        lines.extend(started.iter().map(|(name, ..)| format!("{name}: started")));
        return respond(registry, lines, errors).await;
    }
    // Every app's workers start at once: the waits overlap, so a slow or failing app
    // costs its own timeout once, not once per app before it.
    for (name, run, result) in all_ready(started).await {
        match result {
            Ok(()) => lines.push(format!("{name}: started, every worker ready")),
            Err(why) => {
                registry.ended_if_done(&name, &run);
                errors.push(format!("{name}: {why}"));
            }
        }
    }
    respond(registry, lines, errors).await
}

/// Waits for every app to be ready, all at the same time; in the order given.
async fn all_ready(
    apps: Vec<(String, Running, Duration)>,
) -> Vec<(String, Running, Result<(), String>)> {
    let waits: Vec<_> = apps
        .into_iter()
        .map(|(name, run, timeout)| {
            tokio::spawn(async move {
                let result = ready(&run, timeout + READY_SLACK).await;
                (name, run, result)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(waits.len());
    for w in waits {
        if let Ok(done) = w.await {
            out.push(done);
        }
    }
    out
}

/// Waits until every slot of a running app has a ready worker.
async fn ready(run: &Running, timeout: Duration) -> Result<(), String> {
    let (tx, rx) = oneshot::channel();
    if run.commands.send(Control::WhenReady(tx)).is_err() {
        return Err(ended_why(run).await);
    }
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(ended_why(run).await),
        Err(_) => Err(format!(
            "not every worker was ready after {} s; it keeps trying (see `herd ls` and `herd logs`)",
            timeout.as_secs()
        )),
    }
}

async fn ended_why(run: &Running) -> String {
    match run.wait().await.outcome {
        Ok(outcome) => format!("it ended ({outcome:?})"),
        Err(e) => format!("could not start: {e}"),
    }
}

/// `stop`.
pub async fn stop(registry: &Arc<Registry>, select: &[String]) -> Response {
    let names = match registry.select(select) {
        Ok(n) => n,
        Err(e) => return failed(e, Vec::new()),
    };
    let lines = stop_names(registry, &names).await;
    respond(registry, lines, Vec::new()).await
}

/// Stops the apps and waits until their drivers ended.
async fn stop_names(registry: &Arc<Registry>, names: &[String]) -> Vec<String> {
    let mut waiting = Vec::new();
    let mut lines = Vec::new();
    for name in names {
        let run = registry.with_app(name, |app| {
            let run = app.run.clone();
            if run.is_some() {
                app.state = State::Stopping;
            }
            run
        });
        match run.flatten() {
            Some(run) => {
                let _ = run
                    .commands
                    .send(Control::Intent(Intent::Shutdown("herd stop")));
                waiting.push((name.clone(), run));
            }
            None => lines.push(format!("{name}: not running")),
        }
    }
    for (name, run) in waiting {
        let ended = run.wait().await;
        registry.ended(&name, run.key, &ended);
        lines.push(match ended.outcome {
            Ok(crate::supervisor::Outcome::Killed) => {
                format!("{name}: stopped (some worker had to be killed after the kill timeout)")
            }
            _ => format!("{name}: stopped"),
        });
    }
    lines
}

/// Stops every app (the daemon is exiting).
pub async fn stop_all(registry: &Arc<Registry>) {
    let names = registry.names();
    for line in stop_names(registry, &names).await {
        tracing::info!("{line}");
    }
}

/// `restart`: stop, then start again.
pub async fn restart(registry: &Arc<Registry>, select: &[String]) -> Response {
    let names = match registry.select(select) {
        Ok(n) => n,
        Err(e) => return failed(e, Vec::new()),
    };
    let mut lines = stop_names(registry, &names).await;
    let mut errors = Vec::new();
    let mut started = Vec::new();
    for name in &names {
        let timeout = registry
            .with_app(name, |a| a.config.listen_timeout)
            .flatten()
            .unwrap_or(crate::supervisor::DEFAULT_LISTEN_TIMEOUT);
        match registry.launch(name) {
            Ok(run) => started.push((name.clone(), run, timeout)),
            Err(e) => errors.push(e),
        }
    }
    for (name, _, result) in all_ready(started).await {
        match result {
            Ok(()) => lines.push(format!("{name}: restarted")),
            Err(why) => errors.push(format!("{name}: {why}")),
        }
    }
    respond(registry, lines, errors).await
}

/// `reload`: rolling, zero downtime.
pub async fn reload(registry: &Arc<Registry>, select: &[String]) -> Response {
    let names = match registry.select(select) {
        Ok(n) => n,
        Err(e) => return failed(e, Vec::new()),
    };
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for name in &names {
        let Some(run) = running(registry, name) else {
            errors.push(format!(
                "{name}: not running (`herd restart {name}` starts it)"
            ));
            continue;
        };
        let (tx, rx) = oneshot::channel();
        if run.commands.send(Control::Reload(tx)).is_err() {
            errors.push(format!("{name}: {}", ended_why(&run).await));
            continue;
        }
        match rx.await {
            Ok(Ok(())) => lines.push(format!("{name}: reloaded, every worker replaced")),
            Ok(Err(why)) => errors.push(why),
            Err(_) => errors.push(format!("{name}: {}", ended_why(&run).await)),
        }
    }
    respond(registry, lines, errors).await
}

/// `delete`: stop and forget.
pub async fn delete(registry: &Arc<Registry>, select: &[String]) -> Response {
    let names = match registry.select(select) {
        Ok(n) => n,
        Err(e) => return failed(e, Vec::new()),
    };
    stop_names(registry, &names).await;
    let mut lines = Vec::new();
    for name in &names {
        registry.remove(name);
        lines.push(format!("{name}: deleted"));
    }
    respond(registry, lines, Vec::new()).await
}

/// `ls`.
pub async fn list(registry: &Arc<Registry>) -> Response {
    done(Vec::new(), infos(registry).await)
}

/// `scale`.
pub async fn scale(registry: &Arc<Registry>, name: &str, to: Scale) -> Response {
    let Some(run) = running(registry, name) else {
        return failed(
            format!("{name}: not running (scale works on a running app)"),
            Vec::new(),
        );
    };
    let now = match status_of(&run).await {
        Some(s) => s.instances,
        None => return failed(format!("{name}: {}", ended_why(&run).await), Vec::new()),
    };
    let target = match to {
        Scale::To(n) => n as i64,
        Scale::By(d) => now as i64 + d,
    };
    if target < 1 {
        return failed(
            format!("{name}: cannot scale to {target} workers: at least 1 (`herd stop {name}` stops them all)"),
            Vec::new(),
        );
    }
    let target = target as usize;
    let _ = run.commands.send(Control::ScaleTo(target));
    registry.with_app(name, |a| a.scaled = Some(target));
    let timeout = registry
        .with_app(name, |a| a.config.listen_timeout)
        .flatten()
        .unwrap_or(crate::supervisor::DEFAULT_LISTEN_TIMEOUT);
    let result = ready(&run, timeout + READY_SLACK).await;
    let lines = vec![format!("{name}: scaled from {now} to {target} workers")];
    match result {
        Ok(()) => respond(registry, lines, Vec::new()).await,
        Err(why) => respond(registry, lines, vec![format!("{name}: {why}")]).await,
    }
}

/// `send`: a JSON message to every worker.
pub async fn send(
    registry: &Arc<Registry>,
    select: &[String],
    message: serde_json::Value,
) -> Response {
    each_running(
        registry,
        select,
        |_, tx| Control::Broadcast(message.clone(), tx),
        run_send_line("message"),
    )
    .await
}

/// `signal`: a signal to every worker's process group.
pub async fn signal(registry: &Arc<Registry>, select: &[String], signal: &str) -> Response {
    let sig = match crate::config::parse_signal(signal) {
        Ok(s) => s,
        Err(e) => return failed(format!("signal `{signal}`: {e}"), Vec::new()),
    };
    each_running(
        registry,
        select,
        |_, tx| Control::Signal(sig, tx),
        run_send_line(sig.as_str()),
    )
    .await
}

fn run_send_line(what: &str) -> impl Fn(&str, usize) -> String + '_ {
    move |name, n| {
        format!(
            "{name}: {what} sent to {n} worker{}",
            if n == 1 { "" } else { "s" }
        )
    }
}

async fn each_running(
    registry: &Arc<Registry>,
    select: &[String],
    make: impl Fn(&Running, oneshot::Sender<usize>) -> Control,
    line: impl Fn(&str, usize) -> String,
) -> Response {
    let names = match registry.select(select) {
        Ok(n) => n,
        Err(e) => return failed(e, Vec::new()),
    };
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for name in &names {
        let Some(run) = running(registry, name) else {
            errors.push(format!("{name}: not running"));
            continue;
        };
        let (tx, rx) = oneshot::channel();
        let _ = run.commands.send(make(&run, tx));
        match rx.await {
            Ok(n) => lines.push(line(name, n)),
            Err(_) => errors.push(format!("{name}: {}", ended_why(&run).await)),
        }
    }
    respond(registry, lines, errors).await
}

/// The dump file: every app with its definition and whether it ran.
#[derive(serde::Serialize, serde::Deserialize)]
struct Dump {
    version: u32,
    apps: Vec<DumpedApp>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct DumpedApp {
    name: String,
    toml: String,
    origin: String,
    env: Vec<(String, String)>,
    running: bool,
}

/// `save`.
pub async fn save(registry: &Arc<Registry>) -> Response {
    let mut apps = Vec::new();
    for name in registry.names() {
        let app = registry.with_app(&name, |a| DumpedApp {
            name: name.clone(),
            // Its definition alone, with the number of workers it was scaled to.
            toml: {
                let mut config = a.config.clone();
                if let Some(n) = a.scaled {
                    config.instances = Some(crate::observe::cpus::Instances::Count(n));
                }
                crate::config::file::to_toml(&std::iter::once((name.clone(), config)).collect())
            },
            origin: a.origin.clone(),
            env: a
                .base_env
                .iter()
                .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v.to_str()?.to_string())))
                .collect(),
            running: a.run.is_some(),
        });
        apps.extend(app);
    }
    let n = apps.len();
    let dump = Dump { version: 1, apps };
    let path = registry.home().dump();
    let bytes = match serde_json::to_vec_pretty(&dump) {
        Ok(b) => b,
        Err(e) => return failed(format!("cannot encode the dump: {e}"), Vec::new()),
    };
    match write_atomic(&path, &bytes) {
        Ok(()) => done(
            vec![format!(
                "saved {n} app{} to {}",
                if n == 1 { "" } else { "s" },
                path.display()
            )],
            Vec::new(),
        ),
        Err(e) => failed(format!("cannot write {}: {e}", path.display()), Vec::new()),
    }
}

/// `resurrect`: the apps of the dump that are not running.
pub async fn resurrect(registry: &Arc<Registry>) -> Response {
    let path = registry.home().dump();
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return failed(
                format!(
                    "there is no dump at {} (`herd save` writes it)",
                    path.display()
                ),
                Vec::new(),
            )
        }
        Err(e) => return failed(format!("cannot read {}: {e}", path.display()), Vec::new()),
    };
    let dump: Dump = match serde_json::from_slice(&text) {
        Ok(d) => d,
        Err(e) => return failed(format!("{} is damaged: {e}", path.display()), Vec::new()),
    };
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for app in dump.apps {
        let file = match crate::config::file::parse(&app.toml, &app.origin, None) {
            Ok(f) => f,
            Err(e) => {
                errors.push(format!("{}: {e}", app.name));
                continue;
            }
        };
        let Some(config) = file.apps.get(&app.name).cloned() else {
            errors.push(format!("{}: not in its saved definition", app.name));
            continue;
        };
        let env = Arc::new(
            app.env
                .into_iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
        );
        if !registry.define(&app.name, config, &app.toml, &app.origin, env) {
            lines.push(format!("{}: already running", app.name));
            continue;
        }
        if !app.running {
            lines.push(format!("{}: restored, stopped", app.name));
            continue;
        }
        match registry.launch(&app.name) {
            Ok(_) => lines.push(format!("{}: resurrected", app.name)),
            Err(e) => errors.push(e),
        }
    }
    respond(registry, lines, errors).await
}

/// `kill`: answered at once; the daemon then stops every app and exits.
pub fn kill(registry: &Arc<Registry>) -> Response {
    registry.request_kill();
    done(
        vec!["stopping every app, then the daemon".to_string()],
        Vec::new(),
    )
}

fn running(registry: &Registry, name: &str) -> Option<Running> {
    registry.with_app(name, |a| a.run.clone()).flatten()
}

async fn status_of(run: &Running) -> Option<crate::driver::status::AppStatus> {
    let (tx, rx) = oneshot::channel();
    run.commands.send(Control::Status(tx)).ok()?;
    tokio::time::timeout(STATUS_TIMEOUT, rx).await.ok()?.ok()
}

/// Every app as `ls` shows it.
async fn infos(registry: &Arc<Registry>) -> Vec<AppInfo> {
    let mut out = Vec::new();
    for name in registry.names() {
        let Some((mut info, run, config)) = registry.with_app(&name, |a| {
            let info = AppInfo {
                name: name.clone(),
                namespace: registry::namespace(&a.config).map(str::to_string),
                state: a.state.to_string(),
                reason: a.reason.clone(),
                command: std::iter::once(a.config.program.clone())
                    .chain(a.config.args.iter().cloned())
                    .collect(),
                cwd: a.config.cwd.as_ref().map(|c| c.display().to_string()),
                origin: a.origin.clone(),
                toml: a.toml.clone(),
                started_ms: unix_ms(a.started),
                logs: Vec::new(),
                status: None,
            };
            (info, a.run.clone(), a.config.clone())
        }) else {
            continue;
        };
        if let Some(run) = run {
            info.status = status_of(&run).await;
            if let Some(s) = &info.status {
                if info.state == "running" && s.state != "running" {
                    info.state = s.state.clone();
                }
            }
        }
        let slots = info.status.as_ref().map_or(0, |s| {
            s.instances
                .max(s.workers.iter().map(|w| w.slot + 1).max().unwrap_or(0))
        });
        info.logs = registry::log_files(registry.home(), &name, &config, slots);
        out.push(info);
    }
    registry.usage.measure(&mut out);
    out
}

/// The answer of a request that acted on apps: what was done, the apps now, and the
/// errors (which make it a failure).
async fn respond(registry: &Arc<Registry>, lines: Vec<String>, errors: Vec<String>) -> Response {
    if errors.is_empty() {
        done(lines, infos(registry).await)
    } else {
        failed(errors.join("\n"), lines)
    }
}

fn unix_ms(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
