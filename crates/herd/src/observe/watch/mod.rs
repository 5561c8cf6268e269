//! Watching an app's files (`watch`): reports each burst of changes under its watched
//! paths, so that the driver reloads the app. Reports; decides nothing.
//!
//! Theory of operation: [`Watcher::start`] walks the watched paths on the caller's thread
//! (before any worker starts, so a missing path or the kernel's watch limit fails the
//! start with a clear error) and adds one inotify watch per directory that is not ignored
//! ([`tree`]); an ignored directory is never read. Then a thread of its own waits on the
//! inotify descriptor with `poll`, adds the directories that appear, and gathers the
//! changes of a burst ([`debounce`]) until none came for the delay: one [`Batch`] goes to
//! the driver through a tokio channel, so herd's loop never waits for the file system.
//! Memory is bounded: a path per watched directory, at most [`debounce::NAMED_PATHS`]
//! paths and [`debounce::COUNTED_PATHS`] hashes per burst. Dropping the [`Watcher`] ends
//! the thread (it polls a pipe whose write end the handle holds).

mod debounce;
mod ignore;
mod limits;
mod tree;

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use tokio::sync::mpsc;

pub use debounce::Batch;
pub use ignore::{Ignore, IgnoreGlob, ALWAYS_IGNORED};

/// `watch_delay` when not set: PM2's default. Long enough for a `git checkout` or an
/// editor's save (write a temporary file, rename it) to be one burst, short enough that the
/// reload follows the save at once for a person.
pub const DEFAULT_WATCH_DELAY: Duration = Duration::from_secs(1);
/// Bytes of kernel events read at once: a few hundred events (16 bytes each, plus the
/// name), so a burst is read in a few calls.
const READ_BUFFER: usize = 16 * 1024;

/// What an app watches, validated (`plan`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchPlan {
    /// The watched paths, absolute; each existed when the plan was made.
    pub roots: Vec<PathBuf>,
    /// What is left out.
    pub ignore: Ignore,
    /// A burst ends when no change came for this long.
    pub delay: Duration,
}

/// Why watching could not start, or a directory could not be watched.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// ENOSPC: the watch limit; the text names the sysctl.
    #[error("cannot watch `{path}`: {limit}")]
    Limit {
        /// The directory that could not be watched.
        path: PathBuf,
        /// What the limit is and how to raise it.
        limit: String,
    },
    /// EMFILE from inotify_init1: the instance limit; the text names the sysctl.
    #[error("cannot watch files: {0}")]
    Instances(String),
    /// inotify could not start for another reason.
    #[error("cannot watch files: {0}")]
    Init(std::io::Error),
    /// A watched path could not be watched.
    #[error("cannot watch `{path}`: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The thread could not be started.
    #[error("cannot start the file watcher's thread: {0}")]
    Thread(std::io::Error),
}

/// What [`Watcher::start`] found.
#[derive(Debug)]
pub struct Started {
    /// Directories watched.
    pub dirs: usize,
    /// Directories below the watched paths that could not be read or watched.
    pub skipped: Vec<String>,
    /// How long the walk took.
    pub took: Duration,
}

/// A running watch; dropping it ends the thread.
#[derive(Debug)]
pub struct Watcher {
    /// The write end of the pipe the thread polls: closed on drop.
    _stop: OwnedFd,
}

impl Watcher {
    /// Watches `plan`'s paths; sends each burst of changes to `reports`.
    pub fn start(
        plan: &WatchPlan,
        reports: mpsc::UnboundedSender<Batch>,
    ) -> Result<(Watcher, Started), WatchError> {
        let began = Instant::now();
        let (tree, skipped) = tree::Tree::start(&plan.roots, plan.ignore.clone())?;
        let started = Started {
            dirs: tree.len(),
            skipped,
            took: began.elapsed(),
        };
        let (stop_read, stop_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| WatchError::Thread(e.into()))?;
        let delay = plan.delay;
        std::thread::Builder::new()
            .name("herd-watch".into())
            .spawn(move || watch(tree, stop_read, delay, reports))
            .map_err(WatchError::Thread)?;
        Ok((Watcher { _stop: stop_write }, started))
    }
}

/// The thread: events in, one batch out per burst, until the handle is dropped or the
/// driver is gone.
fn watch(
    mut tree: tree::Tree,
    stop: OwnedFd,
    delay: Duration,
    reports: mpsc::UnboundedSender<Batch>,
) {
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut burst = debounce::Debounce::new(delay);
    loop {
        let timeout = match burst.due() {
            // Rounded up: woken a little early, the burst would not be due yet.
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                let ms = left.as_micros().div_ceil(1000);
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let (events, stopped) = {
            let mut fds = [
                PollFd::new(tree.fd(), PollFlags::POLLIN),
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
            ];
            match nix::poll::poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    let _ = reports.send(Batch {
                        paths: Vec::new(),
                        changed: 0,
                        trouble: Some(format!(
                            "waiting for file changes failed: {e}; no longer watching"
                        )),
                    });
                    return;
                }
            }
            (fds[0].any().unwrap_or(false), fds[1].any().unwrap_or(false))
        };
        if stopped || reports.is_closed() {
            return;
        }
        if events {
            tree.read(&mut buffer, &mut burst, Instant::now());
        }
        if let Some(batch) = burst.take_due(Instant::now()) {
            if reports.send(batch).is_err() {
                return;
            }
        }
    }
}
