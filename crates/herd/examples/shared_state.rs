//! The article's "Shared State with IPC" in Rust: every worker counts its requests with
//! `herd::worker::count`, and `/stats` answers herd's totals over all workers.
//!
//! ```sh
//! cargo run --release --example shared_state   # serves on PORT (default 3000)
//! curl localhost:3000/ ; curl localhost:3000/stats
//! # {"requests":{"slots":{"0":1},"total":1}}
//! ```
//!
//! The primary keeps the totals (the article's `stats` object); a count is batched in the
//! worker and reaches the primary within `herd::worker::FLUSH_EVERY` (100 ms), so counting
//! every request costs nothing measurable. Counting happens in herd, not in this program:
//! the totals survive a worker's restart.

use std::io;
use std::process::ExitCode;

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use herd::cluster::Worker;

#[path = "support/drain.rs"]
mod drain;
use serde_json::Value;

#[path = "support/instances.rs"]
mod instances;

fn main() -> ExitCode {
    let cluster = instances::from_env(herd::Cluster::new());
    cluster.run(|worker| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(serve(worker))
    })
}

async fn serve(worker: Worker) -> io::Result<()> {
    let listener = worker.tokio_listener()?;
    let body = format!("worker pid={} slot={}\n", std::process::id(), worker.slot());
    let app = Router::new()
        .route(
            "/",
            get(move || async move {
                herd::worker::count("requests", 1);
                body
            }),
        )
        .route("/stats", get(stats));
    worker.ready()?;
    // Stops at herd's stop signal, after the requests in progress (see support/drain.rs).
    let (listener, stopped) = drain::on_shutdown(listener);
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await?;
    // The counts of the last 100 ms, before the worker is gone.
    herd::worker::flush().map_err(io::Error::other)
}

/// herd's counters: `{"requests":{"total":N,"slots":{"0":…,"1":…}}}`.
async fn stats() -> Result<Json<Value>, (StatusCode, String)> {
    // `stats()` waits for the primary's answer on the channel: not on the runtime's thread.
    let answer = tokio::task::spawn_blocking(herd::worker::stats)
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    // `None`: run outside herd, where nothing is counted.
    Ok(Json(answer.map_or(Value::Null, |a| a["counters"].clone())))
}
