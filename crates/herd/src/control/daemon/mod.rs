//! The per-user daemon behind `herd start`: one process that keeps many apps running.
//!
//! Theory of operation: each app runs the same driver as `herd run` on a thread of its
//! own ([`crate::driver::run_hosted`]), so a busy app never delays another. What is
//! process-wide is shared: one reaper (SIGCHLD → `waitpid(-1)` → the exit goes to the
//! driver whose worker it was), one spawner thread, one guardian (workers die with the
//! daemon, whatever kills it: `herd resurrect` brings back the saved apps). The control
//! socket (mode 0600 in a 0700 directory, the peer's uid checked with SO_PEERCRED)
//! takes one request per connection; each request type has its handler in [`handlers`].
//! The registry is locked only between awaits, never across one, so a slow `stop` does
//! not hold up `ls`.

mod admin;
mod dashboard;
mod handlers;
mod launch;
mod registry;
mod usage;

use std::sync::Arc;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tracing::{debug, info, warn};

use super::home::Home;
use super::protocol::{Envelope, Request, Response, VERSION};

pub use registry::Registry;

/// Longest request the daemon reads: a herd.toml with many apps and the environment of
/// the CLI fit easily; anything bigger is not a request of ours.
const MAX_REQUEST: u64 = 16 * 1024 * 1024;
/// How long a client may take to send its request: the CLI sends it at once; a
/// connection that says nothing must not hold a task forever.
const REQUEST_READ: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs the daemon of `home` until `herd kill` or SIGTERM. With `resurrect`, starts the
/// apps of the dump file first (the systemd unit of `herd startup` does that at boot).
pub fn run(
    home: Home,
    resurrect: bool,
    admin: Option<crate::listen::ListenAddr>,
) -> anyhow::Result<()> {
    home.create()
        .with_context(|| format!("cannot create {}", home.dir().display()))?;
    home.secure()
        .with_context(|| format!("cannot make {} private", home.dir().display()))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(home.lock())
        .with_context(|| format!("cannot open {}", home.lock().display()))?;
    let lock = match nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => anyhow::bail!(
            "a herd daemon already runs for {} (talk to it with `herd ping`)",
            home.dir().display()
        ),
        Err((_, e)) => return Err(e).context("cannot lock the daemon's lock file"),
    };
    // Every app has its own cwd: the daemon must not keep the directory of the CLI that
    // started it busy (an unmounted or deleted checkout).
    std::env::set_current_dir(home.dir())
        .with_context(|| format!("cannot enter {}", home.dir().display()))?;
    let process = crate::driver::process_start()?;
    let runtime = process.runtime;
    let registry = Arc::new(Registry::new(
        home,
        process.children,
        process.spawner,
        process.guardian,
    ));
    let result = runtime.block_on(serve(registry, resurrect, admin));
    drop(lock);
    result
}

async fn serve(
    registry: Arc<Registry>,
    resurrect: bool,
    admin: Option<crate::listen::ListenAddr>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigchld = signal(SignalKind::child()).context("cannot install the SIGCHLD handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("cannot install signal handlers")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot install signal handlers")?;
    // Signals whose default would end the daemon (and every app with it) by accident.
    for (kind, name) in [
        (SignalKind::hangup(), "SIGHUP"),
        (SignalKind::user_defined1(), "SIGUSR1"),
        (SignalKind::user_defined2(), "SIGUSR2"),
    ] {
        let mut stream = signal(kind).context("cannot install signal handlers")?;
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                info!("received {name}: ignored (the daemon takes commands on its socket; `herd reload all` reloads every app)");
            }
        });
    }
    let home = registry.home().clone();
    let _ = registry.token.set(dashboard::new_token(&home)?);
    if let Some(addr) = admin {
        dashboard::open(&registry, &addr)?;
    }

    let socket = home.socket();
    // The lock says no daemon runs: a socket file left here is a dead daemon's.
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", socket.display()))?;
    info!(pid = std::process::id(), socket = %socket.display(), "herd daemon {} ready", env!("CARGO_PKG_VERSION"));
    if let Some(previous) = registry.previous_notice() {
        warn!("{previous}");
    }
    // Under systemd (Type=notify): the socket answers from now on.
    let _ = herd_worker::ready();
    if resurrect {
        let r = handlers::resurrect(&registry).await;
        info!("resurrect at start: {r:?}");
    }

    let me = nix::unistd::Uid::effective().as_raw();
    loop {
        tokio::select! {
            _ = sigchld.recv() => {
                registry.reap();
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let registry = registry.clone();
                    tokio::spawn(async move { connection(stream, me, registry).await });
                }
                Err(e) => {
                    warn!("accepting a control connection failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            _ = sigterm.recv() => { info!("received SIGTERM: stopping every app"); break; }
            _ = sigint.recv() => { info!("received SIGINT: stopping every app"); break; }
            _ = registry.killed() => break,
        }
    }
    // Stop accepting requests, then every app, reaping as they go.
    drop(listener);
    let _ = std::fs::remove_file(&socket);
    registry.close();
    let stopping = handlers::stop_all(&registry);
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            _ = &mut stopping => break,
            _ = sigchld.recv() => {
                registry.reap();
            }
        }
    }
    registry.write_state(true);
    info!("herd daemon exits");
    Ok(())
}

