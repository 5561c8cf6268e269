//! The primary's listening sockets: parses the addresses to listen on, binds them all before
//! any worker starts, says which fds (and LISTEN_FDNAMES names) each worker slot inherits, and
//! steers new connections away from slots whose worker is not ready.
//!
//! Two ways to spread connections, both with no work for the primary per connection
//! ([`Balance`]): `reuseport` gives every slot its own SO_REUSEPORT socket on the same address
//! (the kernel spreads connections over them), `shared` gives every worker the same socket.
//! Sockets are kept open until [`Listeners`] is dropped, even while a slot has no worker. When
//! a slot's worker dies, [`Listeners::vacate`] moves the connections queued on its reuseport
//! socket to the live slots' sockets if the kernel can (`net.ipv4.tcp_migrate_req = 1`: the
//! socket is closed, which migrates its queue, and a fresh one is bound for the
//! replacement); otherwise they wait for the replacement. Either way the group keeps its
//! sockets, and `Group::order` follows the kernel's index of each one for [`Listeners::steer`].
//!
//! Started by socket activation, herd serves the sockets it inherited instead of binding
//! them ([`Listeners::adopt`]; `inherit` reads and checks them, `adopt` matches them with the
//! app's addresses).
//!
//! This module does not spawn workers, place fds at 3.. or set LISTEN_FDS (the driver does),
//! and does not accept connections (the `balance` modes where the primary accepts do).

mod addr;
mod adopt;
#[cfg(test)]
mod adopt_tests;
mod bind;
mod error;
mod inherit;
mod queue;
mod steer;
mod vacate;
pub use steer::probe_source;
#[cfg(test)]
mod tests;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use socket2::Socket;

pub use addr::{Balance, ListenAddr};
pub use error::ListenError;
pub use inherit::Inherited;

/// Longest LISTEN_FDNAMES entry systemd accepts.
const FDNAME_MAX: usize = 255;

/// Every listening socket of one app, in the order of its addresses.
#[derive(Debug)]
pub struct Listeners {
    groups: Vec<Group>,
    /// Sockets bound later at a worker's request (a Node cluster worker's `listen()` on an
    /// address herd was not given), shared by every worker that asks for the same address.
    on_demand: Vec<(ListenAddr, Group)>,
    /// Health checks are steered to their slot (`--health-check` in reuseport mode): a
    /// program stays attached even when every slot is ready.
    probes: bool,
    /// Inherited sockets that no address of the app asked for (see [`Listeners::adopt`]).
    unused: Vec<String>,
    /// The slots the last [`Listeners::steer`] was given, to steer again after a
    /// [`Listeners::vacate`] reorders a group.
    steered: Vec<usize>,
}

/// One address herd listens on, as the log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listening {
    /// The bound address (the kernel's port when 0 was asked).
    pub addr: ListenAddr,
    /// The fd herd inherited the socket as (socket activation), if it did.
    pub inherited: Option<RawFd>,
    /// Why the address is `shared` although the app asked for `reuseport`.
    pub shared_because: Option<&'static str>,
}

/// The socket(s) of one address.
#[derive(Debug)]
struct Group {
    /// The bound address, with the kernel's port when port 0 was asked.
    local: ListenAddr,
    /// This address's LISTEN_FDNAMES entry.
    name: String,
    /// One socket per slot (index = slot) for TCP in reuseport mode; otherwise a single
    /// socket shared by every slot.
    sockets: Vec<Socket>,
    /// Per-slot groups: the slot of each position in the kernel's reuseport group (see
    /// `vacate::SlotOrder`); slot = position until a slot is vacated.
    order: vacate::SlotOrder,
    per_slot: bool,
    /// The unix socket file this process created, removed when the group is dropped.
    _file: Option<bind::SocketFile>,
    /// The fd the first socket was inherited as (socket activation).
    inherited: Option<RawFd>,
    /// Why a reuseport app's address has one shared socket (see [`Listeners::adopt`]).
    shared_because: Option<&'static str>,
}

