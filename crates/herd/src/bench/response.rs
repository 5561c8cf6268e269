//! Reading HTTP/1.1 answers off a connection, one after the other (pipelining): the head
//! with `httparse`, then the body by its framing (Content-Length, chunked, or until the
//! server closes), skipped without copying. Pure: bytes in, answers out, no I/O, so every
//! framing case is a unit test.

/// Headers read per answer; more is a parse error.
const MAX_HEADERS: usize = 64;

/// One complete answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Its status code.
    pub status: u16,
    /// The server closes the connection after it (`Connection: close`, or HTTP/1.0 without
    /// keep-alive).
    pub close: bool,
}

/// Bytes that are not an HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed answer: {0}")]
pub struct ParseError(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for a whole head.
    Head,
    /// This many body bytes left.
    Fixed(u64),
    /// Waiting for a chunk-size line.
    ChunkSize,
    /// This many bytes of a chunk left, then its CRLF.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// Trailer lines until the empty one.
    Trailers,
    /// The body ends when the server closes.
    UntilClose,
}

/// Reads answers from a connection's byte stream.
#[derive(Debug)]
pub struct Reader {
    state: State,
    current: Answer,
    head_only: bool,
    /// The bytes of the last head parsed, and what they gave: a server under load sends
    /// the same head again and again (until its `Date` changes), and the same bytes parse
    /// the same, so a head equal to it is taken with one comparison instead of a parse.
    last_head: Vec<u8>,
    last: Option<(Answer, State)>,
    /// Off only for the fuzz target, which checks that remembering changes nothing.
    remember: bool,
}

/// Longest head remembered for the comparison; longer ones are parsed every time.
const REMEMBERED_HEAD: usize = 1024;

impl Reader {
    /// A reader for a connection; `head_only` for answers to HEAD (no body).
    pub fn new(head_only: bool) -> Reader {
        Reader {
            state: State::Head,
            current: Answer {
                status: 0,
                close: false,
            },
            head_only,
            last_head: Vec::with_capacity(REMEMBERED_HEAD),
            last: None,
            remember: true,
        }
    }

    /// A reader that parses every head (the fuzz target's reference).
    #[cfg(feature = "fuzzing")]
    pub fn forgetful(head_only: bool) -> Reader {
        Reader {
            remember: false,
            ..Reader::new(head_only)
        }
    }

    /// Part of an answer has been read (an EOF now cuts it).
    pub fn in_answer(&self) -> bool {
        self.state != State::Head
    }

