//! What relayed connections cost herd under `--proxy`, and herd at its limits: an idle
//! relay holds no copy buffer, the memory of a burst of busy ones goes back to the system
//! once it ends, and herd out of descriptors makes clients wait rather than closing them
//! (all found by scripts/chaos: `idle`, 10 000 idle relays cost 21 KiB each and herd kept
//! 194 MB after they closed; `fdlimit`, 1 009 of 2 000 clients closed at a limit of 300).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};

use crate::common::*;

/// herd's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

fn start() -> Herd {
    let herd = Herd::start(&[
        "run",
        "--proxy",
        "-i",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--",
        worker_bin(),
    ]);
    herd.wait_ready(2);
    herd
}

/// A client whose receive buffer is as small as the kernel allows, so that a body it does
/// not read waits in herd rather than in the client's socket.
fn connect_small(port: u16) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())
        .unwrap();
    s.into()
}

/// Fewer than a default soft limit of 1024 descriptors allows this test, with herd's two
/// per relay under the limit herd raises for itself.
const IDLE: u64 = 800;

#[test]
fn an_idle_relayed_connection_holds_no_copy_buffer() {
    let herd = start();
    let pid = herd.pid();
    let before = rss_kib(pid);
    let mut conns = Vec::new();
    for _ in 0..IDLE {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, herd.port())).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        conns.push(s);
    }
    // Every relay answered once and now waits, idle, for a next request.
    for s in &mut conns {
        s.set_read_timeout(Some(T)).unwrap();
        let mut answer = [0u8; 256];
        let n = s.read(&mut answer).unwrap();
        assert!(
            answer[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&answer[..n])
        );
    }
    let each = rss_kib(pid).saturating_sub(before) / IDLE;
    // A task, two sockets and their registrations: a few KiB. Two 64 KiB copy buffers
    // held for the connection's life made it 60 KiB here (100+ KiB once memory is reused).
    assert!(
        each <= 16,
        "an idle relayed connection costs herd {each} KiB (at most 16 expected)"
    );
}

/// Relays that hold a copy buffer: the worker sends a body the client does not read.
const BUSY: usize = 300;

#[test]
fn the_memory_of_a_burst_of_relayed_connections_goes_back_once_it_ends() {
    let herd = start();
    let pid = herd.pid();
    let before = rss_kib(pid);
    let mut conns = Vec::new();
    for _ in 0..BUSY {
        let mut s = connect_small(herd.port());
        s.write_all(b"GET /big?bytes=67108864 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        conns.push(s);
    }
    // Each relay fills the client's socket and then holds the 64 KiB it could not write.
    let mut peak = before;
    herd.wait_until(
        &format!("{BUSY} stalled relays hold their copy buffers in herd ({before} KiB before)"),
        T,
        || {
            peak = rss_kib(pid);
            peak > before + (BUSY as u64 * 64) / 2
        },
    );
    drop(conns);
    herd.wait_until(
        &format!("herd's RSS back near {before} KiB (it was {peak} KiB with {BUSY} busy relays)"),
        T,
        || rss_kib(pid) <= before + 4 * 1024,
    );
}

/// Sets the descriptor limit (soft and hard) of process `pid`.
fn limit_fds(pid: u32, n: u64) {
    let lim = libc::rlimit64 {
        rlim_cur: n,
        rlim_max: n,
    };
    // SAFETY: prlimit64 reads `lim`, a valid rlimit64, and writes nothing (null old).
    let rc = unsafe {
        libc::prlimit64(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &lim,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// Clients arriving at once, more than herd has descriptors for.
const CROWD: usize = 300;

#[test]
fn herd_out_of_descriptors_makes_clients_wait_rather_than_closing_them() {
    let herd = start();
    let pid = herd.pid();
    // Keep-alive clients whose relays stay open all along: no descriptor comes back from
    // them (a waiting relay must not count on every other relay ending).
    let mut kept = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, herd.port())).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        let mut answer = [0u8; 256];
        let n = s.read(&mut answer).unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
        kept.push(s);
    }
    // Room for about 40 relays (two descriptors each) beyond what herd holds now.
    limit_fds(pid, fd_count(pid) as u64 + 80);
    let clients: Vec<_> = (0..CROWD)
        .map(|_| {
            let port = herd.port();
            std::thread::spawn(move || {
                let mut s =
                    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).map_err(|e| e.to_string())?;
                s.set_read_timeout(Some(T)).map_err(|e| e.to_string())?;
                s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .map_err(|e| e.to_string())?;
                let mut answer = Vec::new();
                s.read_to_end(&mut answer).map_err(|e| e.to_string())?;
                Ok::<_, String>(String::from_utf8_lossy(&answer).into_owned())
            })
        })
        .collect();
    let mut failed = Vec::new();
    for c in clients {
        match c.join().expect("client thread") {
            Ok(a) if a.starts_with("HTTP/1.1 200") => {}
            Ok(a) => failed.push(format!("answer {a:?}")),
            Err(e) => failed.push(e),
        }
    }
    if !failed.is_empty() {
        herd.fail(&format!(
            "{} of {CROWD} clients were not answered, e.g. {:?}",
            failed.len(),
            &failed[..failed.len().min(5)]
        ));
    }
    // Still serving, the kept clients too.
    let (status, _) = herd.get("/");
    assert_eq!(status, 200);
    // Failed accepts are one warning in 10 s, not a line per retry (every 50 ms).
    let failed = herd.count_log("accept failed");
    assert!(
        failed <= 2,
        "{failed} warnings of failed accepts:\n{}",
        herd.dump()
    );
    for s in &mut kept {
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = [0u8; 256];
        let n = s.read(&mut answer).unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
    }
}
