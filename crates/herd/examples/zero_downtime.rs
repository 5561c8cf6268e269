//! The article's "Zero-Downtime Restart" in Rust: SIGHUP (or SIGUSR2) starts a rolling
//! reload. herd starts a worker of the new generation, waits until it is ready, then stops
//! an old one gracefully, one slot at a time; no request fails meanwhile.
//!
//! ```sh
//! cargo run --release --example zero_downtime   # serves on PORT (default 3000)
//! cargo build --release --example zero_downtime # a new build of the program...
//! kill -HUP <primary pid>                       # ...replaces the workers, generation 1
//! ```
//!
//! Each answer names its worker's generation, and the primary prints the workers'
//! lifecycle, so the reload can be watched.

use std::io;
use std::process::ExitCode;

use axum::routing::get;
use axum::Router;
use herd::cluster::Worker;

#[path = "support/drain.rs"]
mod drain;

#[path = "support/instances.rs"]
mod instances;

fn main() -> ExitCode {
    let cluster = instances::from_env(herd::Cluster::new());
    cluster
        .on_event(|e| println!("primary: {e:?}"))
        .run(|worker| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(serve(worker))
        })
}

async fn serve(worker: Worker) -> io::Result<()> {
    let listener = worker.tokio_listener()?;
    let body = format!(
        "worker pid={} slot={} generation={}\n",
        std::process::id(),
        worker.slot(),
        worker.generation()
    );
    let app = Router::new().route("/", get(move || async move { body }));
    // herd stops an old worker only after its replacement said it is ready.
    worker.ready()?;
    // An old worker serves every connection it accepted before it exits; the ones it did
    // not accept stay queued on the socket for its replacement.
    let (listener, stopped) = drain::on_shutdown(listener);
    axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await
}
