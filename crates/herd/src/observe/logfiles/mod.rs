//! Workers' output in log files under `HERD_HOME/logs`, for the daemon: the file names
//! (PM2's, per slot or merged), the line format (text or JSON), size-based rotation,
//! and reading the files back for `herd logs` ([`tail`], [`Follower`]).
//!
//! Theory of operation: a [`LogPlan`] says where an app's lines go; [`LogPlan::sink`]
//! makes a [`FileSink`], which the output writer thread ([`crate::output`])
//! drives. The sink opens a file the first time a line is bound for it, writes through
//! a small buffer, and rotates a file (`x.log` → `x.log.1` → … → `x.log.<keep>`) before
//! a line would make it larger than `max_size`. A file that cannot be opened or written
//! (disk full, permissions) loses its lines while it fails, with one warning per
//! failure spell; it never stops the writer, and never stops a worker.
//!
//! This module owns the files' names, format and rotation; it must not decide which
//! apps log where (that is the plan's caller) and must not read worker pipes (that is
//! the output module).
//!
//! Line formats, one line per worker line:
//! - text, in a stream's file: `<time> <app>:<slot> <text>`; in the combined `log_file`,
//!   lines from stderr are marked `<time> <app>:<slot>:err <text>`, so `grep ':err '`
//!   finds them and the second field stays one word;
//! - JSON: `{"time","app","slot","pid","stream","message"}` with `stream` `"stdout"` or
//!   `"stderr"`, as in `herd run --log-format json`;
//! - a gap, when the writer fell behind and lines were dropped: text
//!   `<time> <app>:<slot> [herd] 123 lines dropped: the log writer fell behind`, JSON with
//!   `"stream":"herd"` and `"dropped":123`. The gap is written where it happened, in the
//!   files of the slot and stream that lost the lines; a gap at the very end of a pipe
//!   (no line followed it) is written to every open file of the app, with slot `*`
//!   (`null` in JSON), since it cannot be placed;
//! - a gap in a file that could not be written for a while (a full disk), before the first
//!   line it takes again: `<time> <app>:* [herd] 123 lines lost: the log file could not be
//!   written` (JSON as above); herd's log says how many too, when the file works again.
//!
//! Time: RFC 3339 in UTC with milliseconds, or `date_format` (moment.js tokens, as PM2's
//! `log_date_format`) in the machine's local time, as PM2 prints it. The time is when
//! herd read the line from the pipe.

mod follow;
mod plan;
mod stamp;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use follow::{tail, tail_before, Follower, FOLLOW_POLL};
use plan::create_dir;
pub use plan::{app_files, set_aside_if_larger, LogPlan, DEFAULT_KEEP, DEFAULT_MAX_SIZE};
use stamp::{Stamp, Zone};

use crate::output::{LineRef, Sink, Stream};

/// Write buffer per open log file: std's default. Small on purpose: an app with 64
/// workers has 128 files open, and the writer flushes whenever the queue runs empty.
const FILE_BUFFER: usize = 8 * 1024;
/// After a file failed to open, lines bound for it are dropped without trying again for
/// this long: a missing mount or a permission error is not fixed in microseconds, and a
/// failed open per line would slow the writer for every other file.
const REOPEN_AFTER: Duration = Duration::from_secs(1);
/// Log files are readable by the owner and the owner's group (an operator's group may
/// read logs), never by everyone: a worker's output may hold secrets.
const FILE_MODE: u32 = 0o640;
impl LogPlan {
    /// A sink writing to this plan's files. Creates `dir` (mode 0700) now, so that a
    /// directory herd cannot create is an error at start; files are opened when their
    /// first line comes.
    pub fn sink(&self) -> std::io::Result<FileSink> {
        create_dir(&self.dir)?;
        // The folders of the files the config names too, if they can be made (if not, their
        // lines are lost with a warning, as later): an app that watches its own folder then
        // sees no folder appear when its first line is written.
        for path in [&self.out_file, &self.error_file, &self.log_file]
            .into_iter()
            .flatten()
        {
            if let Some(parent) = self.dir.join(path).parent() {
                let _ = create_dir(parent);
            }
        }
        let stamp = match &self.date_format {
            Some(pattern) => Stamp::new(pattern, Zone::Local),
            None => Stamp::rfc3339(),
        };
        Ok(FileSink {
            plan: self.clone(),
            stamp,
            files: Vec::new(),
            routes: HashMap::new(),
            time: Vec::with_capacity(64),
            buf: Vec::with_capacity(256),
            pending_dropped: 0,
        })
    }
}

