#!/usr/bin/env bash
# spawn.sh — how long does herd take to bring N workers up, beyond the worker's
# own start-up time?
#
# Alternates, ROUNDS times:
#   worker   a standalone `herd-testworker --port P --notify`, started by a tiny
#            python NOTIFY_SOCKET listener: exec -> READY=1 (median of 5) = W
#   herd N   herd run -i N -p P --ready notify --log-format json --
#            herd-testworker --notify, for N = 2, 16, 64; from exec of herd to
#            herd's N-th "ready" record (JSON timestamps), = T
# herd overhead per worker = (T - W) / N     target <= 10 ms
# Also printed (medians over rounds): exec -> first "spawned", the mean gap
# between consecutive "spawned" records (how fast herd forks), the median
# spawned -> ready of the workers (herd's `after_ms`), and how many READY=1
# herd dropped ("notify message from pid ..., which is not a worker").
# Checks: all N workers ready within READY_TIMEOUT (5 s) and no dropped notify
#         message, else "BUG: ..." (counted; exit status 1). A run that misses
#         it is cut at the timeout, and the overhead is computed from the ready
#         records seen (marked `partial`).
#
# Run:    scripts/bench/spawn.sh        (ROUNDS=5 by default, ~1 min)
# Output: progress lines (stderr), then one table row per N.

source "$(dirname "$0")/lib.sh"
bench_build
ROUNDS=${ROUNDS:-5} READY_TIMEOUT=${READY_TIMEOUT:-5} python3 - "$HERD" "$TW" <<'EOF'
import json, os, socket, statistics, subprocess, sys, tempfile, time
from datetime import datetime

HERD, TW = sys.argv[1], sys.argv[2]
ROUNDS = int(os.environ["ROUNDS"])
tmp = tempfile.mkdtemp(prefix="herd-spawn.")

def port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def worker_startup():
    path = os.path.join(tmp, "notify.sock")
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    t0 = time.time()
    p = subprocess.Popen([TW, "--port", str(port()), "--notify"], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while b"READY=1" not in sock.recv(4096):
            pass
        dt = time.time() - t0
    finally:
        p.terminate(); p.wait(); sock.close()
    return dt * 1e3

def ts(rec):
    t = rec["timestamp"].rstrip("Z")
    base, _, frac = t.partition(".")
    return datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=__import__("datetime").timezone.utc).timestamp() + float("0." + (frac or "0"))

def herd_run(n):
    logf = os.path.join(tmp, f"herd-{n}.log")
    with open(logf, "wb") as f:
        t0 = time.time()
        p = subprocess.Popen([HERD, "run", "-i", str(n), "-p", str(port()), "--ready", "notify",
                              "--log-format", "json", "--", TW, "--notify"], stdout=f, stderr=f)
        deadline = t0 + float(os.environ["READY_TIMEOUT"])
        recs = []
        while time.time() < deadline:
            recs = []
            for line in open(logf, errors="replace"):
                try:
                    recs.append(json.loads(line))
                except ValueError:
                    pass
            if sum("after_ms" in r for r in recs) >= n:
                break
            time.sleep(0.01)
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill(); p.wait()
    spawned = [ts(r) for r in recs if "spawned as pid" in r.get("message", "")]
    ready = [ts(r) for r in recs if "after_ms" in r]
    after = [r["after_ms"] for r in recs if "after_ms" in r]
    dropped = sum("not a worker" in r.get("message", "") for r in recs)
    return dict(t0=t0, spawned=sorted(spawned), ready=sorted(ready), after=after, dropped=dropped)

BUGS = []
rows = {n: [] for n in (2, 16, 64)}
W = []
for rnd in range(1, ROUNDS + 1):
    for n in (2, 16, 64):
        W += [worker_startup() for _ in range(5)]
        r = herd_run(n)
        r["W"] = statistics.median(W[-5:])
        rows[n].append(r)
        full = len(r["ready"]) >= n
        last = (r["ready"][-1] - r["t0"]) * 1e3 if r["ready"] else float("nan")
        print(f"  round {rnd} -i {n}: worker W={r['W']:.1f} ms, herd ready {len(r['ready'])}/{n}, "
              f"last ready {last:.1f} ms after exec, READY=1 dropped {r['dropped']}", file=sys.stderr, flush=True)
        if not full or r["dropped"]:
            BUGS.append(f"round {rnd} -i {n}: {len(r['ready'])}/{n} ready within {os.environ['READY_TIMEOUT']} s, "
                        f"{r['dropped']} notify messages dropped ('which is not a worker')")
            print(f"BUG: {BUGS[-1]}", file=sys.stderr, flush=True)

print(f"\nstandalone worker exec -> READY=1: median {statistics.median(W):.2f} ms over {len(W)} runs")
print(f"\n{'-i':>3} {'T all ready ms':>14} {'W ms':>6} {'(T-W)/N ms':>10} {'first spawn ms':>14} "
      f"{'spawn gap ms':>12} {'spawned->ready ms':>17} {'ready':>9} {'dropped msgs':>12}  verdict")
for n, rs in rows.items():
    ov, Ts, firsts, gaps, afters, partial = [], [], [], [], [], False
    for r in rs:
        if not r["spawned"]:
            continue
        k = len(r["ready"])
        if k == 0:
            continue
        T = (r["ready"][-1] - r["t0"]) * 1e3
        if k < n:
            partial = True
        Ts.append(T)
        ov.append((T - r["W"]) / k)
        firsts.append((r["spawned"][0] - r["t0"]) * 1e3)
        if len(r["spawned"]) > 1:
            gaps.append((r["spawned"][-1] - r["spawned"][0]) * 1e3 / (len(r["spawned"]) - 1))
        afters += r["after"]
    med = lambda v: statistics.median(v) if v else float("nan")
    o = med(ov)
    readys = "/".join(str(len(r["ready"])) for r in rs)
    print(f"{n:>3} {med(Ts):>14.1f} {med([r['W'] for r in rs]):>6.1f} {o:>10.2f} {med(firsts):>14.1f} "
          f"{med(gaps):>12.2f} {med(afters):>17.1f} {readys:>9} {sum(r['dropped'] for r in rs):>12}  "
          f"{'ok' if o <= 10 else 'MISS'}{' (partial: not all ready in time, T over the ready ones)' if partial else ''}")
if BUGS:
    print(f"\nBUG: {len(BUGS)} regression check(s) failed:")
    for b in BUGS:
        print(f"  BUG: {b}")
    sys.exit(1)
print(f"\nregression checks: 0 BUG (all workers ready within {os.environ['READY_TIMEOUT']} s, no dropped notify message)")
EOF
