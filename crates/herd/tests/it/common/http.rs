//! HTTP/1.1 clients: ureq for plain GETs, and raw exchanges on connections from chosen
//! source addresses (every address of 127.0.0.0/8 is local on Linux), for the handoff
//! modes (sticky, least-conn, proxy) and connections held open.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

/// (pid, slot) from the test worker's `pid=P slot=S gen=G` body.
pub fn ident(body: &str) -> Option<(u32, usize)> {
    let mut pid = None;
    let mut slot = None;
    for kv in body.split_whitespace() {
        if let Some(v) = kv.strip_prefix("pid=") {
            pid = v.parse().ok();
        } else if let Some(v) = kv.strip_prefix("slot=") {
            slot = v.parse().ok();
        }
    }
    Some((pid?, slot?))
}

/// `KEY=VALUE` lines of a body as a map.
pub fn kv(body: &str) -> HashMap<String, String> {
    body.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// GET on a fresh connection with timeouts. Non-2xx statuses are answers, not errors.
pub fn http_get(url: &str) -> Result<(u16, String), String> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build();
    agent_get(&agent, url)
}

/// GET with a given agent (whose pool may reuse a keep-alive connection).
pub fn agent_get(agent: &ureq::Agent, url: &str) -> Result<(u16, String), String> {
    match agent.get(url).call() {
        Ok(r) => {
            let status = r.status();
            let body = r.into_string().map_err(|e| format!("reading body: {e}"))?;
            Ok((status, body))
        }
        Err(ureq::Error::Status(code, r)) => Ok((code, r.into_string().unwrap_or_default())),
        Err(e) => Err(e.to_string()),
    }
}

/// `GET /` on the kept-alive connection `conn` (a new one to 127.0.0.1:`port` when `None`),
/// as wrk does it: a request on a connection the server closed under it fails, it is not
/// retried (ureq retries it). The answer must be a 200 naming a worker pid; `conn` is left
/// `None` after a `Connection: close` answer or a failure. Returns (pid, whether the server
/// asked to close).
pub fn keep_alive_get(
    conn: &mut Option<std::net::TcpStream>,
    port: u16,
    connect: Duration,
    io: Duration,
) -> Result<(u32, bool), String> {
    let mut s = match conn.take() {
        Some(s) => s,
        None => connect_within(std::net::Ipv4Addr::LOCALHOST, port, connect, io)
            .map_err(|e| format!("connect: {e}"))?,
    };
    s.write_all(b"GET / HTTP/1.1\r\nHost: herd-test\r\n\r\n")
        .map_err(|e| format!("sending on a kept-alive connection: {e}"))?;
    let (status, body, close) = read_response_closing(&mut s)?;
    if status != 200 {
        return Err(format!("status {status}: {body:?}"));
    }
    let pid = answer_pid(&body).ok_or_else(|| format!("no worker pid in {body:?}"))?;
    if !close {
        *conn = Some(s);
    }
    Ok((pid, close))
}

/// A raw HTTP/1.1 exchange over any stream: writes `request`, reads to EOF.
pub fn raw_exchange(mut s: impl Read + Write, request: &str) -> std::io::Result<String> {
    s.write_all(request.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// A TCP connection to 127.0.0.1:`port` from the source address `src` (every address of
/// 127.0.0.0/8 is local on Linux), with 10 s read and write timeouts.
pub fn connect_from(src: std::net::Ipv4Addr, port: u16) -> std::io::Result<std::net::TcpStream> {
    connect_within(src, port, Duration::from_secs(5), Duration::from_secs(10))
}

/// [`connect_from`] with a `connect` timeout and an `io` timeout for each read and write.
pub fn connect_within(
    src: std::net::Ipv4Addr,
    port: u16,
    connect: Duration,
    io: Duration,
) -> std::io::Result<std::net::TcpStream> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let s = if src == std::net::Ipv4Addr::LOCALHOST {
        // The kernel's choice of source address is 127.0.0.1 too: no bind needed.
        std::net::TcpStream::connect_timeout(&to, connect)?
    } else {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        s.bind(&SockAddr::from(std::net::SocketAddrV4::new(src, 0)))?;
        s.connect_timeout(&SockAddr::from(to), connect)?;
        std::net::TcpStream::from(s)
    };
    s.set_read_timeout(Some(io))?;
    s.set_write_timeout(Some(io))?;
    Ok(s)
}

/// Reads exactly one HTTP/1.1 response (body by Content-Length, chunked, or to EOF) from `s`;
/// returns (status, body).
pub fn read_response(s: &mut impl Read) -> Result<(u16, String), String> {
    read_response_closing(s).map(|(status, body, _)| (status, body))
}

/// A response head: its status and its text.
pub struct Head {
    pub status: u16,
    pub text: String,
}

impl Head {
    /// The value of header `name` (any case), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads one response head from `s`, byte by byte: nothing of the body is consumed.
pub fn read_head(s: &mut impl Read) -> Result<Head, String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) => {
                return Err(format!(
                    "connection closed before a full response head: {:?}",
                    String::from_utf8_lossy(&buf)
                ))
            }
            Ok(_) => buf.push(byte[0]),
            Err(e) => {
                return Err(format!(
                    "reading the response head: {e} (got {:?})",
                    String::from_utf8_lossy(&buf)
                ))
            }
        }
        if buf.len() > 64 * 1024 {
            return Err("response head longer than 64 KiB".into());
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {text:?}"))?;
    Ok(Head { status, text })
}

