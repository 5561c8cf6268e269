//! Measures herd's two relay variants (`proxy::relay::relay`, buffered copy, and
//! `relay_splice`, splice(2) through pipes) side by side. Not a CI benchmark: run it by
//! hand, release build, on an otherwise idle machine, and read the ratios.
//!
//! ```text
//! cargo run --release --example relay_bench -- serve BACKEND COPY_PORT SPLICE_PORT
//!     relays 127.0.0.1:COPY_PORT and 127.0.0.1:SPLICE_PORT to BACKEND (ip:port), one
//!     relay per variant, until killed; scripts/bench/proxy.sh puts wrk on both.
//! cargo run --release --example relay_bench -- bulk [ROUNDS] [MIB] [CONNS]
//!     in-process throughput: a backend sends MIB MiB per connection (default 64), CONNS
//!     connections at a time (default 1) through each variant, alternating ROUNDS times
//!     (default 9); prints the median MiB/s of each variant and splice/copy.
//! ```
//!
//! The relays run on a current-thread tokio runtime of their own, like herd's driver;
//! the backend and the client run on plain threads.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::exit;
use std::thread;
use std::time::Instant;

use herd::proxy::relay::{relay, relay_splice, RelayError};

#[derive(Clone, Copy, Debug)]
enum Variant {
    Copy,
    Splice,
}

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
        Some("serve") if args.len() == 4 => {
            let backend: SocketAddr = args[1]
                .parse()
                .unwrap_or_else(|_| usage(&format!("not ip:port: {}", args[1])));
            let copy = listen(num(2, 0) as u16);
            let splice = listen(num(3, 0) as u16);
            serve(
                backend,
                vec![(Variant::Copy, copy), (Variant::Splice, splice)],
            );
        }
        Some("bulk") => bulk(num(1, 9) as usize, num(2, 64) as usize, num(3, 1) as usize),
        _ => {
            usage("expected `serve BACKEND COPY_PORT SPLICE_PORT` or `bulk [ROUNDS] [MIB] [CONNS]`")
        }
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

/// Accepts on each listener forever and relays every connection with its variant.
fn serve(backend: SocketAddr, listeners: Vec<(Variant, TcpListener)>) -> ! {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| usage(&format!("runtime: {e}")));
    rt.block_on(async move {
        let mut loops = Vec::new();
        for (variant, l) in listeners {
            l.set_nonblocking(true).expect("nonblocking listener");
            let l = tokio::net::TcpListener::from_std(l).expect("tokio listener");
            loops.push(tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = l.accept().await else {
                        continue;
                    };
                    tokio::spawn(async move {
                        let r = match variant {
                            Variant::Copy => relay(client, backend, None).await,
                            Variant::Splice => relay_splice(client, backend, None).await,
                        };
                        if let Err(e @ RelayError::Connect { .. }) = r {
                            eprintln!("relay_bench: {e}");
                        }
                    });
                }
            }));
        }
        for l in loops {
            let _ = l.await;
        }
    });
    exit(0)
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
    let copy = listen(0);
    let splice = listen(0);
    let ports = [
        (Variant::Copy, copy.local_addr().expect("addr")),
        (Variant::Splice, splice.local_addr().expect("addr")),
    ];
    thread::spawn(move || {
        serve(
            backend_addr,
            vec![(Variant::Copy, copy), (Variant::Splice, splice)],
        )
    });

    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..=rounds {
        // Alternate the order so a drift of the machine hits both alike; round 0 warms up.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (variant, addr) = ports[i];
            let start = Instant::now();
            let readers: Vec<_> = (0..conns)
                .map(|_| thread::spawn(move || drain(addr)))
                .collect();
            let bytes: usize = readers.into_iter().map(|r| r.join().expect("reader")).sum();
            let secs = start.elapsed().as_secs_f64();
            assert_eq!(bytes, (mib * conns) << 20, "{variant:?}: short transfer");
            let rate = bytes as f64 / (1u64 << 20) as f64 / secs;
            if round > 0 {
                rates[i].push(rate);
                eprintln!("round {round} {variant:?}: {rate:.0} MiB/s");
            }
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (c, s) = (med(&mut rates[0]), med(&mut rates[1]));
    println!(
        "bulk {mib} MiB x {conns} conn(s), median of {rounds}: copy {c:.0} MiB/s, splice {s:.0} MiB/s, splice/copy {:.3}",
        s / c
    );
}

/// Reads one relayed connection to its end; returns the byte count.
fn drain(addr: SocketAddr) -> usize {
    let mut s = TcpStream::connect(addr).expect("connect to relay");
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
