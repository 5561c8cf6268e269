//! Reading log files back for `herd logs`: the last lines of a file ([`tail`]) and the
//! lines appended to files while one watches ([`Follower`], like `tail -F`). Reads
//! only; must not write, rotate or lock the files, since the daemon's writer owns them.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes read at a time from the end of a file by [`tail`]: a few hundred typical lines,
/// so `herd logs` (15 lines by default in PM2) reads one chunk.
const TAIL_CHUNK: usize = 64 * 1024;
/// How often a [`Follower`] looks at its files: under the ~200 ms at which a person
/// notices a delay, and a stat per file per poll costs nothing measurable.
pub const FOLLOW_POLL: Duration = Duration::from_millis(150);
/// Longest line a [`Follower`] gathers; a longer run without a newline is cut here, so a
/// binary file followed by mistake cannot grow memory without bound.
const FOLLOW_MAX_LINE: usize = 1024 * 1024;

/// The last `n` lines of a file, oldest first, read from its end in chunks (a 1 GB file
/// costs what its last lines cost). A last line without a newline is included. Bytes
/// that are not UTF-8 are replaced.
pub fn tail(path: &Path, n: usize) -> std::io::Result<Vec<String>> {
    tail_before(path, n, u64::MAX)
}

/// The last `n` lines of the first `end` bytes of a file: with a [`Follower`] started
/// first at `end` ([`Follower::position`]), every line is printed once, none lost between
/// the two.
pub fn tail_before(path: &Path, n: usize, end: u64) -> std::io::Result<Vec<String>> {
    tail_in_chunks(&File::open(path)?, n, TAIL_CHUNK, end)
}

fn tail_in_chunks(file: &File, n: usize, chunk: usize, end: u64) -> std::io::Result<Vec<String>> {
    let len = file.metadata()?.len().min(end);
    if n == 0 || len == 0 {
        return Ok(Vec::new());
    }
    // Chunks from the end backwards; `newlines` counts separators, not the final newline.
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut newlines = 0usize;
    let mut pos = len;
    while pos > 0 && newlines < n {
        let start = pos.saturating_sub(chunk as u64);
        let mut buf = vec![0; (pos - start) as usize];
        file.read_exact_at(&mut buf, start)?;
        let counted = if pos == len && buf.last() == Some(&b'\n') {
            &buf[..buf.len() - 1]
        } else {
            &buf[..]
        };
        newlines += counted.iter().filter(|b| **b == b'\n').count();
        chunks.push(buf);
        pos = start;
    }
    let data: Vec<u8> = chunks.into_iter().rev().flatten().collect();
    let data = data.strip_suffix(b"\n").unwrap_or(&data);
    let mut lines: Vec<String> = data
        .rsplit(|b| *b == b'\n')
        .take(n)
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    lines.reverse();
    Ok(lines)
}

/// Follows files like `tail -F`: yields the lines appended after it started, keeps going
/// across rotation (the path now names another file: the rest of the old one is read
/// first) and truncation (read again from the start), and picks up files that appear
/// later (read from their start). It polls every [`FOLLOW_POLL`].
///
/// As with `tail -F`, a truncation is seen only if the file is still shorter than what
/// was read when the next poll looks; herd's own rotation renames, which is always seen,
/// unless a file rotates twice between two polls (more than `max_size` bytes in
/// [`FOLLOW_POLL`], 66 MiB/s at the default size): then the middle file is skipped.
///
/// Use [`Follower::wait`] to block for the next lines, or [`Follower::poll`] from a loop
/// of one's own. Only whole lines are yielded; a line still being written waits for its
/// newline (files rotated away are the exception: their last bytes are yielded as is).
#[derive(Debug)]
pub struct Follower {
    files: Vec<Followed>,
}

#[derive(Debug)]
struct Followed {
    path: PathBuf,
    /// The file being read, and its (device, inode).
    open: Option<(File, (u64, u64))>,
    /// Next byte to read in `open`.
    pos: u64,
    /// Bytes read after the last newline.
    partial: Vec<u8>,
}

impl Follower {
    /// Starts at the current end of each file that exists; files that do not exist yet
    /// will be read from their start when they appear.
    pub fn new(paths: Vec<PathBuf>) -> Follower {
        let files = paths
            .into_iter()
            .map(|path| {
                let mut f = Followed {
                    path,
                    open: None,
                    pos: 0,
                    partial: Vec::new(),
                };
                if let Some((file, id)) = open(&f.path) {
                    f.pos = file.metadata().map(|m| m.len()).unwrap_or(0);
                    f.open = Some((file, id));
                }
                f
            })
            .collect();
        Follower { files }
    }

    /// Where following `path` starts (its length when the follower started), if it existed.
    pub fn position(&self, path: &Path) -> Option<u64> {
        self.files
            .iter()
            .find(|f| f.path == path && f.open.is_some())
            .map(|f| f.pos)
    }

    /// The lines appended since the last call, without waiting; `(path, line)` in file
    /// order, files in the order given to [`Follower::new`].
    pub fn poll(&mut self) -> Vec<(PathBuf, String)> {
        let mut out = Vec::new();
        for f in &mut self.files {
            f.poll(&mut out);
        }
        out
    }

    /// Waits until there are new lines, or `timeout` passed (then the result is empty).
    pub fn wait(&mut self, timeout: Duration) -> Vec<(PathBuf, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = self.poll();
            let now = Instant::now();
            if !lines.is_empty() || now >= deadline {
                return lines;
            }
            std::thread::sleep(FOLLOW_POLL.min(deadline - now));
        }
    }
}