impl Group {
    fn socket_for(&self, slot: usize) -> &Socket {
        if self.per_slot {
            &self.sockets[slot]
        } else {
            &self.sockets[0]
        }
    }
}

impl Listeners {
    /// Binds every address before any worker starts. `slots` is the initial worker count.
    ///
    /// ReusePort: for each TCP address, one SO_REUSEPORT socket per slot (at least one), all on
    /// the same port; when port 0 was given, the first socket's kernel-chosen port is reused for
    /// the others. A port another process already listens on is refused even if that process
    /// used SO_REUSEPORT too, so two herds never silently split one port.
    /// Shared: one socket per address, inherited by all workers. Unix addresses are always one
    /// shared socket (SO_REUSEPORT means nothing for them). A stale unix socket file (connect
    /// refused) is removed and rebound; a live one is an error.
    pub fn bind(
        addrs: &[ListenAddr],
        balance: Balance,
        slots: usize,
    ) -> Result<Listeners, ListenError> {
        let mut groups: Vec<Group> = Vec::with_capacity(addrs.len());
        for addr in addrs {
            // Listed twice: a second bind would fail as "in use" (shared) or silently join the
            // first address's reuseport group and break slot = group index.
            let explicit = !matches!(addr, ListenAddr::Tcp(a) if a.port() == 0);
            if explicit && addrs.iter().filter(|other| *other == addr).count() > 1 {
                return Err(ListenError::Duplicate { addr: addr.clone() });
            }
            groups.push(match addr {
                ListenAddr::Tcp(asked) if balance == Balance::ReusePort => {
                    if asked.port() != 0 {
                        bind::ensure_unused(*asked)?;
                    }
                    let first = bind::tcp(*asked, true)?;
                    let local = bound_addr(&first, *asked)?;
                    let mut sockets = vec![first];
                    for _ in 1..slots {
                        sockets.push(bind::tcp(local, true)?);
                    }
                    Group {
                        local: ListenAddr::Tcp(local),
                        name: fd_name(&ListenAddr::Tcp(local)),
                        order: vacate::SlotOrder::new(sockets.len()),
                        sockets,
                        per_slot: true,
                        _file: None,
                        inherited: None,
                        shared_because: None,
                    }
                }
                _ => shared_group(addr)?,
            });
        }
        Ok(Listeners {
            groups,
            on_demand: Vec::new(),
            probes: false,
            unused: Vec::new(),
            steered: Vec::new(),
        })
    }

    /// The listening fds a worker of `slot` inherits, in address order, each with its
    /// LISTEN_FDNAMES name (`tcp-3000`, `unix-app.sock`; never a ':', systemd's separator).
    ///
    /// In reuseport mode, binds the sockets of the slots up to `slot` not bound yet (scale up).
    /// They start receiving connections at once unless a steering program keeps them away:
    /// call [`Listeners::steer`] with the ready slots after scaling. The fds stay owned by
    /// `self` and open until it is dropped.
    pub fn for_slot(&mut self, slot: usize) -> Result<Vec<(RawFd, String)>, ListenError> {
        for group in self.groups.iter_mut().filter(|g| g.per_slot) {
            let ListenAddr::Tcp(local) = group.local else {
                continue;
            };
            // In slot order, so a socket's position in the reuseport group is its slot.
            while group.sockets.len() <= slot {
                group.sockets.push(bind::tcp(local, true)?);
                group.order.push(group.sockets.len() - 1);
            }
        }
        Ok(self
            .groups
            .iter()
            .map(|g| (g.socket_for(slot).as_raw_fd(), g.name.clone()))
            .collect())
    }

