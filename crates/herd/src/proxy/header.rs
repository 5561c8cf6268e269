//! PROXY protocol headers (HAProxy's `proxy-protocol.txt`, v1 text and v2 binary).
//!
//! A proxied worker sees every connection coming from herd on 127.0.0.1; the header,
//! sent before the client's first byte, tells it the real client and server addresses.
//! Only the `PROXY` command over TCP is produced: herd always knows both addresses.
//! The header is built in a fixed stack buffer, so sending one costs no allocation.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// Longest header this module builds. The spec caps v1 at 107 bytes; our longest v1
/// line (`TCP6`, two full IPv6 addresses and ports) is 104, and v2 over IPv6 is 52.
pub const MAX_LEN: usize = 108;

/// The v2 signature that opens every binary header.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 2 (high nibble), command PROXY (low nibble).
const V2_VERSION_PROXY: u8 = 0x21;
/// AF_INET (high nibble), SOCK_STREAM (low nibble).
const V2_TCP4: u8 = 0x11;
/// AF_INET6 (high nibble), SOCK_STREAM (low nibble).
const V2_TCP6: u8 = 0x21;

/// Which PROXY protocol version to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// Human-readable text line: `PROXY TCP4 <src> <dst> <sport> <dport>\r\n`.
    V1,
    /// Binary header with a 12-byte signature; cheaper for the worker to parse.
    V2,
}

/// A PROXY protocol version name that is neither `v1` nor `v2`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown PROXY protocol version {0:?} (valid: v1, v2)")]
pub struct UnknownVersion(pub String);

impl FromStr for Version {
    type Err = UnknownVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "v1" => Ok(Version::V1),
            "v2" => Ok(Version::V2),
            other => Err(UnknownVersion(other.to_string())),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        })
    }
}

/// One encoded header, held on the stack. Use [`Header::as_bytes`] to send it.
#[derive(Clone, Copy)]
pub struct Header {
    buf: [u8; MAX_LEN],
    len: usize,
}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Header")
            .field(&self.as_bytes().escape_ascii().to_string())
            .finish()
    }
}

impl Header {
    /// The header announcing a TCP connection from `src` (the client) to `dst` (the
    /// address the client connected to, i.e. herd's public socket).
    ///
    /// Both addresses must be of one family. When they are not (a dual-stack listener),
    /// IPv4-mapped IPv6 addresses are turned back into IPv4 first; if a true IPv6 address
    /// remains, the IPv4 one is written as IPv4-mapped IPv6 and the header says TCP6,
    /// which keeps the address exact.
    pub fn new(version: Version, src: SocketAddr, dst: SocketAddr) -> Header {
        let mut h = Header {
            buf: [0; MAX_LEN],
            len: 0,
        };
        match (version, Family::of(src.ip(), dst.ip())) {
            (Version::V1, Family::V4(s, d)) => h.text(format_args!(
                "PROXY TCP4 {s} {d} {} {}\r\n",
                src.port(),
                dst.port()
            )),
            (Version::V1, Family::V6(s, d)) => h.text(format_args!(
                "PROXY TCP6 {s} {d} {} {}\r\n",
                src.port(),
                dst.port()
            )),
            (Version::V2, Family::V4(s, d)) => {
                h.push(&V2_SIGNATURE);
                h.push(&[V2_VERSION_PROXY, V2_TCP4]);
                h.push(&12u16.to_be_bytes());
                h.push(&s.octets());
                h.push(&d.octets());
                h.push(&src.port().to_be_bytes());
                h.push(&dst.port().to_be_bytes());
            }
            (Version::V2, Family::V6(s, d)) => {
                h.push(&V2_SIGNATURE);
                h.push(&[V2_VERSION_PROXY, V2_TCP6]);
                h.push(&36u16.to_be_bytes());
                h.push(&s.octets());
                h.push(&d.octets());
                h.push(&src.port().to_be_bytes());
                h.push(&dst.port().to_be_bytes());
            }
        }
        h
    }

    /// The encoded header.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Appends `bytes`. Every caller writes at most `MAX_LEN` bytes in total (see the
    /// constant's comment), so the bound check only guards against a future mistake.
    fn push(&mut self, bytes: &[u8]) {
        let end = (self.len + bytes.len()).min(MAX_LEN);
        let n = end - self.len;
        self.buf[self.len..end].copy_from_slice(&bytes[..n]);
        self.len = end;
    }

