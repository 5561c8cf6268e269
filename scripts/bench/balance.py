#!/usr/bin/env python3
"""balance.py — how evenly do connections reach the workers, and what does a
SIGKILLed worker cost the clients?

Servers compared (all on 127.0.0.1, one at a time, fresh for every case):
  base       N x `herd-testworker --port P` started by hand (SO_REUSEPORT, no herd)
  reuseport  herd run -i N -p P --balance reuseport -- herd-testworker --notify
  shared     herd run -i N -p P --balance shared    -- herd-testworker --notify

(a) Shares, N = 2 and 4:
  keepalive  open 200 connections (all kept open), then one request on each;
             count the answering pid (= which worker accepted the connection).
  newconn    8 client threads x 2000 requests, each on a new connection with
             `Connection: close`, concurrently; count responses per pid.
  Printed: each worker's share in %, sorted, and max/min (1.00 = perfectly even;
  for 200 connections over 2 workers plain randomness gives about 1.0-1.3,
  for 16000 requests it should be within a few %).

(b) SIGKILL cost, N = 2: 6 client threads send requests, each on a new
  connection (connect timeout and read timeout 2 s). After 1 s one worker (slot
  0, pid from herd's "spawned as pid" line) gets SIGKILL; the clients go on for
  3 s more. Printed per case, for the requests started after the kill:
  ok, refused, reset (incl. EOF without answer), timeout, other;
  `stall ms`   = the longest connect + first byte among them (a connection
                 parked on the dead worker's queue waits for the replacement);
  `pre p99 ms` = p99 of the same measure in the second before the kill, for scale;
  `ready ms`   = kill -> herd's "ready after" line of the replacement (herd only).
  Cases: base (no replacement), and each herd mode with readiness
  `auto` (worker without --notify: assumed ready after herd's 500 ms delay) and
  `notify` (--ready notify, worker --notify). All of it with the current
  net.ipv4.tcp_migrate_req, and again with it set to 1 if it is writable (it is
  restored at exit).

Run:  scripts/bench/balance.py             (about 2-3 minutes)
      PARTS=a scripts/bench/balance.py      (only shares; PARTS=b only the kill)
Needs: python3 (stdlib), cargo. Builds herd with `cargo build --release` first.
Every process it starts is killed at exit.
"""
import atexit
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERD = os.path.join(ROOT, "target/release/herd")
TW = os.path.join(ROOT, "target/release/herd-testworker")
WORK = tempfile.mkdtemp(prefix="herd-balance.")
PROCS = []
MIGRATE = "/proc/sys/net/ipv4/tcp_migrate_req"
PARTS = os.environ.get("PARTS", "ab")
REQ_CLOSE = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
REQ_KA = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
PID_RE = re.compile(rb"pid=(\d+)")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.time() + 3
    for p in PROCS:
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