    /// Steers new TCP connections to the given slots only (the ones whose worker is ready),
    /// with a classic BPF program attached to each reuseport group. An empty list, or one that
    /// names every bound slot, removes the program (the kernel's hash spreads connections
    /// over all sockets). After a scale down, pass the remaining ready slots: the sockets of
    /// the removed slots stay bound and would otherwise keep receiving connections.
    /// Slots not bound yet are ignored. No-op in shared mode.
    pub fn steer(&mut self, ready_slots: &[usize]) -> Result<(), ListenError> {
        self.steered = ready_slots.to_vec();
        for group in self.groups.iter().filter(|g| g.per_slot) {
            let bound = group.sockets.len();
            let mut ready: Vec<u32> = ready_slots
                .iter()
                .filter(|slot| **slot < bound)
                .filter_map(|slot| group.order.position(*slot))
                .filter_map(|index| u32::try_from(index).ok())
                .collect();
            ready.sort_unstable();
            ready.dedup();
            let steer_err = |source| ListenError::Steer {
                addr: group.local.clone(),
                source,
            };
            // The program belongs to the group: attaching through its first socket is enough.
            let socket = &group.sockets[0];
            if self.probes {
                if ready.is_empty() {
                    ready = (0..bound).filter_map(|s| u32::try_from(s).ok()).collect();
                }
                let prog = steer::program(&ready)
                    .and_then(steer::with_probes)
                    .map_err(steer_err)?;
                steer::attach(socket, &prog).map_err(steer_err)?;
            } else if ready.is_empty() || ready.len() == bound {
                match steer::detach(socket) {
                    Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {
                        // Kernel older than 5.3: a program over every slot does the same.
                        let all: Vec<u32> =
                            (0..bound).filter_map(|s| u32::try_from(s).ok()).collect();
                        let prog = steer::program(&all).map_err(steer_err)?;
                        steer::attach(socket, &prog).map_err(steer_err)?;
                    }
                    other => other.map_err(steer_err)?,
                }
            } else {
                let prog = steer::program(&ready).map_err(steer_err)?;
                steer::attach(socket, &prog).map_err(steer_err)?;
            }
        }
        Ok(())
    }

    /// The worker of `slot` is gone: with `net.ipv4.tcp_migrate_req = 1`, the slot's
    /// reuseport sockets are closed, so the connections queued on them move to the other
    /// slots' sockets (the kernel picks one per connection, out of the group's listening
    /// sockets), and fresh ones are bound for the replacement; steering is redone for the
    /// group's new order. Without the setting nothing is done (a closed listener would reset
    /// its queue): the queued connections wait for the replacement. Returns whether anything
    /// moved. Call it only once no process of the slot's worker holds the sockets any more.
    pub fn vacate(&mut self, slot: usize) -> Result<bool, ListenError> {
        if !vacate::migrates() {
            return Ok(false);
        }
        self.vacate_now(slot)
    }

    /// [`Listeners::vacate`], whatever the kernel's setting.
    fn vacate_now(&mut self, slot: usize) -> Result<bool, ListenError> {
        let mut moved = false;
        for group in self.groups.iter_mut().filter(|g| g.per_slot) {
            // The launcher of socket activation holds the inherited socket too: left alone.
            if slot == 0 && group.inherited.is_some() {
                continue;
            }
            let Some(socket) = group.sockets.get_mut(slot) else {
                continue;
            };
            let ListenAddr::Tcp(local) = group.local else {
                continue;
            };
            group.order.renewed(slot);
            vacate::renew(socket, local)?;
            moved = true;
        }
        if moved {
            let steered = std::mem::take(&mut self.steered);
            self.steer(&steered)?;
        }
        Ok(moved)
    }

    /// Steers health checks to their slot from now on (see `steer.rs`); call
    /// [`Listeners::steer`] after. Returns where a check connects to: the first per-slot
    /// TCP address, with a wildcard IP replaced by 127.0.0.1; `None` if there is none or it
    /// is not IPv4 or a wildcard.
    pub fn steer_probes(&mut self) -> Option<std::net::SocketAddr> {
        let target = self.groups.iter().find_map(|g| match g.local {
            ListenAddr::Tcp(a) if g.per_slot && (a.is_ipv4() || a.ip().is_unspecified()) => {
                let ip = if a.ip().is_unspecified() {
                    std::net::Ipv4Addr::LOCALHOST
                } else {
                    match a.ip() {
                        std::net::IpAddr::V4(v4) => v4,
                        std::net::IpAddr::V6(_) => return None,
                    }
                };
                Some(std::net::SocketAddr::from((ip, a.port())))
            }
            _ => None,
        })?;
        self.probes = true;
        Some(target)
    }

