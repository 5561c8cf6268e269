//! A worker's log file, followed for a page: its last lines, then what is appended, read
//! twice a second. Bounded however fast the worker writes: at most [`CHUNK`] bytes are
//! read per turn, and a page that falls further behind is told how much it skipped.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::hub::event;

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(500);
/// The most read per turn (and of the file's end at first).
pub const CHUNK: u64 = 64 * 1024;
/// Lines sent when the page opens.
const FIRST_LINES: usize = 100;

/// Follows `path` into `tx` until the page goes (`tx` closed or full). Every event is
/// JSON: `lines` `{"stream": "out", "lines": [...]}`, `gap` `{"stream": "out", "text": "…"}`.
pub async fn follow(stream: String, path: PathBuf, tx: mpsc::Sender<Bytes>) {
    let gap = |text: &str| {
        event(
            "gap",
            &serde_json::json!({"stream": stream, "text": text}).to_string(),
        )
    };
    let send = |lines: &[String]| send(&tx, &stream, lines);
    // A file not written yet (a worker that has not printed to stderr) is waited for.
    let mut file = loop {
        match std::fs::File::open(&path) {
            Ok(f) => break f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = tx.closed() => return,
                }
            }
            Err(e) => {
                let _ = tx.try_send(gap(&format!("cannot read {}: {e}", path.display())));
                return;
            }
        }
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let start = len.saturating_sub(CHUNK);
    let mut pos = start;
    let mut partial = Vec::new();
    let first = read_from(&mut file, &mut pos, len);
    let mut first = lines(&mut partial, first, start > 0);
    if first.len() > FIRST_LINES {
        first.drain(..first.len() - FIRST_LINES);
    }
    if !send(&first) {
        return;
    }
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tx.closed() => return,
        }
        // A local file's metadata and a read of at most CHUNK bytes take microseconds:
        // done here rather than on a blocking thread per turn.
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(_) => continue,
        };
        if len < pos {
            // Emptied (`herd flush`) or replaced: from its start again.
            if let Ok(f) = std::fs::File::open(&path) {
                file = f;
            }
            pos = 0;
            partial.clear();
            if tx.try_send(gap("the log file was emptied")).is_err() {
                return;
            }
        }
        if len == pos {
            continue;
        }
        if len - pos > CHUNK {
            let skipped = len - CHUNK - pos;
            pos = len - CHUNK;
            partial.clear();
            let text =
                format!("{skipped} bytes skipped: the worker writes faster than a page can follow");
            if tx.try_send(gap(&text)).is_err() {
                return;
            }
        }
        let read = read_from(&mut file, &mut pos, len);
        let new = lines(&mut partial, read, false);
        if !send(&new) {
            return;
        }
    }
}

fn read_from(file: &mut std::fs::File, pos: &mut u64, len: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    if file.seek(SeekFrom::Start(*pos)).is_ok() {
        let _ = file.take(len.saturating_sub(*pos)).read_to_end(&mut buf);
    }
    *pos += buf.len() as u64;
    buf
}

/// The complete lines of `partial` + `bytes`; an incomplete last line waits in `partial`
/// (up to [`CHUNK`]: a longer one is sent as it is). `cut` drops the first line, which
/// starts somewhere in the middle.
fn lines(partial: &mut Vec<u8>, bytes: Vec<u8>, cut: bool) -> Vec<String> {
    partial.extend_from_slice(&bytes);
    let Some(end) = partial.iter().rposition(|&b| b == b'\n') else {
        if partial.len() as u64 >= CHUNK {
            let all = String::from_utf8_lossy(partial).into_owned();
            partial.clear();
            return vec![all];
        }
        return Vec::new();
    };
    let rest = partial.split_off(end + 1);
    let done = std::mem::replace(partial, rest);
    let text = String::from_utf8_lossy(&done[..end]);
    let mut out: Vec<String> = text.split('\n').map(str::to_string).collect();
    if cut && !out.is_empty() {
        out.remove(0);
    }
    out
}

/// Sends `lines` as one event; `false` when the page is gone or not reading.
fn send(tx: &mpsc::Sender<Bytes>, stream: &str, lines: &[String]) -> bool {
    if lines.is_empty() {
        return !tx.is_closed();
    }
    let json = serde_json::json!({"stream": stream, "lines": lines});
    tx.try_send(event("lines", &json.to_string())).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incomplete_line_waits_for_its_end() {
        let mut partial = Vec::new();
        assert_eq!(lines(&mut partial, b"a\nb".to_vec(), false), vec!["a"]);
        assert_eq!(
            lines(&mut partial, b"c\nd\n".to_vec(), false),
            vec!["bc", "d"]
        );
        assert!(partial.is_empty());
    }

    #[test]
    fn a_read_from_the_middle_drops_the_cut_line() {
        let mut partial = Vec::new();
        assert_eq!(
            lines(&mut partial, b"ial\nfull\n".to_vec(), true),
            vec!["full"]
        );
    }
}
