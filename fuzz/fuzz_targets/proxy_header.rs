#![no_main]
//! herd's PROXY header for any two addresses, read back by the `ppp` crate: the same
//! addresses come out (IPv4-mapped IPv6 is written as IPv4 when both sides allow it).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

fn addr(b: &[u8]) -> SocketAddr {
    let port = u16::from_be_bytes([b[0], b[1]]);
    let ip = if b[2] % 2 == 0 {
        IpAddr::V4(Ipv4Addr::new(b[3], b[4], b[5], b[6]))
    } else {
        let mut o = [0u8; 16];
        o.copy_from_slice(&b[3..19]);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    SocketAddr::new(ip, port)
}

fn canonical(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => a,
        },
        IpAddr::V4(_) => a,
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if data.len() < 39 {
        return;
    }
    let v2 = data[0] % 2 == 1;
    let (src, dst) = (addr(&data[1..20]), addr(&data[20..39]));
    let bytes = herd::fuzzing::proxy_header(v2, src, dst);
    let (got_src, got_dst) = if v2 {
        let h = ppp::v2::Header::try_from(&bytes[..]).expect("a v2 header ppp reads");
        assert_eq!(h.len(), bytes.len());
        match h.addresses {
            ppp::v2::Addresses::IPv4(a) => (
                SocketAddr::new(IpAddr::V4(a.source_address), a.source_port),
                SocketAddr::new(IpAddr::V4(a.destination_address), a.destination_port),
            ),
            ppp::v2::Addresses::IPv6(a) => (
                SocketAddr::new(IpAddr::V6(a.source_address), a.source_port),
                SocketAddr::new(IpAddr::V6(a.destination_address), a.destination_port),
            ),
            other => panic!("not a TCP address pair: {other:?}"),
        }
    } else {
        let text = std::str::from_utf8(&bytes).expect("a v1 header is text");
        let h = ppp::v1::Header::try_from(text).expect("a v1 header ppp reads");
        match h.addresses {
            ppp::v1::Addresses::Tcp4(a) => (
                SocketAddr::new(IpAddr::V4(a.source_address), a.source_port),
                SocketAddr::new(IpAddr::V4(a.destination_address), a.destination_port),
            ),
            ppp::v1::Addresses::Tcp6(a) => (
                SocketAddr::new(IpAddr::V6(a.source_address), a.source_port),
                SocketAddr::new(IpAddr::V6(a.destination_address), a.destination_port),
            ),
            other => panic!("not a TCP address pair: {other:?}"),
        }
    };
    assert_eq!(canonical(got_src), canonical(src), "{bytes:?}");
    assert_eq!(canonical(got_dst), canonical(dst), "{bytes:?}");
});
