//! The article's "Graceful Shutdown" in Rust: on SIGTERM (or Ctrl-C) the primary asks every
//! worker to stop; each stops accepting, finishes the requests in progress, and exits; then
//! the primary exits 0.
//!
//! ```sh
//! cargo run --release --example graceful     # serves on PORT (default 3000)
//! curl localhost:3000/slow &                 # takes a second...
//! kill -TERM <primary pid>                   # ...and still gets its answer
//! ```
//!
//! The article's "forcing shutdown after timeout" is herd's `--kill-timeout`: a worker still
//! busy 10 s after the signal is killed, and the primary then exits 3 to say so.

use std::io;
use std::process::ExitCode;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use herd::cluster::Worker;

#[path = "support/drain.rs"]
mod drain;

/// How long `/slow` works before it answers: long enough to send a signal meanwhile.
const SLOW: Duration = Duration::from_secs(1);

#[path = "support/instances.rs"]
mod instances;

fn main() -> ExitCode {
    let cluster = instances::from_env(herd::Cluster::new().flag("--kill-timeout", "10s"));
    cluster.run(|worker| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(serve(worker))
    })
}

async fn serve(worker: Worker) -> io::Result<()> {
    let listener = worker.tokio_listener()?;
    let pid = std::process::id();
    let app = Router::new()
        .route(
            "/",
            get(move || async move { format!("worker pid={pid}\n") }),
        )
        .route("/slow", get(move || slow(pid)));
    worker.ready()?;
    // At herd's stop signal (or its "shutdown" message) the listener stops accepting, and
    // `stopped` resolves once every accepted connection has sent its request; then axum
    // finishes the requests in progress and returns. support/drain.rs says why it takes
    // more than `with_graceful_shutdown(herd::worker::tokio::shutdown())`.
    let (listener, stopped) = drain::on_shutdown(listener);
    let stop = async move {
        stopped.await;
        println!("worker {pid} shutting down...");
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await?;
    println!("worker {pid} closed all connections");
    Ok(())
}

async fn slow(pid: u32) -> String {
    // Said when the work starts, so that a test can send the signal during it.
    println!("worker {pid} started a slow request");
    tokio::time::sleep(SLOW).await;
    format!("worker pid={pid} finished a slow request\n")
}
