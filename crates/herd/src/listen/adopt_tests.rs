//! Socket activation end to end in one process: real sockets handed to `inherit::take` as a
//! launcher would hand them, then adopted by [`Listeners::adopt`].

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::IntoRawFd;
use std::os::unix::net::UnixListener;

use socket2::{Domain, Socket, Type};

use super::inherit::{take, InheritError, Inherited};
use super::*;

/// A listening TCP socket on 127.0.0.1 (any port), optionally with SO_REUSEPORT.
fn tcp_socket(reuseport: bool) -> (RawFd, SocketAddr) {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.set_reuse_port(reuseport).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    s.listen(16).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    (s.into_raw_fd(), addr)
}

fn inherited(fds: &[(RawFd, Option<&str>)]) -> Inherited {
    Inherited {
        sockets: fds
            .iter()
            .map(|(fd, name)| take(*fd, fds.len(), name.map(str::to_string)).unwrap())
            .collect(),
    }
}

fn connects(addr: SocketAddr) -> bool {
    TcpStream::connect(addr).is_ok()
}

#[test]
fn without_addresses_every_inherited_socket_serves_in_fd_order() {
    let (a, a_addr) = tcp_socket(false);
    let (b, b_addr) = tcp_socket(false);
    let l = Listeners::adopt(&[], Balance::Shared, 2, inherited(&[(a, None), (b, None)])).unwrap();
    assert_eq!(
        l.local_addrs(),
        vec![ListenAddr::Tcp(a_addr), ListenAddr::Tcp(b_addr)]
    );
    let listening = l.listening();
    assert_eq!(listening[0].inherited, Some(a));
    assert_eq!(listening[1].shared_because, None);
    assert!(l.unused_inherited().is_empty());
    assert!(connects(a_addr) && connects(b_addr));
}

#[test]
fn addresses_pick_their_socket_by_address_or_name_and_the_rest_is_unused() {
    let (a, a_addr) = tcp_socket(false);
    let (b, b_addr) = tcp_socket(false);
    let (c, c_addr) = tcp_socket(false);
    // `c` is asked for by a name of herd's (`tcp-PORT`) on another host.
    let by_name = ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 2], c_addr.port())));
    let l = Listeners::adopt(
        &[by_name, ListenAddr::Tcp(b_addr)],
        Balance::RoundRobin,
        2,
        inherited(&[
            (a, None),
            (b, Some("web")),
            (c, Some(&format!("tcp-{}", c_addr.port()))),
        ]),
    )
    .unwrap();
    assert_eq!(
        l.local_addrs(),
        vec![ListenAddr::Tcp(c_addr), ListenAddr::Tcp(b_addr)]
    );
    assert_eq!(l.unused_inherited(), [format!("fd {a} = {a_addr}")]);
}

#[test]
fn an_address_no_inherited_socket_has_is_an_error_listing_them() {
    let (a, a_addr) = tcp_socket(false);
    let asked = ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 1)));
    let err = Listeners::adopt(
        std::slice::from_ref(&asked),
        Balance::Shared,
        1,
        inherited(&[(a, Some("web"))]),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot listen on 127.0.0.1:1: none of the sockets herd was started with (LISTEN_FDS) is on this address: fd {a} = {a_addr} (`web`)")
    );
}

#[test]
fn reuseport_adds_slot_sockets_to_an_inherited_reuseport_socket() {
    let (a, addr) = tcp_socket(true);
    let mut l = Listeners::adopt(&[], Balance::ReusePort, 3, inherited(&[(a, None)])).unwrap();
    let group = &l.groups[0];
    assert!(group.per_slot);
    assert_eq!(group.sockets.len(), 3);
    assert_eq!(l.listening()[0].shared_because, None);
    // Slot 0 is the inherited socket; scaling up binds more on the same address.
    assert_eq!(l.for_slot(0).unwrap()[0].0, a);
    let fourth = l.for_slot(3).unwrap()[0].0;
    assert_ne!(fourth, a);
    l.steer(&[0, 2]).unwrap();
    assert!(connects(addr));
}

#[test]
fn reuseport_serves_an_inherited_socket_without_it_shared() {
    let (a, _) = tcp_socket(false);
    let mut l = Listeners::adopt(&[], Balance::ReusePort, 3, inherited(&[(a, None)])).unwrap();
    assert!(!l.groups[0].per_slot);
    assert_eq!(l.for_slot(2).unwrap()[0].0, a);
    assert!(l.listening()[0]
        .shared_because
        .is_some_and(|why| why.contains("ReusePort=yes")));
}

#[test]
fn unix_sockets_are_shared_and_their_file_is_left_to_the_launcher() {
    let dir = std::env::temp_dir().join(format!("herd-adopt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("app.sock");
    let _ = std::fs::remove_file(&path);
    let fd = UnixListener::bind(&path).unwrap().into_raw_fd();
    let asked = ListenAddr::Unix(path.clone());
    let l = Listeners::adopt(
        std::slice::from_ref(&asked),
        Balance::ReusePort,
        2,
        inherited(&[(fd, None)]),
    )
    .unwrap();
    assert_eq!(l.local_addrs(), vec![asked]);
    drop(l);
    assert!(path.exists(), "herd removed the launcher's socket file");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fds_that_are_not_listening_stream_sockets_are_refused() {
    let file = std::fs::File::open("/dev/null").unwrap().into_raw_fd();
    let err = take(file, 1, None).unwrap_err();
    assert!(matches!(err, InheritError::NotASocket { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("/dev/null (a character device), not a socket"),
        "{err}"
    );
    // SAFETY: `file` was not taken (not a socket) and is closed once here.
    drop(unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(file) });

    let udp = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .into_raw_fd();
    let err = take(udp, 1, None).unwrap_err().to_string();
    assert!(err.contains("a datagram socket"), "{err}");

    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(server.local_addr().unwrap()).unwrap();
    let err = take(client.into_raw_fd(), 1, None).unwrap_err().to_string();
    assert!(err.contains("does not listen"), "{err}");

    let unbound = Socket::new(Domain::IPV4, Type::STREAM, None)
        .unwrap()
        .into_raw_fd();
    let err = take(unbound, 1, None).unwrap_err().to_string();
    assert!(err.contains("not a listening stream socket"), "{err}");
}
