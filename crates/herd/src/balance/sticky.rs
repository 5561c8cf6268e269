//! `--balance sticky`: the client's IP address picks the worker slot by rendezvous
//! (highest-random-weight) hashing. Every slot gets a pseudo-random weight for each client;
//! the client goes to the slot with the highest weight. Adding a slot moves only the clients
//! for which the new slot now weighs most (about 1/(N+1) of them, all to the new slot);
//! removing one moves only that slot's clients. A modulo hash, as in the article's
//! example, would move almost every client on any change.
//!
//! The hash is a fixed function (no per-process random key), so a client keeps its slot
//! across a restart of herd itself.

use std::net::IpAddr;

/// A client's key: its IP address, IPv4-mapped IPv6 addresses folded into IPv4 (a dual-stack
/// socket reports IPv4 clients that way).
pub fn client_key(ip: IpAddr) -> u64 {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => mix(u64::from(u32::from(v4))),
        IpAddr::V6(v6) => {
            let n = u128::from(v6);
            mix(mix(n as u64) ^ (n >> 64) as u64)
        }
    }
}

/// The weight of `slot` for the client `key`.
pub fn weight(key: u64, slot: usize) -> u64 {
    mix(key ^ mix(slot as u64 ^ 0x9e37_79b9_7f4a_7c15))
}

/// The slots in the client's order of preference: `best(key, slots, |s| usable)` is the
/// highest-weighted slot of `0..slots` for which `usable` holds.
pub fn best(key: u64, slots: usize, usable: impl Fn(usize) -> bool) -> Option<usize> {
    (0..slots)
        .filter(|s| usable(*s))
        .max_by_key(|s| weight(key, *s))
}

/// SplitMix64's finaliser: a bijective mixer with good avalanche, enough for spreading.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn clients(n: u32) -> Vec<u64> {
        (0..n)
            .map(|i| client_key(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))))
            .collect()
    }

    #[test]
    fn spreads_clients_evenly() {
        let keys = clients(30_000);
        let mut per = [0usize; 4];
        for k in &keys {
            per[best(*k, 4, |_| true).unwrap()] += 1;
        }
        for n in per {
            assert!((6_750..=8_250).contains(&n), "{per:?}");
        }
    }

    #[test]
    fn adding_a_slot_moves_only_clients_to_it() {
        let keys = clients(20_000);
        let mut moved = 0;
        for k in &keys {
            let before = best(*k, 4, |_| true).unwrap();
            let after = best(*k, 5, |_| true).unwrap();
            if before != after {
                assert_eq!(after, 4, "a client moved between old slots");
                moved += 1;
            }
        }
        // About 1/5 of them.
        assert!((3_400..=4_600).contains(&moved), "{moved}");
    }

    #[test]
    fn an_unusable_slot_sends_its_clients_to_their_next_choice_only() {
        let keys = clients(10_000);
        for k in &keys {
            let first = best(*k, 4, |_| true).unwrap();
            let without_2 = best(*k, 4, |s| s != 2).unwrap();
            if first != 2 {
                assert_eq!(first, without_2);
            }
        }
        assert_eq!(best(1, 3, |_| false), None);
    }

    #[test]
    fn ipv4_mapped_is_ipv4_and_v6_works() {
        let v4 = Ipv4Addr::new(192, 0, 2, 7);
        assert_eq!(
            client_key(IpAddr::V4(v4)),
            client_key(IpAddr::V6(v4.to_ipv6_mapped()))
        );
        let a = client_key(IpAddr::V6(Ipv6Addr::LOCALHOST));
        let b = client_key(IpAddr::V6("2001:db8::1".parse().unwrap()));
        assert_ne!(a, b);
    }

    proptest::proptest! {
        /// For any number of slots and any clients: adding a slot moves only clients to
        /// the new slot, about 1/(N+1) of them.
        #[test]
        fn adding_a_slot_moves_about_one_client_in_n_plus_one(
            n in 1usize..24,
            ips in proptest::collection::hash_set(proptest::prelude::any::<u32>(), 3000),
        ) {
            let mut moved = 0usize;
            for ip in &ips {
                let k = client_key(IpAddr::V4(Ipv4Addr::from(*ip)));
                let before = best(k, n, |_| true).unwrap();
                let after = best(k, n + 1, |_| true).unwrap();
                if before != after {
                    proptest::prop_assert_eq!(after, n, "a client moved between old slots");
                    moved += 1;
                }
            }
            let expected = ips.len() as f64 / (n + 1) as f64;
            // Binomial: within 5 standard deviations of the expectation.
            let sd = (expected * (1.0 - 1.0 / (n + 1) as f64)).sqrt();
            proptest::prop_assert!(
                (moved as f64 - expected).abs() <= 5.0 * sd,
                "{moved} of {} moved with {n} -> {} slots, {expected:.0} expected", ips.len(), n + 1
            );
        }
    }
}
