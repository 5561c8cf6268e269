//! The daemon's dashboard: the token that lets a page act, and the admin listener that
//! serves the page, opened at start (`herd daemon --admin`) or by `herd dashboard`.

use std::io::Read;
use std::sync::Arc;

use anyhow::Context;
use tracing::{info, warn};

use super::registry::Registry;
use crate::listen::ListenAddr;

/// A new random token in `HERD_HOME/dashboard.token` (0600, replaced whole), for this
/// daemon's life: 128 bits from the kernel's generator, as 32 hex digits.
pub(super) fn new_token(home: &crate::control::home::Home) -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom for the dashboard's token")?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let path = home.dashboard_token();
    crate::control::home::write_atomic(&path, token.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

/// Serves the admin listener on `addr`, unless one is served already: answers its address.
/// A second, different address is refused (the daemon has one admin listener).
pub(super) fn open(registry: &Arc<Registry>, addr: &ListenAddr) -> anyhow::Result<String> {
    let mut open = registry.admin.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(served) = open.as_ref() {
        return Ok(served.clone());
    }
    let listener = crate::admin::Listener::bind(addr)
        .with_context(|| format!("cannot listen on --admin {addr}"))?;
    let served = listener.local_addr();
    info!(event = "admin.listening", addr = %served,
        "admin listener on {served}: /livez, /readyz, /metrics of every app, and the dashboard at /");
    if let ListenAddr::Tcp(a) = addr {
        if !a.ip().is_loopback() {
            warn!(
                "the admin listener on {served} is reachable from other hosts: anyone who reaches it reads every app's state and metrics; the dashboard's actions need the token, which travels unencrypted (no TLS): prefer 127.0.0.1 behind an SSH tunnel or a TLS proxy"
            );
        }
    }
    super::admin::start(listener, registry.clone(), registry.token.get().cloned());
    *open = Some(served.clone());
    Ok(served)
}

/// `herd dashboard`: the admin listener's address, opening one on `addr` (loopback on a
/// port the kernel picks, when none is given) if the daemon serves none yet.
pub(super) fn dashboard(
    registry: &Arc<Registry>,
    addr: Option<String>,
) -> crate::control::protocol::Response {
    use crate::control::protocol::Response;
    let addr = match addr
        .as_deref()
        .unwrap_or("127.0.0.1:0")
        .parse::<ListenAddr>()
    {
        Ok(a) => a,
        Err(e) => {
            return Response::Error {
                message: format!("--addr: {e}"),
                lines: Vec::new(),
            }
        }
    };
    match open(registry, &addr) {
        Ok(served) => Response::Done {
            lines: vec![served],
            apps: Vec::new(),
        },
        Err(e) => Response::Error {
            message: format!("{e:#}"),
            lines: Vec::new(),
        },
    }
}
