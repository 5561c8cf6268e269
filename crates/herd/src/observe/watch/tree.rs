//! The inotify watches over one app's watched paths: herd walks each tree itself and adds a
//! non-recursive watch per directory that is not ignored (an ignored directory is never
//! read), adds the directories that appear later, forgets those that go, and turns each
//! kernel event into the changed path, or nothing when it is ignored.
//!
//! A watched file (`watch = ["server.js"]`) is watched through its directory, for that name
//! only: editors save by writing a new file and renaming it over the old one, which would
//! end a watch on the file itself.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::Instant;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};

use super::debounce::Debounce;
use super::{Ignore, WatchError};

/// What a watch reports: the changes of a program's files, and what it takes to keep
/// watching (a watched directory's end, a new directory). Not `CLOSE_WRITE`: a write is a
/// `MODIFY` already, and a file opened for writing and closed unchanged is no change.
/// `EXCL_UNLINK`: a deleted file that a process still writes is no longer the app's.
fn mask() -> WatchMask {
    WatchMask::MODIFY
        | WatchMask::ATTRIB
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::EXCL_UNLINK
}

/// One watched directory.
struct Dir {
    wd: WatchDescriptor,
    path: PathBuf,
    /// The names that count in it, for the directory of a watched file; `None`: all.
    only: Option<Vec<OsString>>,
}

/// The watches of one app.
pub(super) struct Tree {
    inotify: Inotify,
    ignore: Ignore,
    roots: Vec<PathBuf>,
    /// Each watched directory by its watch descriptor's number.
    dirs: HashMap<i32, Dir>,
}