/// [`read_response`], and whether the server said `Connection: close`.
pub fn read_response_closing(s: &mut impl Read) -> Result<(u16, String, bool), String> {
    let head = read_head(s)?;
    let header = |name: &str| head.header(name).map(str::to_ascii_lowercase);
    let mut byte = [0u8; 1];
    let mut body = Vec::new();
    if let Some(n) = header("content-length") {
        let n: usize = n
            .parse()
            .map_err(|_| format!("bad Content-Length in {:?}", head.text))?;
        body.resize(n, 0);
        s.read_exact(&mut body)
            .map_err(|e| format!("reading a body of {n} bytes: {e}"))?;
    } else if header("transfer-encoding").as_deref() == Some("chunked") {
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                s.read_exact(&mut byte)
                    .map_err(|e| format!("reading a chunk size: {e}"))?;
                line.push(byte[0]);
            }
            let size = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
            let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {size:?}"))?;
            let mut chunk = vec![0; size + 2];
            s.read_exact(&mut chunk)
                .map_err(|e| format!("reading a chunk: {e}"))?;
            if size == 0 {
                break; // (no trailers from our workers)
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        s.read_to_end(&mut body)
            .map_err(|e| format!("reading a body to EOF: {e}"))?;
    }
    let close = header("connection").as_deref() == Some("close");
    Ok((
        head.status,
        String::from_utf8_lossy(&body).into_owned(),
        close,
    ))
}

/// Sends `GET path` on `s` (with `Connection: close` if `close`) and reads the response.
pub fn request_on(
    s: &mut std::net::TcpStream,
    path: &str,
    close: bool,
) -> Result<(u16, String), String> {
    let conn = if close { "Connection: close\r\n" } else { "" };
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{conn}\r\n").as_bytes())
        .map_err(|e| format!("sending the request: {e}"))?;
    read_response(s)
}

/// The worker pid in an answer: `pid=P` (herd-testworker, examples/handoff.py) or
/// `worker P` (the article's programs).
pub fn answer_pid(body: &str) -> Option<u32> {
    let digits = |rest: &str| {
        rest.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
    };
    let rest = body
        .split("pid=")
        .nth(1)
        .or_else(|| body.split("\"pid\":").nth(1))
        .or_else(|| body.split("worker ").nth(1))?;
    digits(rest).parse().ok()
}

/// `GET path` on a new connection from `src` (closed after the answer); the answer must
/// be a 200 naming a worker pid. Returns (pid, body).
pub fn get_from(src: std::net::Ipv4Addr, port: u16, path: &str) -> Result<(u32, String), String> {
    get_from_within(
        src,
        port,
        path,
        Duration::from_secs(5),
        Duration::from_secs(10),
    )
}

/// [`get_from`] with a `connect` timeout and an `io` timeout for each read and write.
pub fn get_from_within(
    src: std::net::Ipv4Addr,
    port: u16,
    path: &str,
    connect: Duration,
    io: Duration,
) -> Result<(u32, String), String> {
    let mut s =
        connect_within(src, port, connect, io).map_err(|e| format!("connect from {src}: {e}"))?;
    let (status, body) = request_on(&mut s, path, true).map_err(|e| format!("from {src}: {e}"))?;
    if status != 200 {
        return Err(format!("from {src}: status {status}: {body:?}"));
    }
    let pid = answer_pid(&body).ok_or_else(|| format!("from {src}: no worker pid in {body:?}"))?;
    Ok((pid, body))
}

/// A connection kept open: one request answered (so we know the worker), then the start
/// of a second request head, so that no keep-alive idle timeout of the worker closes it.
/// Dropping it closes the connection.
pub struct Held {
    /// Open until dropped.
    _stream: std::net::TcpStream,
    pub pid: u32,
}

impl Held {
    pub fn open(src: std::net::Ipv4Addr, port: u16) -> Result<Held, String> {
        let mut stream = connect_from(src, port).map_err(|e| format!("connect: {e}"))?;
        let (status, body) = request_on(&mut stream, "/", false)?;
        if status != 200 {
            return Err(format!("status {status}: {body:?}"));
        }
        let pid = answer_pid(&body).ok_or_else(|| format!("no worker pid in {body:?}"))?;
        stream
            .write_all(b"GET / HTTP/1.1\r\n")
            .map_err(|e| format!("starting the second request: {e}"))?;
        Ok(Held {
            _stream: stream,
            pid,
        })
    }
}

/// In a Prometheus exposition, the value of the sample `series` (its name and labels as
/// written), if present.
pub fn sample_value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
