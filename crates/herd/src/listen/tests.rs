//! Real sockets on 127.0.0.1 and in a scratch folder: binding, slot fds, steering, unix files.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;

fn loopback(port: u16) -> ListenAddr {
    ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], port)))
}

fn local_port(socket: &Socket) -> u16 {
    socket.local_addr().unwrap().as_socket().unwrap().port()
}

/// A fresh folder for one test's unix sockets, removed when the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch(test: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("herd-listen-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

#[test]
fn port_zero_in_reuseport_mode_gives_every_slot_the_same_port() {
    let listeners = Listeners::bind(&[loopback(0)], Balance::ReusePort, 3).unwrap();
    let group = &listeners.groups[0];
    assert_eq!(group.sockets.len(), 3);
    let port = local_port(&group.sockets[0]);
    assert_ne!(port, 0);
    assert!(group.sockets.iter().all(|s| local_port(s) == port));
    assert_eq!(listeners.port(), Some(port));
    assert_eq!(listeners.local_addrs(), vec![loopback(port)]);
}

#[test]
fn shared_mode_gives_every_slot_the_same_socket() {
    let mut listeners = Listeners::bind(&[loopback(0)], Balance::Shared, 4).unwrap();
    assert_eq!(listeners.groups[0].sockets.len(), 1);
    let first = listeners.for_slot(0).unwrap();
    assert_eq!(listeners.for_slot(7).unwrap(), first);
    // Steering is meaningless with one socket: a no-op, not an error.
    listeners.steer(&[1]).unwrap();
}

#[test]
fn slot_fds_are_close_on_exec_and_distinct_per_slot() {
    let mut listeners = Listeners::bind(&[loopback(0)], Balance::ReusePort, 2).unwrap();
    let fd0 = listeners.for_slot(0).unwrap()[0].0;
    let fd1 = listeners.for_slot(1).unwrap()[0].0;
    assert_ne!(fd0, fd1);
    for fd in [fd0, fd1] {
        // SAFETY: F_GETFD only reads the flags of an fd `listeners` keeps open.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        assert!(flags & libc::FD_CLOEXEC != 0);
    }
}

#[test]
fn for_slot_beyond_the_initial_count_binds_new_sockets_on_the_same_port() {
    let mut listeners = Listeners::bind(&[loopback(0)], Balance::ReusePort, 2).unwrap();
    let port = listeners.port().unwrap();
    let fds = listeners.for_slot(4).unwrap();
    assert_eq!(fds.len(), 1);
    let group = &listeners.groups[0];
    assert_eq!(group.sockets.len(), 5);
    assert_eq!(fds[0].0, group.sockets[4].as_raw_fd());
    assert!(group.sockets.iter().all(|s| local_port(s) == port));
    // Lower slots keep their sockets.
    assert_eq!(
        listeners.for_slot(1).unwrap()[0].0,
        listeners.groups[0].sockets[1].as_raw_fd()
    );
}

#[test]
fn at_least_one_socket_is_bound_with_zero_slots() {
    let listeners = Listeners::bind(&[loopback(0)], Balance::ReusePort, 0).unwrap();
    assert_eq!(listeners.groups[0].sockets.len(), 1);
    assert_ne!(listeners.port(), Some(0));
}

#[test]
fn address_in_use_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = ListenAddr::Tcp(taken.local_addr().unwrap());
    for balance in [Balance::ReusePort, Balance::Shared] {
        let err = Listeners::bind(std::slice::from_ref(&addr), balance, 2).unwrap_err();
        assert!(matches!(err, ListenError::InUse { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "cannot listen on {addr}: address already in use (another process is serving it)"
            )
        );
    }
}

#[test]
fn a_port_served_by_another_reuseport_process_is_refused() {
    // Another herd of the same user: it set SO_REUSEPORT too, so without the probe the kernel
    // would let us join its group and split its traffic.
    let other = Listeners::bind(&[loopback(0)], Balance::ReusePort, 1).unwrap();
    let addr = other.local_addrs()[0].clone();
    let err = Listeners::bind(&[addr], Balance::ReusePort, 1).unwrap_err();
    assert!(matches!(err, ListenError::InUse { .. }), "{err:?}");
}

#[test]
fn an_address_listed_twice_is_refused() {
    let dir = scratch("twice");
    let sock = ListenAddr::Unix(dir.join("app.sock"));
    let err = Listeners::bind(&[sock.clone(), sock], Balance::Shared, 1).unwrap_err();
    assert!(matches!(err, ListenError::Duplicate { .. }), "{err:?}");
    // Port 0 twice is two different ports.
    let listeners = Listeners::bind(&[loopback(0), loopback(0)], Balance::ReusePort, 1).unwrap();
    let addrs = listeners.local_addrs();
    assert_ne!(addrs[0], addrs[1]);
}

