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
        conns[conn] = False
    threading.Thread(target=serve, args=(conn,), daemon=True).start()


def channel_loop(chan, wakeup):
    """Reads the channel until "shutdown", EOF or a stop signal (which writes to `wakeup`)."""
    pending = b""
    fds = []  # received fds, in order: each NODE_HANDLE line takes the next one
    cmsg_space = socket.CMSG_SPACE(16 * array.array("i").itemsize)
    flags = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
    while not stopping.is_set():
        readable, _, _ = select.select([chan, wakeup], [], [])
        if chan not in readable:
            continue  # a signal: its handler set `stopping`
        try:
            data, ancdata, _, _ = chan.recvmsg(65536, cmsg_space, flags)
        except InterruptedError:
            continue
        except OSError as e:
            log(f"channel: {e}")
            return
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                a = array.array("i")
                a.frombytes(payload[: len(payload) - len(payload) % a.itemsize])
                fds.extend(a)
        if not data:
            return  # herd closed the channel
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # not ours to understand
            if isinstance(msg, dict) and msg.get("cmd") == "NODE_HANDLE":
                chan.sendall(b'{"cmd":"NODE_HANDLE_ACK"}\n')
                if not fds:
                    log("a NODE_HANDLE message came without a file descriptor")
                    continue
                fd = fds.pop(0)
                if stopping.is_set():
                    os.close(fd)
                else:
                    take(fd)
            elif msg == "shutdown":
                return
            # Anything else (NODE_SOCKET_GET_COUNT, herd's replies, ...) is ignored.


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
    channel_loop(chan, wakeup)
    drain()
    log("stopped")


if __name__ == "__main__":
    main()
