#!/usr/bin/env bash
# daemon.sh — the per-user daemon (`herd start` / `herd ls`): memory, start-up
# cost and control round trip, with 10 apps of 2 workers each (each app its own
# port), every HERD_HOME a temp dir.
#
# 1. RSS   VmRSS and Threads of the daemon process only (not the guardian, not
#          workers), after every worker is ready, 0.5 s of idle and 3 `herd ls`:
#            herd 0 apps         (context)
#            herd 10x2 tw        herd-testworker                 target <= 12 MB
#            herd 10x2 node      a trivial Node http server      (fair vs PM2)
#            pm2  10x2 node      the same server, `pm2 start` cluster mode
#          PM2 comes from `npm install pm2` in a temp dir (PM2_HOME there too,
#          `pm2 kill` at the end); if it cannot be installed or run, it is
#          skipped and the table says so. RSS_ROUNDS rounds (default 3), each a
#          fresh daemon.
# 2. start `herd start herd.toml` (10 apps x 2 herd-testworker) to every worker
#          ready, wall time, daemon already running, apps deleted between
#          rounds = T. Readiness is `ready = "delay:50ms"` (D): herd-testworker
#          is ready within a few ms, so every worker is ready exactly D after
#          its spawn and the app's own start-up is a known constant (`notify`
#          would be the natural choice, but see the notify check below).
#          Baseline B, measured in the same rounds: the same 20 processes
#          started directly (Popen, PORT set, --notify to a python
#          NOTIFY_SOCKET), each ready at max(its launch + D, its READY=1); B =
#          the last such instant - t0. herd overhead = T - B, median over ROUNDS
#          (default 9) rounds.                                   target <= 100 ms
#          Also: the first `herd start` that has to start the daemon (cold,
#          a fresh HERD_HOME each round), and B_notify (the 20 workers to their
#          own READY=1, no delay) for context.
#          Notify check: once, the same file with `ready = "notify"` (and
#          listen_timeout 1s); if not every app comes up, that is a BUG.
# 3. ls    `herd ls` round trip with the 10 apps up (hyperfine -N, LS_RUNS runs,
#          default 300, 20 warm-up): median and p90.             target <= 10 ms
#          Baseline: `herd ls` with no daemon (empty HERD_HOME: process start,
#          failed connect, empty table).
#
# Every measurement ends with `herd kill` (or `pm2 kill`) and checks that the
# daemon, its guardian and every worker are gone (a leftover is a BUG, killed).
# A `herd start` that fails is a BUG (counted; exit status 1). For RSS and ls
# the failed apps are then started by running `herd start FILE` again (apps that
# run are skipped) until all 20 workers are up; a timed start round is retried
# (delete all, start again) up to START_TRIES times (default 5) and left out if
# every try fails; the table says how many tries failed.
#
# Run:    scripts/bench/daemon.sh   (ROUNDS=9 RSS_ROUNDS=3 LS_RUNS=300 PM2=1, ~2 min)
#         HERD_BIN=/path/to/herd scripts/bench/daemon.sh   measures another herd
#         binary (no build); herd-testworker stays this tree's.
# Output: progress lines (stderr), then the results table.

source "$(dirname "$0")/lib.sh"
if [ -n "${HERD_BIN:-}" ]; then
    HERD=$HERD_BIN   # e.g. a patched build to compare; the workers stay this tree's
    log "# herd = $HERD"
else
    log "# cargo build --release -p herd --features testworker"
    (cd "$ROOT" && cargo build --release -q -p herd --features testworker) || { log "build failed"; exit 1; }
fi
command -v hyperfine >/dev/null 2>&1 || apt-get install -y hyperfine >/dev/null 2>&1 || true

ROUNDS=${ROUNDS:-9} RSS_ROUNDS=${RSS_ROUNDS:-3} LS_RUNS=${LS_RUNS:-300} PM2=${PM2:-1} \
python3 - "$HERD" "$TW" "$WORK" <<'EOF'
import json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

HERD, TW, WORK = sys.argv[1:4]
ROUNDS, RSS_ROUNDS, LS_RUNS = int(os.environ["ROUNDS"]), int(os.environ["RSS_ROUNDS"]), int(os.environ["LS_RUNS"])
NAPPS, NINST, DELAY_MS = 10, 2, 50
BUGS, NOTES = [], []
START_TRIES = int(os.environ.get("START_TRIES", "5"))
HOMES = []
START_FAILS = {}  # what -> [failed tries, tries]

def log(*a):
    print(*a, file=sys.stderr, flush=True)