    /// The socket a worker of `slot` should serve when it asks to listen on `asked` (a Node
    /// cluster worker's `listen()`): the slot's socket of the herd listener with that port
    /// (TCP, any address: `listen(3000)` means herd's `-p 3000`) or that path (unix);
    /// otherwise a shared socket bound now on `asked` and kept for every worker that asks
    /// for it. Port 0 gets one kernel-chosen port for all workers, as in Node's cluster.
    /// Returns a copy of the socket for the worker (herd keeps its own), and true when the
    /// socket was bound by this call.
    pub fn for_request(
        &mut self,
        slot: usize,
        asked: &ListenAddr,
    ) -> Result<(OwnedFd, bool), ListenError> {
        let (socket, new) = self.socket_for_request(slot, asked)?;
        let copy = nonblocking_copy(socket).map_err(|source| ListenError::Io {
            addr: asked.clone(),
            source,
        })?;
        Ok((copy, new))
    }

    /// A copy of the socket a worker of `slot` has at fd `fd` (3, 4, …: the order of
    /// [`Listeners::for_slot`]), for a Node cluster worker's `listen({fd})`; `None` if herd
    /// passed no socket at that fd.
    pub fn for_fd(&mut self, slot: usize, fd: i64) -> Result<Option<OwnedFd>, ListenError> {
        self.for_slot(slot)?;
        let Some(group) = usize::try_from(fd - 3)
            .ok()
            .and_then(|i| self.groups.get(i))
        else {
            return Ok(None);
        };
        let copy = nonblocking_copy(group.socket_for(slot)).map_err(|source| ListenError::Io {
            addr: group.local.clone(),
            source,
        })?;
        Ok(Some(copy))
    }

    fn socket_for_request(
        &mut self,
        slot: usize,
        asked: &ListenAddr,
    ) -> Result<(&Socket, bool), ListenError> {
        let matches = |local: &ListenAddr| match (local, asked) {
            (ListenAddr::Tcp(l), ListenAddr::Tcp(a)) => a.port() != 0 && l.port() == a.port(),
            (ListenAddr::Unix(l), ListenAddr::Unix(a)) => l == a,
            _ => false,
        };
        if let Some(i) = self.groups.iter().position(|g| matches(&g.local)) {
            self.for_slot(slot)?;
            return Ok((self.groups[i].socket_for(slot), false));
        }
        // Keyed by the address asked, so that every worker asking for port 0 shares the
        // one port the kernel chose for the first.
        if let Some(j) = self.on_demand.iter().position(|(a, _)| a == asked) {
            return Ok((&self.on_demand[j].1.sockets[0], false));
        }
        let group = shared_group(asked)?;
        self.on_demand.push((asked.clone(), group));
        let last = self.on_demand.len() - 1;
        Ok((&self.on_demand[last].1.sockets[0], true))
    }

    /// For the handoff modes: a nonblocking copy of each listener (TCP or unix), with its index, for
    /// the primary's accept loops.
    pub fn accept_sockets(&self) -> std::io::Result<Vec<(usize, std::os::fd::OwnedFd)>> {
        let mut out = Vec::new();
        for (i, g) in self.groups.iter().enumerate() {
            let copy = g.sockets[0].try_clone()?;
            copy.set_nonblocking(true)?;
            out.push((i, std::os::fd::OwnedFd::from(copy)));
        }
        Ok(out)
    }

    /// The index of herd's unix listener at `path`, if any.
    pub fn index_of_path(&self, path: &std::path::Path) -> Option<usize> {
        self.groups
            .iter()
            .position(|g| matches!(&g.local, ListenAddr::Unix(p) if p == path))
    }

