//! The relay against real loopback sockets.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::*;
use crate::proxy::ports::free_port;

/// Generous bound so a broken relay fails the test instead of hanging it.
const LIMIT: Duration = Duration::from_secs(30);

/// A relayed pair: the client's end, the worker's end, and the relay task.
struct Pair {
    client: TcpStream,
    worker: TcpStream,
    relay: JoinHandle<Result<(u64, u64), RelayError>>,
}

async fn pair(header: Option<Vec<u8>>) -> Pair {
    let public = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let workers = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let worker_addr = workers.local_addr().unwrap();
    let client = TcpStream::connect(public.local_addr().unwrap())
        .await
        .unwrap();
    let (accepted, _) = public.accept().await.unwrap();
    let relay = tokio::spawn(async move { relay(accepted, worker_addr, header.as_deref()).await });
    let (worker, _) = workers.accept().await.unwrap();
    Pair {
        client,
        worker,
        relay,
    }
}

/// Runs a case, failing (not hanging) if it takes longer than [`LIMIT`].
async fn within(case: impl std::future::Future<Output = ()>) {
    if tokio::time::timeout(LIMIT, case).await.is_err() {
        panic!("timed out after {LIMIT:?}");
    }
}

async fn finish(relay: JoinHandle<Result<(u64, u64), RelayError>>) -> (u64, u64) {
    tokio::time::timeout(LIMIT, relay)
        .await
        .expect("relay should end")
        .expect("relay task")
        .expect("relay result")
}

/// `len` bytes of a pattern that differs per `seed`, so a swapped or shifted stream shows.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test]
async fn echo_round_trip() {
    within(echo_round_trip_case()).await;
}

async fn echo_round_trip_case() {
    let Pair {
        mut client,
        mut worker,
        relay,
    } = pair(None).await;
    let echo = tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        loop {
            let n = worker.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            worker.write_all(&buf[..n]).await.unwrap();
        }
    });
    client.write_all(b"hello").await.unwrap();
    let mut got = [0u8; 5];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello");
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    echo.await.unwrap();
    assert_eq!(finish(relay).await, (5, 5));
}

#[tokio::test]
async fn large_transfer_both_ways_at_once() {
    const LEN: usize = 8 << 20;
    {
        let Pair {
            client,
            worker,
            relay,
        } = pair(None).await;
        let (up, down) = (data(LEN, 1), data(LEN, 2));
        // Each end sends its 8 MiB while reading the other's, so neither direction can
        // wait for the other to finish first.
        let side = |s: TcpStream, send: Vec<u8>| async move {
            let (mut rd, mut wr) = s.into_split();
            let writer = tokio::spawn(async move {
                wr.write_all(&send).await.unwrap();
                wr.shutdown().await.unwrap();
            });
            let mut got = Vec::with_capacity(LEN);
            rd.read_to_end(&mut got).await.unwrap();
            writer.await.unwrap();
            got
        };
        let c = tokio::spawn(side(client, up.clone()));
        let w = tokio::spawn(side(worker, down.clone()));
        let (at_client, at_worker) =
            tokio::time::timeout(LIMIT, async { (c.await.unwrap(), w.await.unwrap()) })
                .await
                .expect("transfer should finish");
        assert!(at_worker == up, "worker got different bytes");
        assert!(at_client == down, "client got different bytes");
        assert_eq!(finish(relay).await, (LEN as u64, LEN as u64));
    }
}

#[tokio::test]
async fn client_half_close_then_worker_answers() {
    within(client_half_close_then_worker_answers_case()).await;
}

async fn client_half_close_then_worker_answers_case() {
    let Pair {
        mut client,
        mut worker,
        relay,
    } = pair(None).await;
    client.write_all(b"request").await.unwrap();
    client.shutdown().await.unwrap();
    // The worker sees the end of the request...
    let mut req = Vec::new();
    worker.read_to_end(&mut req).await.unwrap();
    assert_eq!(req, b"request");
    // ...and can still answer on its open half.
    worker.write_all(b"response").await.unwrap();
    worker.shutdown().await.unwrap();
    let mut resp = Vec::new();
    client.read_to_end(&mut resp).await.unwrap();
    assert_eq!(resp, b"response");
    assert_eq!(finish(relay).await, (7, 8));
}

#[tokio::test]
async fn worker_half_close_then_client_still_sends() {
    within(worker_half_close_then_client_still_sends_case()).await;
}

async fn worker_half_close_then_client_still_sends_case() {
    let Pair {
        mut client,
        mut worker,
        relay,
    } = pair(None).await;
    worker.write_all(b"banner").await.unwrap();
    worker.shutdown().await.unwrap();
    let mut banner = Vec::new();
    client.read_to_end(&mut banner).await.unwrap();
    assert_eq!(banner, b"banner");
    client.write_all(b"late").await.unwrap();
    client.shutdown().await.unwrap();
    let mut late = Vec::new();
    worker.read_to_end(&mut late).await.unwrap();
    assert_eq!(late, b"late");
    assert_eq!(finish(relay).await, (4, 6));
}

#[tokio::test]
async fn header_arrives_before_client_bytes() {
    within(header_arrives_before_client_bytes_case()).await;
}