def bug(msg):
    BUGS.append(msg); log(f"BUG: {msg}")

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def new_home():
    h = tempfile.mkdtemp(prefix="home.", dir=WORK)
    HOMES.append(h)
    return h

def kill_all_homes():
    # Whatever happens, no daemon of ours outlives the script.
    for h in HOMES:
        if os.path.exists(os.path.join(h, "herd.sock")):
            subprocess.run([HERD, "kill"], env=dict(os.environ, HERD_HOME=h), capture_output=True, timeout=60)
import atexit
atexit.register(kill_all_homes)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

def herd(home, *args, timeout=120, check=False):
    env = dict(os.environ, HERD_HOME=home)
    t0 = time.perf_counter()
    r = subprocess.run([HERD, *args], env=env, capture_output=True, text=True, timeout=timeout)
    dt = (time.perf_counter() - t0) * 1e3
    if check and r.returncode != 0:
        bug(f"herd {' '.join(args)} exited {r.returncode}: {(r.stderr or r.stdout).strip()[:600]}")
    return r, dt

def daemon_pid(home):
    r, _ = herd(home, "ping")
    words = r.stdout.replace(",", " ").split()
    return int(words[words.index("(pid") + 1]) if "(pid" in words else None

def status(pid):
    d = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile", "Threads"):
            d[k] = int(v.split()[0])
    return d

def children(pid):
    out = []
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            out += [int(x) for x in open(f"/proc/{pid}/task/{t}/children").read().split()]
        except OSError:
            pass
    return out

def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

def wait_gone(pids, secs=5):
    end = time.time() + secs
    while time.time() < end and any(alive(p) for p in pids):
        time.sleep(0.02)
    return [p for p in pids if alive(p)]

def kill_herd(home, what):
    """herd kill, then check that the daemon, its guardian and the workers are gone."""
    pid = daemon_pid(home) if os.path.exists(os.path.join(home, "herd.sock")) else None
    pids = ([pid] + children(pid)) if pid and alive(pid) else []
    herd(home, "kill", check=True)
    left = wait_gone(pids)
    if left:
        bug(f"{what}: processes left after `herd kill`: {left}")
        for p in left:
            try: os.kill(p, signal.SIGKILL)
            except OSError: pass
    stray = subprocess.run(["pgrep", "-f", TW], capture_output=True, text=True).stdout.split()
    stray += subprocess.run(["pgrep", "-f", WORK + "/node/"], capture_output=True, text=True).stdout.split()
    stray = [int(p) for p in stray if int(p) != os.getpid() and alive(int(p))]
    if stray:
        bug(f"{what}: worker processes left after `herd kill`: {stray}")
        for p in stray:
            try: os.kill(p, signal.SIGKILL)
            except OSError: pass

def toml(kind, ready=f"delay:{DELAY_MS}ms", extra=""):
    path = os.path.join(WORK, f"{kind}-{time.time_ns()}.toml")
    with open(path, "w") as f:
        for i in range(1, NAPPS + 1):
            cmd = ([TW] + (["--notify"] if ready == "notify" else [])) if kind == "tw" \
                else ["node", os.path.join(WORK, "node", "server.js")]
            f.write(f'[apps.{kind}{i:02d}]\ncommand = {json.dumps(cmd)}\ninstances = {NINST}\n'
                    f'port = {free_port()}\nready = "{ready}"\n{extra}\n')
    return path

def count(what, failed):
    c = START_FAILS.setdefault(what, [0, 0]); c[0] += failed; c[1] += 1

FIRST_FAIL = {}
def note_fail(what, r):
    if what not in FIRST_FAIL:
        FIRST_FAIL[what] = r.stderr.strip()
        bug(f"{what}: `herd start` failed: {r.stderr.strip()[:500]}")

def start_up(home, path, what, tries=10):
    """For RSS and ls: herd start PATH until it succeeds (apps that run are skipped)."""
    for k in range(tries):
        r, dt = herd(home, "start", path)
        count(what, r.returncode != 0)
        if r.returncode == 0:
            return dt
        note_fail(what, r)
    raise SystemExit(f"{what}: herd start failed {tries} times")

def start_timed(home, path, what):
    """A timed `herd start PATH` from no app; on failure delete all and try again."""
    for k in range(START_TRIES):
        r, dt = herd(home, "start", path)
        count(what, r.returncode != 0)
        if r.returncode == 0:
            return dt
        note_fail(what, r)
        herd(home, "delete", "all")
    return None

def worker_pids(home):
    r, _ = herd(home, "ls", "--json")
    return [w["pid"] for a in json.loads(r.stdout or "[]") for w in (a.get("status") or {}).get("workers", []) if w.get("pid")]

