//! A dead worker's queued connections, moved to the live slots: the kernel migrates the
//! connections queued on a reuseport listener that is closed to another listener of its group
//! when `net.ipv4.tcp_migrate_req` is 1 (Linux 5.14; per network namespace). herd closes the
//! dead slot's socket, which migrates its queue, and binds a fresh one for the replacement.
//! Without the setting, a closed listener resets its queue, so nothing is done and the queued
//! connections wait for the replacement. (A shut-down listener that listens again, which the
//! kernel also offers, answered no connection on Linux 6.18: closed and bound anew it is.)
//!
//! The steering program chooses a socket by its index in the kernel's group, so [`SlotOrder`]
//! follows the kernel's order: a listener that leaves the group is replaced at its index by
//! the group's last one, and one that joins goes last (`net/core/sock_reuseport.c`).

use std::net::SocketAddr;

use socket2::Socket;

use super::{bind, ListenError};

/// Where the kernel says whether a closed listener's queue moves (this network namespace).
const MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// Whether the kernel migrates the queue of a listener that is closed.
pub(super) fn migrates() -> bool {
    std::fs::read_to_string(MIGRATE_REQ).is_ok_and(|v| v.trim() == "1")
}

/// Closes `socket` (its queue moves to the group's other listeners) and puts a fresh
/// listening socket on `local` in its place. The fresh socket is made before, so only its
/// bind can fail, after the close: it then stays unbound, and the error says why.
pub(super) fn renew(socket: &mut Socket, local: SocketAddr) -> Result<(), ListenError> {
    let fresh = bind::tcp_unbound(local, true)?;
    drop(std::mem::replace(socket, fresh));
    bind::tcp_listen(socket, local)
}

/// The slot of each socket of a reuseport group, in the kernel's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SlotOrder(Vec<usize>);

impl SlotOrder {
    /// `n` sockets bound in slot order: index = slot.
    pub(super) fn new(n: usize) -> SlotOrder {
        SlotOrder((0..n).collect())
    }

    /// The socket of `slot` joined the group last (bound for a new slot).
    pub(super) fn push(&mut self, slot: usize) {
        self.0.push(slot);
    }

    /// The socket of `slot` left the group and joined it again: the last socket took its
    /// index, and it is last now.
    pub(super) fn renewed(&mut self, slot: usize) {
        if let Some(i) = self.0.iter().position(|s| *s == slot) {
            self.0.swap_remove(i);
            self.0.push(slot);
        }
    }

    /// The index of `slot`'s socket in the kernel's group.
    pub(super) fn position(&self, slot: usize) -> Option<usize> {
        self.0.iter().position(|s| *s == slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewed_slot_goes_last_and_the_last_takes_its_place() {
        let mut order = SlotOrder::new(4);
        order.renewed(1);
        assert_eq!(order, SlotOrder(vec![0, 3, 2, 1]));
        order.renewed(1);
        assert_eq!(order, SlotOrder(vec![0, 3, 2, 1]), "the last one: no move");
        order.renewed(0);
        assert_eq!(order, SlotOrder(vec![1, 3, 2, 0]));
        order.push(4);
        assert_eq!(order.position(4), Some(4));
        assert_eq!(order.position(0), Some(3));
        assert_eq!(order.position(9), None);
    }
}
