#!/usr/bin/env bash
# watch.sh — what `--watch` costs, on an app folder of 100 000 files under node_modules
# (FILES, default 100000: 2000 packages of lib/ and test/ folders, 50 files each) and 200
# files of its own (src/, 20 folders), built once in a temp dir.
#
# 1. herd  `herd run -i 2 --ready notify --listen 127.0.0.1:0 [--watch] -- herd-testworker
#          --notify` in that folder, ROUNDS rounds (default 5), with and without --watch
#          in turn:
#            start   launch → both workers ready (their `worker.ready` events read from
#                    herd's stderr as they come)           extra with watch: target <= 50 ms
#            RSS     VmRSS of the herd process (not the guardian, not the workers) after
#                    the workers are ready and 0.5 s idle  extra with watch: target <= 2 MB
#          and `herd.watching`'s own numbers (directories watched, walk time).
#          Context, same rounds: the same 100 000 files under `vendor/` (not ignored), to
#          show what ignoring saves (every folder walked and watched).
#          Then once: a file written → `app.changed` (watch_delay 100 ms) → `reload.done`.
# 2. PM2   (if `npm install pm2` works in a temp dir; PM2_HOME there, `pm2 kill` at the
#          end; skipped with a note otherwise, or with PM2=0): the same folder, a trivial
#          Node http server, `pm2 start` of an ecosystem file, cluster mode, 2 instances,
#          with and without `watch: true, ignore_watch: ["node_modules"]`: launch → both
#          online and the port answering, and the RSS of PM2's daemon (God, where its
#          chokidar watcher runs) 3 s later. PM2_ROUNDS rounds (default 3).
#
# Run:    scripts/bench/watch.sh   (ROUNDS=5 PM2_ROUNDS=3 FILES=100000 PM2=1, ~2 min)
# Output: progress lines (stderr), then the results (medians, and ratios to the baseline
#         of the same rounds).

source "$(dirname "$0")/lib.sh"
bench_build

ROUNDS=${ROUNDS:-5} PM2_ROUNDS=${PM2_ROUNDS:-3} FILES=${FILES:-100000} PM2=${PM2:-1} \
python3 - "$HERD" "$TW" "$WORK" <<'EOF'
import json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time

HERD, TW, WORK = sys.argv[1:4]
ROUNDS, PM2_ROUNDS, FILES = int(os.environ["ROUNDS"]), int(os.environ["PM2_ROUNDS"]), int(os.environ["FILES"])
NOTES = []

def log(*a):
    print(*a, file=sys.stderr, flush=True)

def med(v):
    return statistics.median(v) if v else float("nan")

def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0

