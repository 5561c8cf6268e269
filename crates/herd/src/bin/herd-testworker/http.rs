//! HTTP/1.1, just enough: keep-alive (HTTP/1.1 default, HTTP/1.0 only when asked),
//! `Connection: close`, CRLF or bare LF, bodies skipped by `Content-Length`, every answer
//! with `Content-Length`. One blocking loop per connection, which a busy hang
//! (`hang.rs`) stops before it answers anything more.

use std::io::{self, Write};

use crate::hang;
use crate::routes::{route, Answer};
use crate::serve::Ctx;
use crate::sockets::Stream;
use crate::stop;

/// Largest request head we accept before answering 431.
const MAX_HEAD: usize = 64 * 1024;

/// What a [`Answer::Big`] body is made of, written again and again.
static BIG_CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

// HTTP

/// Index just past the blank line ending the head, if complete.
fn head_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = b[i..].iter().position(|&c| c == b'\n') {
        let p = i + p;
        match (b.get(p + 1), b.get(p + 2)) {
            (Some(b'\n'), _) => return Some(p + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(p + 3),
            _ => i = p + 1,
        }
    }
    None
}

fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

struct Request<'a> {
    method: &'a str,
    target: &'a str,
    http11: bool,
    keep_alive: bool,
    content_length: u64,
    chunked: bool,
}

fn parse_head(head: &[u8]) -> Option<Request<'_>> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let mut parts = lines.next()?.split_ascii_whitespace();
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return None,
    };
    let mut req = Request {
        method,
        target,
        http11,
        keep_alive: http11,
        content_length: 0,
        chunked: false,
    };
    for line in lines {
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            req.content_length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("connection") {
            if has_token(value, "close") {
                req.keep_alive = false;
            } else if has_token(value, "keep-alive") {
                req.keep_alive = true;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            req.chunked = true;
        }
    }
    Some(req)
}

/// Appends a full response to `out`.
fn respond(out: &mut Vec<u8>, code: u16, body: &str, head_only: bool, keep_alive: bool, v10: bool) {
    respond_head(out, code, body.len(), keep_alive, v10);
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
}

/// Appends the head of a response whose body has `len` bytes to `out`.
fn respond_head(out: &mut Vec<u8>, code: u16, len: usize, keep_alive: bool, v10: bool) {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let conn = match (keep_alive, v10) {
        (false, _) => "Connection: close\r\n",
        (true, true) => "Connection: keep-alive\r\n",
        (true, false) => "",
    };
    let allow = if code == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let _ = write!(
        out,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\n{allow}{conn}\r\n",
    );
}

/// Writes `out` to `s` and empties it; false if the connection is gone.
fn flush(s: &Stream, out: &mut Vec<u8>) -> bool {
    let ok = out.is_empty() || s.write_all(out).is_ok();
    out.clear();
    ok
}

