#!/usr/bin/env python3
"""hung.py — how long is a hung worker's share of connections out of service?

A worker that is alive but no longer serves (a busy loop: herd-testworker's
`/hang?how=busy`, gunicorn's app in `while True: pass`) is hung at t0. Measured, per
round, by the client's clock:
  detect   t0 -> the supervisor says so (herd's `worker.hung` event; gunicorn's
           `WORKER TIMEOUT` line)
  back     t0 -> the replacement of that slot is ready (herd's `worker.ready` of the same
           slot after the hang; gunicorn's `Booting worker` line), i.e. the hung worker's
           share of the capacity is back
Cases (2 workers each, one hung per round, on 127.0.0.1):
  herd-health    herd run --health-check http:/healthz --health-interval 1s
                 --health-timeout 500ms --health-failures 3   (bound: 1s x 3 + 0.5s + 1s)
  herd-watchdog  herd run --watchdog 1s, herd-testworker --watchdog (WATCHDOG=1 every
                 500 ms; a busy hang stops them)                (bound: 1s + start-up)
  gunicorn       gunicorn -w 2 (sync workers, default --timeout 30) on a WSGI app whose
                 /hang busy-loops: its arbiter kills a worker whose heartbeat file is
                 older than the timeout (one round: it takes 30 s and more)
PM2 has no hang detection at all (a maintainer: it "can't detect" an infinite loop,
Unitech/pm2#3916): its number is "never", not measured here.

Printed: each round, then the median per case. Not a timed test: CI does not run it.

Run:     scripts/bench/hung.py                (ROUNDS=5, ~2 min with gunicorn)
         NO_BUILD=1 ...   use the binaries already in target/release
         GUNICORN=0 ...   leave gunicorn out (else it is installed with pip if missing)
"""

import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERD = os.path.join(ROOT, "target/release/herd")
TW = os.path.join(ROOT, "target/release/herd-testworker")
ROUNDS = int(os.environ.get("ROUNDS", "5"))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait(what, cond, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.01)
    sys.exit(f"!! timed out waiting for {what}")


class Log:
    """A log file read as it grows; each line stamped with the client's clock."""

    def __init__(self, path):
        self.f = open(path, "r")
        self.lines = []

    def poll(self):
        for line in self.f.readlines():
            self.lines.append((time.monotonic(), line))
        return self.lines

    def find(self, after, pred):
        for t, line in self.poll():
            if t >= after and pred(line):
                return t, line
        return None


def events(log, after, name, **fields):
    def pred(line):
        try:
            e = json.loads(line)
        except ValueError:
            return False
        return e.get("event") == name and all(e.get(k) == v for k, v in fields.items())

    return log.find(after, pred)


def hang_one(port, path):
    """On one keep-alive connection: who answers (pid, slot), then `path` to hang it."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/")
    body = c.getresponse().read().decode()
    pid = int(re.search(r"pid=(\d+)", body).group(1))
    slot = re.search(r"slot=(\d+)", body)
    c.request("GET", path)
    c.getresponse().read()
    t0 = time.monotonic()
    c.close()
    return pid, int(slot.group(1)) if slot else None, t0


def herd_case(name, flags, env):
    port = free_port()
    logf = tempfile.NamedTemporaryFile(prefix=f"hung-{name}-", suffix=".log", delete=False)
    p = subprocess.Popen(
        [HERD, "run", "-i", "2", "-p", str(port), "--kill-timeout", "1s", *flags, "--", TW],
        stdout=logf, stderr=subprocess.STDOUT, env={**os.environ, "HERD_LOG_FORMAT": "json", **env},
    )
    log = Log(logf.name)
    results = []
    try:
        wait("2 ready workers", lambda: len([1 for _, l in log.poll() if '"worker.ready"' in l]) >= 2)
        for r in range(ROUNDS):
            pid, slot, t0 = hang_one(port, "/hang?how=busy")
            hung = wait("worker.hung", lambda: events(log, 0, "worker.hung", pid=pid))
            back = wait("the replacement", lambda: events(log, hung[0], "worker.ready", slot=slot))
            detect, ready = hung[0] - t0, back[0] - t0
            print(f"{name} round {r + 1}: pid {pid} (slot {slot}) hung: detected after {detect:.2f}s, "
                  f"replacement ready after {ready:.2f}s", flush=True)
            results.append((detect, ready))
            # The next round hangs a worker that is not stopping.
            wait("the hung one gone", lambda: events(log, hung[0], "worker.exited", pid=pid))
    finally:
        p.terminate()
        p.wait()
        os.unlink(logf.name)
    return results


GUNICORN_APP = """
import os
def app(environ, start_response):
    if environ["PATH_INFO"] == "/hang":
        start_response("200 OK", [("Content-Length", "8")])
        def body():
            yield b"hanging\\n"
            while True:
                pass
        return body()
    b = f"pid={os.getpid()}\\n".encode()
    start_response("200 OK", [("Content-Length", str(len(b)))])
    return [b]
"""


def gunicorn_case():
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "gunicorn"], check=True)
    port = free_port()
    d = tempfile.mkdtemp(prefix="hung-gunicorn-")
    with open(os.path.join(d, "hungapp.py"), "w") as f:
        f.write(GUNICORN_APP)
    logf = os.path.join(d, "gunicorn.log")
    p = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}", "--error-logfile", logf,
         "--log-level", "info", "hungapp:app"],
        cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait("gunicorn's log", lambda: os.path.exists(logf))
        log = Log(logf)
        wait("2 workers", lambda: len([1 for _, l in log.poll() if "Booting worker" in l]) >= 2)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/")
        pid = int(re.search(r"pid=(\d+)", c.getresponse().read().decode()).group(1))
        c.close()
        # A new connection may reach the other worker: hang whoever takes it, by pid.
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/hang")
        r = c.getresponse()
        r.read(8)
        t0 = time.monotonic()
        hung = wait("WORKER TIMEOUT", lambda: log.find(t0, lambda l: "WORKER TIMEOUT" in l), 120)
        back = wait("a new worker", lambda: log.find(hung[0], lambda l: "Booting worker" in l), 60)
        detect, ready = hung[0] - t0, back[0] - t0
        print(f"gunicorn round 1: {hung[1].strip()}: detected after {detect:.2f}s, "
              f"new worker booting after {ready:.2f}s (first pid seen: {pid})", flush=True)
        return [(detect, ready)]
    finally:
        p.terminate()
        p.wait()


def summary(name, results):
    d = statistics.median(r[0] for r in results)
    b = statistics.median(r[1] for r in results)
    print(f"{name} median: detected after {d:.2f}s, share back after {b:.2f}s ({len(results)} rounds)")
    return b


def main():
    if os.environ.get("NO_BUILD") != "1":
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "herd", "--features", "testworker"],
                       cwd=ROOT, check=True)
    health = herd_case("herd-health", ["--health-check", "http:/healthz", "--health-interval", "1s",
                                       "--health-timeout", "500ms", "--health-failures", "3"], {})
    watchdog = herd_case("herd-watchdog", ["--watchdog", "1s"], {"HERD_TESTWORKER_OPTS": "--watchdog"})
    out = [summary("herd-health", health), summary("herd-watchdog", watchdog)]
    if os.environ.get("GUNICORN", "1") != "0":
        g = summary("gunicorn", gunicorn_case())
        print(f"share back: herd-health {g / out[0]:.1f}x sooner than gunicorn's default, "
              f"herd-watchdog {g / out[1]:.1f}x sooner; PM2: never")


main()
