//! Workers' stdout and stderr, streamed line by line with an `app:slot` prefix (or as
//! JSON lines). Reading never blocks the supervisor: one task per pipe reads until EOF,
//! so the last lines before a crash are kept, and a writer thread does the (possibly
//! blocking) writes to herd's own stdout/stderr. A slow terminal slows the workers'
//! pipes, never the primary's decisions.

use std::io::Write;
use std::os::fd::OwnedFd;

use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use crate::config::LogFormat;

/// Longest line kept whole; longer ones are cut into pieces of this size (a worker that
/// writes megabytes without a newline must not grow herd's memory).
const MAX_LINE: usize = 64 * 1024;
/// Read buffer per pipe: small, because a primary with 64 workers has 128 of them; longer
/// lines are gathered across reads up to MAX_LINE.
const READ_BUFFER: usize = 4096;
/// Lines buffered between the readers and the writer thread.
const QUEUE: usize = 4096;

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The worker's standard output.
    Stdout,
    /// The worker's standard error.
    Stderr,
}

#[derive(Debug)]
enum Msg {
    Line(Line),
    /// Flush and end the writer thread, even if some reader still holds a sender.
    Close,
    /// Answer once every line queued before this one is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

#[derive(Debug)]
struct Line {
    slot: usize,
    pid: u32,
    stream: Stream,
    text: Vec<u8>,
}

/// The sink for every worker's output.
#[derive(Debug, Clone)]
pub struct Output {
    tx: mpsc::Sender<Msg>,
}

impl Output {
    /// Starts the writer thread. `app` prefixes every line.
    pub fn start(
        app: String,
        format: LogFormat,
    ) -> std::io::Result<(Output, std::thread::JoinHandle<()>)> {
        let (tx, mut rx) = mpsc::channel::<Msg>(QUEUE);
        let handle = std::thread::Builder::new()
            .name("herd-output".into())
            .spawn(move || {
                let mut buf = Vec::with_capacity(256);
                while let Some(msg) = rx.blocking_recv() {
                    let line = match msg {
                        Msg::Line(line) => line,
                        Msg::Flush(done) => {
                            let _ = std::io::stdout().flush();
                            let _ = done.send(());
                            continue;
                        }
                        Msg::Close => break,
                    };
                    buf.clear();
                    format_line(&mut buf, &app, &line, format);
                    let _ = match line.stream {
                        Stream::Stdout => std::io::stdout().lock().write_all(&buf),
                        Stream::Stderr => std::io::stderr().lock().write_all(&buf),
                    };
                }
                let _ = std::io::stdout().flush();
            })?;
        Ok((Output { tx }, handle))
    }

    /// Returns once every line queued so far is written.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Asks the writer thread to finish once the lines queued so far are written.
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
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(fd) else {
                return;
            };
            let mut reader = tokio::io::BufReader::with_capacity(READ_BUFFER, pipe);
            loop {
                let mut text = Vec::new();
                match read_line(&mut reader, &mut text).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if tx
                            .send(Msg::Line(Line {
                                slot,
                                pid,
                                stream,
                                text,
                            }))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        })
    }
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

fn format_line(buf: &mut Vec<u8>, app: &str, line: &Line, format: LogFormat) {
    let text = String::from_utf8_lossy(&line.text);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    match format {
        LogFormat::Text => {
            let _ = writeln!(buf, "{app}:{} | {text}", line.slot);
        }
        LogFormat::Json => {
            let v = serde_json::json!({
                "timestamp": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
                "app": app,
                "slot": line.slot,
                "pid": line.pid,
                "stream": match line.stream { Stream::Stdout => "stdout", Stream::Stderr => "stderr" },
                "line": text,
            });
            let _ = serde_json::to_writer(&mut *buf, &v);
            buf.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_capped_and_the_tail_is_kept() {
        let long = vec![b'x'; MAX_LINE + 10];
        let mut input = b"one\r\ntwo\n".to_vec();
        input.extend_from_slice(&long);
        input.extend_from_slice(b"\nlast without newline");
        let mut r = tokio::io::BufReader::new(&input[..]);
        let mut lines = Vec::new();
        loop {
            let mut l = Vec::new();
            if read_line(&mut r, &mut l).await.unwrap() == 0 {
                break;
            }
            lines.push(l);
        }
        assert_eq!(lines[0], b"one\r");
        assert_eq!(lines[1], b"two");
        assert_eq!(lines[2].len(), MAX_LINE);
        assert_eq!(lines[3], b"xxxxxxxxxx");
        assert_eq!(lines[4], b"last without newline");
    }

    #[test]
    fn formats() {
        let line = Line {
            slot: 2,
            pid: 9,
            stream: Stream::Stderr,
            text: b"hi\r".to_vec(),
        };
        let mut buf = Vec::new();
        format_line(&mut buf, "api", &line, LogFormat::Text);
        assert_eq!(buf, b"api:2 | hi\n");
        buf.clear();
        format_line(&mut buf, "api", &line, LogFormat::Json);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["line"], "hi");
        assert_eq!(v["stream"], "stderr");
        assert_eq!(v["slot"], 2);
    }
}

/// TEMPORARY stand-in for the sink API being written on another branch.
pub trait Sink: Send + 'static {}

impl Output {
    /// TEMPORARY: lines go to stdout.
    pub fn start_to(
        _sink: Box<dyn Sink>,
    ) -> std::io::Result<(Output, std::thread::JoinHandle<()>)> {
        Output::start("app".into(), LogFormat::Text)
    }
}
