//! Node's cluster control protocol (`cmd: "NODE_CLUSTER"`), primary side: what an
//! unmodified Node worker started with `NODE_UNIQUE_ID` asks, and the replies herd sends.
//! Pure translation between JSON and typed requests; the driver decides and does the I/O.
//! Wire facts: `../shared/reference/node-ipc-protocol.md` (checked against Node 20).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::listen::ListenAddr;

/// A message of a cluster worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// The worker booted.
    Online,
    /// The worker called `listen()`: answer with a server (or an error), echoing `seq`.
    QueryServer {
        /// The worker's message number, echoed as `ack` in the reply.
        seq: u64,
        /// What it wants to listen on.
        target: Target,
    },
    /// The worker listens: the usual readiness of a Node cluster worker.
    Listening,
    /// The worker closed one of its servers.
    Close,
    /// The worker disconnected by itself; wants `{ack: seq}`.
    ExitedAfterDisconnect {
        /// The worker's message number, to acknowledge.
        seq: u64,
    },
    /// The answer to `newconn` `ack`: false means the worker no longer serves that key and
    /// the connection must go to another worker.
    Accepted {
        /// The `seq` of the `newconn` message this answers.
        ack: u64,
        /// The worker took the connection.
        accepted: bool,
    },
    /// A NODE_CLUSTER message herd does not act on (or cannot read), with a description.
    Other(String),
}

/// What a `listen()` asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// An address (`listen(3000)`, `listen('/tmp/app.sock')`).
    Addr(ListenAddr),
    /// An fd the worker holds (`listen({fd: 3})`): one of the sockets herd passed it.
    Fd(i64),
}

/// Reads a `NODE_CLUSTER` message; `None` if it is not one.
pub fn parse(v: &Value) -> Option<Request> {
    if v.get("cmd").and_then(Value::as_str) != Some("NODE_CLUSTER") {
        return None;
    }
    let seq = v.get("seq").and_then(Value::as_u64);
    let act = v.get("act").and_then(Value::as_str).unwrap_or("");
    if let (Some(ack), Some(accepted)) = (
        v.get("ack").and_then(Value::as_u64),
        v.get("accepted").and_then(Value::as_bool),
    ) {
        return Some(Request::Accepted { ack, accepted });
    }
    Some(match (act, seq) {
        ("online", _) => Request::Online,
        ("listening", _) => Request::Listening,
        ("close", _) => Request::Close,
        ("exitedAfterDisconnect", Some(seq)) => Request::ExitedAfterDisconnect { seq },
        ("queryServer", Some(seq)) => match v.get("fd").and_then(Value::as_i64) {
            Some(fd) => Request::QueryServer {
                seq,
                target: Target::Fd(fd),
            },
            None => match server_address(v) {
                Ok(addr) => Request::QueryServer {
                    seq,
                    target: Target::Addr(addr),
                },
                Err(why) => Request::Other(format!("queryServer that herd cannot serve: {why}")),
            },
        },
        _ => Request::Other(format!("unhandled cluster message {v}")),
    })
}

/// The address a `queryServer` asks for: TCP (`addressType` 4 or 6, `address` null = all
/// interfaces) or a unix path (`addressType` -1).
fn server_address(v: &Value) -> Result<ListenAddr, String> {
    let kind = v.get("addressType");
    let address = v.get("address").and_then(Value::as_str);
    match kind.and_then(Value::as_i64) {
        Some(-1) => address
            .map(|p| ListenAddr::Unix(PathBuf::from(p)))
            .ok_or_else(|| "a pipe without a path".to_string()),
        Some(t @ (4 | 6)) => {
            let port = v.get("port").and_then(Value::as_u64).unwrap_or(0);
            let port = u16::try_from(port).map_err(|_| format!("port {port} out of range"))?;
            let ip: IpAddr = match address {
                Some(a) => a
                    .parse()
                    .map_err(|_| format!("address {a:?} is not an IP address"))?,
                None if t == 6 => Ipv6Addr::UNSPECIFIED.into(),
                None => Ipv4Addr::UNSPECIFIED.into(),
            };
            Ok(ListenAddr::Tcp(SocketAddr::new(ip, port)))
        }
        _ => Err(format!(
            "addressType {} (UDP and fd servers are not supported)",
            kind.unwrap_or(&Value::Null)
        )),
    }
}