os.makedirs(os.path.join(WORK, "node"), exist_ok=True)
with open(os.path.join(WORK, "node", "server.js"), "w") as f:
    f.write("require('http').createServer((q, s) => s.end('ok\\n')).listen(process.env.PORT || 3000);\n")
HAVE_NODE = shutil.which("node") is not None

# ---------------------------------------------------------------- 1. RSS
rss = {}
def sample_herd(kind):
    home = new_home()
    if kind == "0":
        herd(home, "ping", check=True)
    else:
        start_up(home, toml(kind, ready="notify" if kind == "node" else f"delay:{DELAY_MS}ms"), f"rss herd {kind}")
        n = len(worker_pids(home))
        if n != NAPPS * NINST:
            bug(f"rss {kind}: {n} workers listed, expected {NAPPS * NINST}")
    time.sleep(0.5)
    for _ in range(3):
        herd(home, "ls")
    pid = daemon_pid(home)
    s = status(pid)
    rss.setdefault(f"herd {kind}", []).append(s)
    log(f"  rss herd {kind:>4}: VmRSS {s['VmRSS']} kB (anon {s['RssAnon']}, file {s['RssFile']}), threads {s['Threads']}")
    kill_herd(home, f"rss herd {kind}")

PM2_BIN, PM2_SKIP = None, None
def pm2_setup():
    global PM2_BIN, PM2_SKIP
    if os.environ.get("PM2", "1") == "0":
        PM2_SKIP = "PM2=0"; return
    if not HAVE_NODE or not shutil.which("npm"):
        PM2_SKIP = "node/npm not installed"; return
    d = os.path.join(WORK, "pm2pkg")
    os.makedirs(d)
    r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "pm2"], cwd=d,
                       capture_output=True, text=True, timeout=300)
    b = os.path.join(d, "node_modules", ".bin", "pm2")
    if r.returncode != 0 or not os.path.exists(b):
        PM2_SKIP = f"npm install pm2 failed: {r.stderr.strip()[:200]}"; return
    PM2_BIN = b

def sample_pm2():
    global PM2_SKIP
    home = tempfile.mkdtemp(prefix="pm2home.", dir=WORK)
    env = dict(os.environ, PM2_HOME=home)
    eco = os.path.join(WORK, f"eco-{time.time_ns()}.config.js")
    ports = [free_port() for _ in range(NAPPS)]
    apps = [dict(name=f"node{i + 1:02d}", script=os.path.join(WORK, "node", "server.js"), exec_mode="cluster",
                 instances=NINST, env=dict(PORT=str(p))) for i, p in enumerate(ports)]
    open(eco, "w").write("module.exports = " + json.dumps({"apps": apps}) + ";\n")
    try:
        r = subprocess.run([PM2_BIN, "start", eco], env=env, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"pm2 start: {r.stderr.strip()[:300]}")
        end = time.time() + 30
        while True:  # every worker online and every port answering
            j = json.loads(subprocess.run([PM2_BIN, "jlist"], env=env, capture_output=True, text=True).stdout or "[]")
            online = sum(p["pm2_env"]["status"] == "online" for p in j)
            answering = 0
            for p in ports:
                try:
                    socket.create_connection(("127.0.0.1", p), 0.2).close(); answering += 1
                except OSError:
                    pass
            if online == NAPPS * NINST and answering == NAPPS:
                break
            if time.time() > end:
                raise RuntimeError(f"pm2: {online}/{NAPPS * NINST} online, {answering}/{NAPPS} ports answer after 30 s")
            time.sleep(0.1)
        workers = [p["pid"] for p in j]
        time.sleep(0.5)
        for _ in range(3):
            subprocess.run([PM2_BIN, "ls"], env=env, capture_output=True)
        pid = int(open(os.path.join(home, "pm2.pid")).read())
        s = status(pid)
        rss.setdefault("pm2 node", []).append(s)
        log(f"  rss pm2  node: VmRSS {s['VmRSS']} kB (anon {s['RssAnon']}, file {s['RssFile']}), threads {s['Threads']}")
    except Exception as e:
        PM2_SKIP = f"pm2 did not run: {e}"; log(f"  {PM2_SKIP}")
        workers, pid = [], None
    subprocess.run([PM2_BIN, "kill"], env=env, capture_output=True, timeout=60)
    left = wait_gone([p for p in workers + ([pid] if pid else []) if p])
    if left:
        NOTES.append(f"pm2 kill left {left} (killed)")
        for p in left:
            try: os.kill(p, signal.SIGKILL)
            except OSError: pass

