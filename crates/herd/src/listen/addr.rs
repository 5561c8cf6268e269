//! What to listen on and how connections are spread: the user-facing values of `--listen`,
//! `-p PORT` and `balance = …`, parsed and printed. No sockets here.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

/// The prefix that marks a unix socket path in a `--listen` value.
const UNIX_PREFIX: &str = "unix:";

/// One address to listen on, parsed from a CLI `--listen` value or `-p PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address (host:port).
    Tcp(SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}

impl ListenAddr {
    /// `0.0.0.0:port`: every IPv4 interface, what `-p PORT` means.
    ///
    /// IPv4 rather than a dual-stack `[::]` because `[::]` fails to bind on hosts with IPv6
    /// disabled (common in containers); ask for `--listen [::]:PORT` to get both families.
    pub fn any_port(port: u16) -> Self {
        ListenAddr::Tcp(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
    }
}

impl FromStr for ListenAddr {
    type Err = String;

    /// Accepts `127.0.0.1:8080`, `[::1]:8080`, `0.0.0.0:0`, `localhost:8080` (resolved, first
    /// result) and `unix:/tmp/app.sock`.
    fn from_str(value: &str) -> Result<Self, String> {
        let expected = "expected host:port, [v6]:port or unix:/path";
        if let Some(path) = value.strip_prefix(UNIX_PREFIX) {
            if path.is_empty() {
                return Err(format!(
                    "`{value}` is not an address: the unix socket path is empty"
                ));
            }
            if path.contains('\0') {
                return Err(format!(
                    "`{value}` is not an address: the path contains a NUL byte"
                ));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        if let Ok(addr) = value.parse::<SocketAddr>() {
            return Ok(ListenAddr::Tcp(addr));
        }
        // A host name: it needs a `:port` and something before it; anything else is not an
        // address at all, and must not reach the resolver (which would try DNS for "foo").
        let Some((host, port)) = value.rsplit_once(':') else {
            return Err(format!("`{value}` is not an address: {expected}"));
        };
        if host.is_empty() || host.contains(':') || host.starts_with('[') {
            return Err(format!("`{value}` is not an address: {expected}"));
        }
        if port.parse::<u16>().is_err() {
            return Err(format!(
                "`{value}` is not an address: `{port}` is not a port (0-65535)"
            ));
        }
        match value.to_socket_addrs() {
            Ok(mut addrs) => match addrs.next() {
                Some(addr) => Ok(ListenAddr::Tcp(addr)),
                None => Err(format!(
                    "`{value}` is not an address: `{host}` resolves to no address"
                )),
            },
            Err(err) => Err(format!(
                "`{value}` is not an address: cannot resolve `{host}`: {err}"
            )),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "{addr}"),
            ListenAddr::Unix(path) => write!(f, "{UNIX_PREFIX}{}", path.display()),
        }
    }
}

/// How the primary's sockets spread connections over workers (see DESIGN.md, "How connections
/// reach workers"). Only the modes where the kernel does the work live here; the modes where
/// the primary accepts belong to `balance/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// One SO_REUSEPORT socket per worker slot; the kernel spreads connections across them.
    ReusePort,
    /// One socket inherited by every worker; whichever accepts first gets the connection.
    Shared,
    /// One socket that only the primary accepts on; each connection is handed to the next
    /// ready worker over its channel (Node's SCHED_RR), or relayed to it with `--proxy`.
    RoundRobin,
    /// Like `RoundRobin`, but to the worker with the fewest open handed-over connections.
    LeastConn,
    /// Like `RoundRobin`, but the client IP picks the worker slot (rendezvous hashing).
    Sticky,
}

impl Balance {
    const NAMES: [(&'static str, Balance); 5] = [
        ("reuseport", Balance::ReusePort),
        ("shared", Balance::Shared),
        ("round-robin", Balance::RoundRobin),
        ("least-conn", Balance::LeastConn),
        ("sticky", Balance::Sticky),
    ];

    /// The primary accepts and hands connections over (workers inherit no listening socket).
    pub fn is_handoff(self) -> bool {
        matches!(
            self,
            Balance::RoundRobin | Balance::LeastConn | Balance::Sticky
        )
    }
}

impl FromStr for Balance {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        Balance::NAMES
            .iter()
            .find(|(name, _)| *name == value)
            .map(|(_, balance)| *balance)
            .ok_or_else(|| {
                let valid: Vec<&str> = Balance::NAMES.iter().map(|(name, _)| *name).collect();
                format!(
                    "`{value}` is not a balance mode: expected one of {}",
                    valid.join(", ")
                )
            })
    }
}

impl fmt::Display for Balance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Balance::NAMES
            .iter()
            .find(|(_, balance)| balance == self)
            .map_or("?", |(name, _)| *name);
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<ListenAddr, String> {
        value.parse()
    }

    #[test]
    fn parses_ip_addresses() {
        assert_eq!(
            parse("127.0.0.1:8080"),
            Ok(ListenAddr::Tcp("127.0.0.1:8080".parse().unwrap()))
        );
        assert_eq!(
            parse("[::1]:8080"),
            Ok(ListenAddr::Tcp("[::1]:8080".parse().unwrap()))
        );
        assert_eq!(parse("0.0.0.0:0"), Ok(ListenAddr::any_port(0)));
    }

    #[test]
    fn resolves_host_names() {
        let Ok(ListenAddr::Tcp(addr)) = parse("localhost:8080") else {
            panic!("localhost did not resolve");
        };
        assert!(addr.ip().is_loopback());
        assert_eq!(addr.port(), 8080);
    }

    #[test]
    fn parses_unix_paths() {
        assert_eq!(
            parse("unix:/tmp/app.sock"),
            Ok(ListenAddr::Unix("/tmp/app.sock".into()))
        );
        assert_eq!(
            parse("unix:relative.sock"),
            Ok(ListenAddr::Unix("relative.sock".into()))
        );
    }

    #[test]
    fn refuses_non_addresses_naming_the_value() {
        for bad in [
            "foo",
            "",
            "8080",
            ":8080",
            "127.0.0.1",
            "127.0.0.1:99999",
            "127.0.0.1:http",
            "::1:8080",
            "[::1]",
            "unix:",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(
                err.starts_with(&format!("`{bad}` is not an address")),
                "{err}"
            );
        }
        assert_eq!(
            parse("foo").unwrap_err(),
            "`foo` is not an address: expected host:port, [v6]:port or unix:/path"
        );
    }

    #[test]
    fn displays_as_parsed() {
        for text in ["127.0.0.1:8080", "[::1]:8080", "unix:/tmp/app.sock"] {
            assert_eq!(parse(text).unwrap().to_string(), text);
        }
        assert_eq!(ListenAddr::any_port(3000).to_string(), "0.0.0.0:3000");
    }

    #[test]
    fn balance_round_trips_and_lists_valid_values() {
        for balance in Balance::NAMES.map(|(_, b)| b) {
            assert_eq!(balance.to_string().parse::<Balance>(), Ok(balance));
        }
        assert_eq!("reuseport".parse::<Balance>(), Ok(Balance::ReusePort));
        assert_eq!(
            "random".parse::<Balance>().unwrap_err(),
            "`random` is not a balance mode: expected one of reuseport, shared, round-robin, least-conn, sticky"
        );
    }
}
