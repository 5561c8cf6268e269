//! The messages between the CLI and the daemon: one JSON request per connection, then
//! one JSON response, each on one line. Every request carries the protocol version; a
//! daemon answers a request of another version with an error that says to restart it
//! (`herd kill`, then any command), instead of guessing.

use serde::{Deserialize, Serialize};

use crate::driver::status::AppStatus;

/// The version of this protocol; bumped on any incompatible change.
pub const VERSION: u32 = 1;

/// A request with its protocol version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// [`VERSION`] of the sender.
    pub v: u32,
    /// What is asked.
    #[serde(flatten)]
    pub request: Request,
}

/// Which apps a request is about: names, namespaces, or `all`.
pub type Selector = Vec<String>;

/// What the CLI asks of the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Is the daemon there?
    Ping,
    /// Start (or, when already running, leave alone) the apps of a herd.toml text.
    Start {
        /// The apps, as a herd.toml with the env profile already applied and paths absolute.
        toml: String,
        /// Where they came from, for messages (a file name, or `herd start -- …`).
        origin: String,
        /// The environment of the `herd start`: the workers start from it.
        env: Vec<(String, String)>,
        /// Wait until every worker is ready (or the app failed) before answering.
        wait: bool,
    },
    /// Stop the apps' workers gracefully; the apps stay listed as stopped.
    Stop {
        /// The apps.
        select: Selector,
    },
    /// Stop, then start the apps again (fresh sockets; a short gap in service).
    Restart {
        /// The apps.
        select: Selector,
    },
    /// Replace every worker, slot by slot, with no gap in service.
    Reload {
        /// The apps.
        select: Selector,
    },
    /// Make the apps of a herd.toml text what it defines (`herd restart FILE`, `herd
    /// reload FILE`): running apps take the new definition the way `how` says, the others
    /// start.
    Apply {
        /// The apps, as in `Start`.
        toml: String,
        /// Where they came from, for messages.
        origin: String,
        /// The environment of the command: the workers start from it.
        env: Vec<(String, String)>,
        /// How running apps take the new definition.
        how: Apply,
    },
    /// Stop the apps and forget them.
    Delete {
        /// The apps.
        select: Selector,
    },
    /// Every app with its workers.
    List,
    /// Empty the apps' log files (`herd flush`); every app when `select` is empty.
    Flush {
        /// The apps.
        select: Selector,
    },
    /// Zero the apps' restart counts and counters (`herd reset`).
    Reset {
        /// The apps.
        select: Selector,
    },
    /// The Prometheus exposition of the apps (`herd metrics`): herd's own series, or with
    /// `app_own` the apps' own (`/metrics/app`).
    Metrics {
        /// The apps (names, namespaces or `all`); every app when empty.
        select: Selector,
        /// The apps' own metrics instead of herd's.
        app_own: bool,
    },
    /// Set the number of workers of one app.
    Scale {
        /// The app.
        name: String,
        /// `N`, `+N` or `-N`.
        to: Scale,
    },
    /// Send a JSON message to every worker of the apps (on their channel).
    Send {
        /// The apps.
        select: Selector,
        /// The message.
        message: serde_json::Value,
    },
    /// Send a signal to every worker of the apps.
    Signal {
        /// The apps.
        select: Selector,
        /// A signal name or number, e.g. `SIGUSR1`.
        signal: String,
    },
    /// Write the running apps to the dump file.
    Save,
    /// Start the apps of the dump file that are not running.
    Resurrect,
    /// Stop every app, then the daemon.
    Kill,
    /// The environment one worker of an app started with (`herd env`).
    Env {
        /// The app.
        name: String,
        /// Its slot.
        slot: usize,
    },
    /// The admin listener's address, opened on `addr` (loopback, a free port, when
    /// `None`) if the daemon serves none yet (`herd dashboard`).
    Dashboard {
        /// Where to open it.
        addr: Option<String>,
    },
}