#[test]
fn fd_names_contain_no_colon() {
    let dir = scratch("names");
    let mut listeners = Listeners::bind(
        &[
            loopback(0),
            ListenAddr::Unix(dir.join("app.sock")),
            ListenAddr::Unix(dir.join("we:ird name.sock")),
        ],
        Balance::ReusePort,
        1,
    )
    .unwrap();
    let port = listeners.port().unwrap();
    let names: Vec<String> = listeners
        .for_slot(0)
        .unwrap()
        .into_iter()
        .map(|(_, name)| name)
        .collect();
    assert_eq!(
        names,
        vec![
            format!("tcp-{port}"),
            "unix-app.sock".to_string(),
            "unix-we_ird_name.sock".to_string()
        ]
    );
    assert!(names.iter().all(|n| !n.contains(':')));
}

#[test]
fn stale_unix_socket_is_removed_and_rebound() {
    let dir = scratch("stale");
    let path = dir.join("app.sock");
    // A previous server that died: the file stays, nobody accepts.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let listeners = Listeners::bind(&[ListenAddr::Unix(path.clone())], Balance::Shared, 2).unwrap();
    UnixStream::connect(&path).expect("the rebound socket accepts connections");
    drop(listeners);
    assert!(!path.exists(), "drop removes the socket file it created");
}

