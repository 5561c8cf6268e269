"""A Python web server that runs under herd, with nothing but the standard library.

    herd run -i max -p 3000 -- python3 examples/app.py

herd passes the listening socket as fd 3 (systemd socket activation, LISTEN_FDS=1); the
server adopts it instead of binding a port, tells herd it is ready over NOTIFY_SOCKET, and
stops gracefully on SIGTERM.
"""

import http.server
import os
import signal
import socket
import threading


class Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = f"hello from pid {os.getpid()} (slot {os.environ.get('HERD_WORKER_ID', '-')})\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def listener():
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and int(os.environ.get("LISTEN_FDS", "0")) >= 1:
        return socket.socket(fileno=3)
    # Outside herd: bind the port ourselves.
    s = socket.create_server(("0.0.0.0", int(os.environ.get("PORT", "3000"))))
    return s


def notify(state):
    path = os.environ.get("NOTIFY_SOCKET")
    if path:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(state.encode(), "\0" + path[1:] if path.startswith("@") else path)


server = http.server.ThreadingHTTPServer(("", 0), Hello, bind_and_activate=False)
server.socket.close()
server.socket = listener()
server.daemon_threads = True
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
notify("READY=1")
print(f"python worker {os.getpid()} serving", flush=True)
server.serve_forever()
notify("STOPPING=1")