/// How a running app takes a new definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Apply {
    /// Stop, then start with it: anything may change, with a short gap in service.
    Restart,
    /// Replace every worker with one of the new definition, slot by slot, with no gap;
    /// the sockets and the balancing stay what they are.
    Reload,
}

/// A new number of workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    /// Exactly this many.
    To(usize),
    /// This many more (or fewer, when negative).
    By(i64),
}

impl std::str::FromStr for Scale {
    type Err = String;
    fn from_str(s: &str) -> Result<Scale, String> {
        let bad = || format!("`{s}` is not N, +N or -N");
        if let Some(n) = s.strip_prefix('+') {
            n.parse::<i64>().map(Scale::By).map_err(|_| bad())
        } else if s.starts_with('-') {
            s.parse::<i64>().map(Scale::By).map_err(|_| bad())
        } else {
            s.parse::<usize>().map(Scale::To).map_err(|_| bad())
        }
    }
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    /// Done; what happened, one line per app.
    Done {
        /// Lines for the user.
        lines: Vec<String>,
        /// Apps as they are now (for commands that print the table after).
        apps: Vec<AppInfo>,
    },
    /// The answer to `ping`.
    Pong {
        /// The daemon's pid.
        pid: u32,
        /// The daemon's version.
        version: String,
        /// The daemon's protocol version ([`VERSION`] of its herd).
        #[serde(default)]
        protocol: u32,
        /// How many apps it holds.
        apps: usize,
        /// Since when it runs (Unix milliseconds).
        since_ms: u64,
        /// Set when the previous daemon of this home died without `herd kill` (its
        /// workers died with it): what to do about it.
        notice: Option<String>,
    },
    /// The answer to `env`: one worker's environment as it started.
    Env {
        /// The worker's slot.
        slot: usize,
        /// Its process id.
        pid: u32,
        /// Its variables, sorted by name.
        vars: Vec<(String, String)>,
    },
    /// The request failed; nothing or only part of it was done (the lines say what).
    Error {
        /// What went wrong, for the user.
        message: String,
        /// What was done before it went wrong.
        lines: Vec<String>,
    },
}

/// One app as `herd ls` and `herd describe` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppInfo {
    /// Its name.
    pub name: String,
    /// Its namespace, if any.
    pub namespace: Option<String>,
    /// `starting`, `running`, `reloading`, `stopping`, `stopped`, `errored`.
    pub state: String,
    /// Why it stopped or errored, when it did.
    pub reason: Option<String>,
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Its working directory.
    pub cwd: Option<String>,
    /// Where it came from (file or command line).
    pub origin: String,
    /// Its definition, as a herd.toml table.
    pub toml: String,
    /// When it was last started (Unix milliseconds).
    pub started_ms: u64,
    /// Its log files.
    pub logs: Vec<LogFile>,
    /// The workers, while it runs.
    pub status: Option<AppStatus>,
}

/// One log file of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogFile {
    /// Where it is.
    pub path: String,
    /// The slot whose output it holds; `None` for the merged file of every slot.
    pub slot: Option<usize>,
    /// `out`, `err`, or `all` (the combined `log_file`).
    pub stream: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_takes_n_plus_n_and_minus_n() {
        assert_eq!("4".parse::<Scale>(), Ok(Scale::To(4)));
        assert_eq!("+2".parse::<Scale>(), Ok(Scale::By(2)));
        assert_eq!("-1".parse::<Scale>(), Ok(Scale::By(-1)));
        assert!("x".parse::<Scale>().unwrap_err().contains("N, +N or -N"));
        assert!("".parse::<Scale>().is_err());
    }

    #[test]
    fn requests_carry_their_version_and_name() {
        let e = Envelope {
            v: VERSION,
            request: Request::Scale {
                name: "api".into(),
                to: Scale::By(-1),
            },
        };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(text, r#"{"v":1,"cmd":"scale","name":"api","to":{"by":-1}}"#);
        let back: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back.request, e.request);
        let ls: Envelope = serde_json::from_str(r#"{"v":1,"cmd":"list"}"#).unwrap();
        assert_eq!(ls.request, Request::List);
    }
}
