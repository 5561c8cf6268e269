//! The `herd.listening` records: one per address of the app, saying how its socket came to
//! be (bound by herd, or inherited through socket activation) and how connections are spread
//! on it, with a warning for each inherited socket herd leaves unserved.

use tracing::{info, warn};

use crate::listen::{Balance, Listeners};

/// Logs where the app listens. `proxy` is appended to the mode in the sentence.
pub(super) fn log(app: &str, listeners: &Listeners, balance: Balance, proxy: &str) {
    for l in listeners.listening() {
        let addr = &l.addr;
        // A reuseport app's inherited socket that cannot have reuseport siblings is shared.
        let balance = match l.shared_because {
            Some(why) => {
                warn!(
                    app,
                    "{addr} is served `shared` instead of `reuseport`: {why}"
                );
                Balance::Shared
            }
            None => balance,
        };
        let how = match l.inherited {
            Some(fd) => format!(", socket inherited as fd {fd}"),
            None => String::new(),
        };
        info!(app, event = "herd.listening", addr = %addr, balance = %balance,
            inherited = l.inherited.is_some(), "listening on {addr} ({balance}{proxy}{how})");
    }
    for unused in listeners.unused_inherited() {
        warn!(app, "inherited socket {unused} matches no --listen or --port: herd does not serve it (connections to it wait unanswered)");
    }
}