/// Writes an app's lines to its log files; made by [`LogPlan::sink`], driven by
/// [`crate::output::Output::start_to`].
#[derive(Debug)]
pub struct FileSink {
    plan: LogPlan,
    stamp: Stamp,
    /// Every file opened or tried so far, once per path (out and err may share a file).
    files: Vec<LogFile>,
    /// Where a slot's stream goes: its own file and the combined one, indexes in `files`.
    routes: HashMap<(usize, Stream), Route>,
    /// The current line's timestamp.
    time: Vec<u8>,
    /// The current line, formatted.
    buf: Vec<u8>,
    /// A count from `dropped` not yet written: goes with the next line.
    pending_dropped: u64,
}

#[derive(Debug, Clone, Copy)]
struct Route {
    file: usize,
    combined: Option<usize>,
}

/// One log file, open or failing.
#[derive(Debug)]
struct LogFile {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
    /// Bytes in the file, including what is still in the buffer.
    size: u64,
    /// Not before this instant: the last open failed.
    retry_at: Option<Instant>,
    /// Failures (of opens, writes, flushes) in the current spell; 0 when the file works.
    failed: u64,
    /// Lines lost in the current spell, for herd's log when the file works again.
    lost: u64,
    /// Lines lost and not yet noted in the file itself: the gap notice goes before the
    /// next line the file takes.
    unnoted: u64,
}

/// How a line is printed: text and the combined file differ in the stream marker.
#[derive(Debug, Clone, Copy)]
enum Label {
    /// A stream's own file: `app:slot`.
    Plain,
    /// The combined file: `app:slot:err` for stderr.
    Combined,
}

#[derive(serde::Serialize)]
struct JsonLine<'a> {
    time: &'a str,
    app: &'a str,
    slot: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    stream: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped: Option<u64>,
}

impl FileSink {
    fn route(&mut self, slot: usize, stream: Stream) -> Route {
        if let Some(route) = self.routes.get(&(slot, stream)) {
            return *route;
        }
        let (out, err) = self.plan.paths(slot);
        let path = match stream {
            Stream::Stdout => out,
            Stream::Stderr => err,
        };
        let file = self.file_index(path);
        let combined = self
            .plan
            .combined_path(slot)
            .map(|p| self.file_index(p))
            .filter(|c| *c != file);
        let route = Route { file, combined };
        self.routes.insert((slot, stream), route);
        route
    }

    fn file_index(&mut self, path: PathBuf) -> usize {
        if let Some(i) = self.files.iter().position(|f| f.path == path) {
            return i;
        }
        self.files.push(LogFile {
            path,
            writer: None,
            size: 0,
            retry_at: None,
            failed: 0,
            lost: 0,
            unnoted: 0,
        });
        self.files.len() - 1
    }

