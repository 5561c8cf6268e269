//! Steering a reuseport group's new connections to chosen slots with a classic BPF program
//! (SO_ATTACH_REUSEPORT_CBPF), so a slot whose worker is dead or not yet ready gets none.
//!
//! The number such a program returns is an index into the kernel's reuseport group, whose
//! order is the order the sockets started listening; [`super::Listeners`] binds them in slot
//! order and never closes one, so index = slot. An index beyond the group makes the kernel fall
//! back to its own hash, so a wrong program degrades to "no steering", never to lost connections.
//!
//! The program: draw a random number per connection, take it modulo the number of ready
//! slots k, and map the i-th value to the i-th ready slot. [`program`] is pure and tested with
//! a small interpreter; only [`attach`] and [`detach`] touch the kernel.
//!
//! Health checks (`--health-check`) must reach one chosen slot, ready or not: [`with_probes`]
//! puts a prefix in front that sends a connection from `127.254.H.L` (IPv4, any port) to slot
//! `H * 256 + L`. Nobody else connects from that network: it is loopback, so only processes
//! on this machine can, and herd's prober is the one that does.

use std::io;
use std::os::fd::AsRawFd;

use libc::sock_filter;
use socket2::Socket;

/// Kernel limit on a classic BPF program's length (BPF_MAXINSNS).
const MAX_INSTRUCTIONS: usize = libc::BPF_MAXINSNS as usize;

/// Opcodes, spelled as the kernel's headers combine them.
const LD_RANDOM: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const MOD_K: u16 = (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
const RET_A: u16 = (libc::BPF_RET | libc::BPF_A) as u16;
/// Where an ancillary load finds a fresh random u32 (the kernel's prandom).
const RANDOM_OFFSET: u32 = (libc::SKF_AD_OFF + libc::SKF_AD_RANDOM) as u32;
/// A word load: the random value above, or the source address below.
const LDW_ABS: u16 = LD_RANDOM;
const LDB_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
const RSH_K: u16 = (libc::BPF_ALU | libc::BPF_RSH | libc::BPF_K) as u16;
const AND_K: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
/// Loads relative to the packet's network (IP) header.
const NET: u32 = libc::SKF_NET_OFF as u32;
/// Health checks come from 127.254.0.0/16; the low 16 bits are the slot.
pub const PROBE_NET: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 254, 0, 0);

/// The source address of a health check for `slot` (at most 65535).
pub fn probe_source(slot: usize) -> std::net::Ipv4Addr {
    let [_, _, hi, lo] = (slot as u32).to_be_bytes();
    let [a, b, _, _] = PROBE_NET.octets();
    std::net::Ipv4Addr::new(a, b, hi, lo)
}

/// `program` behind a prefix that sends health checks to their slot (module doc).
pub(super) fn with_probes(program: Vec<sock_filter>) -> io::Result<Vec<sock_filter>> {
    let net = u32::from(PROBE_NET);
    let mut prog = vec![
        op(LDB_ABS, 0, 0, NET),
        op(RSH_K, 0, 0, 4),
        // Not IPv4: to the program.
        op(JEQ_K, 0, 6, 4),
        op(LDW_ABS, 0, 0, NET + 12),
        op(AND_K, 0, 0, 0xffff_0000),
        // Not from the probe network: to the program.
        op(JEQ_K, 0, 3, net),
        op(LDW_ABS, 0, 0, NET + 12),
        op(AND_K, 0, 0, 0xffff),
        op(RET_A, 0, 0, 0),
    ];
    prog.extend(program);
    if prog.len() > MAX_INSTRUCTIONS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("too many slots for the kernel's {MAX_INSTRUCTIONS} instructions"),
        ));
    }
    Ok(prog)
}

fn op(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The program that spreads connections evenly over `ready` (group indices; non-empty, no
/// duplicates). Errors if there are too many slots for the kernel's length limit.
pub(super) fn program(ready: &[u32]) -> io::Result<Vec<sock_filter>> {
    match ready {
        [] => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no ready slot to steer to",
        )),
        [only] => Ok(vec![op(RET_K, 0, 0, *only)]),
        _ => {
            let k = u32::try_from(ready.len())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many slots"))?;
            let mut prog = vec![op(LD_RANDOM, 0, 0, RANDOM_OFFSET), op(MOD_K, 0, 0, k)];
            if ready.iter().copied().eq(0..k) {
                // Slots 0..k: the remainder is the slot.
                prog.push(op(RET_A, 0, 0, 0));
                return Ok(prog);
            }
            for (i, slot) in (0..k).zip(ready) {
                // A == i: fall through to "return slot"; otherwise skip it.
                prog.push(op(JEQ_K, 0, 1, i));
                prog.push(op(RET_K, 0, 0, *slot));
            }
            // Unreachable (A < k), but a program must end in a return.
            prog.push(op(RET_K, 0, 0, ready[0]));
            if prog.len() > MAX_INSTRUCTIONS {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{k} ready slots need a program longer than the kernel's {MAX_INSTRUCTIONS} instructions"
                    ),
                ));
            }
            Ok(prog)
        }
    }
}

