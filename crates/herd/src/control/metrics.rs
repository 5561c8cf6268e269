//! `herd metrics [APP…] [--app] [--admin ADDR]`: the Prometheus exposition for people
//! without Prometheus at hand. From the daemon over its control socket, or, with
//! `--admin`, from the admin listener of a `herd run` (a plain HTTP/1.0 GET: the CLI needs
//! no HTTP client for one request).

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use super::args::MetricsArgs;
use super::client::Client;
use super::protocol::{Request, Response};
use super::verbs::{answer, fail};
use crate::listen::ListenAddr;

/// How long the CLI waits for an admin listener's answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `herd metrics`.
pub fn run(client: &Client, args: &MetricsArgs) -> ExitCode {
    let Some(addr) = &args.admin else {
        let request = Request::Metrics {
            select: args.apps.clone(),
            app_own: args.app,
        };
        return match client.request(request) {
            Ok(Response::Done { lines, .. }) => {
                print!("{}", lines.concat());
                ExitCode::SUCCESS
            }
            other => answer(other, false),
        };
    };
    if !args.apps.is_empty() {
        return fail("--admin asks one `herd run`, which has one app: name no app");
    }
    let path = if args.app { "/metrics/app" } else { "/metrics" };
    match get(addr, path) {
        Ok(body) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&format!("--admin {addr}: {e}")),
    }
}

/// `GET path` on the admin listener at `addr`; the body of a 200.
pub(super) fn get(addr: &ListenAddr, path: &str) -> Result<String, String> {
    let request = format!("GET {path} HTTP/1.0\r\nHost: herd\r\nUser-Agent: herd-cli\r\n\r\n");
    let mut answer = Vec::new();
    let io = |e: std::io::Error| e.to_string();
    match addr {
        ListenAddr::Tcp(a) => {
            let mut s = std::net::TcpStream::connect_timeout(a, TIMEOUT).map_err(io)?;
            s.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
            s.write_all(request.as_bytes()).map_err(io)?;
            s.read_to_end(&mut answer).map_err(io)?;
        }
        ListenAddr::Unix(p) => {
            let mut s = std::os::unix::net::UnixStream::connect(p).map_err(io)?;
            s.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
            s.write_all(request.as_bytes()).map_err(io)?;
            s.read_to_end(&mut answer).map_err(io)?;
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("answered {status:?}: {}", body.trim()));
    }
    Ok(body.to_string())
}