log("# 1. daemon RSS")
pm2_setup()
if PM2_SKIP:
    log(f"  PM2 skipped: {PM2_SKIP}")
for rnd in range(RSS_ROUNDS):
    sample_herd("0")
    sample_herd("tw")
    if HAVE_NODE:
        sample_herd("node")
    if PM2_BIN and not PM2_SKIP:
        sample_pm2()

# ---------------------------------------------------------------- 2. start
def baseline():
    """The 20 workers started directly; returns (B, B_notify) in ms."""
    path = os.path.join(WORK, "notify.sock")
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.settimeout(5)
    ports = [free_port() for _ in range(NAPPS)]
    launch, ready, procs = {}, {}, []
    t0 = time.perf_counter()
    for p in ports:
        for _ in range(NINST):
            env = dict(os.environ, NOTIFY_SOCKET=path, PORT=str(p))
            pr = subprocess.Popen([TW, "--notify"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            launch[pr.pid] = time.perf_counter(); procs.append(pr)
    try:
        while len(ready) < len(procs):
            msg, anc, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(12))
            now = time.perf_counter()
            pid = next((int.from_bytes(d[:4], "little") for l, t, d in anc if t == socket.SCM_CREDENTIALS), None)
            if b"READY=1" in msg and pid in launch:
                ready.setdefault(pid, now)
    finally:
        # Close first: a worker's STOPPING=1 to a socket nobody reads (its queue holds
        # ~10 datagrams) would block the worker in sendto forever.
        sock.close()
        os.unlink(path)
        for pr in procs:
            pr.terminate()
        for pr in procs:
            try:
                pr.wait(5)
            except subprocess.TimeoutExpired:
                bug("baseline: herd-testworker still running 5 s after SIGTERM (killed)")
                pr.kill(); pr.wait()
    b = max(max(launch[p] + DELAY_MS / 1e3, ready[p]) for p in launch) - t0
    bn = max(ready.values()) - t0
    return b * 1e3, bn * 1e3

log("# 2. herd start")
# The notify check: `ready = "notify"` with several apps in one daemon.
home = new_home()
herd(home, "ping", check=True)
r, dt = herd(home, "start", toml("tw", ready="notify", extra='listen_timeout = "1s"\n'), timeout=60)
n_ready = sum(w["state"] == "online" for a in json.loads(herd(home, "ls", "--json")[0].stdout or "[]")
              for w in (a.get("status") or {}).get("workers", []))
ign = open(os.path.join(home, "daemon.log")).read().count("which is not a worker")
NOTIFY_CHECK = f"exit {r.returncode}, {n_ready}/{NAPPS * NINST} online, {dt:.0f} ms, {ign} READY=1 ignored ('not a worker')"
log(f"  notify check: {NOTIFY_CHECK}")
if r.returncode != 0 or n_ready != NAPPS * NINST:
    bug(f"ready = \"notify\" with {NAPPS} apps in one daemon: {NOTIFY_CHECK}; herd said: {r.stderr.strip()[:300]}")
kill_herd(home, "notify check")

T, COLD, B, BN, TB = [], [], [], [], []
for rnd in range(1, ROUNDS + 1):
    b, bn = baseline(); B.append(b); BN.append(bn)
    home = new_home()
    path = toml("tw")
    c = start_timed(home, path, "start cold (first, starts the daemon)")
    if c is not None:
        COLD.append(c)
    herd(home, "delete", "all", check=True)
    t = start_timed(home, path, "start warm (daemon running)")
    if t is not None:
        T.append(t); TB.append(t - b)
    f = lambda x: "FAILED" if x is None else f"{x:.1f} ms"
    log(f"  round {rnd}: baseline B={b:.1f} ms (B_notify {bn:.1f}), herd start cold {f(c)}, warm T={f(t)}"
        + ("" if t is None else f", T-B={t - b:.1f} ms"))
    kill_herd(home, f"start round {rnd}")

# ---------------------------------------------------------------- 3. ls
log("# 3. herd ls")
def time_cmd(home, runs):
    env = dict(os.environ, HERD_HOME=home)
    if shutil.which("hyperfine"):
        out = os.path.join(WORK, f"hf-{time.time_ns()}.json")
        subprocess.run(["hyperfine", "-N", "--warmup", "20", "--runs", str(runs), "--export-json", out,
                        f"{HERD} ls"], env=env, capture_output=True, check=True)
        return [x * 1e3 for x in json.load(open(out))["results"][0]["times"]], "hyperfine -N"
    v = []
    for _ in range(runs + 20):
        t0 = time.perf_counter()
        subprocess.run([HERD, "ls"], env=env, stdout=subprocess.DEVNULL)
        v.append((time.perf_counter() - t0) * 1e3)
    return v[20:], "python loop"

def p90(v):
    return statistics.quantiles(v, n=10)[-1]

home = new_home()
start_up(home, toml("tw"), "ls setup")
LS, LS_TOOL = time_cmd(home, LS_RUNS)
dpid = daemon_pid(home)
LS_RSS = status(dpid)
kill_herd(home, "ls")
LS0, _ = time_cmd(new_home(), LS_RUNS)
log(f"  herd ls with 10 apps: median {statistics.median(LS):.2f} ms, p90 {p90(LS):.2f} ms; no daemon: median {statistics.median(LS0):.2f} ms")

# ---------------------------------------------------------------- results
med = statistics.median
def rng(v):
    return f"{min(v):.1f}-{max(v):.1f}"
print(f"\n{'measurement':<44} {'median':>9} {'range':>13} {'n':>4} {'target':>9}  verdict")
def row(name, v, unit, target=None, scale=1.0, fmt="{:.1f}"):
    if not v:
        print(f"{name:<44} {'n/a':>9} {'':>13} {0:>4}  (every try failed)"); return
    v = [x * scale for x in v]
    m = med(v)
    verdict = "" if target is None else ("ok" if m <= target else "MISS")
    tgt = "" if target is None else f"<= {target:g}"
    print(f"{name:<44} {fmt.format(m) + ' ' + unit:>9} {rng(v):>13} {len(v):>4} {tgt:>9}  {verdict}")
print("1. daemon VmRSS (daemon process only)")
for k, label in (("herd 0", "herd daemon, 0 apps"), ("herd tw", "herd daemon, 10x2 herd-testworker"),
                 ("herd node", "herd daemon, 10x2 node http"), ("pm2 node", "PM2 daemon (God), 10x2 node cluster")):
    if k in rss:
        row(f"  {label}", [s["VmRSS"] for s in rss[k]], "MB", 12 if k == "herd tw" else None, 1 / 1024, "{:.2f}")
        row(f"    of which anon (RssAnon)", [s["RssAnon"] for s in rss[k]], "MB", None, 1 / 1024, "{:.2f}")
        row(f"    threads", [s["Threads"] for s in rss[k]], "", None, 1, "{:.0f}")
    elif k == "pm2 node":
        print(f"  PM2: skipped ({PM2_SKIP})")
if "herd node" in rss and "pm2 node" in rss:
    print(f"  ratio herd/PM2 daemon RSS (node apps): {med([s['VmRSS'] for s in rss['herd node']]) / med([s['VmRSS'] for s in rss['pm2 node']]):.3f}")
print(f"2. herd start, 10 apps x 2 herd-testworker, ready = delay:{DELAY_MS}ms ({ROUNDS} rounds)")
row("  baseline B (20 direct, max(launch+D, READY))", B, "ms")
row("  B_notify (20 direct, to their own READY=1)", BN, "ms")
row("  herd start, daemon running: T", T, "ms")
row("  herd start overhead T - B (per round)", TB, "ms", 100)
row("  herd start, first (starts the daemon)", COLD, "ms")
if T and COLD:
    print(f"  cold - warm (medians): {med(COLD) - med(T):.1f} ms;  ratio T/B: {med(T) / med(B):.2f}")
print(f"  notify check (ready = \"notify\", listen_timeout 1s): {NOTIFY_CHECK}")
print(f"3. herd ls round trip ({LS_TOOL}, {LS_RUNS} runs each)")
row("  herd ls, 10 apps up", LS, "ms", 10, 1, "{:.2f}")
print(f"  {'  p90':<42} {p90(LS):>6.2f} ms")
row("  herd ls, no daemon (process start cost)", LS0, "ms", None, 1, "{:.2f}")
print(f"  {'  p90':<42} {p90(LS0):>6.2f} ms")
print(f"  ls - no-daemon ls (medians): {med(LS) - med(LS0):.2f} ms")
print("herd start tries that failed (see BUG lines):")
for k, (bad, n) in START_FAILS.items():
    print(f"  {k:<42} {bad}/{n}")
for n in NOTES:
    print(f"note: {n}")
if BUGS:
    print(f"\nBUG: {len(BUGS)} check(s) failed:")
    for b in BUGS:
        print(f"  BUG: {b}")
    sys.exit(1)
print("\nchecks: 0 BUG (every herd start succeeded, nothing left after herd kill)")
EOF