/// Attaches `program` to the reuseport group `socket` belongs to, replacing any previous one.
pub(super) fn attach(socket: &Socket, program: &[sock_filter]) -> io::Result<()> {
    let len = u16::try_from(program.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "program too long"))?;
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads the program (it copies it in).
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points to `len` valid `sock_filter`s that outlive the call, and optlen is
    // the size of the `sock_fprog` passed; the fd is a live socket borrowed from `socket`.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            std::ptr::from_ref(&fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Removes the group's program: the kernel's hash spreads connections again. Having none
/// attached is fine. Kernels before 5.3 lack the option and answer ENOPROTOOPT; the caller
/// then attaches a program over every slot instead.
pub(super) fn detach(socket: &Socket) -> io::Result<()> {
    let unused: libc::c_int = 0;
    // SAFETY: optval points to a c_int that outlives the call and optlen is its size; the
    // kernel ignores the value. The fd is a live socket borrowed from `socket`.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_DETACH_REUSEPORT_BPF,
            std::ptr::from_ref(&unused).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ENOENT) {
        Ok(())
    } else {
        Err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the subset of classic BPF that [`program`] emits, with `random` as the ancillary
    /// random value.
    fn run(prog: &[sock_filter], random: u32) -> u32 {
        run_from(prog, random, [0x45, 0, 0, 0], [10, 0, 0, 1])
    }

    /// The same for a packet whose IP header starts with `first` and comes from `src`.
    fn run_from(prog: &[sock_filter], random: u32, first: [u8; 4], src: [u8; 4]) -> u32 {
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let ins = prog[pc];
            pc += 1;
            match ins.code {
                LD_RANDOM if ins.k == NET + 12 => a = u32::from_be_bytes(src),
                LD_RANDOM => {
                    assert_eq!(ins.k, RANDOM_OFFSET);
                    a = random;
                }
                LDB_ABS => {
                    assert_eq!(ins.k, NET);
                    a = u32::from(first[0]);
                }
                RSH_K => a >>= ins.k,
                AND_K => a &= ins.k,
                MOD_K => a %= ins.k,
                JEQ_K => pc += usize::from(if a == ins.k { ins.jt } else { ins.jf }),
                RET_K => return ins.k,
                RET_A => return a,
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn outputs(ready: &[u32]) -> Vec<u32> {
        let prog = program(ready).unwrap();
        assert!(prog.len() <= MAX_INSTRUCTIONS);
        (0..1000u32)
            .map(|r| run(&prog, r.wrapping_mul(2_654_435_761)))
            .collect()
    }

    #[test]
    fn every_connection_goes_to_a_ready_slot_and_every_ready_slot_gets_some() {
        for ready in [&[1][..], &[0, 2], &[0, 1, 2], &[3, 1, 7, 5], &[0, 1, 3]] {
            let out = outputs(ready);
            assert!(out.iter().all(|slot| ready.contains(slot)), "{ready:?}");
            for slot in ready {
                assert!(out.contains(slot), "{ready:?}: slot {slot} never chosen");
            }
        }
    }

    #[test]
    fn health_checks_reach_their_slot_and_clients_the_ready_ones() {
        let prog = with_probes(program(&[1, 3]).unwrap()).unwrap();
        for slot in [0usize, 2, 3, 300] {
            let src = probe_source(slot).octets();
            assert_eq!(run_from(&prog, 5, [0x45, 0, 0, 0], src), slot as u32);
        }
        // Clients, from anywhere else (loopback included), and IPv6 packets.
        for src in [
            [127, 0, 0, 1],
            [10, 1, 2, 3],
            [127, 253, 0, 2],
            [127, 255, 0, 0],
        ] {
            for r in 0..20 {
                let out = run_from(&prog, r, [0x45, 0, 0, 0], src);
                assert!([1, 3].contains(&out), "{src:?}: {out}");
            }
        }
        let ipv6 = run_from(&prog, 7, [0x60, 0, 0, 0], probe_source(2).octets());
        assert!([1, 3].contains(&ipv6));
    }

    #[test]
    fn contiguous_slots_use_the_remainder_directly() {
        assert_eq!(program(&[0, 1, 2, 3]).unwrap().len(), 3);
    }

    #[test]
    fn refuses_empty_and_oversized_lists() {
        assert!(program(&[]).is_err());
        let many: Vec<u32> = (1..=3000).collect();
        assert!(program(&many).is_err());
        let most: Vec<u32> = (1..=2046).collect();
        assert!(program(&most).is_ok());
    }
}
