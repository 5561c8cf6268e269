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
    /// `{"cmd":"NODE_HANDLE_ACK"}`: the worker took the handle herd sent.
    HandleAck,
    /// A Node cluster worker's answer to `newconn` `ack`: it took the connection or not.
    Accepted {
        /// The `seq` of the `newconn` message this answers.
        ack: u64,
        /// The worker took the connection.
        accepted: bool,
    },
    /// Control traffic: an object whose `cmd` is a string starting with `NODE_`.
    Internal(Value),
    /// Anything else the worker sent with `process.send(…)`.
    App(Value),
    /// A line that could not be read as a message, and why.
    Garbage(String),
    /// The worker closed its end of the channel (the last frame of a channel).
    Closed,
    /// Not read from the worker but noticed by herd's side of the channel: a handle was
    /// not acknowledged in time; `ever_acknowledged` tells whether any handle ever was
    /// (a worker that never reads its channel takes no handed-over connection).
    Unacknowledged {
        /// Some handle sent on this channel was acknowledged before.
        ever_acknowledged: bool,
    },
}

/// Splits a byte stream into frames, keeping the incomplete tail between reads.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Inside a line that is already too long: drop bytes until its newline.
    skipping: bool,
}

impl Decoder {
    /// Bytes kept between reads (an incomplete line), at most [`MAX_LINE`].
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds the bytes of one read; returns the complete frames in them (for tests: the
    /// driver uses [`Decoder::feed_each`], which allocates nothing per frame).
    #[cfg(test)]
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Frame> {
        let mut frames = Vec::new();
        self.feed_each(bytes, |f| frames.push(f));
        frames
    }

    /// Feeds the bytes of one read; `each` gets the complete frames in them. Allocates
    /// nothing for the per-connection answers of the handoff modes ([`Frame::HandleAck`],
    /// [`Frame::Accepted`]), nor to keep a tail between reads once its buffer has grown.
    pub fn feed_each(&mut self, mut bytes: &[u8], mut each: impl FnMut(Frame)) {
        while let Some(nl) = bytes.iter().position(|b| *b == b'\n') {
            let (line, rest) = (&bytes[..nl], &bytes[nl + 1..]);
            bytes = rest;
            if self.skipping {
                self.skipping = false;
                continue;
            }
            if self.buf.len() + line.len() > MAX_LINE {
                self.buf.clear();
                each(too_long());
                continue;
            }
            if self.buf.is_empty() {
                if let Some(f) = parse_line(line) {
                    each(f);
                }
            } else {
                self.buf.extend_from_slice(line);
                let frame = parse_line(&self.buf);
                self.buf.clear();
                if let Some(f) = frame {
                    each(f);
                }
            }
        }
        if !self.skipping && !bytes.is_empty() {
            if self.buf.len() + bytes.len() > MAX_LINE {
                self.buf = Vec::new();
                self.skipping = true;
                each(too_long());
            } else {
                self.buf.extend_from_slice(bytes);
            }
        }
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
    if let Some(frame) = fast_path(line) {
        return Some(frame);
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

/// The two lines a worker sends per handed-over connection, exactly as Node writes them,
/// read without building a JSON tree. Anything else (other spacing or key order) takes the
/// general path and means the same.
fn fast_path(line: &[u8]) -> Option<Frame> {
    if line == b"{\"cmd\":\"NODE_HANDLE_ACK\"}" {
        return Some(Frame::HandleAck);
    }
    // Node's cluster child: send({ack, accepted}) with cmd first and seq last.
    let rest = line.strip_prefix(b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":")?;
    let (ack, rest) = digits(rest)?;
    let rest = rest.strip_prefix(b",\"accepted\":")?;
    let (accepted, rest) = if let Some(r) = rest.strip_prefix(b"true") {
        (true, r)
    } else {
        (false, rest.strip_prefix(b"false")?)
    };
    let rest = rest.strip_prefix(b",\"seq\":")?;
    let (_, rest) = digits(rest)?;
    (rest == b"}").then_some(Frame::Accepted { ack, accepted })
}

/// A decimal number at the start of `s`, and what follows it.
fn digits(s: &[u8]) -> Option<(u64, &[u8])> {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for b in &s[..n] {
        v = v * 10 + u64::from(b - b'0');
    }
    Some((v, &s[n..]))
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
            d.feed(b"{\"cmd\": \"NODE_HANDLE_ACK\"}\n{\"cmd\":\"NODE_\"}\n{\"cmd\":\"app\"}\n");
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
    fn the_answers_to_each_handed_connection_are_read_without_a_json_tree() {
        let mut d = Decoder::default();
        let frames = d.feed(
            b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n{\"cmd\":\"NODE_CLUSTER\",\"ack\":41,\"accepted\":true,\"seq\":7}\n\
              {\"cmd\":\"NODE_CLUSTER\",\"ack\":42,\"accepted\":false,\"seq\":8}\n",
        );
        assert_eq!(
            frames,
            vec![
                Frame::HandleAck,
                Frame::Accepted {
                    ack: 41,
                    accepted: true
                },
                Frame::Accepted {
                    ack: 42,
                    accepted: false
                },
            ]
        );
        // Near misses take the general path.
        for line in [
            &b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":41,\"accepted\":true,\"seq\":7,\"x\":1}"[..],
            b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":,\"accepted\":true,\"seq\":7}",
            b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":99999999999999999999,\"accepted\":true,\"seq\":7}",
            b"{\"cmd\":\"NODE_CLUSTER\",\"ack\":4,\"accepted\":maybe,\"seq\":7}",
        ] {
            assert_eq!(fast_path(line), None, "{}", String::from_utf8_lossy(line));
        }
        // Split across reads: the tail buffer is reused, and the frame is the same.
        let mut frames = Vec::new();
        for chunk in b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n".chunks(5) {
            d.feed_each(chunk, |f| frames.push(f));
        }
        assert_eq!(frames, vec![Frame::HandleAck]);
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

    #[test]
    fn a_number_reads_back_exactly() {
        // Found by fuzzing: without serde_json's float_roundtrip, this read as
        // 1.522222222222222e+29 and a forwarded message changed.
        let line = b"{\"port\":1.5222222222222221e+29}\n";
        let mut d = Decoder::default();
        let frames = d.feed(line);
        let Frame::App(v) = &frames[0] else {
            panic!("{frames:?}")
        };
        assert_eq!(encode(v), line.to_vec());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// However the bytes come (long lines, no newline for megabytes, splits anywhere),
        /// the decoder never keeps more than MAX_LINE bytes between reads.
        #[test]
        fn the_decoder_never_buffers_more_than_its_cap(
            reads in proptest::collection::vec(
                (proptest::prelude::any::<u8>(), 0usize..600_000, proptest::prelude::any::<bool>()),
                1..10,
            ),
        ) {
            let mut d = Decoder::default();
            for (byte, len, newline) in reads {
                let mut chunk = vec![if byte == b'\n' { b'x' } else { byte }; len];
                if newline {
                    chunk.push(b'\n');
                }
                d.feed_each(&chunk, |_| {});
                proptest::prop_assert!(d.buffered() <= MAX_LINE, "{} buffered", d.buffered());
            }
        }
    }
}