    fn text(&mut self, args: fmt::Arguments<'_>) {
        // `Header::push` cannot fail, so neither can this.
        let _ = fmt::Write::write_fmt(self, args);
    }
}

impl fmt::Write for Header {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}

impl AsRef<[u8]> for Header {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// The address pair, brought to one family.
enum Family {
    V4(std::net::Ipv4Addr, std::net::Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl Family {
    fn of(src: IpAddr, dst: IpAddr) -> Family {
        match (src.to_canonical(), dst.to_canonical()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Family::V4(s, d),
            (s, d) => Family::V6(to_v6(s), to_v6(d)),
        }
    }
}

fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn version_parse_and_display() {
        assert_eq!("v1".parse::<Version>(), Ok(Version::V1));
        assert_eq!("v2".parse::<Version>(), Ok(Version::V2));
        assert_eq!(Version::V1.to_string(), "v1");
        assert_eq!(Version::V2.to_string(), "v2");
        let e = "v3".parse::<Version>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown PROXY protocol version \"v3\" (valid: v1, v2)"
        );
    }

    #[test]
    fn v1_tcp4() {
        let h = Header::new(Version::V1, sa("192.168.0.1:56324"), sa("192.168.0.11:443"));
        assert_eq!(
            h.as_bytes(),
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
        );
    }

    #[test]
    fn v1_tcp6() {
        let h = Header::new(Version::V1, sa("[2001:db8::1]:1234"), sa("[::1]:8080"));
        assert_eq!(h.as_bytes(), b"PROXY TCP6 2001:db8::1 ::1 1234 8080\r\n");
    }

    #[test]
    fn v1_longest_fits() {
        let ip = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let h = Header::new(
            Version::V1,
            sa(&format!("[{ip}]:65535")),
            sa(&format!("[{ip}]:65535")),
        );
        let want = format!("PROXY TCP6 {ip} {ip} 65535 65535\r\n");
        assert_eq!(h.as_bytes(), want.as_bytes());
        assert!(h.as_bytes().len() <= 107, "spec limit");
    }

    #[test]
    fn v1_mapped_pair_becomes_tcp4() {
        // What a dual-stack [::] listener reports for an IPv4 client.
        let h = Header::new(
            Version::V1,
            sa("[::ffff:10.0.0.2]:5000"),
            sa("[::ffff:10.0.0.1]:80"),
        );
        assert_eq!(h.as_bytes(), b"PROXY TCP4 10.0.0.2 10.0.0.1 5000 80\r\n");
    }

    #[test]
    fn v1_mixed_families_use_tcp6() {
        let h = Header::new(Version::V1, sa("10.0.0.2:5000"), sa("[2001:db8::1]:80"));
        assert_eq!(
            h.as_bytes(),
            b"PROXY TCP6 ::ffff:10.0.0.2 2001:db8::1 5000 80\r\n"
        );
    }

    #[test]
    fn v2_tcp4() {
        let h = Header::new(Version::V2, sa("192.168.0.1:56324"), sa("192.168.0.11:443"));
        let mut want = b"\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A".to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0x00, 0x0C]);
        want.extend_from_slice(&[192, 168, 0, 1, 192, 168, 0, 11]);
        want.extend_from_slice(&[0xDC, 0x04, 0x01, 0xBB]); // 56324, 443
        assert_eq!(h.as_bytes(), &want[..]);
        assert_eq!(h.as_bytes().len(), 16 + 12);
    }

    #[test]
    fn v2_tcp6() {
        let h = Header::new(Version::V2, sa("[2001:db8::1]:1234"), sa("[::1]:8080"));
        let mut want = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        want.extend_from_slice(&[0x21, 0x21, 0x00, 0x24]);
        want.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        want.extend_from_slice(&[0x04, 0xD2, 0x1F, 0x90]); // 1234, 8080
        assert_eq!(h.as_bytes(), &want[..]);
        assert_eq!(h.as_bytes().len(), 16 + 36);
    }

    #[test]
    fn v2_mixed_families_use_tcp6_with_mapped_v4() {
        let h = Header::new(Version::V2, sa("10.0.0.2:5000"), sa("[::1]:80"));
        let b = h.as_bytes();
        assert_eq!(&b[12..16], &[0x21, 0x21, 0x00, 0x24]);
        assert_eq!(
            &b[16..32],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2]
        );
    }
}