atexit.register(cleanup)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    """One case: base or herd, started fresh; .stop() ends it."""
    restarts = 0

    def __init__(self, kind, n, ready="auto"):
        self.kind, self.n, self.port = kind, n, free_port()
        self.log = os.path.join(WORK, f"{kind}-{n}-{ready}-{self.port}.log")
        self.procs = []
        notify = ["--notify"] if ready in ("notify", "auto-notify") else []
        logf = open(self.log, "wb")
        if kind == "base":
            for _ in range(n):
                p = subprocess.Popen([TW, "--port", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=logf, start_new_session=True)
                self.procs.append(p)
            self.wait_port()
        else:
            args = [HERD, "run", "-i", str(n), "-p", str(self.port), "--balance", kind]
            if ready == "notify":
                args += ["--ready", "notify"]
            args += ["--", TW] + notify
            # herd sometimes drops a worker's READY=1 at start-up (see the report): the
            # worker then stays unrouted for the 10 s listen timeout. Start over instead.
            for attempt in range(1, 6):
                p = subprocess.Popen(args, stdout=logf, stderr=logf)
                self.procs = [p]
                PROCS.append(p)
                if self.wait_ready(n, 3):
                    break
                ign = self.text().count("not a worker")
                log(f"   !! {kind} -i {n} --ready {ready}: not all ready in 3 s (herd ignored {ign} "
                    f"notify messages from its own workers); restarting herd (attempt {attempt})")
                Server.restarts += 1
                self.stop()
                logf.truncate(0)
                logf.seek(0)
            else:
                raise RuntimeError(f"{kind}: workers never all ready")
        PROCS.extend(self.procs)

    def text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def wait_port(self):
        for _ in range(500):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("server did not start")

    def wait_ready(self, n, timeout):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.text().count("ready after") >= n:
                return True
            time.sleep(0.02)
        return False

    def worker_pids(self):
        if self.kind == "base":
            return [p.pid for p in self.procs]
        return [int(x) for x in re.findall(r"spawned as pid (\d+)", self.text())]

    def slot0_pid(self):
        if self.kind == "base":
            return self.procs[0].pid
        return int(re.findall(r":0 spawned as pid (\d+)", self.text())[-1])

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def read_response(s, until_eof):
    """Reads one response; returns (bytes, seconds to first byte from now)."""
    buf, first = b"", None
    t0 = time.monotonic()
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        if first is None:
            first = time.monotonic() - t0
        buf += chunk
        if not until_eof and b"\r\n\r\n" in buf and buf.endswith(b"\n") and b"gen=" in buf:
            break
    return buf, first


def shares(counts):
    tot = sum(counts.values())
    vals = sorted((100.0 * v / tot for v in counts.values()), reverse=True)
    return vals


# ---------------------------------------------------------------- (a) shares

def keepalive_share(srv, conns=200):
    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", srv.port), 5)
        socks.append(s)
    counts = {}
    for s in socks:
        s.sendall(REQ_KA)
        body, _ = read_response(s, False)
        m = PID_RE.search(body)
        pid = int(m.group(1)) if m else -1
        counts[pid] = counts.get(pid, 0) + 1
    for s in socks:
        s.close()
    return counts


def newconn_share(srv, threads=8, per=2000):
    counts, lock, errors = {}, threading.Lock(), [0]

    def client():
        local = {}
        for _ in range(per):
            try:
                with socket.create_connection(("127.0.0.1", srv.port), 5) as s:
                    s.sendall(REQ_CLOSE)
                    body, _ = read_response(s, True)
                m = PID_RE.search(body)
                pid = int(m.group(1)) if m else -1
            except OSError:
                pid = -1
            local[pid] = local.get(pid, 0) + 1
        with lock:
            for k, v in local.items():
                counts[k] = counts.get(k, 0) + v

    ts = [threading.Thread(target=client) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return counts


def fmt_shares(counts, n):
    bad = counts.pop(-1, 0)
    vals = shares(counts) if counts else []
    # a worker that got nothing does not appear in counts: pad with zeros
    vals += [0.0] * (n - len(vals))
    ratio = (max(vals) / min(vals)) if min(vals) > 0 else float("inf")
    s = " ".join(f"{v:5.1f}" for v in vals)
    return s, ratio, bad


def part_a():
    print("\n== (a) share of connections per worker (%, sorted), max/min ==")
    print(f"{'server':<10} {'N':>2}  {'keepalive 200 conns':<26} {'max/min':>7}   "
          f"{'new conn 8x2000 req':<26} {'max/min':>7} {'failed':>6}")
    for n in (2, 4):
        for kind in ("base", "reuseport", "shared"):
            srv = Server(kind, n, "auto-notify")
            try:
                time.sleep(0.2)
                ka = keepalive_share(srv)
                nc = newconn_share(srv)
            finally:
                srv.stop()
            ka_s, ka_r, _ = fmt_shares(ka, n)
            nc_s, nc_r, nc_bad = fmt_shares(nc, n)
            print(f"{kind:<10} {n:>2}  {ka_s:<26} {ka_r:>7.2f}   {nc_s:<26} {nc_r:>7.2f} {nc_bad:>6}",
                  flush=True)


# ---------------------------------------------------------------- (b) kill

def kill_case(kind, ready, threads=6, before=1.0, after=3.0, timeout=2.0):
    srv = Server(kind, 2, ready)
    events = {}  # name -> monotonic time
    results = []  # (start, latency or None, outcome)
    lock = threading.Lock()
    stop = threading.Event()

    def client():
        local = []
        while not stop.is_set():
            t0 = time.monotonic()
            outcome, lat = "ok", None
            try:
                s = socket.socket()
                s.settimeout(timeout)
                try:
                    s.connect(("127.0.0.1", srv.port))
                    s.sendall(REQ_CLOSE)
                    body, _ = read_response(s, True)
                    lat = time.monotonic() - t0
                    if not PID_RE.search(body):
                        outcome = "reset"  # EOF without an answer
                finally:
                    s.close()
            except ConnectionRefusedError:
                outcome = "refused"
            except (ConnectionResetError, BrokenPipeError):
                outcome = "reset"
            except socket.timeout:
                outcome = "timeout"
                lat = time.monotonic() - t0
            except OSError as e:
                outcome = "other:" + (e.strerror or str(e))
            local.append((t0, lat, outcome))
        with lock:
            results.extend(local)

    def watch_log(victim):
        # Records when herd logs slot 0's replacement as ready (polls the log every 5 ms).
        while not stop.is_set():
            if "kill" in events and "ready" not in events:
                txt = srv.text()
                new = [p for p in re.findall(r":0 spawned as pid (\d+)", txt) if int(p) != victim]
                if new and f"(pid {new[-1]}) ready after" in txt:
                    events["ready"] = time.monotonic()
            time.sleep(0.005)

    victim = srv.slot0_pid()
    ts = [threading.Thread(target=client) for _ in range(threads)]
    for t in ts:
        t.start()
    w = threading.Thread(target=watch_log, args=(victim,))
    w.start()
    time.sleep(before)
    events["kill"] = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    time.sleep(after)
    stop.set()
    for t in ts:
        t.join()
    w.join()
    srv.stop()

    k = events["kill"]
    pre = sorted(l for t0, l, o in results if t0 < k and t0 >= k - before and o == "ok")
    post = [(t0, l, o) for t0, l, o in results if t0 >= k - 0.05]  # incl. those in flight at the kill
    counts = {}
    for _, _, o in post:
        key = o if o in ("ok", "refused", "reset", "timeout") else "other"
        counts[key] = counts.get(key, 0) + 1
    stall = max((l for _, l, o in post if l is not None), default=0.0)
    pre_p99 = pre[int(0.99 * (len(pre) - 1))] if pre else float("nan")
    ready_ms = (events["ready"] - k) * 1e3 if "ready" in events else None
    others = sorted({o for _, _, o in post if o.startswith("other")})
    return counts, stall * 1e3, pre_p99 * 1e3, ready_ms, others


def migrate_get():
    try:
        with open(MIGRATE) as f:
            return f.read().strip()
    except OSError:
        return None


def migrate_set(v):
    try:
        with open(MIGRATE, "w") as f:
            f.write(v)
        return migrate_get() == v
    except OSError:
        return False


def part_b():
    orig = migrate_get()
    settings = [orig]
    if orig is not None and orig != "1":
        if migrate_set("1"):
            settings.append("1")
            atexit.register(migrate_set, orig)
            migrate_set(orig)
        else:
            log(f"   tcp_migrate_req={orig} is not writable: only that setting is measured")
    print(f"\n== (b) SIGKILL of one of 2 workers under new-connection load "
          f"(6 threads, 2 s timeouts, 3 s after the kill); tcp_migrate_req was {orig} ==")
    print(f"{'migrate':>7} {'server':<10} {'ready':<7} {'ok':>6} {'refused':>7} {'reset':>5} "
          f"{'timeout':>7} {'other':>5} {'stall ms':>9} {'pre p99 ms':>10} {'ready ms':>8}")
    for mig in settings:
        migrate_set(mig)
        for kind, ready in (("base", "-"), ("reuseport", "auto"), ("reuseport", "notify"),
                            ("shared", "auto"), ("shared", "notify")):
            c, stall, pre, ready_ms, others = kill_case(kind, "auto" if ready == "-" else ready)
            rm = "-" if ready_ms is None else f"{ready_ms:.0f}"
            print(f"{mig:>7} {kind:<10} {ready:<7} {c.get('ok', 0):>6} {c.get('refused', 0):>7} "
                  f"{c.get('reset', 0):>5} {c.get('timeout', 0):>7} {c.get('other', 0):>5} "
                  f"{stall:>9.1f} {pre:>10.2f} {rm:>8}" + (f"  {others}" if others else ""), flush=True)
    migrate_set(orig)


def main():
    log("# cargo build --release")
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    if "a" in PARTS:
        part_a()
    if "b" in PARTS:
        part_b()
    print(f"\nherd had to be restarted {Server.restarts} times because a worker's READY=1 was dropped at start-up")


if __name__ == "__main__":
    main()
