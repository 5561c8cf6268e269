//! Listening on sockets herd inherited (socket activation) instead of binding them: which
//! inherited socket serves which address of the app, and what each balancing mode makes of it.
//!
//! Matching, for each address of the app in order, among the inherited sockets not taken yet:
//! 1. by local address, the closest first, then in fd order: the same `host:port`; an
//!    unspecified host (`-p 3000` is `0.0.0.0:3000`) also matches the other family's
//!    unspecified host on that port (systemd's `ListenStream=3000` is `[::]:3000`); the same
//!    unix path, a relative one taken from herd's working directory;
//! 2. by name: the socket's LISTEN_FDNAMES entry is the name herd gives that address
//!    (`tcp-3000`, `unix-app.sock`), so a `.socket` unit with `FileDescriptorName=tcp-3000`
//!    serves any address of port 3000.
//!
//! With no address at all, every inherited socket is used, in fd order.
//!
//! `reuseport` wants one SO_REUSEPORT socket per slot in one kernel group. The inherited socket
//! becomes slot 0's and herd binds the other slots' on its address, but only when the kernel
//! lets them join its group: the inherited socket has SO_REUSEPORT set (`ReusePort=yes`) and
//! was created by herd's own user (the kernel refuses a group across owners). Otherwise the
//! address is served `shared`, and the log says why: herd does not set SO_REUSEPORT on the
//! launcher's socket itself, since that would let any process of the socket's owner bind the
//! port too, for as long as the launcher keeps it.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use super::inherit::{Inherited, InheritedSocket};
use super::{bind, fd_name, Balance, Group, ListenAddr, ListenError, Listeners};

/// Why an inherited TCP socket cannot have reuseport siblings.
const NO_REUSEPORT: &str =
    "the inherited socket has no SO_REUSEPORT (set ReusePort=yes in the .socket unit)";
const OTHER_OWNER: &str = "the inherited socket belongs to another user than herd's, and the kernel forms SO_REUSEPORT groups of one user's sockets only";

impl Listeners {
    /// Like [`Listeners::bind`], with the sockets of socket activation: each address of
    /// `addrs` is served by the inherited socket that matches it (see the module doc), or every
    /// inherited socket when `addrs` is empty. An address that matches none is an error naming
    /// it and listing the inherited sockets. Inherited sockets no address asks for are not
    /// served ([`Listeners::unused_inherited`]).
    pub fn adopt(
        addrs: &[ListenAddr],
        balance: Balance,
        slots: usize,
        inherited: Inherited,
    ) -> Result<Listeners, ListenError> {
        let all = inherited.list();
        let cwd = std::env::current_dir().unwrap_or_default();
        let mut pool: Vec<Option<InheritedSocket>> =
            inherited.sockets.into_iter().map(Some).collect();
        let mut chosen = Vec::new();
        if addrs.is_empty() {
            chosen.extend(pool.iter_mut().filter_map(Option::take));
        }
        for addr in addrs {
            let free = || {
                pool.iter()
                    .enumerate()
                    .filter_map(|(i, s)| Some((i, s.as_ref()?)))
            };
            // The closest address first (`-p 3000` takes `0.0.0.0:3000` over `[::]:3000`), in
            // fd order; then the name.
            let by_addr = free()
                .filter_map(|(i, s)| Some((address_match(addr, &s.local, &cwd)?, i)))
                .min()
                .map(|(_, i)| i);
            let by_name = || {
                let name = fd_name(addr);
                free()
                    .find(|(_, s)| s.name.as_deref() == Some(name.as_str()))
                    .map(|(i, _)| i)
            };
            let Some(i) = by_addr.or_else(by_name) else {
                // Taken already by an earlier address: the same address listed twice.
                if chosen
                    .iter()
                    .any(|s: &InheritedSocket| address_match(addr, &s.local, &cwd).is_some())
                {
                    return Err(ListenError::Duplicate { addr: addr.clone() });
                }
                return Err(ListenError::NotInherited {
                    addr: addr.clone(),
                    inherited: all,
                });
            };
            chosen.extend(pool[i].take());
        }
        let unused = pool.into_iter().flatten().map(|s| s.to_string()).collect();
        let groups = chosen
            .into_iter()
            .map(|s| group(s, balance, slots))
            .collect::<Result<_, _>>()?;
        Ok(Listeners {
            groups,
            on_demand: Vec::new(),
            unused,
            probes: false,
            steered: Vec::new(),
        })
    }
}