    /// Formats a worker's line (or, with `dropped`, a gap notice) into `self.buf`.
    fn format(
        &mut self,
        line: Option<&LineRef<'_>>,
        slot: Option<usize>,
        label: Label,
        dropped: u64,
    ) {
        self.buf.clear();
        let Some(line) = line else {
            let why = "lines dropped: the log writer fell behind";
            gap_line(&mut self.buf, &self.plan, &self.time, slot, dropped, why);
            return;
        };
        let time = String::from_utf8_lossy(&self.time);
        // A worker on Windows line endings (or a TTY-minded one) ends lines in \r.
        let text = line.text.strip_suffix(b"\r").unwrap_or(line.text);
        let message = String::from_utf8_lossy(text);
        if self.plan.json {
            let v = JsonLine {
                time: &time,
                app: &self.plan.app,
                slot,
                pid: Some(line.pid),
                stream: line.stream.name(),
                message: &message,
                dropped: None,
            };
            let _ = serde_json::to_writer(&mut self.buf, &v);
            self.buf.push(b'\n');
            return;
        }
        let buf = &mut self.buf;
        buf.extend_from_slice(time.as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(self.plan.app.as_bytes());
        let _ = match slot {
            Some(slot) => write!(buf, ":{slot}"),
            None => write!(buf, ":*"),
        };
        if let (Label::Combined, Stream::Stderr) = (label, line.stream) {
            buf.extend_from_slice(b":err");
        }
        buf.push(b' ');
        buf.extend_from_slice(message.as_bytes());
        buf.push(b'\n');
    }

    /// Appends `self.buf` to a file, rotating first if it would grow past max_size.
    fn write(&mut self, index: usize) {
        let plan = &self.plan;
        let file = &mut self.files[index];
        let len = self.buf.len() as u64;
        if file.writer.is_none() && !file.open() {
            file.lose();
            return;
        }
        if file.size > 0 && file.size.saturating_add(len) > plan.max_size {
            file.rotate(plan.keep);
            if !file.open() {
                file.lose();
                return;
            }
        }
        let Some(writer) = file.writer.as_mut() else {
            return;
        };
        if file.unnoted > 0 {
            let mut notice = Vec::new();
            let why = "lines lost: the log file could not be written";
            gap_line(&mut notice, plan, &self.time, None, file.unnoted, why);
            if writer.write_all(&notice).is_ok() {
                file.size += notice.len() as u64;
                file.unnoted = 0;
            }
        }
        match writer.write_all(&self.buf) {
            // Buffered: whether the disk took it shows at the flush.
            Ok(()) => file.size += len,
            Err(e) => {
                file.fail("write", &e);
                file.lose();
            }
        }
    }
}

/// The line that marks a gap of `n` lines (`why`: what the lines are and why they are
/// missing) in the plan's format, into `buf`: herd's own line, at `slot` (`*` when it
/// cannot be placed).
fn gap_line(
    buf: &mut Vec<u8>,
    plan: &LogPlan,
    time: &[u8],
    slot: Option<usize>,
    n: u64,
    why: &str,
) {
    let time = String::from_utf8_lossy(time);
    let message = format!("{n} {why}");
    if plan.json {
        let v = JsonLine {
            time: &time,
            app: &plan.app,
            slot,
            pid: None,
            stream: "herd",
            message: &message,
            dropped: Some(n),
        };
        let _ = serde_json::to_writer(&mut *buf, &v);
    } else {
        let _ = match slot {
            Some(slot) => write!(buf, "{time} {}:{slot} [herd] {message}", plan.app),
            None => write!(buf, "{time} {}:* [herd] {message}", plan.app),
        };
    }
    buf.push(b'\n');
}

impl LogFile {
    /// Opens the file for appending, unless a recent attempt failed. True if open.
    fn open(&mut self) -> bool {
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            self.failed += 1;
            return false;
        }
        let opened = (|| {
            if let Some(parent) = self.path.parent() {
                create_dir(parent)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(FILE_MODE)
                .open(&self.path)?;
            let size = file.metadata()?.len();
            Ok::<_, std::io::Error>((file, size))
        })();
        match opened {
            Ok((file, size)) => {
                self.writer = Some(BufWriter::with_capacity(FILE_BUFFER, file));
                self.size = size;
                self.retry_at = None;
                true
            }
            Err(e) => {
                self.fail("open", &e);
                self.retry_at = Some(Instant::now() + REOPEN_AFTER);
                false
            }
        }
    }

