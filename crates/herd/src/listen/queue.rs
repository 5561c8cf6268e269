//! The accept queues of herd's listening sockets, for `/metrics`: what no worker can see.
//! `getsockopt(TCP_INFO)` on a *listening* TCP socket gives the connections the kernel
//! completed and nobody accepted yet in `tcpi_unacked`, and the queue's limit (the
//! backlog) in `tcpi_sacked` (raindrops, uWSGI and puma read the same).

use std::os::fd::AsRawFd;

use socket2::Socket;

use super::{ListenAddr, Listeners};

/// `(queued, limit)` of one listening TCP socket; `None` if the kernel will not say.
fn tcp_queue(socket: &Socket) -> Option<(u64, u64)> {
    // SAFETY: all-zero is a valid tcp_info (integers only).
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: optval points to a tcp_info of `len` bytes that outlives the call, and the
    // kernel writes at most `len` bytes; the fd is a live socket borrowed from `socket`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::from_mut(&mut info).cast(),
            &mut len,
        )
    };
    (rc == 0).then(|| (u64::from(info.tcpi_unacked), u64::from(info.tcpi_sacked)))
}

impl Listeners {
    /// Each TCP address with its accept queue and limit, summed over its sockets (one per
    /// slot in reuseport mode). Unix sockets have no `TCP_INFO` and are left out.
    pub fn accept_queues(&self) -> Vec<(ListenAddr, u64, u64)> {
        self.groups
            .iter()
            .filter(|g| matches!(g.local, ListenAddr::Tcp(_)))
            .map(|g| {
                let (queued, limit) = g
                    .sockets
                    .iter()
                    .filter_map(tcp_queue)
                    .fold((0, 0), |(q, l), (sq, sl)| (q + sq, l + sl));
                (g.local.clone(), queued, limit)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpStream;

    use super::*;

    #[test]
    fn a_listening_socket_tells_its_queue_and_limit() {
        let addr: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        let socket = Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.bind(&addr.into()).unwrap();
        socket.listen(128).unwrap();
        let local = socket.local_addr().unwrap().as_socket().unwrap();
        assert_eq!(tcp_queue(&socket), Some((0, 128)));
        let _clients: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(local).unwrap()).collect();
        // The handshakes complete in the kernel, on loopback before connect returns.
        assert_eq!(tcp_queue(&socket), Some((3, 128)));
    }
}
