//! Measures herd's relay (`proxy::relay::relay`, tokio's buffered copy, the one `--proxy`
//! uses) against no relay at all. Not a CI benchmark: run it by hand, release build, on an
//! otherwise idle machine, and read the ratios.
//!
//! ```text
//! cargo run --release --example relay_bench -- serve BACKEND PORT
//!     relays 127.0.0.1:PORT to BACKEND (ip:port) until killed: a bare relay, without the
//!     rest of herd; scripts/bench/proxy.sh puts wrk on it.
//! cargo run --release --example relay_bench -- bulk [ROUNDS] [MIB] [CONNS]
//!     in-process throughput: a backend sends MIB MiB per connection (default 64), CONNS
//!     connections at a time (default 1), read directly and through the relay, alternating
//!     ROUNDS times (default 9); prints the median MiB/s of each and relay/direct.
//! ```
//!
//! A `splice(2)` variant was measured here too and was no faster (0.94× keep-alive in
//! `proxy.sh`, within noise in bulk), so herd has only the buffered copy.
//!
//! The relay runs on a current-thread tokio runtime of its own, like herd's driver; the
//! backend and the client run on plain threads.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::exit;
use std::thread;
use std::time::Instant;

use herd::proxy::relay::{relay, RelayError};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: u64| -> u64 {
        match args.get(i) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| usage(&format!("not a number: {v}"))),
        }
    };
    match args.first().map(String::as_str) {
        Some("serve") if args.len() == 3 => {
            let backend: SocketAddr = args[1]
                .parse()
                .unwrap_or_else(|_| usage(&format!("not ip:port: {}", args[1])));
            serve(backend, listen(num(2, 0) as u16));
        }
        Some("bulk") => bulk(num(1, 9) as usize, num(2, 64) as usize, num(3, 1) as usize),
        _ => usage("expected `serve BACKEND PORT` or `bulk [ROUNDS] [MIB] [CONNS]`"),
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("relay_bench: {msg}");
    exit(2);
}

fn listen(port: u16) -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap_or_else(|e| {
        eprintln!("relay_bench: bind 127.0.0.1:{port}: {e}");
        exit(1);
    })
}

/// Accepts forever and relays every connection to `backend`.
fn serve(backend: SocketAddr, listener: TcpListener) -> ! {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| usage(&format!("runtime: {e}")));
    rt.block_on(async move {
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                if let Err(e @ RelayError::Connect { .. }) = relay(client, backend, None).await {
                    eprintln!("relay_bench: {e}");
                }
            });
        }
    })
}

fn bulk(rounds: usize, mib: usize, conns: usize) {
    // Backend: every connection gets `mib` MiB, then end of file.
    let backend = listen(0);
    let backend_addr = backend.local_addr().expect("backend addr");
    thread::spawn(move || {
        let chunk: &'static [u8] = Box::leak(vec![0x5a_u8; 1 << 20].into_boxed_slice());
        for s in backend.incoming() {
            let Ok(mut s) = s else { continue };
            thread::spawn(move || {
                for _ in 0..mib {
                    if s.write_all(chunk).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let relayed = listen(0);
    let ports = [
        ("direct", backend_addr),
        ("relay", relayed.local_addr().expect("addr")),
    ];
    thread::spawn(move || serve(backend_addr, relayed));

    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..=rounds {
        // Alternate the order so a drift of the machine hits both alike; round 0 warms up.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (name, addr) = ports[i];
            let start = Instant::now();
            let readers: Vec<_> = (0..conns)
                .map(|_| thread::spawn(move || drain(addr)))
                .collect();
            let bytes: usize = readers.into_iter().map(|r| r.join().expect("reader")).sum();
            let secs = start.elapsed().as_secs_f64();
            assert_eq!(bytes, (mib * conns) << 20, "{name}: short transfer");
            let rate = bytes as f64 / (1u64 << 20) as f64 / secs;
            if round > 0 {
                rates[i].push(rate);
                eprintln!("round {round} {name}: {rate:.0} MiB/s");
            }
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (d, r) = (med(&mut rates[0]), med(&mut rates[1]));
    println!(
        "bulk {mib} MiB x {conns} conn(s), median of {rounds}: direct {d:.0} MiB/s, relay {r:.0} MiB/s, relay/direct {:.3}",
        r / d
    );
}

/// Reads one connection to its end; returns the byte count.
fn drain(addr: SocketAddr) -> usize {
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut buf = vec![0u8; 256 << 10];
    let mut n = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return n,
            Ok(k) => n += k,
            Err(e) => panic!("read: {e}"),
        }
    }
}