/// One control connection: check who it is, read the request, answer.
async fn connection(stream: UnixStream, me: u32, registry: Arc<Registry>) {
    let (read, mut write) = stream.into_split();
    let peer = write.as_ref().peer_cred();
    // The request is read whoever sent it: a client whose request is still unread when
    // the answer comes and the socket closes would see EPIPE instead of the answer.
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST));
    let read = tokio::time::timeout(REQUEST_READ, reader.read_line(&mut line)).await;
    let response = match peer {
        Ok(cred) if cred.uid() == me => match read {
            Ok(Ok(n)) if n as u64 >= MAX_REQUEST && !line.ends_with('\n') => error(format!(
                "the request is longer than {} MiB, the most the daemon reads",
                MAX_REQUEST >> 20
            )),
            Ok(Ok(_)) => match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(value) => answer(value, &registry).await,
                Err(e) => error(format!("the request is not JSON: {e}")),
            },
            Ok(Err(e)) => error(format!("cannot read the request: {e}")),
            Err(_) => error("no request within the time allowed".to_string()),
        },
        Ok(cred) => {
            warn!(
                uid = cred.uid(),
                "refused a control connection from uid {}",
                cred.uid()
            );
            error(format!(
                "this herd daemon belongs to uid {me}; uid {} may not control it (use your own HERD_HOME)",
                cred.uid()
            ))
        }
        Err(e) => error(format!("cannot tell who is connecting: {e}")),
    };
    let mut bytes = serde_json::to_vec(&response).unwrap_or_default();
    bytes.push(b'\n');
    let _ = write.write_all(&bytes).await;
}

async fn answer(value: serde_json::Value, registry: &Arc<Registry>) -> Response {
    // `ping` and `kill` are understood in every version, so that any herd can tell which
    // daemon runs and stop it.
    match value.get("cmd").and_then(|c| c.as_str()) {
        Some("ping") => return handlers::ping(registry),
        Some("kill") => return handlers::kill(registry),
        _ => {}
    }
    let v = value.get("v").and_then(|v| v.as_u64());
    if v != Some(u64::from(VERSION)) {
        return error(format!(
            "this daemon speaks protocol {VERSION} (herd {}), the request is of protocol {}: stop it with `herd kill` (any version understands it), then run your command again",
            env!("CARGO_PKG_VERSION"),
            v.map_or("unknown".to_string(), |v| v.to_string())
        ));
    }
    let request = match serde_json::from_value::<Envelope>(value) {
        Ok(e) => e.request,
        Err(e) => return error(format!("unknown request: {e}")),
    };
    debug!(?request, "control request");
    match request {
        Request::Ping => handlers::ping(registry),
        Request::Start {
            toml,
            origin,
            env,
            wait,
        } => handlers::start(registry, &toml, &origin, env, wait).await,
        Request::Apply {
            toml,
            origin,
            env,
            how,
        } => handlers::apply(registry, &toml, &origin, env, how).await,
        Request::Stop { select } => handlers::stop(registry, &select).await,
        Request::Restart { select } => handlers::restart(registry, &select).await,
        Request::Reload { select } => handlers::reload(registry, &select).await,
        Request::Delete { select } => handlers::delete(registry, &select).await,
        Request::List => handlers::list(registry).await,
        Request::Flush { select } => handlers::flush(registry, &select).await,
        Request::Reset { select } => handlers::reset(registry, &select).await,
        Request::Metrics { select, app_own } => admin::exposition(registry, &select, app_own).await,
        Request::Scale { name, to } => handlers::scale(registry, &name, to).await,
        Request::Send { select, message } => handlers::send(registry, &select, message).await,
        Request::Signal { select, signal } => handlers::signal(registry, &select, &signal).await,
        Request::Save => handlers::save(registry).await,
        Request::Resurrect => handlers::resurrect(registry).await,
        Request::Kill => handlers::kill(registry),
        Request::Env { name, slot } => handlers::env(registry, &name, slot).await,
        Request::Dashboard { addr } => dashboard::dashboard(registry, addr),
    }
}

fn error(message: String) -> Response {
    Response::Error {
        message,
        lines: Vec::new(),
    }
}