def make_app(root, big):
    """src/ with 200 files in 20 folders, and FILES files under `big` (node_modules or vendor)."""
    for d in range(20):
        os.makedirs(f"{root}/src/m{d:02d}", exist_ok=True)
        for f in range(10):
            open(f"{root}/src/m{d:02d}/f{f}.js", "w").write("module.exports = 1;\n")
    open(f"{root}/src/server.js", "w").write(
        "require('http').createServer((q, s) => s.end('ok ' + process.pid + '\\n')).listen(process.env.PORT);\n")
    per = 50
    for p in range(FILES // per):
        for sub in ("lib", "test"):
            os.makedirs(f"{root}/{big}/pkg{p:04d}/{sub}", exist_ok=True)
        for f in range(per):
            sub = "lib" if f % 2 == 0 else "test"
            open(f"{root}/{big}/pkg{p:04d}/{sub}/f{f}.js", "w").write("x\n")

t0 = time.perf_counter()
APP, VENDOR = os.path.join(WORK, "app"), os.path.join(WORK, "vendored")
make_app(APP, "node_modules")
make_app(VENDOR, "vendor")
log(f"# two trees of {FILES} + 200 files built in {time.perf_counter() - t0:.1f} s")

def run_herd(cwd, watch, extra=()):
    """herd run in cwd; returns (proc, events list, lock, ready_at) once both workers are ready."""
    args = [HERD, "run", "-i", "2", "--ready", "notify", "--listen", "127.0.0.1:0"]
    if watch:
        args += ["--watch", *extra]
    args += ["--", TW, "--notify"]
    env = dict(os.environ, HERD_LOG_FORMAT="json")
    t0 = time.perf_counter()
    p = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    events, cv = [], threading.Condition()
    def read():
        for line in p.stderr:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if "event" in e:
                with cv:
                    events.append((time.perf_counter(), e)); cv.notify_all()
    threading.Thread(target=read, daemon=True).start()
    def wait(pred, n=1, timeout=30):
        end = time.time() + timeout
        with cv:
            while True:
                hits = [x for x in events if pred(x[1])]
                if len(hits) >= n:
                    return hits[n - 1][0]
                if time.time() > end or p.poll() is not None:
                    raise RuntimeError(f"herd: no {n} events as wanted; {[e['event'] for _, e in events]}")
                cv.wait(0.1)
    ready = wait(lambda e: e["event"] == "worker.ready", 2)
    return p, events, wait, (ready - t0) * 1e3

def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(20)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()

res = {}
log(f"# 1. herd, {ROUNDS} rounds")
for rnd in range(ROUNDS):
    for what, cwd, watch in (("plain", APP, False), ("watch", APP, True), ("watch, not ignored", VENDOR, True)):
        p, events, _, start_ms = run_herd(cwd, watch)
        time.sleep(0.5)
        kb = rss_kb(p.pid)
        w = [e for _, e in events if e["event"] == "herd.watching"]
        res.setdefault(what, []).append(dict(start=start_ms, rss=kb, dirs=w[0]["dirs"] if w else 0,
                                              took=w[0]["took_ms"] if w else 0))
        log(f"  {what:>18}: ready {start_ms:6.1f} ms, VmRSS {kb} kB" + (f", {w[0]['dirs']} dirs watched in {w[0]['took_ms']} ms" if w else ""))
        stop(p)

log("# change → reload")
p, events, wait, _ = run_herd(APP, True, ["--watch-delay", "100ms"])
t_write = time.perf_counter()
open(os.path.join(APP, "src/m00/f0.js"), "w").write("module.exports = 2;\n")
t_changed = wait(lambda e: e["event"] == "app.changed")
t_done = wait(lambda e: e["event"] == "reload.done")
change = dict(changed=(t_changed - t_write) * 1e3, done=(t_done - t_write) * 1e3)
stop(p)

# 2. PM2
PM2_BIN, PM2_SKIP, pm2 = None, None, {}
def pm2_setup():
    global PM2_BIN, PM2_SKIP
    if os.environ.get("PM2", "1") == "0":
        PM2_SKIP = "PM2=0"; return
    if not shutil.which("node") or not shutil.which("npm"):
        PM2_SKIP = "node/npm not installed"; return
    d = os.path.join(WORK, "pm2pkg")
    os.makedirs(d)
    r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent", "pm2"], cwd=d,
                       capture_output=True, text=True, timeout=300)
    b = os.path.join(d, "node_modules", ".bin", "pm2")
    if r.returncode != 0 or not os.path.exists(b):
        PM2_SKIP = f"npm install pm2 failed: {r.stderr.strip()[:200]}"; return
    PM2_BIN = b