fn open(path: &Path) -> Option<(File, (u64, u64))> {
    let file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    Some((file, (meta.dev(), meta.ino())))
}

impl Followed {
    fn poll(&mut self, out: &mut Vec<(PathBuf, String)>) {
        let now = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        let rotated = match (&self.open, now) {
            (Some((_, id)), Some(now)) => *id != now,
            // Gone (rotated, the new one not created yet): finish the old, keep it open.
            _ => false,
        };
        if rotated {
            self.read(out);
            if !self.partial.is_empty() {
                let rest = std::mem::take(&mut self.partial);
                out.push((
                    self.path.clone(),
                    String::from_utf8_lossy(&rest).into_owned(),
                ));
            }
            self.open = None;
        }
        if self.open.is_none() && now.is_some() {
            self.open = open(&self.path);
            self.pos = 0;
            self.partial.clear();
        }
        if let Some((file, _)) = &self.open {
            if file.metadata().is_ok_and(|m| m.len() < self.pos) {
                // Truncated in place (copytruncate): start over.
                self.pos = 0;
                self.partial.clear();
            }
        }
        self.read(out);
    }

    /// Reads the open file from `pos` to its end, yielding whole lines.
    fn read(&mut self, out: &mut Vec<(PathBuf, String)>) {
        let Some((file, _)) = &self.open else { return };
        let mut buf = vec![0u8; TAIL_CHUNK];
        loop {
            let n = match file.read_at(&mut buf, self.pos) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            self.pos += n as u64;
            let mut rest = &buf[..n];
            while let Some(i) = rest.iter().position(|b| *b == b'\n') {
                self.partial.extend_from_slice(&rest[..i]);
                let line = std::mem::take(&mut self.partial);
                out.push((
                    self.path.clone(),
                    String::from_utf8_lossy(&line).into_owned(),
                ));
                rest = &rest[i + 1..];
            }
            self.partial.extend_from_slice(rest);
            if self.partial.len() >= FOLLOW_MAX_LINE {
                let line = std::mem::take(&mut self.partial);
                out.push((
                    self.path.clone(),
                    String::from_utf8_lossy(&line).into_owned(),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("herd-follow-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    fn lines(got: Vec<(PathBuf, String)>) -> Vec<String> {
        got.into_iter().map(|(_, l)| l).collect()
    }

    #[test]
    fn tail_reads_across_chunks_from_the_end() {
        let d = dir("tail");
        let path = d.join("big.log");
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!("line {i}\n"));
        }
        append(&path, &text);
        assert!(text.len() > TAIL_CHUNK, "bigger than one chunk");
        let want: Vec<String> = (19_000..20_000).map(|i| format!("line {i}")).collect();
        assert_eq!(tail(&path, 1000).unwrap(), want);
        // Tiny chunks: every line crosses a chunk boundary.
        let file = File::open(&path).unwrap();
        assert_eq!(tail_in_chunks(&file, 1000, 7, u64::MAX).unwrap(), want);
        assert_eq!(
            tail_in_chunks(&file, 1, 3, u64::MAX).unwrap(),
            ["line 19999"]
        );
        // More lines asked than there are; a last line without newline.
        append(&path, "partial");
        assert_eq!(
            tail_in_chunks(&file, 2, 5, u64::MAX).unwrap(),
            ["line 19999", "partial"]
        );
        let small = d.join("small.log");
        append(&small, "a\n\nb\n");
        assert_eq!(tail(&small, 10).unwrap(), ["a", "", "b"]);
        assert!(tail(&small, 0).unwrap().is_empty());
        append(&d.join("empty.log"), "");
        assert!(tail(&d.join("empty.log"), 5).unwrap().is_empty());
        assert!(tail(&d.join("missing.log"), 5).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn follower_survives_rotation_truncation_and_late_files() {
        let d = dir("rotation");
        let path = d.join("app-0.out.log");
        let late = d.join("app-1.out.log");
        append(&path, "before start\n");
        let mut f = Follower::new(vec![path.clone(), late.clone()]);
        assert!(f.poll().is_empty(), "only lines appended after the start");

        append(&path, "one\ntwo\nhalf");
        assert_eq!(lines(f.poll()), ["one", "two"]);
        append(&path, " done\n");
        assert_eq!(lines(f.poll()), ["half done"]);

        // Rotation: lines written just before the rename, then a new file.
        append(&path, "last of old\n");
        std::fs::rename(&path, d.join("app-0.out.log.1")).unwrap();
        append(&d.join("app-0.out.log.1"), "late write to the old file\n");
        assert_eq!(
            lines(f.poll()),
            ["last of old", "late write to the old file"]
        );
        append(&path, "first of new\n");
        assert_eq!(lines(f.poll()), ["first of new"]);

        // Truncation in place.
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        assert!(f.poll().is_empty());
        append(&path, "after truncate\n");
        assert_eq!(lines(f.poll()), ["after truncate"]);

        // A file that appears later is read from its start.
        append(&late, "slot 1 says hi\n");
        let got = f.wait(Duration::from_secs(2));
        assert_eq!(got, [(late.clone(), "slot 1 says hi".to_string())]);

        let t = Instant::now();
        assert!(f.wait(Duration::from_millis(200)).is_empty());
        assert!(t.elapsed() >= Duration::from_millis(200));
        let _ = std::fs::remove_dir_all(&d);
    }
}