/// The group of one inherited socket.
fn group(s: InheritedSocket, balance: Balance, slots: usize) -> Result<Group, ListenError> {
    let name = fd_name(&s.local);
    let inherited: Option<RawFd> = Some(s.fd);
    let shared = |s: InheritedSocket, because| Group {
        local: s.local,
        name: name.clone(),
        sockets: vec![s.socket],
        order: super::vacate::SlotOrder::new(1),
        per_slot: false,
        // The launcher created the unix socket file and keeps it: never removed by herd.
        _file: None,
        inherited,
        shared_because: because,
    };
    let ListenAddr::Tcp(local) = s.local else {
        return Ok(shared(s, None));
    };
    if balance != Balance::ReusePort {
        return Ok(shared(s, None));
    }
    if !s.reuseport {
        return Ok(shared(s, Some(NO_REUSEPORT)));
    }
    if !s.same_owner {
        return Ok(shared(s, Some(OTHER_OWNER)));
    }
    // Slot 0 is the inherited socket, first in its kernel group (the launcher keeps no other
    // socket on the address), so slot = group index holds for the steering program.
    let mut sockets = vec![s.socket];
    for _ in 1..slots {
        sockets.push(bind::tcp(local, true)?);
    }
    Ok(Group {
        local: s.local,
        name,
        order: super::vacate::SlotOrder::new(sockets.len()),
        sockets,
        per_slot: true,
        _file: None,
        inherited,
        shared_because: None,
    })
}

/// Whether the app's address `asked` means the inherited socket's `local` address, and how
/// closely: 0 the same address, 1 any host of the other IP family on the same port.
fn address_match(asked: &ListenAddr, local: &ListenAddr, cwd: &Path) -> Option<u8> {
    match (asked, local) {
        (ListenAddr::Tcp(a), ListenAddr::Tcp(l)) if a.port() == l.port() && a.port() != 0 => {
            let (a_ip, l_ip) = (a.ip().to_canonical(), l.ip().to_canonical());
            if a_ip == l_ip {
                Some(0)
            } else if a_ip.is_unspecified() && l_ip.is_unspecified() {
                Some(1)
            } else {
                None
            }
        }
        (ListenAddr::Unix(a), ListenAddr::Unix(l)) => {
            (absolute(a, cwd) == absolute(l, cwd)).then_some(0)
        }
        _ => None,
    }
}

fn absolute(path: &Path, cwd: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &str) -> ListenAddr {
        ListenAddr::Tcp(s.parse().unwrap())
    }

    #[test]
    fn addresses_match_by_host_and_port_and_any_host_by_port() {
        let cwd = Path::new("/srv/app");
        let yes = |a: &ListenAddr, l: &ListenAddr| {
            assert_eq!(address_match(a, l, cwd), Some(0), "{a} {l}")
        };
        let no =
            |a: &ListenAddr, l: &ListenAddr| assert_eq!(address_match(a, l, cwd), None, "{a} {l}");
        let other_family = |a: &ListenAddr, l: &ListenAddr| {
            assert_eq!(address_match(a, l, cwd), Some(1), "{a} {l}")
        };
        yes(&tcp("127.0.0.1:3000"), &tcp("127.0.0.1:3000"));
        yes(&ListenAddr::any_port(3000), &tcp("0.0.0.0:3000"));
        other_family(&ListenAddr::any_port(3000), &tcp("[::]:3000"));
        other_family(&tcp("[::]:3000"), &tcp("0.0.0.0:3000"));
        yes(&tcp("127.0.0.1:3000"), &tcp("[::ffff:127.0.0.1]:3000"));
        no(&tcp("127.0.0.1:3000"), &tcp("127.0.0.1:3001"));
        no(&tcp("127.0.0.1:3000"), &tcp("0.0.0.0:3000"));
        no(&ListenAddr::any_port(3000), &tcp("127.0.0.1:3000"));
        no(&tcp("127.0.0.1:0"), &tcp("127.0.0.1:0"));
        let unix = |p: &str| ListenAddr::Unix(p.into());
        yes(&unix("app.sock"), &unix("/srv/app/app.sock"));
        yes(&unix("/run/app.sock"), &unix("/run/app.sock"));
        no(&unix("app.sock"), &unix("/run/app.sock"));
        no(&unix("/run/app.sock"), &tcp("127.0.0.1:3000"));
    }
}