    /// Closes the file and shifts `x.log` → `x.log.1` → … → `x.log.<keep>`, deleting the
    /// oldest. The next write opens a fresh `x.log`.
    fn rotate(&mut self, keep: usize) {
        if let Some(mut writer) = self.writer.take() {
            if let Err(e) = writer.flush() {
                self.fail("flush", &e);
            }
        }
        let numbered = |n: usize| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        let result = (|| {
            if keep == 0 {
                return ignore_missing(std::fs::remove_file(&self.path));
            }
            ignore_missing(std::fs::remove_file(numbered(keep)))?;
            for n in (1..keep).rev() {
                ignore_missing(std::fs::rename(numbered(n), numbered(n + 1)))?;
            }
            ignore_missing(std::fs::rename(&self.path, numbered(1)))
        })();
        if let Err(e) = result {
            // The file keeps growing past max_size rather than losing lines.
            self.fail("rotate", &e);
        }
        self.size = 0;
    }

    /// Counts a line that did not reach the file.
    fn lose(&mut self) {
        self.lost += 1;
        self.unnoted += 1;
    }

    /// Counts a failure; warns at the first of a spell.
    fn fail(&mut self, what: &str, e: &std::io::Error) {
        if self.failed == 0 {
            tracing::warn!(
                path = %self.path.display(),
                error = %e,
                "cannot {what} the log file {}: {e}; its lines are lost until it works again",
                self.path.display()
            );
        }
        self.failed += 1;
    }

    fn recovered(&mut self) {
        if self.failed > 0 {
            tracing::info!(
                path = %self.path.display(),
                failures = self.failed,
                lost = self.lost,
                "the log file {} works again, after {} failures; {} lines were lost",
                self.path.display(),
                self.failed,
                self.lost
            );
            self.failed = 0;
            self.lost = 0;
        }
    }
}

fn ignore_missing(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

impl Sink for FileSink {
    fn line(&mut self, line: &LineRef<'_>) {
        let route = self.route(line.slot, line.stream);
        self.time.clear();
        self.stamp.write(&mut self.time, line.time);
        let targets = [
            (Some(route.file), Label::Plain),
            (route.combined, Label::Combined),
        ];
        if self.pending_dropped > 0 {
            let n = std::mem::take(&mut self.pending_dropped);
            for (index, label) in targets {
                if let Some(index) = index {
                    self.format(None, Some(line.slot), label, n);
                    self.write(index);
                }
            }
        }
        for (index, label) in targets {
            if let Some(index) = index {
                self.format(Some(line), Some(line.slot), label, 0);
                self.write(index);
            }
        }
    }

    fn dropped(&mut self, n: u64) {
        self.pending_dropped = self.pending_dropped.saturating_add(n);
    }

    fn flush(&mut self) {
        if self.pending_dropped > 0 {
            // Lost at the end of a pipe: no line to place it by, so every open file.
            let n = std::mem::take(&mut self.pending_dropped);
            self.time.clear();
            self.stamp
                .write(&mut self.time, std::time::SystemTime::now());
            for index in 0..self.files.len() {
                if self.files[index].writer.is_some() {
                    self.format(None, None, Label::Plain, n);
                    self.write(index);
                }
            }
        }
        for file in &mut self.files {
            if let Some(writer) = file.writer.as_mut() {
                match writer.flush() {
                    Ok(()) => file.recovered(),
                    Err(e) => file.fail("write", &e),
                }
            }
        }
    }

    /// The files are opened with O_APPEND, so once one is truncated the next write goes
    /// to its new end, 0: no reopen, no line lost after the flush.
    fn empty_files(&mut self) {
        self.flush();
        for file in &mut self.files {
            if let Some(writer) = file.writer.as_mut() {
                match writer.get_ref().set_len(0) {
                    Ok(()) => file.size = 0,
                    Err(e) => file.fail("empty", &e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