impl Tree {
    /// Watches `roots` (absolute), each walked now. Returns the tree and what it could not
    /// watch below the roots (a directory it may not read), for the log.
    pub(super) fn start(
        roots: &[PathBuf],
        ignore: Ignore,
    ) -> Result<(Tree, Vec<String>), WatchError> {
        let inotify = Inotify::init().map_err(|e| match e.raw_os_error() {
            Some(libc::EMFILE) => WatchError::Instances(super::limits::instances_text()),
            _ => WatchError::Init(e),
        })?;
        let mut tree = Tree {
            inotify,
            ignore,
            roots: roots.to_vec(),
            dirs: HashMap::new(),
        };
        let mut skipped = Vec::new();
        // Directories first: a file's directory that is watched whole stays whole.
        let mut files = Vec::new();
        for root in roots {
            let meta = std::fs::metadata(root).map_err(|source| WatchError::Io {
                path: root.clone(),
                source,
            })?;
            if meta.is_dir() {
                tree.add_tree(root, &mut skipped, true)?;
            } else {
                files.push(root);
            }
        }
        for file in files {
            let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
                continue;
            };
            tree.add_dir(dir, Some(name))
                .map_err(|source| tree.error(dir, source))?;
        }
        Ok((tree, skipped))
    }

    /// Directories watched.
    pub(super) fn len(&self) -> usize {
        self.dirs.len()
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }

    fn error(&self, path: &Path, source: io::Error) -> WatchError {
        match source.raw_os_error() {
            Some(libc::ENOSPC) => WatchError::Limit {
                path: path.to_path_buf(),
                limit: super::limits::watches_text(self.dirs.len()),
            },
            _ => WatchError::Io {
                path: path.to_path_buf(),
                source,
            },
        }
    }

    /// Watches `dir` (for the name `only`, if given) and returns whether the watch is new.
    fn add_dir(&mut self, dir: &Path, only: Option<&OsStr>) -> io::Result<bool> {
        let wd = self.inotify.watches().add(dir, mask())?;
        let id = wd.get_watch_descriptor_id();
        match self.dirs.get_mut(&id) {
            Some(known) => {
                match (&mut known.only, only) {
                    (Some(names), Some(name)) => names.push(name.to_os_string()),
                    (names @ Some(_), None) => *names = None,
                    (None, _) => {}
                }
                Ok(false)
            }
            None => {
                let only = only.map(|n| vec![n.to_os_string()]);
                let path = dir.to_path_buf();
                self.dirs.insert(id, Dir { wd, path, only });
                Ok(true)
            }
        }
    }

    /// Watches `top` and every directory below it that is not ignored, without reading an
    /// ignored one. A directory that vanished meanwhile is skipped; one that cannot be read
    /// or watched is named in `skipped`; the watch limit stops the walk. `root`: `top` is a
    /// watched path, whose own failure is an error.
    fn add_tree(
        &mut self,
        top: &Path,
        skipped: &mut Vec<String>,
        root: bool,
    ) -> Result<(), WatchError> {
        let mut stack = vec![top.to_path_buf()];
        while let Some(dir) = stack.pop() {
            match self.add_dir(&dir, None) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) || (root && dir == top) => {
                    return Err(self.error(&dir, e));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => continue,
                Err(e) => {
                    skipped.push(format!("{}: {e}", dir.display()));
                    continue;
                }
            }
            let entries = match std::fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    skipped.push(format!("{}: {e}", dir.display()));
                    continue;
                }
            };
            for entry in entries.flatten() {
                // The type from the directory entry: no stat per file, and a symlink to a
                // directory is not followed (it may point back up the tree).
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let path = entry.path();
                    if !self.ignore.ignores(&path) {
                        stack.push(path);
                    }
                }
            }
        }
        Ok(())
    }

    /// Stops watching `top` and the directories below it (moved away).
    fn forget(&mut self, top: &Path) {
        let mut watches = self.inotify.watches();
        self.dirs.retain(|_, d| {
            if d.path.starts_with(top) {
                let _ = watches.remove(d.wd.clone());
                false
            } else {
                true
            }
        });
    }

    /// Reads every pending event into `burst`, at `now`.
    pub(super) fn read(&mut self, buffer: &mut [u8], burst: &mut Debounce, now: Instant) {
        loop {
            let events = match self.inotify.read_events(buffer) {
                Ok(events) => events,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    burst.trouble(format!("reading file changes failed: {e}"), now);
                    return;
                }
            };
            // Owned: handling an event may add watches, which needs `self`.
            let owned: Vec<_> = events
                .map(|e| {
                    (
                        e.wd.get_watch_descriptor_id(),
                        e.mask,
                        e.name.map(OsString::from),
                    )
                })
                .collect();
            for (id, mask, name) in owned {
                self.event(id, mask, name.as_deref(), burst, now);
            }
        }
    }

    fn event(
        &mut self,
        id: i32,
        mask: EventMask,
        name: Option<&OsStr>,
        burst: &mut Debounce,
        now: Instant,
    ) {
        if mask.contains(EventMask::Q_OVERFLOW) {
            // Changes were lost, new directories among them perhaps: look at the trees
            // again (a known directory keeps its watch).
            let mut skipped = Vec::new();
            for root in self.roots.clone() {
                if root.is_dir() {
                    if let Err(e) = self.add_tree(&root, &mut skipped, false) {
                        burst.trouble(e.to_string(), now);
                    }
                }
            }
            burst.trouble(
                "changes came faster than herd read them and some were lost (the kernel's \
                 queue, fs.inotify.max_queued_events, overflowed)"
                    .into(),
                now,
            );
            return;
        }
        let Some(dir) = self.dirs.get(&id) else {
            return;
        };
        if mask.contains(EventMask::IGNORED) {
            // The directory is gone (deleted, or unmounted): its parent reported it.
            let gone = self.dirs.remove(&id).map(|d| d.path);
            if let Some(root) = gone.filter(|p| self.roots.contains(p)) {
                burst.trouble(
                    format!("`{}` is gone: it is no longer watched", root.display()),
                    now,
                );
            }
            return;
        }
        if let (Some(only), Some(name)) = (&dir.only, name) {
            if !only.iter().any(|n| n == name) {
                return;
            }
        }
        let whole = dir.only.is_none();
        let path = match name {
            Some(n) => dir.path.join(n),
            // The directory itself: deleted or moved. Its parent reports that too, unless
            // it is a watched path.
            None if self.roots.contains(&dir.path) => dir.path.clone(),
            None => return,
        };
        if name.is_some() && self.ignore.ignores(&path) {
            return;
        }
        if mask.contains(EventMask::ISDIR) && whole {
            if mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
                let mut skipped = Vec::new();
                if let Err(e) = self.add_tree(&path, &mut skipped, false) {
                    burst.trouble(e.to_string(), now);
                }
                if let Some(first) = skipped.into_iter().next() {
                    burst.trouble(format!("cannot watch {first}"), now);
                }
            } else if mask.contains(EventMask::MOVED_FROM) {
                self.forget(&path);
            }
        }
        burst.change(&path, now);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A temporary directory, removed when dropped.
    struct Temp(PathBuf);

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp(tag: &str) -> Temp {
        let dir = std::env::temp_dir().join(format!("herd-tree-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Temp(dir)
    }

    /// The changes pending in the kernel's queue (events are queued by the syscall that
    /// made them, so none is in flight).
    fn changes(tree: &mut Tree) -> Option<Batch> {
        let mut burst = Debounce::new(Duration::ZERO);
        let now = Instant::now();
        tree.read(&mut vec![0; 4096], &mut burst, now);
        burst.take_due(now)
    }

    use super::super::Batch;

    #[test]
    fn ignored_trees_are_not_walked_and_new_directories_are_watched() {
        let t = temp("walk");
        let root = t.0.clone();
        for dir in ["src/lib", "node_modules/a/b", ".git/objects", "dist/x"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        std::fs::write(root.join("src/a.js"), "1").unwrap();
        let ignore = Ignore::new(root.clone(), &["dist".parse().unwrap()]);
        let (mut tree, skipped) = Tree::start(std::slice::from_ref(&root), ignore).unwrap();
        assert!(skipped.is_empty(), "{skipped:?}");
        assert_eq!(tree.len(), 3, "the root, src and src/lib only");
        assert_eq!(changes(&mut tree), None);

        std::fs::write(root.join("src/a.js"), "2").unwrap();
        std::fs::write(root.join("node_modules/a/b/c.js"), "x").unwrap();
        std::fs::write(root.join("app.js"), "x").unwrap();
        std::fs::create_dir(root.join("node_modules/new")).unwrap();
        let b = changes(&mut tree).unwrap();
        assert_eq!(b.paths, [root.join("src/a.js"), root.join("app.js")]);
        assert_eq!(b.changed, 2);

        // A new directory, and what is written in it after its event was read.
        std::fs::create_dir(root.join("src/new")).unwrap();
        let b = changes(&mut tree).unwrap();
        assert_eq!(b.paths, [root.join("src/new")]);
        assert_eq!(tree.len(), 4);
        std::fs::write(root.join("src/new/b.js"), "x").unwrap();
        let b = changes(&mut tree).unwrap();
        assert_eq!(b.paths, [root.join("src/new/b.js")]);

        // A directory moved away is forgotten; its removal is a change.
        std::fs::rename(root.join("src/new"), root.join("dist/new")).unwrap();
        assert_eq!(changes(&mut tree).unwrap().paths, [root.join("src/new")]);
        assert_eq!(tree.len(), 3);
        std::fs::remove_dir_all(root.join("src/lib")).unwrap();
        assert_eq!(changes(&mut tree).unwrap().paths, [root.join("src/lib")]);
        assert_eq!(tree.len(), 2);
    }

    #[test]
    fn a_watched_file_survives_a_save_by_rename() {
        let t = temp("file");
        let root = t.0.clone();
        let file = root.join("server.js");
        std::fs::write(&file, "1").unwrap();
        let (mut tree, _) =
            Tree::start(std::slice::from_ref(&file), Ignore::new(root.clone(), &[])).unwrap();
        assert_eq!(tree.len(), 1);
        std::fs::write(root.join("other.js"), "x").unwrap();
        assert_eq!(changes(&mut tree), None, "only the watched file counts");
        for _ in 0..2 {
            std::fs::write(root.join(".server.js.swp"), "2").unwrap();
            std::fs::rename(root.join(".server.js.swp"), &file).unwrap();
            assert_eq!(
                changes(&mut tree).unwrap().paths,
                std::slice::from_ref(&file)
            );
        }
    }

    #[test]
    fn a_missing_root_is_named() {
        let t = temp("missing");
        let gone = t.0.join("nope");
        let e = Tree::start(std::slice::from_ref(&gone), Ignore::new(t.0.clone(), &[]))
            .err()
            .unwrap();
        assert!(e.to_string().contains(&gone.display().to_string()), "{e}");
    }
}
