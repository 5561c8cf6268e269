"""A Python worker that takes its connections from herd over the channel, with nothing but
the standard library.

    herd run -i 2 -p 3000 --balance round-robin -- python3 examples/handoff.py

In the handoff modes (`--balance round-robin`, `least-conn`, `sticky`) herd accepts every
connection itself and hands it to the worker it picks over the worker's channel (the unix
socket at $NODE_CHANNEL_FD, Node's JSON-lines IPC): one message

    {"cmd":"NODE_HANDLE","type":"net.Socket","msg":"connection","key":"..."}

with the connection's fd attached (SCM_RIGHTS), which the worker acknowledges with
`{"cmd":"NODE_HANDLE_ACK"}`. That is how a Node child receives `process.on('message',
(m, socket) => ...)`, so herd can hand connections to any language. The worker says
`"ready"` on the channel once it can take connections and ignores every other line it does
not know (herd may ask Node's own questions, e.g. NODE_SOCKET_GET_COUNT).

Each connection is served on a thread: HTTP/1.1 keep-alive, body `pid=<pid> slot=<slot>`.
On SIGTERM, on the message "shutdown" (herd's --stop-message) or when the channel closes,
the worker takes no more connections, lets the request in progress on each connection
finish (answered with `Connection: close`), closes the idle ones and exits 0.
"""

import array
import json
import os
import select
import signal
import socket
import sys
import threading

# Longest wait for the requests in progress when stopping.
DRAIN_SECONDS = 5.0
# Largest request head accepted.
MAX_HEAD = 64 * 1024

PID = os.getpid()
SLOT = os.environ.get("HERD_WORKER_ID", "-")
BODY = f"pid={PID} slot={SLOT}\n".encode()

stopping = threading.Event()
lock = threading.Lock()
# Open connections: socket -> True while a request is being answered, False while idle.
conns = {}
# Set (under `lock`) when the last connection is gone.
no_conns = threading.Condition(lock)


def log(msg):
    print(f"handoff.py pid={PID} slot={SLOT}: {msg}", flush=True)


def set_busy(conn, busy):
    """Marks a connection busy or idle; False if the worker is stopping and it is idle."""
    with lock:
        conns[conn] = busy
        return busy or not stopping.is_set()


def read_head(conn, buf):
    """Reads until the end of a request head; returns (head, rest) or None on EOF/error."""
    while b"\r\n\r\n" not in buf and b"\n\n" not in buf:
        if len(buf) > MAX_HEAD:
            return None
        try:
            chunk = conn.recv(65536)
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
        # The first byte of a request: the connection is busy from now on.
        set_busy(conn, True)
    crlf = buf.find(b"\r\n\r\n")
    lf = buf.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return buf[:crlf], buf[crlf + 4:]
    return buf[:lf], buf[lf + 2:]


def serve(conn):
    buf = b""
    try:
        while True:
            got = read_head(conn, buf)
            if got is None:
                return
            head, buf = got
            lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
            version = lines[0].rsplit(" ", 1)[-1] if lines[0] else ""
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip().lower()
            # Skip a request body.
            length = int(headers.get("content-length", "0") or 0)
            while len(buf) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
            buf = buf[length:]
            connection = headers.get("connection", "")
            keep = (version == "HTTP/1.1" and connection != "close") or (
                version == "HTTP/1.0" and connection == "keep-alive"
            )
            keep = keep and not stopping.is_set()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                + b"Content-Length: %d\r\n" % len(BODY)
                + (b"" if keep else b"Connection: close\r\n")
                + b"\r\n"
                + BODY
            )
            if not keep or not set_busy(conn, False):
                return
    except OSError:
        pass
    finally:
        with lock:
            conns.pop(conn, None)
            no_conns.notify_all()
        try:
            conn.close()
        except OSError:
            pass


def take(fd):
    """Serves the connection `fd` handed over by herd."""
    try:
        conn = socket.socket(fileno=fd)
    except OSError as e:
        os.close(fd)
        log(f"a handed-over fd is not a socket: {e}")
        return
    conn.setblocking(True)
    with lock:
        # Busy from the start: the client opened it to send a request, which is answered
        # even if the worker is asked to stop before the request arrives.
        conns[conn] = True
    threading.Thread(target=serve, args=(conn,), daemon=True).start()


class Channel:
    """herd's end of the channel: JSON lines, with fds attached to NODE_HANDLE messages."""

    def __init__(self, sock):
        self.sock = sock
        self.pending = b""
        self.fds = []  # received fds, in order: each NODE_HANDLE line takes the next one
        self.cmsg_space = socket.CMSG_SPACE(16 * array.array("i").itemsize)
        self.flags = getattr(socket, "MSG_CMSG_CLOEXEC", 0)

    def read(self, flags=0):
        """Reads once and handles every complete line. False on EOF or "shutdown"."""
        data, ancdata, _, _ = self.sock.recvmsg(65536, self.cmsg_space, self.flags | flags)
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(payload[: len(payload) - len(payload) % a.itemsize])
                self.fds.extend(a)
        if not data:
            return False  # herd closed the channel
        self.pending += data
        while b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # not ours to understand
            if isinstance(msg, dict) and msg.get("cmd") == "NODE_HANDLE":
                self.sock.sendall(b'{"cmd":"NODE_HANDLE_ACK"}\n')
                if self.fds:
                    take(self.fds.pop(0))
                else:
                    log("a NODE_HANDLE message came without a file descriptor")
            elif msg == "shutdown":
                return False
            # Anything else (NODE_SOCKET_GET_COUNT, herd's replies, ...) is ignored.
        return True

    def loop(self, wakeup):
        """Reads until "shutdown", EOF or a stop signal (which writes to `wakeup`)."""
        try:
            while not stopping.is_set():
                readable, _, _ = select.select([self.sock, wakeup], [], [])
                if self.sock in readable and not self.read():
                    return
            # A stop signal: the connections herd handed over before it sent the signal
            # may still be unread on the channel; they are served too.
            while self.read(socket.MSG_DONTWAIT):
                pass
        except BlockingIOError:
            pass
        except OSError as e:
            log(f"channel: {e}")


def stop(*_):
    stopping.set()


def drain():
    """Closes the idle connections and waits for the busy ones to finish."""
    stopping.set()
    with lock:
        for conn, busy in conns.items():
            if not busy:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        no_conns.wait_for(lambda: not conns, timeout=DRAIN_SECONDS)


def main():
    fd = os.environ.get("NODE_CHANNEL_FD")
    if fd is None:
        sys.exit("handoff.py: no NODE_CHANNEL_FD: run me under herd with --balance round-robin, least-conn or sticky")
    chan = socket.socket(fileno=int(fd))
    chan.setblocking(True)
    # A stop signal wakes the channel loop's select through this pipe.
    wakeup, wakeup_w = os.pipe()
    os.set_blocking(wakeup_w, False)
    signal.set_wakeup_fd(wakeup_w)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    chan.sendall(b'"ready"\n')
    log("ready")
    Channel(chan).loop(wakeup)
    drain()
    log("stopped")


if __name__ == "__main__":
    main()
