//! Workers' stdout and stderr, streamed line by line to a [`Sink`]: herd's own
//! stdout/stderr with an `app:slot` prefix (or as JSON lines) for a foreground `herd run`,
//! or any other sink, such as the daemon's log files ([`crate::observe::logfiles`]).
//!
//! Theory of operation: one task per pipe reads until EOF, so the last lines before a
//! crash are kept, and stamps each line with the time it was read. Lines go through one
//! bounded queue to a writer thread, the only place that calls the sink and so the only
//! place that may block on a terminal or a disk. The writer flushes the sink whenever the
//! queue runs empty, so a reader of the sink's output sees a line soon after it was
//! printed, while a busy writer still writes in large batches.
//!
//! What happens when the queue is full is the mode's choice: [`Output::start`] makes the
//! readers wait (a slow terminal slows the workers' pipes, like a shell would), and
//! [`Output::start_to`] never makes them wait: the line is dropped and counted, and the
//! sink hears the count. Either way the supervisor's decisions never wait for output.
//! This module owns reading, splitting and queueing; it must not know file names,
//! rotation or any other property of a particular sink.

mod terminal;

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

pub use terminal::LogFormat;
use terminal::Terminal;

/// Longest line kept whole; longer ones are cut into pieces of this size (a worker that
/// writes megabytes without a newline must not grow herd's memory).
const MAX_LINE: usize = 64 * 1024;
/// Read buffer per pipe: small, because a primary with 64 workers has 128 of them; longer
/// lines are gathered across reads up to MAX_LINE.
const READ_BUFFER: usize = 4096;
/// Lines buffered between the readers and the writer thread: enough to ride out a burst
/// of a few thousand lines or a disk's hiccup of some milliseconds, while bounding the
/// memory held for a writer that fell behind (at most QUEUE lines of MAX_LINE bytes).
const QUEUE: usize = 4096;

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// The worker's standard output.
    Stdout,
    /// The worker's standard error.
    Stderr,
}

impl Stream {
    /// The stream's name in JSON lines: `"stdout"` or `"stderr"`.
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One line of a worker's output, as handed to a sink.
#[derive(Debug, Clone, Copy)]
pub struct LineRef<'a> {
    /// The worker's slot.
    pub slot: usize,
    /// The worker's pid.
    pub pid: u32,
    /// The pipe the line came from.
    pub stream: Stream,
    /// The line without its newline; at most MAX_LINE (64 KiB) bytes, not necessarily
    /// UTF-8, possibly ending in `\r`.
    pub text: &'a [u8],
    /// When herd read the line from the pipe (not when the sink got it).
    pub time: SystemTime,
}

/// Where the writer thread puts lines. Called from the writer thread only, so a sink may
/// block (on a terminal, a disk) without ever holding up a worker in
/// [`Output::start_to`] mode, or the supervisor in either mode.
pub trait Sink: Send + 'static {
    /// Writes one line.
    fn line(&mut self, line: &LineRef<'_>);
    /// `n` lines were dropped since the last call because the writer fell behind.
    ///
    /// Usually called right before the first line the same pipe delivered after its gap,
    /// so the count belongs to that next line's slot and stream and sits where the gap
    /// is. Lines lost at the very end of a pipe (nothing came after them) are reported
    /// before the next flush instead, without a line to attribute them to.
    fn dropped(&mut self, n: u64);
    /// Pushes buffered lines out: called when the queue runs empty, on
    /// [`Output::flush`], and when the writer thread ends.
    fn flush(&mut self);
    /// Empties every file it writes (`herd flush`), after writing what it buffered; later
    /// lines start them again. Nothing to do for a sink without files.
    fn empty_files(&mut self) {}
}

#[derive(Debug)]
enum Msg {
    Line(Line),
    /// Flush and end the writer thread, even if some reader still holds a sender.
    Close,
    /// Answer once every line queued before this one is written.
    Flush(tokio::sync::oneshot::Sender<()>),
    /// Empty the sink's files, then answer.
    Empty(tokio::sync::oneshot::Sender<()>),
}

#[derive(Debug)]
struct Line {
    slot: usize,
    pid: u32,
    stream: Stream,
    text: Vec<u8>,
    time: SystemTime,
    /// Lines of the same pipe dropped just before this one (start_to mode).
    dropped_before: u64,
}

impl Line {
    fn as_ref(&self) -> LineRef<'_> {
        LineRef {
            slot: self.slot,
            pid: self.pid,
            stream: self.stream,
            text: &self.text,
            time: self.time,
        }
    }
}

/// The entrance for every worker's output: cheap to clone, one per app.
#[derive(Debug, Clone)]
pub struct Output {
    tx: mpsc::Sender<Msg>,
    /// `Some` in [`Output::start_to`] mode: readers never wait. A reader counts the lines
    /// it could not queue and hands the count over with its next line that fits; a count
    /// left when its pipe ends goes here, for the writer to report when the queue empties.
    dropped: Option<Arc<AtomicU64>>,
}

impl Output {
    /// Starts the writer thread for a foreground `herd run`: lines go to herd's own
    /// stdout and stderr, prefixed with `app:slot | ` or as JSON objects. When the queue
    /// is full, readers wait: nothing is lost, and a slow terminal slows the workers.
    pub fn start(
        app: String,
        format: LogFormat,
    ) -> std::io::Result<(Output, std::thread::JoinHandle<()>)> {
        Output::spawn(
            Box::new(Terminal {
                app,
                format,
                buf: Vec::with_capacity(256),
            }),
            None,
        )
    }