/// The key herd gives a server; the worker echoes it in later messages.
pub fn key(target: &Target) -> String {
    match target {
        Target::Addr(a) => a.to_string(),
        Target::Fd(fd) => format!("fd:{fd}"),
    }
}

/// The `msg` of the `NODE_HANDLE` (`net.Native`, the listening socket) answering query `ack`.
pub fn server_reply(ack: u64, key: &str, seq: u64) -> Value {
    json!({"cmd": "NODE_CLUSTER", "errno": 0, "key": key, "ack": ack, "data": null, "seq": seq})
}

/// The answer to query `ack` in round-robin mode: no socket, the primary keeps it and sends
/// each connection with [`newconn`]; `sockname` is what `server.address()` returns.
pub fn round_robin_reply(ack: u64, key: &str, seq: u64, local: Option<&SocketAddr>) -> Value {
    // A pipe has no sockname: Node's worker then answers server.address() with the path.
    let sockname = local.map(|l| {
        let family = if l.is_ipv4() { "IPv4" } else { "IPv6" };
        json!({"address": l.ip().to_string(), "family": family, "port": l.port()})
    });
    json!({"cmd": "NODE_CLUSTER", "errno": null, "key": key, "ack": ack, "data": null, "seq": seq,
        "sockname": sockname})
}

/// The `msg` of the `NODE_HANDLE` (`net.Native`, an accepted connection) for server `key`:
/// the oracle the tests check [`newconn_line`] against.
#[cfg(test)]
pub fn newconn(key: &str, seq: u64) -> Value {
    json!({"cmd": "NODE_CLUSTER", "act": "newconn", "key": key, "seq": seq})
}

/// The whole `NODE_HANDLE` line of [`newconn`], written into `out` without building a JSON
/// tree: this runs once per connection in round-robin mode. `key_json` is the key already
/// encoded as a JSON string (quotes included), done once per listener.
pub fn newconn_line(key_json: &str, seq: u64, out: &mut Vec<u8>) {
    use std::io::Write;
    out.clear();
    let _ = writeln!(
        out,
        "{{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{{\"cmd\":\"NODE_CLUSTER\",\"act\":\"newconn\",\"key\":{key_json},\"seq\":{seq}}}}}"
    );
}

/// The line that hands a connection to a worker that is not a Node cluster server of
/// herd's socket: Node delivers it as `process.on('message', (msg, socket))` with `msg`
/// `"connection"` and a `net.Socket`, as in the article's sticky-session example. The `key`
/// makes Node count the sockets it still has open, which herd asks for in least-conn mode
/// ([`SOCKET_COUNT_QUERY`]).
pub const CONNECTION_LINE: &[u8] =
    b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Socket\",\"msg\":\"connection\",\"key\":\"herd\"}\n";

/// Asks a worker how many of the sockets sent with [`CONNECTION_LINE`] it still has open;
/// Node answers `{"cmd":"NODE_SOCKET_COUNT","key":"herd","count":N}` by itself.
pub const SOCKET_COUNT_QUERY: &[u8] = b"{\"cmd\":\"NODE_SOCKET_GET_COUNT\",\"key\":\"herd\"}\n";

/// Asks a worker to say when every socket sent with [`CONNECTION_LINE`] is closed; Node
/// answers `{"cmd":"NODE_SOCKET_ALL_CLOSED","key":"herd"}` by itself (at once if none is
/// open). Only a worker that was sent such a socket answers.
pub const SOCKET_NOTIFY_CLOSE: &[u8] = b"{\"cmd\":\"NODE_SOCKET_NOTIFY_CLOSE\",\"key\":\"herd\"}\n";

/// Whether `value` is Node's answer to [`SOCKET_NOTIFY_CLOSE`].
pub fn sockets_all_closed(value: &Value) -> bool {
    value.get("cmd").and_then(Value::as_str) == Some("NODE_SOCKET_ALL_CLOSED")
        && value.get("key").and_then(Value::as_str) == Some("herd")
}

/// The count of a `NODE_SOCKET_COUNT` answer to [`SOCKET_COUNT_QUERY`].
pub fn socket_count(value: &Value) -> Option<u64> {
    if value.get("cmd")?.as_str()? != "NODE_SOCKET_COUNT" || value.get("key")?.as_str()? != "herd" {
        return None;
    }
    value.get("count")?.as_u64()
}

