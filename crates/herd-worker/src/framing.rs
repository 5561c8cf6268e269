//! Node's `json` IPC framing as herd speaks it: one JSON value per line. Bytes in,
//! messages out, no I/O, so every malformed input is a unit test. A line that is not JSON,
//! not UTF-8 or longer than [`MAX_LINE`] is skipped: herd never sends one, and a worker
//! must not die of one.

use serde_json::Value;

/// Longest line kept (herd's own limit for the other direction).
pub const MAX_LINE: usize = 1024 * 1024;

/// One line from herd, sorted by what the worker must do with it.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// `NODE_HANDLE`: an fd came with this line and must be acknowledged;
    /// `connection`: it is a connection to serve (`type` `net.Socket`, `msg`
    /// `"connection"`), otherwise a handle this SDK does not use.
    Handle {
        /// Whether the handle is a connection handed over by herd.
        connection: bool,
    },
    /// `NODE_SOCKET_GET_COUNT`: herd's least-conn asks how many handed-over connections
    /// are still open; the answer repeats `key`.
    GetCount {
        /// The `key` of the question.
        key: Value,
    },
    /// Other control traffic (`cmd` starting with `NODE_`): ignored.
    Control,
    /// The message `"shutdown"` (herd's `--stop-message`).
    Shutdown,
    /// herd's answer to `{"herd":"stats"}`.
    Stats(Value),
    /// Anything else: a message for the application.
    App(Value),
}

/// Splits a byte stream into lines, keeping the incomplete tail between reads.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Inside a line already too long: drop bytes up to its newline.
    skipping: bool,
}

impl Decoder {
    /// Bytes held for an incomplete line (at most [`MAX_LINE`]).
    #[cfg(feature = "fuzzing")]
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Feeds the bytes of one read; `each` gets the message of every complete line.
    pub fn feed(&mut self, mut bytes: &[u8], mut each: impl FnMut(Incoming)) {
        while let Some(nl) = bytes.iter().position(|b| *b == b'\n') {
            let line = &bytes[..nl];
            bytes = &bytes[nl + 1..];
            if std::mem::take(&mut self.skipping) {
                continue;
            }
            if self.buf.len() + line.len() > MAX_LINE {
                self.buf.clear();
                continue;
            }
            let parsed = if self.buf.is_empty() {
                parse(line)
            } else {
                self.buf.extend_from_slice(line);
                let p = parse(&self.buf);
                self.buf.clear();
                p
            };
            if let Some(m) = parsed {
                each(m);
            }
        }
        if self.skipping || bytes.is_empty() {
            return;
        }
        if self.buf.len() + bytes.len() > MAX_LINE {
            self.buf = Vec::new();
            self.skipping = true;
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }
}

fn parse(line: &[u8]) -> Option<Incoming> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let value: Value = serde_json::from_slice(line).ok()?;
    Some(classify(value))
}

/// What a parsed line means to a worker.
pub fn classify(value: Value) -> Incoming {
    if value.as_str() == Some("shutdown") {
        return Incoming::Shutdown;
    }
    // Node's rule for control traffic: `cmd` is a string longer than 5 starting NODE_.
    if let Some(cmd) = value.get("cmd").and_then(Value::as_str) {
        if cmd.len() > 5 && cmd.starts_with("NODE_") {
            return match cmd {
                "NODE_HANDLE" => Incoming::Handle {
                    connection: value.get("type").and_then(Value::as_str) == Some("net.Socket")
                        && value.get("msg").and_then(Value::as_str) == Some("connection"),
                },
                "NODE_SOCKET_GET_COUNT" => Incoming::GetCount {
                    key: value.get("key").cloned().unwrap_or(Value::Null),
                },
                _ => Incoming::Control,
            };
        }
    }
    if value.get("herd").and_then(Value::as_str) == Some("stats") {
        return Incoming::Stats(value);
    }
    Incoming::App(value)
}

/// The bytes of one message: the value's JSON and a newline (serde_json escapes
/// newlines inside strings, so a message is always one line).
pub fn encode(value: &Value) -> Vec<u8> {
    let mut bytes = value.to_string().into_bytes();
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all(d: &mut Decoder, bytes: &[u8]) -> Vec<Incoming> {
        let mut out = Vec::new();
        d.feed(bytes, |m| out.push(m));
        out
    }

    #[test]
    fn herds_lines_are_sorted() {
        let mut d = Decoder::default();
        let bytes = concat!(
            "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\",\"msg\":\"connection\",\"key\":\"herd\"}\n",
            "{\"cmd\":\"NODE_SOCKET_GET_COUNT\",\"key\":\"herd\"}\n",
            "{\"cmd\":\"NODE_SOCKET_NOTIFY_CLOSE\",\"key\":\"herd\"}\n",
            "\"shutdown\"\n",
            "{\"herd\":\"stats\",\"counters\":{}}\n",
            "{\"hello\":1}\n",
            "{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Server\"}\n",
        );
        assert_eq!(
            all(&mut d, bytes.as_bytes()),
            vec![
                Incoming::Handle { connection: true },
                Incoming::GetCount { key: json!("herd") },
                Incoming::Control,
                Incoming::Shutdown,
                Incoming::Stats(json!({"herd":"stats","counters":{}})),
                Incoming::App(json!({"hello":1})),
                Incoming::Handle { connection: false },
            ]
        );
    }

    #[test]
    fn lines_split_across_reads_even_inside_a_character() {
        let mut d = Decoder::default();
        let bytes = "{\"who\":\"é\"}\r\n\"x\"\n".as_bytes();
        let mut out = Vec::new();
        for chunk in bytes.chunks(3) {
            out.extend(all(&mut d, chunk));
        }
        assert_eq!(
            out,
            vec![Incoming::App(json!({"who":"é"})), Incoming::App(json!("x"))]
        );
    }

    #[test]
    fn garbage_and_overlong_lines_are_skipped() {
        let mut d = Decoder::default();
        assert!(all(&mut d, b"not json\n\xff\xfe\n\n   \n").is_empty());
        let long = vec![b'a'; MAX_LINE + 10];
        assert!(all(&mut d, &long).is_empty());
        assert!(all(&mut d, &long).is_empty());
        assert_eq!(all(&mut d, b"tail\n1\n"), vec![Incoming::App(json!(1))]);
    }

    #[test]
    fn cmd_that_is_not_nodes_is_an_app_message() {
        assert_eq!(
            classify(json!({"cmd":"NODE_"})),
            Incoming::App(json!({"cmd":"NODE_"}))
        );
        assert_eq!(
            classify(json!({"cmd":"restart"})),
            Incoming::App(json!({"cmd":"restart"}))
        );
    }

    #[test]
    fn encoding_is_one_line() {
        assert_eq!(
            encode(&json!({"a":"x\ny"})),
            b"{\"a\":\"x\\ny\"}\n".to_vec()
        );
        let mut d = Decoder::default();
        assert_eq!(
            all(&mut d, &encode(&json!("a\nb"))),
            vec![Incoming::App(json!("a\nb"))]
        );
    }
}