    /// Lines go to `sink`; readers never wait: when the queue is full a line is dropped
    /// and counted, and the sink is told how many before the next line it gets. For the
    /// daemon, which must never block a worker because a disk is slow.
    pub fn start_to(sink: Box<dyn Sink>) -> std::io::Result<(Output, std::thread::JoinHandle<()>)> {
        Output::spawn(sink, Some(Arc::new(AtomicU64::new(0))))
    }

    fn spawn(
        sink: Box<dyn Sink>,
        dropped: Option<Arc<AtomicU64>>,
    ) -> std::io::Result<(Output, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<Msg>(QUEUE);
        let counter = dropped.clone();
        let handle = std::thread::Builder::new()
            .name("herd-output".into())
            .spawn(move || write_lines(rx, sink, counter))?;
        Ok((Output { tx, dropped }, handle))
    }

    /// Returns once every line queued so far is written and the sink flushed. Unlike the
    /// lines in [`Output::start_to`] mode, this waits for room in the queue and for the
    /// sink: bound it with a timeout where a hung disk must not hold the caller.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Empties the sink's files once the lines queued so far are written (`herd flush`).
    pub async fn empty_files(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Empty(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Asks the writer thread to finish once the lines queued so far are written. Waits
    /// for room in the queue, as [`Output::flush`] does.
    pub async fn close(&self) {
        let _ = self.tx.send(Msg::Close).await;
    }

    /// Streams one pipe of a worker until EOF. Returns when every writer of the pipe has
    /// closed it (the worker and anything it started).
    pub fn follow(
        &self,
        fd: OwnedFd,
        slot: usize,
        pid: u32,
        stream: Stream,
    ) -> tokio::task::JoinHandle<()> {
        let output = self.clone();
        tokio::spawn(async move {
            let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
                return;
            };
            let reader = tokio::io::BufReader::with_capacity(READ_BUFFER, pipe);
            output.pump(reader, slot, pid, stream).await;
        })
    }

    /// Reads lines until EOF and queues them; the one implementation of reading for every
    /// mode. Generic over the reader so the tests can feed it bytes.
    async fn pump<R: tokio::io::AsyncBufRead + Unpin>(
        &self,
        mut reader: R,
        slot: usize,
        pid: u32,
        stream: Stream,
    ) {
        // Lines of this pipe dropped since the last one that fit in the queue.
        let mut lost = 0u64;
        loop {
            let mut text = Vec::new();
            match read_line(&mut reader, &mut text).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let msg = Msg::Line(Line {
                slot,
                pid,
                stream,
                text,
                time: SystemTime::now(),
                dropped_before: lost,
            });
            let open = match &self.dropped {
                None => self.tx.send(msg).await.is_ok(),
                Some(_) => match self.tx.try_send(msg) {
                    Ok(()) => {
                        lost = 0;
                        true
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        lost += 1;
                        true
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                },
            };
            if !open {
                // The writer thread has ended (closed): nobody will write what follows.
                break;
            }
        }
        if let (Some(dropped), true) = (&self.dropped, lost > 0) {
            dropped.fetch_add(lost, Ordering::Relaxed);
        }
    }
}

/// The writer thread's loop: lines to the sink, a flush whenever the queue runs empty.
fn write_lines(
    mut rx: mpsc::Receiver<Msg>,
    mut sink: Box<dyn Sink>,
    dropped: Option<Arc<AtomicU64>>,
) {
    let report_dropped = |sink: &mut Box<dyn Sink>| {
        if let Some(dropped) = &dropped {
            // A load first: the common case (nothing dropped) stays a plain read.
            if dropped.load(Ordering::Relaxed) != 0 {
                let n = dropped.swap(0, Ordering::Relaxed);
                if n != 0 {
                    sink.dropped(n);
                }
            }
        }
    };
    loop {
        let msg = match rx.try_recv() {
            Ok(msg) => msg,
            Err(mpsc::error::TryRecvError::Empty) => {
                // Nothing more to do right now: push out what is buffered, so a reader
                // of the sink (`herd logs --follow`) sees it without waiting for more.
                report_dropped(&mut sink);
                sink.flush();
                match rx.blocking_recv() {
                    Some(msg) => msg,
                    None => break,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        match msg {
            Msg::Line(line) => {
                if line.dropped_before > 0 {
                    sink.dropped(line.dropped_before);
                }
                sink.line(&line.as_ref());
            }
            Msg::Flush(done) => {
                report_dropped(&mut sink);
                sink.flush();
                let _ = done.send(());
            }
            Msg::Empty(done) => {
                report_dropped(&mut sink);
                sink.empty_files();
                let _ = done.send(());
            }
            Msg::Close => break,
        }
    }
    report_dropped(&mut sink);
    sink.flush();
}

/// Reads up to and excluding the next newline, or MAX_LINE bytes, or what is left at EOF.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    out: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(total);
        }
        let room = MAX_LINE - out.len();
        let (take, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) if i <= room => (i + 1, true),
            _ if available.len() >= room => (room, true),
            _ => (available.len(), false),
        };
        out.extend_from_slice(&available[..take]);
        r.consume(take);
        total += take;
        if out.last() == Some(&b'\n') {
            out.pop();
        }
        if done {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests;