/// Answers requests on `s` until the client closes, an answer closes the connection, or
/// the stop drain wakes it.
pub(crate) fn serve_conn(ctx: &Ctx, s: &Stream) {
    let mut buf = vec![0u8; 8192];
    let (mut start, mut end) = (0usize, 0usize);
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut skip: u64 = 0; // body bytes still to discard
    let mut scratch = String::new();
    loop {
        if ctx.hangs.busy() {
            // A hung process answers nothing more (what it had answered is sent).
            flush(s, &mut out);
            hang::block_forever();
        }
        // Discard body bytes of the previous request.
        if skip > 0 {
            let n = skip.min((end - start) as u64) as usize;
            start += n;
            skip -= n as u64;
        }
        // Tolerate blank lines between requests.
        if skip == 0 {
            while start < end && matches!(buf[start], b'\r' | b'\n') {
                start += 1;
            }
        }
        if start == end {
            start = 0;
            end = 0;
        }
        let complete = if skip == 0 {
            head_end(&buf[start..end])
        } else {
            None
        };
        let Some(n) = complete else {
            // Need more bytes: flush pending responses first.
            if !flush(s, &mut out) {
                return;
            }
            if skip == 0 && end - start >= MAX_HEAD {
                respond(
                    &mut out,
                    431,
                    "request head too large\n",
                    false,
                    false,
                    false,
                );
                let _ = s.write_all(&out);
                return;
            }
            if end == buf.len() {
                if start > 0 {
                    buf.copy_within(start..end, 0);
                    end -= start;
                    start = 0;
                } else {
                    buf.resize(buf.len() * 2, 0);
                }
            }
            match s.read(&mut buf[end..]) {
                Ok(0) => return,
                Ok(k) => end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
            continue;
        };
        let head = &buf[start..start + n];
        let Some(req) = parse_head(head) else {
            respond(&mut out, 400, "bad request\n", false, false, false);
            let _ = s.write_all(&out);
            return;
        };
        let head_only = req.method == "HEAD";
        let answer = if req.method == "GET" || head_only {
            route(ctx, req.target, &mut scratch)
        } else {
            Answer::Text(405, "method not allowed\n")
        };
        let keep_alive = req.keep_alive && !req.chunked && !stop::requested();
        match answer {
            Answer::Text(code, body) => {
                respond(&mut out, code, body, head_only, keep_alive, !req.http11);
            }
            Answer::Raw(bytes) => {
                out.extend_from_slice(bytes);
                flush(s, &mut out);
                return;
            }
            Answer::Hold => {
                if flush(s, &mut out) {
                    hang::hold(s);
                }
                return;
            }
            Answer::Big(len) => {
                respond_head(&mut out, 200, len, keep_alive, !req.http11);
                if !head_only {
                    let sent = flush(s, &mut out) && write_big(s, len);
                    if !sent {
                        return;
                    }
                }
            }
        }
        skip = req.content_length;
        start += n;
        if !keep_alive {
            let _ = s.write_all(&out);
            return;
        }
    }
}

/// Writes a body of `len` bytes, as fast as the client reads; false if the connection
/// is gone.
fn write_big(s: &Stream, mut len: usize) -> bool {
    while len > 0 {
        let n = len.min(BIG_CHUNK.len());
        if s.write_all(&BIG_CHUNK[..n]).is_err() {
            return false;
        }
        len -= n;
    }
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::thread;
    use std::time::Duration;

    use super::*;

    /// A `Ctx` for the life of the test process, whose busy hang spins no thread.
    pub(crate) fn ctx() -> &'static Ctx {
        let ctx: &'static Ctx = Box::leak(Box::new(Ctx::new("id\n".into(), String::new())));
        ctx.hangs.never_spin();
        ctx
    }

    /// A client of a new connection thread of `ctx`.
    fn connect(ctx: &'static Ctx) -> UnixStream {
        let (client, server) = UnixStream::pair().expect("a socket pair");
        thread::spawn(move || serve_conn(ctx, &Stream::Unix(server)));
        client
    }

    /// Reads one response: its head (up to the blank line) and its body (by
    /// `Content-Length`; none for `HEAD`).
    pub(crate) fn read_response(c: &mut UnixStream, head_only: bool) -> (String, Vec<u8>) {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            c.read_exact(&mut byte).expect("a response head");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).expect("a text head");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("a Content-Length")
            .parse()
            .expect("a number");
        let mut body = vec![0u8; if head_only { 0 } else { len }];
        c.read_exact(&mut body).expect("the body");
        (head, body)
    }

    /// Sends `GET target` and reads the response: (status line, body).
    pub(crate) fn get(c: &mut UnixStream, target: &str) -> (String, String) {
        write!(c, "GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let (head, body) = read_response(c, false);
        let status = head.lines().next().unwrap_or_default().to_string();
        (status, String::from_utf8(body).expect("a text body"))
    }

    /// Nothing comes on `c` for a while, and it is not closed either.
    pub(crate) fn assert_no_answer(c: &mut UnixStream) {
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        match c.read(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            other => panic!("expected no answer, got {other:?}"),
        }
    }

    fn ok(body: &str) -> (String, String) {
        ("HTTP/1.1 200 OK".into(), body.into())
    }

    #[test]
    fn healthz_answers_as_health_says() {
        let ctx = ctx();
        let c = &mut connect(ctx);
        assert_eq!(get(c, "/healthz"), ok("ok\n"));
        assert_eq!(get(c, "/health?mode=fail"), ok("health fail\n"));
        let unhealthy = (
            "HTTP/1.1 503 Service Unavailable".into(),
            "unhealthy\n".into(),
        );
        assert_eq!(get(c, "/healthz"), unhealthy);
        assert_eq!(get(c, "/"), ok("id\n"));
        assert_eq!(get(c, "/health?mode=slow&ms=20"), ok("health slow\n"));
        assert_eq!(get(c, "/healthz"), ok("ok\n"));
        assert_eq!(get(c, "/health?mode=bogus").0, "HTTP/1.1 400 Bad Request");
        assert_eq!(get(c, "/health?mode=ok"), ok("health ok\n"));
        assert_eq!(get(c, "/healthz"), ok("ok\n"));
    }

    #[test]
    fn a_huge_healthz_is_sent_whole_and_the_connection_goes_on() {
        let ctx = ctx();
        let c = &mut connect(ctx);
        assert_eq!(get(c, "/health?mode=huge"), ok("health huge\n"));
        c.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
        let (head, body) = read_response(c, false);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Length: 10485760\r\n"), "{head}");
        assert_eq!(body.len(), 10 << 20);
        assert!(body.iter().all(|&b| b == b'x'));
        c.write_all(b"HEAD /healthz HTTP/1.1\r\n\r\n").unwrap();
        let (head, _) = read_response(c, true);
        assert!(head.contains("Content-Length: 10485760\r\n"), "{head}");
        assert_eq!(get(c, "/"), ok("id\n"));
    }

    #[test]
    fn a_garbage_healthz_is_not_http_and_closes() {
        let ctx = ctx();
        let c = &mut connect(ctx);
        assert_eq!(get(c, "/health?mode=garbage"), ok("health garbage\n"));
        assert_eq!(get(c, "/"), ok("id\n"));
        c.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
        let mut all = Vec::new();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.read_to_end(&mut all).expect("the garbage, then EOF");
        assert_eq!(all, b"garbage garbage\n");
    }

    #[test]
    fn a_held_healthz_gets_no_answer_and_is_not_closed() {
        let ctx = ctx();
        let c = &mut connect(ctx);
        assert_eq!(get(c, "/health?mode=hold"), ok("health hold\n"));
        c.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
        assert_no_answer(c);
        // Nor once the client has sent all it will.
        c.shutdown(std::net::Shutdown::Write).unwrap();
        assert_no_answer(c);
        // Other connections are served, /healthz included (held too).
        let d = &mut connect(ctx);
        assert_eq!(get(d, "/"), ok("id\n"));
    }

    #[test]
    fn a_busy_hang_answers_then_nothing_more_on_any_connection() {
        let ctx = ctx();
        let (a, b) = (&mut connect(ctx), &mut connect(ctx));
        assert_eq!(get(a, "/"), ok("id\n"));
        // Pipelined: the hang's answer comes, the next request's does not.
        b.write_all(b"GET /hang?how=busy HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")
            .unwrap();
        let (head, body) = read_response(b, false);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(body, b"hanging busy\n");
        assert!(ctx.hangs.busy());
        assert_no_answer(b);
        // An open connection, and a new one.
        a.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert_no_answer(a);
        let c = &mut connect(ctx);
        c.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
        assert_no_answer(c);
    }

    #[test]
    fn a_busy_hang_asked_with_connection_close_is_answered_and_closed() {
        let ctx = ctx();
        let c = &mut connect(ctx);
        c.write_all(b"GET /hang?how=busy HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut all = Vec::new();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.read_to_end(&mut all).expect("the answer, then EOF");
        assert!(all.ends_with(b"\r\n\r\nhanging busy\n"));
    }
}
