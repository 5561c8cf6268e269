#!/usr/bin/env python3
"""replace.py — after a worker's SIGKILL, how soon does its replacement answer?

The same unmodified Node `http` app (answers `hello from <pid>`), 2 workers, under:
  herd          herd run -i 2 -p P -- node app.js   (default reuseport; ready = Node's
                `listening`)
  node-cluster  Node's own `cluster`: a primary forks 2 workers and forks a new one on
                each exit (round robin, Node's default)
  pm2           pm2 start app.js -i 2 (cluster mode; PM2's restart_delay defaults to 0)
and, as the floor, the app's own start-up:
  startup       `node app.js` alone: from spawn to its first answer
The killed worker has run 1 s (herd gets --min-uptime 500ms: a stable run, restarted at
once, as Node's cluster and PM2 restart every worker). A probe opens a new connection every 5 ms (GET /, 1 s timeout; each on its own thread, so
one that waits on the dead worker does not hold back the next) from the kill on; the
replacement time is kill -> the first answer from a pid that was no worker before (the
kernel's, Node's or PM2's spreading sends about every other probe to the new worker once it
serves). For startup the same probe runs from spawn. ROUNDS (default 5) rounds, the servers
in turn within each round; printed: each run, then per server the median [min-max] and
herd's median minus startup's (target: within 10 ms).

Run:   scripts/bench/replace.py                 (~2 min)
       ROUNDS=9 SERVERS=herd,pm2 scripts/bench/replace.py
Needs: python3, cargo, node; PM2 from `npm install pm2` in a temp dir (or PM2=/path/to/pm2;
without it the pm2 rows are skipped). Builds herd with `cargo build --release -p herd --features testworker`.
Every process it starts is killed at exit.
"""
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
WORK = tempfile.mkdtemp(prefix="herd-replace.")
ROUNDS = int(os.environ.get("ROUNDS", "5"))
SERVERS = os.environ.get("SERVERS", "startup,herd,node-cluster,pm2").split(",")
PROBE_EVERY = 0.005
STABLE = 1.0
TIMEOUT = 10.0
PROCS = []

