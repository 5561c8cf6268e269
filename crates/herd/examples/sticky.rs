//! The article's "Sticky Sessions" in Rust: the primary accepts every connection and hands
//! it to the worker that the client's IP address picks, so a client always reaches the same
//! worker (and its in-memory sessions) while others spread over all of them.
//!
//! ```sh
//! cargo run --release --example sticky   # serves on PORT (default 3000)
//! curl localhost:3000/                   # always the same worker from one address
//! ```
//!
//! The workers bind nothing: they serve the connections the primary passes over their
//! channel (`herd::worker::connections()`), with the same axum app as any listener.

use std::io;
use std::net::SocketAddr;
use std::process::ExitCode;

use axum::routing::get;
use axum::Router;
use herd::worker::tokio::{TokioConnection, TokioStream};
use herd::worker::Connections;
use herd::Balance;

#[path = "support/drain.rs"]
mod drain;

#[path = "support/instances.rs"]
mod instances;

fn main() -> ExitCode {
    let cluster = instances::from_env(herd::Cluster::new().balance(Balance::Sticky));
    cluster.run(|worker| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async move {
                // Taken before `ready()`: herd hands connections over from then on.
                let handed = Handed(herd::worker::connections());
                let body = format!("worker pid={} slot={}\n", std::process::id(), worker.slot());
                let app = Router::new().route("/", get(move || async move { body }));
                worker.ready()?;
                // Stops at herd's stop signal, after the requests in progress (see
                // support/drain.rs).
                let (handed, stopped) = drain::on_shutdown(handed);
                axum::serve(handed, app)
                    .with_graceful_shutdown(stopped)
                    .await
            })
    })
}

/// The connections the primary hands to this worker, as something axum serves.
struct Handed(Connections);

impl axum::serve::Listener for Handed {
    type Io = TokioConnection;
    type Addr = Option<SocketAddr>;

    async fn accept(&mut self) -> (TokioConnection, Option<SocketAddr>) {
        loop {
            match self.0.accept_async().await {
                Ok(Some(conn)) => {
                    let peer = match conn.stream() {
                        TokioStream::Tcp(t) => t.peer_addr().ok(),
                        TokioStream::Unix(_) => None,
                    };
                    return (conn, peer);
                }
                // Outside herd, or once herd closed the channel, no connection will come:
                // the shutdown future (which a closed channel resolves) ends the server.
                Ok(None) | Err(herd::worker::Error::ChannelClosed) => {
                    std::future::pending::<()>().await
                }
                // Something that is not a connection was passed: skip it.
                Err(_) => continue,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Option<SocketAddr>> {
        Ok(None)
    }
}