    /// Consumes what it can of `buf`: the bytes used, and an answer if one completed. Call
    /// again on the rest while it returns an answer.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, Option<Answer>), ParseError> {
        let mut used = 0;
        loop {
            let rest = &buf[used..];
            match self.state {
                State::Head => {
                    if let Some((answer, state)) = self.last {
                        if rest.starts_with(&self.last_head) {
                            used += self.last_head.len();
                            self.current = answer;
                            self.state = state;
                            continue;
                        }
                    }
                    // Uninitialised: zeroing 64 headers per answer costs more than parsing
                    // a small one.
                    let mut headers = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
                    let mut r = httparse::Response::new(&mut []);
                    let parsed = httparse::ParserConfig::default()
                        .parse_response_with_uninit_headers(&mut r, rest, &mut headers);
                    let n = match parsed {
                        Ok(httparse::Status::Complete(n)) => n,
                        Ok(httparse::Status::Partial) => return Ok((used, None)),
                        Err(_) => return Err(ParseError("bad status line or header")),
                    };
                    used += n;
                    let status = r.code.ok_or(ParseError("no status"))?;
                    if status >= 600 {
                        return Err(ParseError("status code above 599"));
                    }
                    let http10 = r.version == Some(0);
                    let mut close = http10;
                    let mut length = None;
                    let mut chunked = false;
                    for h in r.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            let v = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse::<u64>().ok())
                                .ok_or(ParseError("bad Content-Length"))?;
                            length = Some(v);
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = has_token(h.value, b"chunked");
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            if has_token(h.value, b"close") {
                                close = true;
                            } else if has_token(h.value, b"keep-alive") {
                                close = false;
                            }
                        }
                    }
                    if (100..200).contains(&status) {
                        // An interim answer (100 Continue): the real one follows.
                        continue;
                    }
                    self.current = Answer { status, close };
                    let bodyless = self.head_only || status == 204 || status == 304;
                    self.state = if bodyless {
                        State::Fixed(0)
                    } else if chunked {
                        State::ChunkSize
                    } else if let Some(n) = length {
                        State::Fixed(n)
                    } else {
                        self.current.close = true;
                        State::UntilClose
                    };
                    self.last_head.clear();
                    self.last = None;
                    if self.remember && n <= REMEMBERED_HEAD {
                        self.last_head.extend_from_slice(&rest[..n]);
                        self.last = Some((self.current, self.state));
                    }
                }
                State::Fixed(left) => {
                    let take = left.min(rest.len() as u64);
                    used += take as usize;
                    if take < left {
                        self.state = State::Fixed(left - take);
                        return Ok((used, None));
                    }
                    self.state = State::Head;
                    return Ok((used, Some(self.current)));
                }
                State::ChunkSize => {
                    let Some(eol) = find_crlf(rest) else {
                        return Ok((used, None));
                    };
                    let line = &rest[..eol];
                    let hex = line.split(|&b| b == b';').next().unwrap_or(line);
                    let size = std::str::from_utf8(hex)
                        .ok()
                        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
                        .ok_or(ParseError("bad chunk size"))?;
                    used += eol + 2;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkData(left) => {
                    let take = left.min(rest.len() as u64);
                    used += take as usize;
                    if take < left {
                        self.state = State::ChunkData(left - take);
                        return Ok((used, None));
                    }
                    self.state = State::ChunkEnd;
                }
                State::ChunkEnd => {
                    if rest.len() < 2 {
                        return Ok((used, None));
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(ParseError("chunk data longer than its size"));
                    }
                    used += 2;
                    self.state = State::ChunkSize;
                }
                State::Trailers => {
                    let Some(eol) = find_crlf(rest) else {
                        return Ok((used, None));
                    };
                    used += eol + 2;
                    if eol == 0 {
                        self.state = State::Head;
                        return Ok((used, Some(self.current)));
                    }
                }
                State::UntilClose => return Ok((rest.len() + used, None)),
            }
        }
    }

    /// The server closed the connection: the answer it completes, if its body ran to the
    /// close.
    pub fn eof(&mut self) -> Option<Answer> {
        let done = (self.state == State::UntilClose).then_some(self.current);
        self.state = State::Head;
        done
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` `step` bytes at a time; the answers in order.
    fn read_all(stream: &[u8], step: usize) -> Vec<Answer> {
        let mut r = Reader::new(false);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in stream.chunks(step) {
            buf.extend_from_slice(piece);
            loop {
                let (n, a) = r.feed(&buf).unwrap();
                buf.drain(..n);
                match a {
                    Some(a) => out.push(a),
                    None => break,
                }
            }
        }
        out.extend(r.eof());
        out
    }

    #[test]
    fn pipelined_answers_of_every_framing_in_any_pieces() {
        let stream = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n\
HTTP/1.1 204 No Content\r\n\r\n\
HTTP/1.1 200 OK\r\ncontent-length: 0\r\nConnection: close\r\n\r\n\
HTTP/1.0 404 Not Found\r\n\r\nuntil the end";
        for step in [1, 2, 7, 64, stream.len()] {
            let got = read_all(stream, step);
            let statuses: Vec<(u16, bool)> = got.iter().map(|a| (a.status, a.close)).collect();
            assert_eq!(
                statuses,
                [
                    (200, false),
                    (500, false),
                    (204, false),
                    (200, true),
                    (404, true)
                ],
                "step {step}"
            );
        }
    }

    #[test]
    fn http10_keep_alive_and_head_answers() {
        let mut r = Reader::new(true);
        let head = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 99\r\n\r\n";
        let (n, a) = r.feed(head).unwrap();
        assert_eq!(n, head.len());
        assert_eq!(
            a,
            Some(Answer {
                status: 200,
                close: false
            })
        );
    }

    #[test]
    fn a_repeated_head_reads_as_parsed_and_a_changed_one_is_parsed_again() {
        let same = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let longer = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234567890123456789";
        let closing = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        let stream = [&same[..], same, longer, same, closing].concat();
        for step in [1, 3, stream.len()] {
            let got = read_all(&stream, step);
            let close: Vec<bool> = got.iter().map(|a| a.close).collect();
            assert_eq!(close, [false, false, false, false, true], "step {step}");
        }
        // A head cut short of the remembered one is waited for, not misread.
        let mut r = Reader::new(false);
        assert_eq!(
            r.feed(same).unwrap(),
            (
                same.len(),
                Some(Answer {
                    status: 200,
                    close: false
                })
            )
        );
        assert_eq!(r.feed(&same[..10]).unwrap(), (0, None));
    }

    #[test]
    fn garbage_is_a_parse_error() {
        let mut r = Reader::new(false);
        assert!(r.feed(b"garbage garbage\r\n\r\n").is_err());
        let mut r = Reader::new(false);
        assert!(r.feed(b"HTTP/1.1 999 What\r\n\r\n").is_err());
        let mut r = Reader::new(false);
        assert!(r
            .feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            .is_err());
    }
}
