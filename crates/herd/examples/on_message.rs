//! The primary answers its workers: a message a worker sends (`worker.send`) reaches
//! `on_message` in the primary, and the value `on_message` returns goes back to that worker
//! only, where `herd::worker::recv()` reads it.
//!
//! ```sh
//! cargo run --example on_message      # serves on PORT (default 3000)
//! curl 'localhost:3000/ask?n=7'       # {"me":…,"reply":{"n":7,"pid":…,"slot":…}}
//! ```
//!
//! `GET /ask?n=N` makes the worker send `{"n":N}` and wait for the primary's reply, which it
//! answers along with its own pid. One request at a time per worker, so each reply is the
//! answer to the request in hand.

use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;

use serde_json::{json, Value};

#[path = "support/instances.rs"]
mod instances;

fn main() -> ExitCode {
    instances::from_env(herd::Cluster::new())
        .on_message(|from, msg| Some(json!({"n": msg["n"], "slot": from.slot, "pid": from.pid})))
        .run(|worker| {
            let listener = worker.tcp_listener()?;
            worker.ready()?;
            let me = std::process::id();
            // Ends at herd's stop signal, after answering the connection in hand.
            for conn in herd::worker::incoming(&listener) {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(&conn);
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                // The rest of the head, up to its blank line.
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                    line.clear();
                }
                let n: Option<u64> = request
                    .split_whitespace()
                    .nth(1)
                    .and_then(|target| target.strip_prefix("/ask?n="))
                    .and_then(|n| n.parse().ok());
                let body = match n {
                    Some(n) => {
                        worker.send(&json!({ "n": n }))?;
                        let reply = herd::worker::recv()
                            .map_err(std::io::Error::other)?
                            .unwrap_or(Value::Null);
                        json!({"me": me, "reply": reply}).to_string()
                    }
                    None => format!("worker pid={me}: ask /ask?n=N\n"),
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
            Ok(())
        })
}
