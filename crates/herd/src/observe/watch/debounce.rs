//! A burst of changes made one report: a `git checkout` of 500 files, or an editor's
//! write-to-temp-then-rename, is one reload. Pure: time comes in as `now`, and
//! [`Debounce::due`] says when to look again; the watcher thread does the waiting.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Changed paths a report names; the others are only counted. Why 5: enough to see what
/// changed in the log line, short enough to read.
pub const NAMED_PATHS: usize = 5;
/// Distinct changed paths counted per burst, beyond which the count stops (a hash of each
/// is kept, 8 bytes): a checkout of a million files costs no more than 10 000.
pub const COUNTED_PATHS: usize = 10_000;
/// A tree that never stops changing (a file written into it every second) still reloads,
/// this long after its first change, instead of never.
pub const BURST_MAX: Duration = Duration::from_secs(60);

/// What changed in one burst.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The first [`NAMED_PATHS`] distinct changed paths.
    pub paths: Vec<PathBuf>,
    /// Distinct changed paths (at most [`COUNTED_PATHS`]).
    pub changed: usize,
    /// Trouble of the watcher in the burst (the first): a directory it could not watch,
    /// lost events.
    pub trouble: Option<String>,
}

/// The changes of the burst under way, if any.
#[derive(Debug)]
pub struct Debounce {
    delay: Duration,
    first: Option<Instant>,
    last: Option<Instant>,
    paths: Vec<PathBuf>,
    seen: HashSet<u64>,
    trouble: Option<String>,
}

impl Debounce {
    /// Reports a burst once no change came for `delay`.
    pub fn new(delay: Duration) -> Debounce {
        Debounce {
            delay,
            first: None,
            last: None,
            paths: Vec::new(),
            seen: HashSet::new(),
            trouble: None,
        }
    }

    /// `path` changed at `now`.
    pub fn change(&mut self, path: &Path, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
        if self.seen.len() >= COUNTED_PATHS {
            return;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        path.hash(&mut h);
        if self.seen.insert(h.finish()) && self.paths.len() < NAMED_PATHS {
            self.paths.push(path.to_path_buf());
        }
    }

    /// Something went wrong at `now` (kept if it is the burst's first), which is itself
    /// reported, as a change is.
    pub fn trouble(&mut self, what: String, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
        self.trouble.get_or_insert(what);
    }

    /// When the burst under way is to be reported.
    pub fn due(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + self.delay).min(first + BURST_MAX))
    }

    /// The burst, if it is due at `now`; the next one starts empty.
    pub fn take_due(&mut self, now: Instant) -> Option<Batch> {
        if self.due()? > now {
            return None;
        }
        self.first = None;
        self.last = None;
        let changed = self.seen.len();
        self.seen = HashSet::new();
        Some(Batch {
            paths: std::mem::take(&mut self.paths),
            changed,
            trouble: self.trouble.take(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_is_reported_once_after_its_last_change() {
        let t0 = Instant::now();
        let mut d = Debounce::new(1000 * MS);
        assert_eq!(d.due(), None);
        assert_eq!(d.take_due(t0), None);
        // 500 files over 400 ms, each written twice.
        for i in 0..1000u32 {
            let path = PathBuf::from(format!("/app/src/f{}.js", i % 500));
            d.change(&path, t0 + (i / 50) * 20 * MS);
        }
        let last = t0 + 380 * MS;
        assert_eq!(d.due(), Some(last + 1000 * MS));
        assert_eq!(d.take_due(last + 999 * MS), None);
        let b = d.take_due(last + 1000 * MS).unwrap();
        assert_eq!(b.changed, 500);
        assert_eq!(b.paths.len(), NAMED_PATHS);
        assert_eq!(b.paths[0], Path::new("/app/src/f0.js"));
        assert_eq!(b.trouble, None);
        assert_eq!(d.due(), None, "the next burst starts empty");
        assert_eq!(d.take_due(last + 5000 * MS), None);
    }

    #[test]
    fn a_tree_that_never_stops_changing_is_reported_at_the_burst_max() {
        let t0 = Instant::now();
        let mut d = Debounce::new(1000 * MS);
        let mut now = t0;
        let mut reports = 0;
        while now < t0 + BURST_MAX * 2 + 1000 * MS {
            d.change(Path::new("/app/out.txt"), now);
            if let Some(b) = d.take_due(now) {
                assert_eq!(b.changed, 1);
                reports += 1;
            }
            now += 500 * MS;
        }
        assert_eq!(reports, 2);
    }

    #[test]
    fn trouble_is_reported_with_the_burst_and_counting_is_bounded() {
        let t0 = Instant::now();
        let mut d = Debounce::new(10 * MS);
        d.trouble("first".into(), t0);
        d.trouble("second".into(), t0);
        for i in 0..(COUNTED_PATHS + 50) {
            d.change(Path::new(&format!("/a/{i}")), t0);
        }
        let b = d.take_due(t0 + 10 * MS).unwrap();
        assert_eq!(b.trouble.as_deref(), Some("first"));
        assert_eq!(b.changed, COUNTED_PATHS);
        // Trouble alone is a burst too (events were lost: something changed).
        d.trouble("overflow".into(), t0);
        assert_eq!(d.take_due(t0 + 10 * MS).unwrap().changed, 0);
    }
}
