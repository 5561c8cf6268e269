//! HTTP/1.1, just enough: keep-alive (HTTP/1.1 default, HTTP/1.0 only when asked),
//! `Connection: close`, CRLF or bare LF, bodies skipped by `Content-Length`, every answer
//! with `Content-Length`. One blocking loop per connection.

use std::io::{self, Write};

use crate::routes::route;
use crate::serve::Ctx;
use crate::sockets::Stream;
use crate::stop;

/// Largest request head we accept before answering 431.
const MAX_HEAD: usize = 64 * 1024;

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
pub(crate) fn respond(
    out: &mut Vec<u8>,
    code: u16,
    body: &str,
    head_only: bool,
    keep_alive: bool,
    v10: bool,
) {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
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
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{allow}{conn}\r\n",
        body.len()
    );
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
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
            if !out.is_empty() {
                if s.write_all(&out).is_err() {
                    return;
                }
                out.clear();
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
        let (code, body) = if req.method == "GET" || head_only {
            route(ctx, req.target, &mut scratch)
        } else {
            (405, "method not allowed\n")
        };
        let keep_alive = req.keep_alive && !req.chunked && !stop::requested();
        respond(&mut out, code, body, head_only, keep_alive, !req.http11);
        skip = req.content_length;
        start += n;
        if !keep_alive {
            let _ = s.write_all(&out);
            return;
        }
    }
}