#[test]
fn live_unix_socket_is_refused_and_left_alone() {
    let dir = scratch("live");
    let path = dir.join("app.sock");
    let _live = UnixListener::bind(&path).unwrap();
    let addr = ListenAddr::Unix(path.clone());
    let err = Listeners::bind(&[addr], Balance::Shared, 1).unwrap_err();
    assert!(matches!(err, ListenError::LiveUnixSocket { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot listen on unix:{}: a live server is already listening on it",
            path.display()
        )
    );
    UnixStream::connect(&path).expect("the live server still has its socket");
}

#[test]
fn a_file_that_is_not_a_socket_is_not_deleted() {
    let dir = scratch("regular");
    let path = dir.join("app.sock");
    std::fs::write(&path, "data").unwrap();
    let err = Listeners::bind(&[ListenAddr::Unix(path.clone())], Balance::Shared, 1).unwrap_err();
    assert!(matches!(err, ListenError::NotASocket { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
}

#[test]
fn missing_folder_is_named() {
    let addr = ListenAddr::Unix("/nope-herd-test/app.sock".into());
    let err = Listeners::bind(&[addr], Balance::Shared, 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot listen on unix:/nope-herd-test/app.sock: folder /nope-herd-test does not exist"
    );
}

#[test]
fn too_long_unix_path_is_explained() {
    let addr = ListenAddr::Unix(PathBuf::from(format!("/tmp/{}", "x".repeat(200))));
    let err = Listeners::bind(&[addr], Balance::Shared, 1).unwrap_err();
    assert!(matches!(err, ListenError::PathTooLong { .. }), "{err:?}");
}

/// Accepts everything queued on `socket` until `want` connections or a deadline.
fn accept_all(socket: &Socket, want: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut got = 0;
    while got < want && Instant::now() < deadline {
        match socket.accept() {
            Ok(_) => got += 1,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
    got
}

/// Accepts what is queued right now.
fn drain(socket: &Socket) -> usize {
    let mut got = 0;
    loop {
        match socket.accept() {
            Ok(_) => got += 1,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return got,
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn connect(port: u16, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect()
}

#[test]
fn steering_sends_new_connections_only_to_ready_slots() {
    let mut listeners = Listeners::bind(&[loopback(0)], Balance::ReusePort, 3).unwrap();
    let port = listeners.port().unwrap();
    for socket in &listeners.groups[0].sockets {
        socket.set_nonblocking(true).unwrap();
    }

    listeners.steer(&[1]).unwrap();
    let sockets = &listeners.groups[0].sockets;
    let _clients = connect(port, 20);
    assert_eq!(accept_all(&sockets[1], 20), 20);
    for idle in [0, 2] {
        let err = sockets[idle].accept().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "slot {idle} got one");
    }

    listeners.steer(&[0, 2]).unwrap();
    let sockets = &listeners.groups[0].sockets;
    let _clients = connect(port, 40);
    // Loopback handshakes complete within connect(); give stragglers a moment anyway.
    std::thread::sleep(Duration::from_millis(50));
    let (on0, on1, on2) = (drain(&sockets[0]), drain(&sockets[1]), drain(&sockets[2]));
    assert_eq!(on1, 0, "slot 1 is not ready");
    assert_eq!(on0 + on2, 40);
    assert!(
        on0 > 0 && on2 > 0,
        "both ready slots get some: {on0} / {on2}"
    );

    // Every slot (or none) ready: back to the kernel's hash over all three.
    listeners.steer(&[0, 1, 2]).unwrap();
    listeners.steer(&[]).unwrap();
    let sockets = &listeners.groups[0].sockets;
    let _clients = connect(port, 60);
    std::thread::sleep(Duration::from_millis(50));
    let counts: Vec<usize> = sockets.iter().map(drain).collect();
    assert_eq!(counts.iter().sum::<usize>(), 60);
    assert!(
        counts.iter().all(|c| *c > 0),
        "hash spreads over all: {counts:?}"
    );
}

fn fd_port(fd: &OwnedFd) -> u16 {
    let s = socket2::SockRef::from(fd);
    s.local_addr().unwrap().as_socket().unwrap().port()
}

fn is_nonblocking(fd: &OwnedFd) -> bool {
    let flags = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
    flags & libc::O_NONBLOCK != 0
}

#[test]
fn a_cluster_workers_listen_on_herds_port_gets_the_slots_socket() {
    let mut l = Listeners::bind(&[loopback(0)], Balance::ReusePort, 2).unwrap();
    let port = l.port().unwrap();
    let (fd, new) = l.for_request(1, &ListenAddr::any_port(port)).unwrap();
    assert!(!new);
    assert_eq!(fd_port(&fd), port);
    // The very socket of slot 1 (same open file), switched to nonblocking for Node.
    let slot1 = l.groups[0].sockets[1].as_raw_fd();
    let same = nix::sys::stat::fstat(slot1).unwrap().st_ino
        == nix::sys::stat::fstat(fd.as_raw_fd()).unwrap().st_ino;
    assert!(same);
    assert!(is_nonblocking(&fd));
    assert!(l.for_fd(0, 3).unwrap().is_some());
    assert!(
        l.for_fd(0, 4).unwrap().is_none(),
        "herd passed one socket only"
    );
}

#[test]
fn other_addresses_are_bound_on_demand_once_and_shared() {
    let mut l = Listeners::bind(&[], Balance::ReusePort, 2).unwrap();
    let (a, new_a) = l.for_request(0, &loopback(0)).unwrap();
    let (b, new_b) = l.for_request(1, &loopback(0)).unwrap();
    assert!(
        new_a && !new_b,
        "the second worker shares the first one's socket"
    );
    assert_eq!(
        fd_port(&a),
        fd_port(&b),
        "port 0: one kernel-chosen port for all"
    );
    let port = fd_port(&a);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "herd keeps it listening"
    );
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (c, new_c) = l.for_request(0, &loopback(free)).unwrap();
    assert!(new_c, "another address is another socket");
    assert_eq!(fd_port(&c), free);
    let (_, again) = l.for_request(1, &loopback(free)).unwrap();
    assert!(!again);
}

/// Connects `n` clients with steering to `slot` alone and checks that `slot`'s socket, and no
/// other, got them all.
fn steered_to(listeners: &mut Listeners, slot: usize, n: usize) {
    listeners.steer(&[slot]).unwrap();
    let port = listeners.port().unwrap();
    let _clients = connect(port, n);
    let sockets = &listeners.groups[0].sockets;
    assert_eq!(accept_all(&sockets[slot], n), n, "slot {slot}");
    for (other, socket) in sockets.iter().enumerate().filter(|(s, _)| *s != slot) {
        let err = socket.accept().unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::WouldBlock,
            "slot {other} got one"
        );
    }
}

/// A vacated slot's socket leaves the kernel's reuseport group and joins it again, last:
/// steering follows the kernel's new order (real sockets, so a kernel that orders its group
/// otherwise fails here), and the renewed socket serves its slot again.
#[test]
fn steering_follows_the_group_order_after_slots_are_vacated() {
    let mut listeners = Listeners::bind(&[loopback(0)], Balance::ReusePort, 3).unwrap();
    for socket in &listeners.groups[0].sockets {
        socket.set_nonblocking(true).unwrap();
    }
    listeners.steer(&[1, 2]).unwrap();
    for vacated in [0, 2, 0, 1] {
        assert!(listeners.vacate_now(vacated).unwrap());
        listeners.groups[0].sockets[vacated]
            .set_nonblocking(true)
            .unwrap();
        for slot in 0..3 {
            steered_to(&mut listeners, slot, 5);
        }
    }
    // A slot bound later (scale up) goes last too.
    listeners.for_slot(3).unwrap();
    listeners.groups[0].sockets[3]
        .set_nonblocking(true)
        .unwrap();
    listeners.vacate_now(1).unwrap();
    listeners.groups[0].sockets[1]
        .set_nonblocking(true)
        .unwrap();
    for slot in 0..4 {
        steered_to(&mut listeners, slot, 5);
    }
}
