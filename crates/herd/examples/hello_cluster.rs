//! The article's "Basic Cluster Setup" in Rust: one binary that is the primary and every
//! worker. `cargo run --release --example hello_cluster` serves on PORT (default 3000)
//! from one worker per CPU; SIGHUP reloads with zero downtime (no request fails), SIGTERM
//! drains and exits.
//!
//! The primary prints each worker's lifecycle (fork, online, listening, exit) and the
//! message every worker sends when it starts.

use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;

#[path = "support/instances.rs"]
mod instances;

fn main() -> ExitCode {
    let cluster = instances::from_env(herd::Cluster::new());
    cluster
        .on_event(|e| println!("primary: {e:?}"))
        .on_message(|from, msg| {
            println!(
                "primary: message from worker {} (pid {}): {msg}",
                from.slot, from.pid
            );
            None
        })
        .run(|worker| {
            let listener = worker.tcp_listener()?;
            worker.send(&serde_json::json!({"hello": worker.slot()}))?;
            worker.ready()?;
            let pid = std::process::id();
            // Ends at herd's stop signal, after answering the connection in hand: a worker
            // replaced by a reload drops nothing it accepted.
            for conn in herd::worker::incoming(&listener) {
                let Ok(mut conn) = conn else { continue };
                // Read the request head; answer and close.
                let mut reader = BufReader::new(&conn);
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                    line.clear();
                }
                let body = format!("Hello from worker {pid} (slot {})\n", worker.slot());
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
            Ok(())
        })
}