/// A failed `listen()`: Node raises `errno` (e.g. `"EADDRINUSE"`) in the worker.
pub fn error_reply(ack: u64, errno: &str, seq: u64) -> Value {
    json!({"cmd": "NODE_CLUSTER", "errno": errno, "key": null, "ack": ack, "data": null, "seq": seq})
}

/// Tells a worker to close its servers and then its channel (Node's `worker.disconnect()`).
pub fn disconnect(seq: u64) -> Value {
    json!({"cmd": "NODE_CLUSTER", "act": "disconnect", "seq": seq})
}

/// The plain acknowledgement of message `ack`.
pub fn ack(ack: u64, seq: u64) -> Value {
    json!({"cmd": "NODE_CLUSTER", "ack": ack, "seq": seq})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoff_lines_are_the_json_node_expects() {
        let key = "0.0.0.0:3000:4:undefined:0";
        let mut out = Vec::new();
        newconn_line(&serde_json::to_string(key).unwrap(), 41, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"cmd": "NODE_HANDLE", "type": "net.Native", "msg": newconn(key, 41)})
        );
        let v: Value = serde_json::from_slice(CONNECTION_LINE).unwrap();
        assert_eq!(v["msg"], "connection");
        assert_eq!(v["type"], "net.Socket");
        let q: Value = serde_json::from_slice(SOCKET_COUNT_QUERY).unwrap();
        assert_eq!(q["cmd"], "NODE_SOCKET_GET_COUNT");
        let answer = json!({"cmd": "NODE_SOCKET_COUNT", "key": "herd", "count": 3});
        assert_eq!(socket_count(&answer), Some(3));
        assert_eq!(
            socket_count(&json!({"cmd": "NODE_SOCKET_COUNT", "key": "x", "count": 3})),
            None
        );
    }

    fn query(extra: Value) -> Value {
        let mut q = json!({"cmd":"NODE_CLUSTER","act":"queryServer","index":0,"data":null,
            "address":null,"port":null,"addressType":null,"flags":0,"backlog":511,"seq":1});
        for (k, v) in extra.as_object().unwrap() {
            q[k] = v.clone();
        }
        q
    }

    fn addr(s: &str) -> Option<Request> {
        Some(Request::QueryServer {
            seq: 1,
            target: Target::Addr(s.parse().unwrap()),
        })
    }

    #[test]
    fn reads_what_node_20_sends() {
        assert_eq!(
            parse(&query(json!({"port":3000,"addressType":4}))),
            addr("0.0.0.0:3000")
        );
        assert_eq!(
            parse(&query(json!({"address":"::1","port":0,"addressType":6}))),
            addr("[::1]:0")
        );
        assert_eq!(
            parse(&query(json!({"address":"/tmp/a.sock","addressType":-1}))),
            addr("unix:/tmp/a.sock")
        );
        assert_eq!(
            parse(&query(json!({"fd":3}))),
            Some(Request::QueryServer {
                seq: 1,
                target: Target::Fd(3)
            })
        );
        assert_eq!(
            parse(&json!({"cmd":"NODE_CLUSTER","act":"online","seq":0})),
            Some(Request::Online)
        );
        assert_eq!(
            parse(&json!({"cmd":"NODE_CLUSTER","act":"listening","seq":4})),
            Some(Request::Listening)
        );
        assert_eq!(parse(&json!({"cmd":"NODE_HANDLE_ACK"})), None);
        assert_eq!(
            parse(&json!({"cmd":"NODE_CLUSTER","ack":7,"accepted":false,"seq":9})),
            Some(Request::Accepted {
                ack: 7,
                accepted: false
            })
        );
    }

    #[test]
    fn what_herd_cannot_serve_is_described_not_fatal() {
        let udp = query(json!({"port":53,"addressType":"udp4"}));
        assert!(matches!(parse(&udp), Some(Request::Other(w)) if w.contains("udp4")));
        let bad = query(json!({"address":"nope","port":1,"addressType":4}));
        assert!(matches!(parse(&bad), Some(Request::Other(w)) if w.contains("nope")));
    }
}
