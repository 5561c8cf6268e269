//! Node's `json` IPC framing: one `JSON.stringify(value)` per line. Bytes in, messages
//! out; no I/O, so every malformed input is a unit test.
//!
//! The reader never fails: bad UTF-8, a line that is not JSON (Node's own parent crashes
//! on one) and a line over [`MAX_LINE`] (dropped whole, however many reads it spans) each
//! become a [`Frame::Garbage`] and parsing goes on with the next line.

use serde_json::Value;

/// Longest line accepted; a longer one is dropped, not buffered.
pub const MAX_LINE: usize = 1024 * 1024;

/// One message read from a worker's channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `"ready"`: the worker serves (PM2's `wait_ready`).
    Ready,
    /// Control traffic: an object whose `cmd` is a string starting with `NODE_`.
    Internal(Value),
    /// Anything else the worker sent with `process.send(…)`.
    App(Value),
    /// A line that could not be read as a message, and why.
    Garbage(String),
    /// The worker closed its end of the channel (the last frame of a channel).
    Closed,
}

/// Splits a byte stream into frames, keeping the incomplete tail between reads.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Inside a line that is already too long: drop bytes until its newline.
    skipping: bool,
}

impl Decoder {
    /// Feeds the bytes of one read; returns the complete frames in them.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(nl) = bytes.iter().position(|b| *b == b'\n') {
            let (line, rest) = (&bytes[..nl], &bytes[nl + 1..]);
            bytes = rest;
            if self.skipping {
                self.skipping = false;
                continue;
            }
            if self.buf.len() + line.len() > MAX_LINE {
                self.buf.clear();
                frames.push(too_long());
                continue;
            }
            if self.buf.is_empty() {
                frames.extend(parse_line(line));
            } else {
                self.buf.extend_from_slice(line);
                let whole = std::mem::take(&mut self.buf);
                frames.extend(parse_line(&whole));
            }
        }
        if !self.skipping && !bytes.is_empty() {
            if self.buf.len() + bytes.len() > MAX_LINE {
                self.buf = Vec::new();
                self.skipping = true;
                frames.push(too_long());
            } else {
                self.buf.extend_from_slice(bytes);
            }
        }
        frames
    }
}

fn too_long() -> Frame {
    Frame::Garbage(format!("line longer than {MAX_LINE} bytes, dropped"))
}

fn parse_line(line: &[u8]) -> Option<Frame> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let text = match std::str::from_utf8(line) {
        Ok(t) => t,
        Err(_) => return Some(Frame::Garbage(format!("not UTF-8: {}", preview(line)))),
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Some(Frame::Garbage(format!("not JSON ({e}): {}", preview(line)))),
    };
    Some(classify(value))
}

fn classify(value: Value) -> Frame {
    if value.as_str() == Some("ready") {
        return Frame::Ready;
    }
    // Node's rule: an object whose `cmd` is a string longer than 5 starting with NODE_.
    let internal = value
        .get("cmd")
        .and_then(Value::as_str)
        .is_some_and(|c| c.len() > 5 && c.starts_with("NODE_"));
    if internal {
        Frame::Internal(value)
    } else {
        Frame::App(value)
    }
}

fn preview(line: &[u8]) -> String {
    let cut = &line[..line.len().min(80)];
    let more = if line.len() > 80 { "…" } else { "" };
    format!("{:?}{more}", String::from_utf8_lossy(cut))
}

/// The bytes of one message: `JSON.stringify(value) + "\n"`.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_process_send_ready_is_readiness() {
        let mut d = Decoder::default();
        // process.send('ready') writes exactly these 8 bytes.
        assert_eq!(d.feed(b"\"ready\"\n"), vec![Frame::Ready]);
    }

    #[test]
    fn messages_split_across_reads_and_utf8_split_inside_a_character() {
        let mut d = Decoder::default();
        let bytes = "{\"type\":\"request\",\"who\":\"é\"}\n\"ready\"\n".as_bytes();
        let mut frames = Vec::new();
        for chunk in bytes.chunks(3) {
            frames.extend(d.feed(chunk));
        }
        assert_eq!(
            frames,
            vec![
                Frame::App(json!({"type":"request","who":"é"})),
                Frame::Ready
            ]
        );
    }

    #[test]
    fn internal_messages_follow_nodes_rule() {
        let mut d = Decoder::default();
        let frames =
            d.feed(b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n{\"cmd\":\"NODE_\"}\n{\"cmd\":\"app\"}\n");
        assert_eq!(
            frames,
            vec![
                Frame::Internal(json!({"cmd":"NODE_HANDLE_ACK"})),
                Frame::App(json!({"cmd":"NODE_"})),
                Frame::App(json!({"cmd":"app"})),
            ]
        );
    }

    #[test]
    fn garbage_is_reported_and_parsing_goes_on() {
        let mut d = Decoder::default();
        let frames = d.feed(b"ready\n\xff\xfe\n\n\"ready\"\n");
        assert!(matches!(&frames[0], Frame::Garbage(g) if g.starts_with("not JSON")));
        assert!(matches!(&frames[1], Frame::Garbage(g) if g.starts_with("not UTF-8")));
        assert_eq!(frames[2], Frame::Ready);
        assert_eq!(frames.len(), 3);
    }

    #[test]
    fn an_oversized_line_is_dropped_whole_without_being_buffered() {
        let mut d = Decoder::default();
        let chunk = vec![b'x'; 256 * 1024];
        let mut frames = Vec::new();
        for _ in 0..10 {
            frames.extend(d.feed(&chunk));
            assert!(d.buf.len() <= MAX_LINE);
        }
        frames.extend(d.feed(b"tail of the long line\n\"ready\"\n"));
        assert_eq!(frames.len(), 2, "{frames:?}");
        assert!(matches!(&frames[0], Frame::Garbage(g) if g.contains("longer than")));
        assert_eq!(frames[1], Frame::Ready);
    }

    #[test]
    fn encodes_like_json_stringify() {
        assert_eq!(encode(&json!("shutdown")), b"\"shutdown\"\n");
    }
}
