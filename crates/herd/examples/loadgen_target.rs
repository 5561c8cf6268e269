//! The server of `scripts/bench/loadgen.sh`, which compares load generators (herd bench,
//! wrk, autocannon, oha) on one machine: it must cost less per request than any of them, so
//! that the generator, not the server, sets the pace. One thread, a current-thread tokio
//! runtime, no HTTP parsing beyond counting the ends of request heads: each read is answered
//! by one write of as many canned 200 answers as it held complete requests (pipelined
//! requests cost one syscall pair per batch). Not a real server: GET without a body only.
//!
//! ```text
//! cargo run --release --example loadgen_target -- PORT
//! ```

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";

async fn serve(mut s: tokio::net::TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(64 * 1024);
    // Bytes of a head cut by the previous read (at most 3 of "\r\n\r\n" matter).
    let mut tail = [0u8; 3];
    let mut tail_len = 0;
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let data = &buf[..n];
        // Ends that span the previous read and this one, then those inside this one.
        let mut edge = [0u8; 6];
        let head = n.min(3);
        edge[..tail_len].copy_from_slice(&tail[..tail_len]);
        edge[tail_len..tail_len + head].copy_from_slice(&data[..head]);
        let spanning = edge[..tail_len + head]
            .windows(4)
            .enumerate()
            .filter(|(i, w)| *i < tail_len && *w == b"\r\n\r\n")
            .count();
        let ends = spanning + data.windows(4).filter(|w| *w == b"\r\n\r\n").count();
        let keep = n.min(3);
        if keep == 3 {
            tail.copy_from_slice(&data[n - 3..]);
            tail_len = 3;
        } else {
            // A read of fewer than 3 bytes: keep the last 3 of tail + data.
            let mut t = tail[..tail_len].to_vec();
            t.extend_from_slice(data);
            let k = t.len().min(3);
            tail[..k].copy_from_slice(&t[t.len() - k..]);
            tail_len = k;
        }
        out.clear();
        for _ in 0..ends {
            out.extend_from_slice(ANSWER);
        }
        if !out.is_empty() && s.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            eprintln!("usage: loadgen_target PORT");
            std::process::exit(2)
        });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        println!("listening on 127.0.0.1:{port}");
        loop {
            if let Ok((s, _)) = l.accept().await {
                tokio::task::spawn_local(serve(s));
            }
        }
    });
}