APP = os.path.join(WORK, "app.js")
PRIMARY = os.path.join(WORK, "primary.js")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def probe(port):
    """One GET / on a new connection: the answering pid, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.settimeout(1.0)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        m = re.search(rb"hello from (\d+)", data)
        return int(m.group(1)) if m else None
    except OSError:
        return None


def until_new(port, old, since):
    """Starts a probe every PROBE_EVERY, each on its own thread (one that waits on a dead
    worker's connection must not hold back the next), until one is answered by a pid not in
    `old`; seconds from `since` to that answer."""
    found = []
    lock = threading.Lock()

    def one():
        pid = probe(port)
        if pid is not None and pid not in old:
            with lock:
                found.append(time.monotonic() - since)

    threads = []
    while time.monotonic() - since < TIMEOUT:
        with lock:
            if found:
                break
        t = threading.Thread(target=one, daemon=True)
        t.start()
        threads.append(t)
        time.sleep(PROBE_EVERY)
    for t in threads:
        t.join()
    return min(found) if found else None


def two_workers(port):
    """The pids of the 2 workers, once both answer."""
    seen = set()
    deadline = time.monotonic() + TIMEOUT
    while len(seen) < 2 and time.monotonic() < deadline:
        pid = probe(port)
        if pid is not None:
            seen.add(pid)
        else:
            time.sleep(0.01)
    return seen if len(seen) == 2 else None


def spawn(cmd, env=None, log_name=None):
    out = open(os.path.join(WORK, log_name or "out.log"), "ab")
    p = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=out, stderr=out,
                         start_new_session=True)
    PROCS.append(p)
    return p


def stop(p):
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def pm2_bin():
    if os.environ.get("PM2"):
        return os.environ["PM2"]
    d = os.path.join(WORK, "pm2pkg")
    os.makedirs(d, exist_ok=True)
    log("# npm install pm2")
    r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "pm2"], cwd=d,
                       capture_output=True, text=True)
    b = os.path.join(d, "node_modules", ".bin", "pm2")
    return b if r.returncode == 0 and os.path.exists(b) else None


PM2 = None
PM2_HOME = os.path.join(WORK, "pm2home")


def run(server, rnd):
    port = free_port()
    env = {"APP_PORT": str(port), "PM2_HOME": PM2_HOME}
    if server == "startup":
        t0 = time.monotonic()
        p = spawn(["node", APP], env)
        took = until_new(port, set(), t0)
        stop(p)
        return took
    if server == "herd":
        p = spawn([HERD, "run", "-i", "2", "-p", str(port), "--min-uptime", "500ms", "--",
                   "node", APP], env, f"herd-{rnd}.log")
    elif server == "node-cluster":
        p = spawn(["node", PRIMARY], env)
    elif server == "pm2":
        r = subprocess.run([PM2, "start", APP, "-i", "2", "--name", f"r{rnd}"],
                           env={**os.environ, **env}, capture_output=True)
        if r.returncode != 0:
            log(f"pm2 start failed: {r.stderr[:300]}")
            return None
        p = None
    try:
        workers = two_workers(port)
        if not workers:
            log(f"{server}: 2 workers did not answer")
            return None
        # The victim has run STABLE: a stable worker's crash, restarted at once by all three
        # (herd: --min-uptime 500ms; with its default 5 s this would be an unstable run,
        # restarted after a 100 ms backoff).
        time.sleep(STABLE)
        victim = min(workers)
        t0 = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        return until_new(port, workers, t0)
    finally:
        if p is not None:
            stop(p)
        else:
            subprocess.run([PM2, "delete", "all"], env={**os.environ, "PM2_HOME": PM2_HOME},
                           capture_output=True)


def main():
    global PM2
    with open(APP, "w") as f:
        f.write("require('http').createServer((q, s) => s.end('hello from ' + process.pid + "
                "'\\n')).listen(Number(process.env.APP_PORT));\n")
    with open(PRIMARY, "w") as f:
        f.write("const cluster = require('cluster');\n"
                "if (cluster.isPrimary) {\n"
                "  for (let i = 0; i < 2; i++) cluster.fork();\n"
                "  cluster.on('exit', () => cluster.fork());\n"
                f"}} else require({APP!r});\n")
    if "herd" in SERVERS:
        # The features of the other scripts' build, so that it is shared.
        log("# cargo build --release -p herd --features testworker")
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "herd", "--features",
                        "testworker"], cwd=ROOT, check=True)
    if "pm2" in SERVERS:
        PM2 = pm2_bin()
        if not PM2:
            log("pm2 not available: skipped")
    servers = [s for s in SERVERS if s != "pm2" or PM2]
    results = {s: [] for s in servers}
    for rnd in range(ROUNDS):
        for s in servers:
            took = run(s, rnd)
            ms = None if took is None else took * 1000
            log(f"  round {rnd + 1} {s:<13} {'timeout' if ms is None else f'{ms:.1f} ms'}")
            if ms is not None:
                results[s].append(ms)
    if PM2:
        subprocess.run([PM2, "kill"], env={**os.environ, "PM2_HOME": PM2_HOME},
                       capture_output=True)
    print(f"\n{'server':<13} {'runs':>4} {'median ms':>9}  range")
    med = {}
    for s, v in results.items():
        if v:
            med[s] = statistics.median(v)
            print(f"{s:<13} {len(v):>4} {med[s]:>9.1f}  {min(v):.1f}-{max(v):.1f}")
    if "startup" in med:
        for s in ("herd", "node-cluster", "pm2"):
            if s in med:
                print(f"{s} - startup = {med[s] - med['startup']:+.1f} ms "
                      f"({med[s] / med['startup']:.2f}x the app's own start-up)")


if __name__ == "__main__":
    try:
        main()
    finally:
        for p in PROCS:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["rm", "-rf", WORK])
