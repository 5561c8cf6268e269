//! The article's "Express with Clustering" in Rust: an axum app with `/` and a CPU-heavy
//! `/heavy`, one worker per CPU under [`herd::Cluster`].
//!
//! ```sh
//! cargo run --release --example axum_heavy   # serves on PORT (default 3000)
//! curl localhost:3000/ ; curl localhost:3000/heavy
//! ```
//!
//! Each worker serves the socket herd passed it as a tokio listener and stops gracefully on
//! `herd::worker::tokio::shutdown()` (SIGTERM, or herd's `"shutdown"` message).
//! `SINGLE_PROCESS=1` runs the same app as one multi-threaded tokio process instead (the
//! benchmark's baseline); `COUNT=1` counts every `/` with herd's batched counter.

use std::io;
use std::process::ExitCode;

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use herd::cluster::Worker;

#[path = "support/drain.rs"]
mod drain;
use serde_json::{json, Value};

/// How far `/heavy` counts: tens of milliseconds of one core, enough to see on a load test.
const HEAVY_SUM_TO: u64 = 10_000_000;

#[path = "support/instances.rs"]
mod instances;

fn main() -> ExitCode {
    // SINGLE_PROCESS=1: the same app as one multi-threaded tokio process on PORT, without
    // herd: the baseline of scripts/bench/cluster_axum.sh.
    if std::env::var_os("SINGLE_PROCESS").is_some() {
        return match single_process() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("axum_heavy: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let cluster = instances::from_env(herd::Cluster::new());
    cluster.run(|worker| {
        // One worker per CPU already uses every core, so each worker runs a single-threaded
        // runtime, as a Node process does.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(serve(worker))
    })
}

/// The routes; `slot` names the worker in the answers.
fn app(slot: usize) -> Router {
    Router::new()
        .route("/", get(move || hello(slot)))
        .route("/heavy", get(move || heavy(slot)))
}

fn single_process() -> io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
            axum::serve(listener, app(0)).await
        })
}

async fn serve(worker: Worker) -> io::Result<()> {
    let listener = worker.tokio_listener()?;
    let app = app(worker.slot());
    worker.ready()?;
    // Stops at herd's stop signal, after the requests in progress (see support/drain.rs).
    let (listener, stopped) = drain::on_shutdown(listener);
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await
}

async fn hello(slot: usize) -> Json<Value> {
    // COUNT=1: count every request with herd's batched counter (what it costs is measured
    // by scripts/bench/cluster_axum.sh).
    if counting() {
        herd::worker::count("requests", 1);
    }
    Json(json!({"message": "Hello", "pid": std::process::id(), "slot": slot}))
}

fn counting() -> bool {
    static COUNT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *COUNT.get_or_init(|| std::env::var_os("COUNT").is_some())
}

async fn heavy(slot: usize) -> Result<Json<Value>, StatusCode> {
    // Inline, this loop would stall every other request of this worker's single-threaded
    // runtime (Express's /heavy blocks its event loop the same way); on tokio's blocking
    // pool, `/` keeps answering while a `/heavy` runs.
    let sum = tokio::task::spawn_blocking(|| {
        // black_box: without it the optimizer replaces the loop with n(n-1)/2.
        (0..HEAVY_SUM_TO).fold(0u64, |sum, i| sum + std::hint::black_box(i))
    })
    .await
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(Json(
        json!({"sum": sum, "pid": std::process::id(), "slot": slot}),
    ))
}