def pm2_round(watch):
    global PM2_SKIP
    home = tempfile.mkdtemp(prefix="pm2home.", dir=WORK)
    env = dict(os.environ, PM2_HOME=home)
    port = socket.socket(); port.bind(("127.0.0.1", 0)); p = port.getsockname()[1]; port.close()
    app = dict(name="app", script="src/server.js", cwd=APP, exec_mode="cluster", instances=2, env=dict(PORT=str(p)))
    if watch:
        app.update(watch=True, ignore_watch=["node_modules"])
    eco = os.path.join(WORK, f"eco-{time.time_ns()}.config.js")
    open(eco, "w").write("module.exports = " + json.dumps({"apps": [app]}) + ";\n")
    # The daemon first, so that its own start is not counted.
    subprocess.run([PM2_BIN, "ping"], env=env, capture_output=True, timeout=60)
    try:
        t0 = time.perf_counter()
        r = subprocess.run([PM2_BIN, "start", eco], env=env, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"pm2 start: {r.stderr.strip()[:300]}")
        end = time.time() + 30
        while True:
            j = json.loads(subprocess.run([PM2_BIN, "jlist"], env=env, capture_output=True, text=True).stdout or "[]")
            online = sum(x["pm2_env"]["status"] == "online" for x in j)
            try:
                socket.create_connection(("127.0.0.1", p), 0.2).close(); answers = True
            except OSError:
                answers = False
            if online == 2 and answers:
                break
            if time.time() > end:
                raise RuntimeError(f"pm2: {online}/2 online after 30 s")
            time.sleep(0.02)
        start_ms = (time.perf_counter() - t0) * 1e3
        time.sleep(3)
        pid = int(open(os.path.join(home, "pm2.pid")).read())
        kb = rss_kb(pid)
        pm2.setdefault("watch" if watch else "plain", []).append(dict(start=start_ms, rss=kb))
        log(f"  pm2 {'watch' if watch else 'plain':>5}: online and answering {start_ms:6.1f} ms, God VmRSS {kb} kB")
    except Exception as e:
        PM2_SKIP = f"pm2 did not run: {e}"; log(f"  {PM2_SKIP}")
    subprocess.run([PM2_BIN, "kill"], env=env, capture_output=True, timeout=60)

log("# 2. PM2")
pm2_setup()
if not PM2_SKIP:
    for rnd in range(PM2_ROUNDS):
        for watch in (False, True):
            if not PM2_SKIP:
                pm2_round(watch)

print()
print(f"watch.sh — an app folder with {FILES} files under node_modules and 200 of its own, medians of {ROUNDS} rounds")
print(f"{'':<30}{'ready (ms)':>12}{'VmRSS (kB)':>12}{'dirs':>8}{'walk (ms)':>11}")
for what, label in (("plain", "herd run"), ("watch", "herd run --watch"),
                    ("watch, not ignored", "  same files in vendor/")):
    r = res[what]
    print(f"{label:<30}{med([x['start'] for x in r]):>12.1f}{med([x['rss'] for x in r]):>12.0f}"
          f"{med([x['dirs'] for x in r]):>8.0f}{med([x['took'] for x in r]):>11.1f}")
plain, watch, vendor = res["plain"], res["watch"], res["watch, not ignored"]
d_start = med([x["start"] for x in watch]) - med([x["start"] for x in plain])
d_rss = med([x["rss"] for x in watch]) - med([x["rss"] for x in plain])
print(f"herd --watch extra: start-up {d_start:+.1f} ms (target <= 50), RSS {d_rss:+.0f} kB "
      f"(target <= 2048); ratios {med([x['start'] for x in watch]) / med([x['start'] for x in plain]):.3f} and "
      f"{med([x['rss'] for x in watch]) / med([x['rss'] for x in plain]):.3f}")
print(f"  not ignored (every folder watched): start-up "
      f"{med([x['start'] for x in vendor]) - med([x['start'] for x in plain]):+.1f} ms, "
      f"RSS {med([x['rss'] for x in vendor]) - med([x['rss'] for x in plain]):+.0f} kB")
print(f"a change → app.changed {change['changed']:.0f} ms (watch_delay 100 ms), → reload.done {change['done']:.0f} ms")
if PM2_SKIP or not pm2.get("watch") or not pm2.get("plain"):
    print(f"PM2: skipped ({PM2_SKIP or 'no complete round'})")
else:
    pp, pw = pm2["plain"], pm2["watch"]
    pd_start = med([x["start"] for x in pw]) - med([x["start"] for x in pp])
    pd_rss = med([x["rss"] for x in pw]) - med([x["rss"] for x in pp])
    print(f"PM2 (medians of {PM2_ROUNDS}): online {med([x['start'] for x in pp]):.0f} ms, "
          f"God VmRSS {med([x['rss'] for x in pp]):.0f} kB; with watch {med([x['start'] for x in pw]):.0f} ms, "
          f"{med([x['rss'] for x in pw]):.0f} kB")
    print(f"PM2 watch extra: start-up {pd_start:+.1f} ms, RSS {pd_rss:+.0f} kB; "
          f"herd's extra RSS / PM2's: {d_rss / pd_rss if pd_rss else float('nan'):.3f}")
for n in NOTES:
    print("note:", n)
EOF
