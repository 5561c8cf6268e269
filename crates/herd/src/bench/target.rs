//! The URL under load: parsed (plain `http://` only), resolved once before the run, and the
//! request bytes built once, so the load threads only copy them.

use std::net::{SocketAddr, ToSocketAddrs};

/// What is wrong with the URL.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Not `http://`.
    #[error("{url}: {scheme} is not supported: herd bench speaks plain http:// (put a TLS proxy in front, or load the server's plain port)")]
    Scheme {
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// Not a URL.
    #[error("{url}: not a URL: expected http://HOST[:PORT][/PATH]")]
    Malformed {
        /// The URL.
        url: String,
    },
    /// The host has no address.
    #[error("{host}: the host does not resolve ({why})")]
    Resolve {
        /// host:port.
        host: String,
        /// The resolver's answer.
        why: String,
    },
}

/// Where the load goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given.
    pub url: String,
    /// Host, as in the Host header.
    pub host: String,
    /// Port (80 by default).
    pub port: u16,
    /// Path and query, `/` at least.
    pub path: String,
}

impl Target {
    /// Parses `http://host[:port][/path]`.
    pub fn parse(url: &str) -> Result<Target, TargetError> {
        let malformed = || TargetError::Malformed { url: url.into() };
        let (scheme, rest) = url.split_once("://").ok_or_else(malformed)?;
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(TargetError::Scheme {
                url: url.into(),
                scheme: scheme.into(),
            });
        }
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) if rest[at..].starts_with('/') => (&rest[..at], rest[at..].to_string()),
            Some(at) => (&rest[..at], format!("/{}", &rest[at..])),
            None => (rest, "/".to_string()),
        };
        let path = path.split('#').next().unwrap_or("/").to_string();
        if authority.is_empty() || authority.contains('@') {
            return Err(malformed());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                if h.starts_with('[') && !h.ends_with(']') {
                    (authority, 80)
                } else {
                    (h, p.parse::<u16>().map_err(|_| malformed())?)
                }
            }
            _ => (authority, 80),
        };
        if host.is_empty() || port == 0 {
            return Err(malformed());
        }
        Ok(Target {
            url: url.into(),
            host: host.into(),
            port,
            path,
        })
    }

    /// The same target on another port (for --scale's servers).
    pub fn with_port(&self, port: u16) -> Target {
        Target {
            url: format!("http://127.0.0.1:{port}{}", self.path),
            host: "127.0.0.1".into(),
            port,
            path: self.path.clone(),
        }
    }

    /// The first address of the host.
    pub fn resolve(&self) -> Result<SocketAddr, TargetError> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        let err = |why: String| TargetError::Resolve {
            host: format!("{}:{}", self.host, self.port),
            why,
        };
        let mut addrs = (host, self.port)
            .to_socket_addrs()
            .map_err(|e| err(e.to_string()))?;
        addrs.next().ok_or_else(|| err("no address".into()))
    }

    /// The request's bytes: `METHOD path HTTP/1.1`, Host, the headers, and the body with
    /// its Content-Length.
    pub fn request(
        &self,
        method: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
    ) -> Vec<u8> {
        let mut r = format!("{method} {} HTTP/1.1\r\n", self.path);
        let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        if !has("host") {
            if self.port == 80 {
                r.push_str(&format!("Host: {}\r\n", self.host));
            } else {
                r.push_str(&format!("Host: {}:{}\r\n", self.host, self.port));
            }
        }
        for (k, v) in headers {
            r.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            if !has("content-length") {
                r.push_str(&format!("Content-Length: {}\r\n", b.len()));
            }
        }
        r.push_str("\r\n");
        let mut bytes = r.into_bytes();
        if let Some(b) = body {
            bytes.extend_from_slice(b);
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ports_and_paths() {
        let t = Target::parse("http://127.0.0.1:3000/slow?ms=20").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 3000, "/slow?ms=20")
        );
        let t = Target::parse("http://localhost").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("localhost", 80, "/")
        );
        let t = Target::parse("http://[::1]:8080?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("[::1]", 8080, "/?x=1")
        );
        assert!(matches!(
            Target::parse("https://x/"),
            Err(TargetError::Scheme { .. })
        ));
        assert!(matches!(
            Target::parse("localhost:3000"),
            Err(TargetError::Malformed { .. })
        ));
        assert!(matches!(
            Target::parse("http://h:99999/"),
            Err(TargetError::Malformed { .. })
        ));
    }

    #[test]
    fn builds_the_request_once() {
        let t = Target::parse("http://h:81/a").unwrap();
        let r = t.request("POST", &[("X-A".into(), "1".into())], Some(b"hi"));
        assert_eq!(
            String::from_utf8(r).unwrap(),
            "POST /a HTTP/1.1\r\nHost: h:81\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nhi"
        );
    }
}
