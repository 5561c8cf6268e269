#!/usr/bin/env python3
"""balance.py — how evenly do connections reach the workers, and what does a
SIGKILLed worker cost the clients?

Servers compared (all on 127.0.0.1, one at a time, fresh for every case):
  base               N x `herd-testworker --port P` started by hand (SO_REUSEPORT, no herd)
  reuseport          herd run -i N -p P --balance reuseport -- herd-testworker --notify
  shared             herd run -i N -p P --balance shared    -- herd-testworker --notify
  node-reuseport     herd run -i N -p P --balance reuseport -- node -e "...listen({fd:3})"
  node-shared        herd run -i N -p P --balance shared    -- node -e "...listen({fd:3})"
  node-cluster-rr    Node's own `cluster` module, no herd: a primary forks N workers that
                     listen on the port; default policy (round robin: the primary accepts
                     and hands connections to the workers)
  node-cluster-none  the same with NODE_CLUSTER_SCHED_POLICY=none (the workers share the
                     primary's listening socket and accept themselves, like herd's shared)
  (A Node program binding the port itself with `exclusive: false` is no reuseport
  baseline: Node does not set SO_REUSEPORT, the workers would share one socket.)
  All workers answer `pid=<pid>`. Node workers under herd get `--ready auto` (ready
  after herd's 500 ms delay: they send no READY=1).

(a) Shares, N = 2 and 4, ROUNDS (default 3) rounds, the case order rotating per round:
  ka conns   open 200 keep-alive connections while a background
             `wrk -t1 -c32 -H 'Connection: close'` keeps the workers busy, then one
             request on each; count the answering pid (= which worker accepted it).
  new conn   `wrk -t2 -c64 -d2s -H 'Connection: close'` with a Lua script counting
             the pid of every response (= of every connection); total req/s too.
  ka req     `wrk -t2 -c64 -d2s` keep-alive with the same script: share of requests.
  Printed: each worker's share in %, sorted, and max/min (1.00 = perfectly even;
  for 200 connections over 2 workers plain randomness gives about 1.0-1.3); the
  median max/min over the rounds with the shares of that round. A last line
  compares wrk's req/s with and without the Lua script (is the counting the
  bottleneck?). wrk, not Python, makes the load: a Python client cannot
  saturate the workers.

(b) SIGKILL cost, N = 2: 6 client threads send requests, each on a new
  connection (connect timeout and read timeout 2 s). After 1 s one worker (slot
  0, pid from herd's "spawned as pid" line) gets SIGKILL (herd runs with --min-uptime
  500ms, so that worker ran stably and is restarted at once); the clients go on for
  3 s more. Printed per case, for the requests started after the kill:
  ok, refused, reset (incl. EOF without answer), timeout, other;
  `stall ms`   = the longest connect + first byte among them (a connection
                 parked on the dead worker's queue waits for the replacement);
  `pre p99 ms` = p99 of the same measure in the second before the kill, for scale;
  `ready ms`   = kill -> herd's "ready after" line of the replacement (herd only);
  `new ms`     = kill -> the first answer from the replacement (a pid that was no
                 worker before the kill).
  Cases: base (no replacement), and each herd mode with readiness
  `auto` (worker without --notify: assumed ready after herd's 500 ms delay) and
  `notify` (--ready notify, worker --notify). All of it with the current
  net.ipv4.tcp_migrate_req, and again with it set to 1 if it is writable (it is
  restored at exit).

Run:  scripts/bench/balance.py             (about 6 minutes)
      PARTS=a scripts/bench/balance.py      (only shares; PARTS=b only the kill)
      PARTS=b KILL=base:-,reuseport:notify,node-reuseport:auto scripts/bench/balance.py
      ROUNDS=5 KINDS=node-shared,node-cluster-none PARTS=a scripts/bench/balance.py
Checks: every herd worker ready within READY_TIMEOUT (5 s) and no "which is not a
  worker" in herd's log, else "BUG: ..." (counted; exit status 1).
Needs: python3 (stdlib), cargo, wrk, node. Builds herd and herd-testworker with
`cargo build --release -p herd --features testworker` first. Every process it
starts is killed at exit.
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
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
HERD = os.path.join(TARGET, "release/herd")
TW = os.path.join(TARGET, "release/herd-testworker")
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


NODE_WORKER = "require('http').createServer((q,s)=>s.end('pid='+process.pid+'\\n')).listen({fd:3})"
NODE_CLUSTER = """// Node's own cluster module: node cluster.js N PORT. The primary forks N workers
// that listen on 127.0.0.1:PORT; NODE_CLUSTER_SCHED_POLICY=rr|none picks the policy.
const cluster = require('cluster'), http = require('http');
const n = +process.argv[2], port = +process.argv[3];
if (cluster.isPrimary) {
  let up = 0;
  cluster.on('listening', () => {
    if (++up === n) console.log(`cluster listening policy=${cluster.schedulingPolicy === cluster.SCHED_RR ? 'rr' : 'none'}`);
  });
  for (let i = 0; i < n; i++) cluster.fork();
} else {
  http.createServer((q, s) => s.end('pid=' + process.pid + '\\n')).listen(port, '127.0.0.1');
}
"""
BUGS = []


def bug(text):
    """A regression of a fixed herd bug: printed as BUG and counted (exit status 1)."""
    BUGS.append(text)
    log(f"BUG: {text}")


class Server:
    """One case, started fresh; .stop() ends it. kind:
    base                 N x herd-testworker --port P (SO_REUSEPORT, no herd)
    reuseport, shared    herd run --balance KIND -- herd-testworker
    node-reuseport, node-shared   herd run --balance ... -- node -e <listen({fd:3})>
    node-cluster-rr, node-cluster-none   Node's cluster module (no herd), policy rr / none
    """
    READY_TIMEOUT = float(os.environ.get("READY_TIMEOUT", "5"))

    def __init__(self, kind, n, ready="auto"):
        self.kind, self.n, self.port = kind, n, free_port()
        self.log = os.path.join(WORK, f"{kind}-{n}-{ready}-{self.port}.log")
        self.procs = []
        self.herd = kind in ("reuseport", "shared", "node-reuseport", "node-shared")
        notify = ["--notify"] if ready in ("notify", "auto-notify") else []
        logf = open(self.log, "wb")
        if kind == "base":
            for _ in range(n):
                p = subprocess.Popen([TW, "--port", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=logf, start_new_session=True)
                self.procs.append(p)
            self.wait_port()
        elif kind.startswith("node-cluster-"):
            script = os.path.join(WORK, "cluster.js")
            with open(script, "w") as f:
                f.write(NODE_CLUSTER)
            env = dict(os.environ, NODE_CLUSTER_SCHED_POLICY=kind.rsplit("-", 1)[1])
            p = subprocess.Popen(["node", script, str(n), str(self.port)], stdout=logf, stderr=logf,
                                 env=env, start_new_session=True)
            self.procs = [p]
            t0 = time.time()
            while "cluster listening" not in self.text():
                if time.time() - t0 > 10:
                    raise RuntimeError(f"{kind}: cluster did not start: {self.text()}")
                time.sleep(0.02)
            want = "policy=" + kind.rsplit("-", 1)[1]
            if want not in self.text():
                raise RuntimeError(f"{kind}: wrong scheduling policy: {self.text()}")
        else:
            mode = kind.replace("node-", "")
            # --min-uptime 500ms: the worker (b) kills ran 1 s, so it counts as stable and
            # is restarted at once, as a long-running worker is (with the default 5 s it
            # would be an unstable one, restarted after herd's 100 ms backoff).
            args = [HERD, "run", "-i", str(n), "-p", str(self.port), "--balance", mode,
                    "--min-uptime", "500ms"]
            if ready == "notify":
                args += ["--ready", "notify"]
            if kind.startswith("node-"):
                args += ["--", "node", "-e", NODE_WORKER]
            else:
                args += ["--", TW] + notify
            p = subprocess.Popen(args, stdout=logf, stderr=logf)
            self.procs = [p]
            if not self.wait_ready(n, self.READY_TIMEOUT):
                bug(f"{kind} -i {n} --ready {ready}: only {self.text().count('ready after')}/{n} workers ready "
                    f"after {self.READY_TIMEOUT:.0f} s (herd ignored {self.text().count('not a worker')} "
                    f"notify messages from its own workers)")
                if not self.wait_ready(n, 30):
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
                if self.kind.startswith("node-cluster-"):
                    os.killpg(p.pid, signal.SIGTERM)  # primary and its forked workers
                else:
                    p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.kind.startswith("node-cluster-"):
            try:
                os.killpg(self.procs[0].pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.herd:
            k = self.text().count("not a worker")
            if k:
                bug(f"{self.kind} -i {self.n}: herd ignored {k} notify messages from its own workers "
                    f"('which is not a worker')")


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
        if not until_eof and b"\r\n\r\n" in buf:
            head, _, body = buf.partition(b"\r\n\r\n")
            m = re.search(rb"(?i)content-length:\s*(\d+)", head)
            if m and len(body) >= int(m.group(1)):
                break
    return buf, first


def shares(counts):
    tot = sum(counts.values())
    vals = sorted((100.0 * v / tot for v in counts.values()), reverse=True)
    return vals


# ---------------------------------------------------------------- (a) shares

WRK_LUA = """-- counts responses per answering pid (body "pid=<n>"); done() prints "PID <pid> <count>"
threads = {}
counts = {}
function setup(thread) table.insert(threads, thread) end
function response(status, headers, body)
  local pid = body and body:match("pid=(%d+)") or "-1"
  counts[pid] = (counts[pid] or 0) + 1