async fn header_arrives_before_client_bytes_case() {
    let header = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec();
    let Pair {
        mut client,
        mut worker,
        relay,
    } = pair(Some(header.clone())).await;
    client.write_all(b"GET /").await.unwrap();
    client.shutdown().await.unwrap();
    let mut got = Vec::new();
    worker.read_to_end(&mut got).await.unwrap();
    let mut want = header.clone();
    want.extend_from_slice(b"GET /");
    assert_eq!(got, want);
    drop(worker);
    // The header is not counted as client bytes.
    assert_eq!(finish(relay).await, (5, 0));
}

#[tokio::test]
async fn refused_connect_gives_the_client_back() {
    within(refused_connect_gives_the_client_back_case()).await;
}

async fn refused_connect_gives_the_client_back_case() {
    let public = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let mut client = TcpStream::connect(public.local_addr().unwrap())
        .await
        .unwrap();
    let (accepted, _) = public.accept().await.unwrap();
    let dead: SocketAddr = (Ipv4Addr::LOCALHOST, free_port().unwrap()).into();
    let err = relay(accepted, dead, None).await.unwrap_err();
    let RelayError::Connect {
        worker,
        client: mut back,
        sent,
        source,
    } = err
    else {
        panic!("expected Connect, got {err:?}");
    };
    assert_eq!(worker, dead);
    assert!(sent.is_empty());
    assert_eq!(source.kind(), std::io::ErrorKind::ConnectionRefused);
    // The returned connection is the same, still usable client connection.
    assert_eq!(back.peer_addr().unwrap(), client.local_addr().unwrap());
    back.write_all(b"still here").await.unwrap();
    let mut got = [0u8; 10];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"still here");
}

/// A worker that closes its listening socket with our connection still in its accept
/// queue resets it: the relay gives the client back with what it sent, for another worker;
/// and the next worker gets those bytes first.
#[tokio::test]
async fn a_connection_reset_before_the_answer_is_given_back_with_its_bytes() {
    let public = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    // A listener that never accepts: the connection waits in its queue.
    let stopping = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let stopping_addr = stopping.local_addr().unwrap();
    let mut client = TcpStream::connect(public.local_addr().unwrap())
        .await
        .unwrap();
    let (accepted, _) = public.accept().await.unwrap();
    let relay = tokio::spawn(relay_replaying(accepted, stopping_addr, None, Vec::new()));
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    // The relay has connected and written: the connection is queued. Then the stop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stopping);
    let err = tokio::time::timeout(LIMIT, relay).await.unwrap().unwrap();
    let Err(RelayError::Unanswered {
        client: back, sent, ..
    }) = err
    else {
        panic!("not given back: {err:?}");
    };
    assert_eq!(sent, b"GET / HTTP/1.1\r\n\r\n");
    // Another worker gets the bytes, then the rest of the conversation.
    let next = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let relay = tokio::spawn(relay_replaying(
        back,
        next.local_addr().unwrap(),
        None,
        sent,
    ));
    let (mut worker, _) = next.accept().await.unwrap();
    let mut got = vec![0u8; 18];
    worker.read_exact(&mut got).await.unwrap();
    assert_eq!(got, b"GET / HTTP/1.1\r\n\r\n");
    worker.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
    drop(worker);
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.unwrap();
    assert_eq!(answer, b"HTTP/1.1 200 OK\r\n\r\n");
    client.shutdown().await.unwrap();
    let (up, down) = finish(relay).await;
    assert_eq!((up, down), (18, 19));
}

/// A worker that read the request and closed without answering (it may have acted on
/// it) is not replayed: the client sees the close.
#[tokio::test]
async fn a_worker_that_read_and_closed_is_not_replayed() {
    let Pair {
        mut client,
        mut worker,
        relay,
    } = pair(None).await;
    client.write_all(b"POST /pay\r\n").await.unwrap();
    let mut got = [0u8; 11];
    worker.read_exact(&mut got).await.unwrap();
    drop(worker);
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).await.unwrap();
    assert!(answer.is_empty());
    client.shutdown().await.unwrap();
    let result = tokio::time::timeout(LIMIT, relay).await.unwrap().unwrap();
    assert!(
        !matches!(result, Err(RelayError::Unanswered { .. })),
        "replayed: {result:?}"
    );
}

/// A request longer than REPLAY_MAX is not kept for a replay: a worker that resets it after
/// reading it all fails that client only, and herd held at most REPLAY_MAX bytes for it.
#[tokio::test]
async fn a_request_past_the_replay_limit_is_not_replayed() {
    let Pair {
        mut client,
        mut worker,
        relay,
    } = pair(None).await;
    let body = data(REPLAY_MAX + 4096, 7);
    let (_, read) = tokio::join!(client.write_all(&body), async {
        let mut got = vec![0u8; body.len()];
        worker.read_exact(&mut got).await.unwrap();
        got
    });
    assert_eq!(read, body);
    // A reset (not a close) before any answer: replayable, were the request short.
    socket2::SockRef::from(&worker)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(worker);
    let result = tokio::time::timeout(LIMIT, relay).await.unwrap().unwrap();
    assert!(
        !matches!(result, Err(RelayError::Unanswered { .. })),
        "kept {} bytes for a replay: {result:?}",
        REPLAY_MAX + 4096
    );
}
