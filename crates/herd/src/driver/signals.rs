//! The one place that maps a signal to an intent; the rest of herd sees only intents.
//! Handlers (tokio's) only enqueue.

use std::io;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::supervisor::Event;

/// What the user asked for by signalling herd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// SIGTERM / SIGINT: drain and exit (the supervisor makes a second one forceful).
    Shutdown(&'static str),
    /// SIGHUP / SIGUSR2: rolling reload.
    Reload(&'static str),
    /// SIGTTIN: one worker more.
    ScaleUp,
    /// SIGTTOU: one worker fewer.
    ScaleDown,
}

impl Intent {
    /// The supervisor event for this intent.
    pub fn event(self) -> Event {
        match self {
            Intent::Shutdown(_) => Event::Shutdown,
            Intent::Reload(_) => Event::Reload,
            Intent::ScaleUp => Event::ScaleUp,
            Intent::ScaleDown => Event::ScaleDown,
        }
    }
}

/// Installs the handlers and returns the stream of intents, as the driver's control
/// requests. Must run inside the runtime, before the first worker is spawned.
pub fn intents() -> io::Result<mpsc::UnboundedReceiver<super::AppRequest>> {
    let table: [(SignalKind, Intent); 6] = [
        (SignalKind::terminate(), Intent::Shutdown("SIGTERM")),
        (SignalKind::interrupt(), Intent::Shutdown("SIGINT")),
        (SignalKind::hangup(), Intent::Reload("SIGHUP")),
        (SignalKind::user_defined2(), Intent::Reload("SIGUSR2")),
        (SignalKind::from_raw(libc::SIGTTIN), Intent::ScaleUp),
        (SignalKind::from_raw(libc::SIGTTOU), Intent::ScaleDown),
    ];
    let (tx, rx) = mpsc::unbounded_channel();
    for (kind, intent) in table {
        let mut stream = signal(kind)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(super::AppRequest::Intent(intent)).is_err() {
                    break;
                }
            }
        });
    }
    Ok(rx)
}
