//! HERD_HOME (default `~/.herd`): the daemon's socket, lock, dump, its own log and the
//! apps' logs. Owns the paths and the one way files there are written (atomically);
//! nothing here talks to the daemon.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The directory of one user's daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// `$HERD_HOME`, else `$HOME/.herd`.
    pub fn from_env() -> std::io::Result<Home> {
        if let Some(dir) = std::env::var_os("HERD_HOME").filter(|d| !d.is_empty()) {
            return Ok(Home::at(PathBuf::from(dir)));
        }
        let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or_else(|| {
            std::io::Error::other("neither HERD_HOME nor HOME is set: set HERD_HOME to a directory for herd's daemon")
        })?;
        Ok(Home::at(PathBuf::from(home).join(".herd")))
    }

    /// A home at `dir`.
    pub fn at(dir: PathBuf) -> Home {
        let dir = if dir.is_relative() {
            std::env::current_dir().map(|c| c.join(&dir)).unwrap_or(dir)
        } else {
            dir
        };
        Home { dir }
    }

    /// Creates the directory (mode 0700: the socket and logs are the user's alone) and
    /// its `logs` folder.
    pub fn create(&self) -> std::io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.logs())
    }

    /// Makes sure the directory and its logs are the user's alone (mode 0700): they hold
    /// the control socket and the apps' output, which may carry secrets. A directory of
    /// another user is refused.
    pub fn secure(&self) -> std::io::Result<()> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let me = nix::unistd::Uid::effective().as_raw();
        for dir in [self.dir.clone(), self.logs()] {
            let meta = std::fs::metadata(&dir)?;
            if meta.uid() != me {
                return Err(std::io::Error::other(format!(
                    "{} belongs to uid {}, not to this user (uid {me}): set HERD_HOME to a directory of your own",
                    dir.display(),
                    meta.uid()
                )));
            }
            if meta.mode() & 0o077 != 0 {
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
            }
        }
        Ok(())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("herd.sock")
    }

    /// Held locked by the running daemon: there is one per home.
    pub fn lock(&self) -> PathBuf {
        self.dir.join("daemon.lock")
    }

    /// The daemon's own log (its stdout and stderr).
    pub fn daemon_log(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    /// What `herd save` wrote and `herd resurrect` reads.
    pub fn dump(&self) -> PathBuf {
        self.dir.join("dump.json")
    }

    /// The apps' current state, rewritten at every change, so that a daemon that died
    /// leaves a record of what ran.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The token a web dashboard needs to act, written (0600) at each daemon start.
    pub fn dashboard_token(&self) -> PathBuf {
        self.dir.join("dashboard.token")
    }

    /// The apps' log files.
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
}

/// Replaces `path` with `bytes` so that a reader sees the old or the new file whole, even
/// if herd or the machine dies half-way: write a temporary file, fsync it, rename it over,
/// fsync the directory. Two writers never share a temporary file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or("file".into(), |n| n.to_string_lossy());
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{seq}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_files() {
        let dir = std::env::temp_dir().join(format!("herd-home-test-{}", std::process::id()));
        let home = Home::at(dir.clone());
        home.create().unwrap();
        let p = home.dump();
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