    /// The index of herd's TCP listener on `port`, if any.
    pub fn index_of_port(&self, port: u16) -> Option<usize> {
        self.groups
            .iter()
            .position(|g| matches!(g.local, ListenAddr::Tcp(a) if a.port() == port && port != 0))
    }

    /// The bound addresses, for the "listening on …" log line (the actual port when 0 was
    /// asked), in the order given to [`Listeners::bind`].
    pub fn local_addrs(&self) -> Vec<ListenAddr> {
        self.groups.iter().map(|g| g.local.clone()).collect()
    }

    /// Each address with how herd got its socket, for the `herd.listening` records.
    pub fn listening(&self) -> Vec<Listening> {
        self.groups
            .iter()
            .map(|g| Listening {
                addr: g.local.clone(),
                inherited: g.inherited,
                shared_because: g.shared_because,
            })
            .collect()
    }

    /// The inherited sockets no address of the app matched (`fd 4 = 127.0.0.1:81`), which
    /// herd does not serve.
    pub fn unused_inherited(&self) -> &[String] {
        &self.unused
    }

    /// The port to put in the worker's PORT variable: the first TCP address's actual port.
    pub fn port(&self) -> Option<u16> {
        self.groups.iter().find_map(|g| match g.local {
            ListenAddr::Tcp(addr) => Some(addr.port()),
            ListenAddr::Unix(_) => None,
        })
    }
}

/// One socket on `addr`, shared by every slot.
fn shared_group(addr: &ListenAddr) -> Result<Group, ListenError> {
    Ok(match addr {
        ListenAddr::Tcp(asked) => {
            let socket = bind::tcp(*asked, false)?;
            let local = ListenAddr::Tcp(bound_addr(&socket, *asked)?);
            Group {
                name: fd_name(&local),
                local,
                sockets: vec![socket],
                order: vacate::SlotOrder::new(1),
                per_slot: false,
                _file: None,
                inherited: None,
                shared_because: None,
            }
        }
        ListenAddr::Unix(path) => {
            let (socket, file) = bind::unix(path)?;
            Group {
                local: addr.clone(),
                name: fd_name(addr),
                sockets: vec![socket],
                order: vacate::SlotOrder::new(1),
                per_slot: false,
                _file: Some(file),
                inherited: None,
                shared_because: None,
            }
        }
    })
}

/// A copy of a listening socket for a Node cluster worker, switched to nonblocking mode.
///
/// Node's own primary hands out nonblocking sockets and libuv does not change the mode of a
/// socket it receives over IPC: on a blocking one, the worker that loses the race for a
/// connection (every worker's epoll wakes) blocks in `accept()` for good, and stops reading
/// its channel. O_NONBLOCK belongs to the open socket, so it holds for every holder of it.
fn nonblocking_copy(socket: &Socket) -> std::io::Result<OwnedFd> {
    socket.set_nonblocking(true)?;
    Ok(OwnedFd::from(socket.try_clone()?))
}

/// The address `socket` is bound to (the kernel's port when 0 was asked).
fn bound_addr(
    socket: &Socket,
    asked: std::net::SocketAddr,
) -> Result<std::net::SocketAddr, ListenError> {
    let io_err = |source| ListenError::Io {
        addr: ListenAddr::Tcp(asked),
        source,
    };
    socket
        .local_addr()
        .map_err(io_err)?
        .as_socket()
        .ok_or_else(|| {
            io_err(std::io::Error::other(
                "the socket is not bound to an IP address",
            ))
        })
}

/// The LISTEN_FDNAMES entry of an address: `tcp-PORT` or `unix-FILENAME`, with every character
/// systemd would refuse (':' separates the names; only printable ASCII) replaced by '_'.
fn fd_name(addr: &ListenAddr) -> String {
    let raw = match addr {
        ListenAddr::Tcp(a) => format!("tcp-{}", a.port()),
        ListenAddr::Unix(path) => format!(
            "unix-{}",
            path.file_name()
                .unwrap_or(path.as_os_str())
                .to_string_lossy()
        ),
    };
    raw.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(FDNAME_MAX)
        .collect()
}