end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do io.write("PID " .. k .. " " .. v .. "\\n") end
  end
end
"""
WRK_DUR = os.environ.get("WRK_DUR", "2s")


def wrk(srv, close, lua=True, dur=None, threads=2, conns=64):
    """Runs wrk; returns (counts per pid, req/s, socket errors + non-2xx)."""
    script = os.path.join(WORK, "pid.lua")
    if not os.path.exists(script):
        with open(script, "w") as f:
            f.write(WRK_LUA)
    args = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{dur or WRK_DUR}"]
    if close:
        args += ["-H", "Connection: close"]
    if lua:
        args += ["-s", script]
    out = subprocess.run(args + [f"http://127.0.0.1:{srv.port}/"], capture_output=True, text=True).stdout
    counts = {}
    for pid, c in re.findall(r"^PID (-?\d+) (\d+)$", out, re.M):
        counts[int(pid)] = counts.get(int(pid), 0) + int(c)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    rps = float(m.group(1)) if m else float("nan")
    errs = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs += int(m.group(1)) if m else 0
    return counts, rps, errs


def keepalive_share(srv, conns=200):
    """Opens `conns` keep-alive connections while a background wrk (Connection: close,
    1 thread x 32 connections) keeps the workers busy, then sends one request on each:
    the answering pid is the worker that accepted that connection."""
    bg = subprocess.Popen(["wrk", "-t1", "-c32", "-d30s", "-H", "Connection: close",
                           f"http://127.0.0.1:{srv.port}/"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    PROCS.append(bg)
    time.sleep(0.3)
    socks = []
    try:
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
    finally:
        bg.terminate()
        bg.wait()
        for s in socks:
            s.close()
    return counts


def fmt_shares(counts, n):
    counts = dict(counts)
    bad = counts.pop(-1, 0)
    vals = shares(counts) if counts else []
    # a worker that got nothing does not appear in counts: pad with zeros
    vals += [0.0] * (n - len(vals))
    ratio = (max(vals) / min(vals)) if min(vals) > 0 else float("inf")
    s = " ".join(f"{v:4.1f}" for v in vals)
    return s, ratio, bad


A_KINDS = ("base", "reuseport", "shared", "node-reuseport", "node-shared", "node-cluster-rr",
           "node-cluster-none")


def part_a():
    rounds = int(os.environ.get("ROUNDS", "3"))
    kinds = [k for k in A_KINDS if not os.environ.get("KINDS") or k in os.environ["KINDS"].split(",")]
    res = {}  # (n, kind) -> list of dicts
    for rnd in range(rounds):
        for n in (2, 4):
            k = rnd % len(kinds)
            for kind in kinds[k:] + kinds[:k]:  # the order rotates every round
                srv = Server(kind, n, "auto-notify")
                try:
                    time.sleep(0.2)
                    wrk(srv, False, lua=False, dur="1s")  # warm-up (JIT of the node workers)
                    ka = keepalive_share(srv)
                    nc, nc_rps, nc_err = wrk(srv, True)
                    kr, kr_rps, kr_err = wrk(srv, False)
                finally:
                    srv.stop()
                r = dict(ka=ka, nc=nc, nc_rps=nc_rps, nc_err=nc_err, kr=kr, kr_rps=kr_rps, kr_err=kr_err)
                res.setdefault((n, kind), []).append(r)
                log(f"  round {rnd + 1} {kind:<17} -i {n}: ka conns {fmt_shares(ka, n)[0]} | new conn "
                    f"{fmt_shares(nc, n)[0]} ({nc_rps:.0f} req/s, {nc_err} err) | ka requests "
                    f"{fmt_shares(kr, n)[0]} ({kr_rps:.0f} req/s, {kr_err} err)")
    print(f"\n== (a) share per worker (%, sorted) and max/min (1.00 = even); median max/min over {rounds} "
          f"rounds, shares of the median round ==")
    print("  ka conns:   200 keep-alive connections opened while wrk -t1 -c32 (Connection: close) keeps the")
    print("              workers busy; one request each -> the worker that accepted each connection")
    print(f"  new conn:   wrk -t2 -c64 -d{WRK_DUR} -H 'Connection: close' (a Lua script counts the pid of every")
    print("              response, i.e. of every connection); req/s = total throughput (median)")
    print(f"  ka req:     wrk -t2 -c64 -d{WRK_DUR} keep-alive: share of requests (64 connections each)")
    print(f"{'server':<17} {'N':>1}  {'ka conns':<19} {'max/min':>7}  {'new conn':<19} {'max/min':>7} {'req/s':>6} "
          f"{'err':>4}  {'ka req':<19} {'max/min':>7} {'req/s':>6} {'err':>4}")

    def med_case(rs, key):
        rat = [fmt_shares(r[key], n)[1] for r in rs]
        m = statistics.median(rat)
        i = min(range(len(rs)), key=lambda j: abs(rat[j] - m))
        return fmt_shares(rs[i][key], n)[0], m

    for n in (2, 4):
        for kind in kinds:
            rs = res[(n, kind)]
            ka_s, ka_r = med_case(rs, "ka")
            nc_s, nc_r = med_case(rs, "nc")
            kr_s, kr_r = med_case(rs, "kr")
            print(f"{kind:<17} {n:>1}  {ka_s:<19} {ka_r:>7.2f}  {nc_s:<19} {nc_r:>7.2f} "
                  f"{statistics.median(r['nc_rps'] for r in rs):>6.0f} {sum(r['nc_err'] for r in rs):>4}  "
                  f"{kr_s:<19} {kr_r:>7.2f} {statistics.median(r['kr_rps'] for r in rs):>6.0f} "
                  f"{sum(r['kr_err'] for r in rs):>4}", flush=True)
    # is the Lua counting (or wrk) the bottleneck? same load without the script, herd-testworker reuseport
    srv = Server("reuseport", 2, "auto-notify")
    try:
        with_lua = [wrk(srv, True)[1] for _ in range(2)]
        without = [wrk(srv, True, lua=False)[1] for _ in range(2)]
    finally:
        srv.stop()
    print(f"  load check (reuseport -i 2, new conn): wrk with the pid-counting script "
          f"{statistics.median(with_lua):.0f} req/s, without {statistics.median(without):.0f} req/s")


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
            outcome, lat, pid = "ok", None, None
            try:
                s = socket.socket()
                s.settimeout(timeout)
                try:
                    s.connect(("127.0.0.1", srv.port))
                    s.sendall(REQ_CLOSE)
                    body, _ = read_response(s, True)
                    lat = time.monotonic() - t0
                    m = PID_RE.search(body)
                    if not m:
                        outcome = "reset"  # EOF without an answer
                    else:
                        pid = int(m.group(1))
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
            local.append((t0, lat, outcome, pid))
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
    before_pids = set(srv.worker_pids())
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
    pre = sorted(l for t0, l, o, _ in results if t0 < k and t0 >= k - before and o == "ok")
    post = [(t0, l, o) for t0, l, o, _ in results if t0 >= k - 0.05]  # incl. those in flight at the kill
    # The first answer of the replacement (a pid that was no worker before the kill).
    new = [t0 + l for t0, l, o, p in results if p is not None and p not in before_pids]
    new_ms = (min(new) - k) * 1e3 if new else None
    counts = {}
    for _, _, o in post:
        key = o if o in ("ok", "refused", "reset", "timeout") else "other"
        counts[key] = counts.get(key, 0) + 1
    stall = max((l for _, l, o in post if l is not None), default=0.0)
    pre_p99 = pre[int(0.99 * (len(pre) - 1))] if pre else float("nan")
    ready_ms = (events["ready"] - k) * 1e3 if "ready" in events else None
    others = sorted({o for _, _, o in post if o.startswith("other")})
    return counts, stall * 1e3, pre_p99 * 1e3, ready_ms, new_ms, others


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


# KILL=reuseport:notify,node-reuseport:auto picks the cases of (b).
KILL_CASES = [tuple(c.split(":")) for c in os.environ.get(
    "KILL", "base:-,reuseport:auto,reuseport:notify,shared:auto,shared:notify").split(",")]


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
    print(f"{'migrate':>7} {'server':<14} {'ready':<7} {'ok':>6} {'refused':>7} {'reset':>5} "
          f"{'timeout':>7} {'other':>5} {'stall ms':>9} {'pre p99 ms':>10} {'ready ms':>8} {'new ms':>6}")
    for mig in settings:
        migrate_set(mig)
        for kind, ready in KILL_CASES:
            c, stall, pre, ready_ms, new_ms, others = kill_case(kind, "auto" if ready == "-" else ready)
            rm = "-" if ready_ms is None else f"{ready_ms:.0f}"
            nm = "-" if new_ms is None else f"{new_ms:.0f}"
            print(f"{mig:>7} {kind:<14} {ready:<7} {c.get('ok', 0):>6} {c.get('refused', 0):>7} "
                  f"{c.get('reset', 0):>5} {c.get('timeout', 0):>7} {c.get('other', 0):>5} "
                  f"{stall:>9.1f} {pre:>10.2f} {rm:>8} {nm:>6}" + (f"  {others}" if others else ""), flush=True)
    migrate_set(orig)


def main():
    # herd-testworker is built only with herd's `testworker` feature (see lib.sh).
    log("# cargo build --release -p herd --features testworker")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "herd", "--features", "testworker"],
                   cwd=ROOT, check=True)
    if "a" in PARTS:
        part_a()
    if "b" in PARTS:
        part_b()
    if BUGS:
        print(f"\nBUG: {len(BUGS)} regression check(s) failed:")
        for b in BUGS:
            print(f"  BUG: {b}")
        sys.exit(1)
    print(f"\nregression checks: 0 BUG (every herd worker ready within {Server.READY_TIMEOUT:.0f} s, "
          f"no 'which is not a worker')")


if __name__ == "__main__":
    main()
