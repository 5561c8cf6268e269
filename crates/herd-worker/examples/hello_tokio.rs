//! The async variant of `hello` (feature `tokio`): the inherited listeners and the
//! handed-over connections served by tokio tasks, stopped by [`herd_worker::tokio::shutdown`]
//! (SIGTERM, SIGINT or herd's `"shutdown"` message), the shape `axum::serve(…)
//! .with_graceful_shutdown(herd_worker::tokio::shutdown())` takes.
//!
//! ```sh
//! cargo build -p herd-worker --features tokio --examples
//! herd run -i 2 -p 3000 --balance round-robin -- target/debug/examples/hello_tokio
//! ```

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    for listener in herd_worker::listeners()? {
        if let Some(tcp) = listener.into_tokio()?.into_tcp() {
            tokio::spawn(async move {
                while let Ok((conn, _)) = tcp.accept().await {
                    tokio::spawn(serve(conn));
                }
            });
        }
    }
    let handed = herd_worker::connections();
    tokio::spawn(async move {
        while let Ok(Some(conn)) = handed.accept_async().await {
            tokio::spawn(serve(conn));
        }
    });
    // With `herd run --watchdog DUR`: heartbeats from a task, so a stuck runtime is replaced.
    let _heartbeat = herd_worker::tokio::spawn_watchdog();
    herd_worker::ready()?;
    let why = herd_worker::tokio::shutdown_reason().await;
    println!("hello_tokio: stopping ({why:?})");
    herd_worker::flush()?;
    Ok(())
}

async fn serve(mut conn: impl AsyncReadExt + AsyncWriteExt + Unpin) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 16 * 1024 {
            return;
        }
    }
    herd_worker::count("requests", 1);
    let slot = herd_worker::slot().map_or("-".to_string(), |s| s.to_string());
    let body = format!("pid={} slot={slot}\n", std::process::id());
    let answer = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(answer.as_bytes()).await;
}
