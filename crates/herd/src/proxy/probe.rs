//! Knowing when a proxied worker has started listening on its private port.

use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::net::TcpStream;

/// Shortest pause between two probes: a zero interval would spin the runtime.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// Resolves once a TCP connect to `127.0.0.1:port` succeeds, trying every `interval`.
///
/// The probe connection is closed at once, so the worker sees one connection that sends
/// nothing and closes; servers take that in their stride (it is what load balancer health
/// checks do). A refused connect on loopback fails immediately, so each attempt costs
/// one syscall round and no timeout is needed. The caller gives up by dropping the
/// future (e.g. in a `select!` against the start-up timeout or the worker's exit).
pub async fn wait_listening(port: u16, interval: Duration) {
    let interval = interval.max(MIN_INTERVAL);
    loop {
        match TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await {
            Ok(probe) => {
                drop(probe);
                return;
            }
            Err(e) => tracing::trace!(port, error = %e, "worker not listening yet"),
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::ports::free_port;

    #[tokio::test]
    async fn resolves_at_once_when_listening() {
        let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::time::timeout(
            Duration::from_secs(5),
            wait_listening(port, Duration::from_millis(10)),
        )
        .await
        .expect("should resolve");
    }

    #[tokio::test]
    async fn waits_until_the_port_starts_listening() {
        let port = free_port().unwrap();
        let probe = tokio::spawn(wait_listening(port, Duration::from_millis(5)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!probe.is_finished(), "nothing listens yet");
        let _l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
        tokio::time::timeout(Duration::from_secs(5), probe)
            .await
            .expect("should resolve once listening")
            .unwrap();
    }

    #[tokio::test]
    async fn dropping_cancels() {
        let port = free_port().unwrap();
        let r = tokio::time::timeout(
            Duration::from_millis(30),
            wait_listening(port, Duration::from_millis(5)),
        )
        .await;
        assert!(r.is_err(), "nothing listens: must still be waiting");
    }
}
