//! Free TCP ports for programs that must know their port before herd starts.

use std::sync::atomic::{AtomicUsize, Ordering};

/// A TCP port that was free a moment ago, for programs that bind a fixed port themselves.
/// A port nothing listens on now, for a herd that binds it a moment later. Taken below
/// the kernel's ephemeral range (`ip_local_port_range`, 32768 and up by default): a port
/// from that range can become the source port of another test's client connection
/// between this pick and herd's bind, which then fails with "address already in use".
/// The tests of the process take turns through a counter.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    const FIRST: usize = 20_000;
    let end = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<usize>().ok())
        .unwrap_or(32_768)
        .clamp(FIRST + 1000, 65_535);
    let span = end - FIRST;
    // Each run starts elsewhere: a port a previous run left in TIME_WAIT is not retried first.
    let start = std::process::id() as usize * 97;
    for _ in 0..span {
        let port = (FIRST + (start + NEXT.fetch_add(1, Ordering::SeqCst)) % span) as u16;
        let free = |ip: &str| std::net::TcpListener::bind((ip, port)).is_ok();
        if free("0.0.0.0") && free("127.0.0.1") {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{end}");
}
