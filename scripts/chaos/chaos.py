#!/usr/bin/env python3
"""chaos.py — herd under chaos, each scenario under continuous load at a fixed rate from
`herd bench` (issue #16).

Scenarios (`--only NAME,…`), each in every balancing mode where it applies (`--modes`):
  kill      SIGKILL of a random worker every 200 ms (4 workers; --min-uptime 50ms, so
            that a killed worker is restarted at once rather than counted as flapping)
  sigstop   SIGSTOP of one of 2 workers a quarter into the run (it hangs): with health
            checks (`--health-check http:/healthz`, every 500 ms, 3 failures) it must be
            replaced; without them (`sigstop-nohealth`) the cost is reported, not judged,
            and the worker gets SIGCONT at the end
  reload    the daemon: `herd reload web` every 2 s, `herd scale web 3` / `2` in between,
            and 4 more CLI clients running `ls`, `ls --json`, `describe`, `ping`,
            `metrics` in a loop against the same daemon
  daemon    the daemon SIGKILLed and started again with `herd resurrect`, repeatedly
  diskfull  HERD_HOME/logs on a 1 MiB tmpfs, filled: the workers keep serving, `herd ls`
            answers, herd warns, counts the lost lines, and the files work again once
            space is freed
  fdlimit   herd's fd limit set to 300 (`prlimit --pid`) while N clients connect at once
            (each sends one request with `Connection: close`): every client is answered
            (they wait in the backlog, or for a relay's descriptor), herd keeps supervising
            and recovers
  idle      N idle keep-alive connections plus slowloris clients (a header byte every 2 s)
            in a handoff and the proxy mode: herd's memory per connection bounded, the
            bench's clients served
  spew      one of 2 workers writes ~100 MB/s to stdout (a Python child of the worker
            process): herd's CPU and memory bounded, the load (served by both) unhurt

Modes: reuseport, shared (herd-testworker on the inherited sockets), round-robin,
least-conn, sticky (handoff of accepted connections to Node `cluster` workers,
examples/node/basic.mjs), rr-proxy, lc-proxy, sticky-proxy (`--proxy`, herd-testworker).

Each case: a rest run of the same load (p99 at rest), then herd's RSS and fd count
(the baseline), then the storm under load, then: herd ready again, its fd count and RSS
back to the baseline (+8 fds; RSS +25 % or +4 MiB, whichever is more; polled up to 10 s),
no zombie under herd, no process of the case outside herd's tree while it runs, herd
stops on SIGTERM, and no process of the case is left after (each process started carries
HERD_CHAOS_RUN=<run>:<case> in its environment, which herd passes on to its workers and
they to theirs: /proc/*/environ finds a leftover whoever its parent is).

Failed requests and the unavoidable ones. `failed` is what herd bench counted (errors
by kind, and non-2xx answers). `unavoidable` is an upper bound of what the chaos itself
must cost, counted as it happens, never fitted afterwards:
  kill     the established TCP connections the victim held when it was killed (read from
           /proc/<victim>/fd and /proc/net/tcp just before the SIGKILL): each may lose the
           request in flight on it, or the one sent before the client sees the close.
           Under reuseport, connections still in the slot's accept queue are not the
           victim's: herd keeps that socket, the replacement accepts them.
  sigstop  the connections the stopped worker held when it stopped (each loses its
           request: a timeout, `--timeout 2s`).
  daemon   what fails while nothing listens, over the measured gap from the SIGKILL to
           the first answer after `herd resurrect` (polled every 50 ms: an upper bound),
           plus the connections the old workers held: the daemon's death takes the
           sockets with it. At a fixed rate herd bench counts each request that came due
           while it could not connect, once: the rate × the gap, plus one per connection
           at the gap's edge.
  others   0: a rolling reload, a scale, a full disk, idle or slow clients, herd out of
           descriptors and a noisy worker must cost no request.
`beyond` = failed − unavoidable must be 0.

Run:   scripts/chaos/chaos.py                      (60 s per case, the issue's figure; ~40 min)
       scripts/chaos/chaos.py --seconds 20          (shorter storms)
       scripts/chaos/chaos.py --quick               (CI: every scenario, reduced, < 4 min)
       scripts/chaos/chaos.py --only kill --modes reuseport,rr-proxy --json target/chaos.json
Needs: python3 (stdlib), root (mount, prlimit), node (the handoff modes), herd and
herd-testworker: HERD=path (default $CARGO_TARGET_DIR/release/herd; --quick defaults to
target/debug, which `cargo test` builds), herd-testworker beside it. Builds nothing.
Exit status: 0 every check held, 1 a check failed, 2 usage.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import (Bench, Clients, CpuMeter, Daemon, HerdRun, Slowloris, alive,  # noqa: E402
                 cmdline, fd_count, log, marked, rss_kib, stat, tcp_connections,
                 wait_for, zombies_under)

MODES = {
    "reuseport": (["--balance", "reuseport"], "tw"),
    "shared": (["--balance", "shared"], "tw"),
    "round-robin": (["--balance", "round-robin"], "node"),
    "least-conn": (["--balance", "least-conn"], "node"),
    "sticky": (["--balance", "sticky"], "node"),
    "rr-proxy": (["--balance", "round-robin", "--proxy"], "tw"),
    "lc-proxy": (["--balance", "least-conn", "--proxy"], "tw"),
    "sticky-proxy": (["--balance", "sticky", "--proxy"], "tw"),
}
ALL = list(MODES)
# scenario -> (modes of the full run, modes of --quick)
PLAN = {
    "kill": (ALL, ["reuseport", "rr-proxy"]),
    "sigstop": (["reuseport", "rr-proxy", "round-robin"], ["reuseport"]),
    "sigstop-nohealth": (["reuseport", "rr-proxy"], []),
    "reload": (["reuseport", "rr-proxy"], ["reuseport"]),
    "daemon": (["reuseport"], ["reuseport"]),
    "diskfull": (["reuseport"], ["reuseport"]),
    "fdlimit": (["reuseport", "rr-proxy"], ["rr-proxy"]),
    "idle": (["round-robin", "rr-proxy"], ["round-robin", "rr-proxy"]),
    "spew": (["reuseport"], ["reuseport"]),
}
FD_SLACK = 8


def worker_cmd(kind):
    return [lib.TW, "--notify"] if kind == "tw" else ["node", lib.NODE_APP]


class Result:
    def __init__(self, scenario, mode):
        self.scenario, self.mode = scenario, mode
        self.tag = f"{scenario}:{mode}:{time.monotonic_ns()}"
        self.load = None
        self.p99_rest = None
        self.unavoidable = 0
        self.judged = True
        self.base = (None, None)  # (rss KiB, fds)
        self.after = (None, None)
        self.checks = []
        self.notes = []
        self.secs = 0.0
        self.bench_cpu = None

    def check(self, name, ok, detail=""):
        self.checks.append((name, bool(ok), detail))
        if not ok:
            log(f"  FAIL {self.scenario}/{self.mode}: {name}: {detail}")

    def note(self, text):
        self.notes.append(text)

    def beyond(self):
        if self.load is None or not self.judged:
            return None
        return max(0, self.load["failed"] - int(self.unavoidable))

    def ok(self):
        return all(c[1] for c in self.checks) and not self.beyond()

    def json(self):
        return {"scenario": self.scenario, "mode": self.mode, "load": self.load,
                "p99_rest_ms": self.p99_rest, "unavoidable": int(self.unavoidable),
                "beyond": self.beyond(), "judged": self.judged,
                "rss_kib": [self.base[0], self.after[0]], "fds": [self.base[1], self.after[1]],
                "checks": [{"name": n, "ok": o, "detail": d} for n, o, d in self.checks],
                "notes": self.notes, "ok": self.ok(), "seconds": round(self.secs, 1)}


class Ctx:
    def __init__(self, a):
        self.quick = a.quick
        self.seconds = a.seconds if a.seconds else (5 if a.quick else 60)
        self.rest = 1.5 if a.quick else 5
        self.rate = a.rate or (150 if a.quick else 400)
        self.conns = 8 if a.quick else 16
        self.idle = a.idle or (2000 if a.quick else 10000)
        self.slowloris = 50 if a.quick else 200
        self.fd_clients = 1000 if a.quick else 2000
        self.spew_mb = 20 if a.quick else 100


# ---------------------------------------------------------------- the common parts

def rest_and_baseline(ctx, res, pid, port):
    rest = Bench(port, ctx.rate, ctx.conns, ctx.rest, cpu=res.bench_cpu).result()
    res.p99_rest = rest["p99_ms"]
    res.check("load at rest served", rest["failed"] == 0, f"{rest['errors']}")
    res.base = (rss_kib(pid), fd_count(pid))


def under_load(ctx, res, port, chaos, timeout="2s", secs=None):
    """The storm: herd bench for ctx.seconds while `chaos(stop)` runs on a thread."""
    stop = threading.Event()
    errors = []

    def guarded():
        try:
            chaos(stop)
        except Exception as e:  # reported as a failed check, not lost on the thread
            errors.append(f"{e.__class__.__name__}: {e}")
            traceback.print_exc()

    b = Bench(port, ctx.rate, ctx.conns, secs or ctx.seconds, timeout=timeout,
              cpu=res.bench_cpu)
    t = threading.Thread(target=guarded)
    t.start()
    try:
        res.load = b.result()
    finally:
        stop.set()
        t.join()
    res.check("the chaos ran", not errors, "; ".join(errors))


def settle(res, pid, ready):
    """Ready again, then fds and RSS back to the baseline (polled up to 10 s)."""
    res.check("ready again", wait_for(ready, 30, 0.2), "not ready within 30 s")
    rss0, fd0 = res.base
    rss_max = max(rss0 * 1.25, rss0 + 4096)

    def back():
        r, f = rss_kib(pid), fd_count(pid)
        return r is not None and f is not None and r <= rss_max and f <= fd0 + FD_SLACK

    wait_for(back, 10, 0.2)
    res.after = (rss_kib(pid), fd_count(pid))
    rss1, fd1 = res.after
    res.check("fds back to the baseline", fd1 is not None and fd1 <= fd0 + FD_SLACK,
              f"{fd0} -> {fd1}")
    res.check("RSS back to the baseline", rss1 is not None and rss1 <= rss_max,
              f"{rss0} -> {rss1} KiB")


def descendants(pid):
    table = {}
    for p in lib.pids():
        s = stat(p)
        if s:
            table[p] = s["ppid"]
    out = set()
    for p in table:
        q = p
        while q in table and q > 1:
            if q == pid:
                out.add(p)
                break
            q = table[q]
    return out


def no_zombies_no_strays(res, pid, also=()):
    z = wait_for(lambda: not zombies_under(pid), 3)
    res.check("no zombie", z, f"zombies under herd: {zombies_under(pid)}")
    tree = descendants(pid) | {pid} | set(also)
    strays = [p for p in marked(res.tag) if p not in tree and alive(p)]
    res.check("no process outside herd's tree", not strays,
              "; ".join(f"{p} {cmdline(p)}" for p in strays))


def no_leftovers(res):
    left = wait_for(lambda: not [p for p in marked(res.tag) if alive(p)], 5, 0.1)
    if not left:
        found = [p for p in marked(res.tag) if alive(p)]
        res.check("nothing left over", False, "; ".join(f"{p} {cmdline(p)}" for p in found))
        for p in found:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
    else:
        res.check("nothing left over", True)


def herd_run_case(ctx, res, instances, args, worker, chaos, extra_env=None, prefix=(),
                  out=None, timeout="2s", after=None):
    """The whole of a `herd run` case: start, rest, storm, settle, stop, leftovers."""
    h = HerdRun(res.tag, "chaos", args, worker, instances, env=extra_env, prefix=prefix,
                out=out)
    try:
        h.ready()
        rest_and_baseline(ctx, res, h.pid, h.port)
        under_load(ctx, res, h.port, lambda stop: chaos(h, stop), timeout)
        if after:
            after(h)
        settle(res, h.pid, lambda: lib.http_get(h.admin, "/readyz", 1) == 200)
        no_zombies_no_strays(res, h.pid)
        took = h.stop()
        res.check("herd stops on SIGTERM", took is not None, "killed after 20 s")
        if "panicked" in h.text():
            res.check("no panic", False, h.tail())
    finally:
        if h.p.poll() is None:
            lib.kill_session(h.p)
    no_leftovers(res)


# ---------------------------------------------------------------- scenarios

def sc_kill(ctx, res):
    args, kind = MODES[res.mode]
    args = args + ["--min-uptime", "50ms", "--max-restarts", "1000000"]
    kills = [0]

    def chaos(h, stop):
        r = lib.rand()
        while not stop.wait(0.2):
            ws = h.workers()
            if not ws:
                continue
            v = r.choice(ws)
            n = tcp_connections(v)
            try:
                os.kill(v, signal.SIGKILL)
            except ProcessLookupError:
                continue
            kills[0] += 1
            res.unavoidable += n

    herd_run_case(ctx, res, 4, args, worker_cmd(kind), chaos)
    res.note(f"{kills[0]} workers SIGKILLed")


def sc_sigstop(ctx, res, health=True):
    args, kind = MODES[res.mode]
    args = args + ["--kill-timeout", "2s"]
    if health:
        args += ["--health-check", "http:/healthz", "--health-interval", "500ms",
                 "--health-timeout", "300ms", "--health-failures", "3"]
    else:
        res.judged = False
    victim = [None]

    def chaos(h, stop):
        if stop.wait(ctx.seconds / 4):
            return
        v = sorted(h.workers())[0]
        res.unavoidable += tcp_connections(v)
        os.kill(v, signal.SIGSTOP)
        victim[0] = v
        t0 = time.monotonic()
        if health:
            wait_for(lambda: stop.is_set() or not alive(v), ctx.seconds, 0.05)
            if alive(v):
                res.check("the hung worker is replaced", False, "still there at the end")
            else:
                res.note(f"hung worker gone {time.monotonic() - t0:.1f} s after SIGSTOP "
                         f"(3 failed checks, then --kill-timeout 2s)")
        else:
            stop.wait()

    def after(h):
        v = victim[0]
        if v and alive(v):
            os.kill(v, signal.SIGCONT)

    herd_run_case(ctx, res, 2, args, worker_cmd(kind), chaos, after=after)
    if health:
        res.check("the hung worker is replaced", victim[0] and not alive(victim[0]))


def daemon_toml(port, mode, command, instances=2, extra=""):
    args, _ = MODES[mode]
    balance = args[args.index("--balance") + 1]
    proxy = "proxy = true\n" if "--proxy" in args else ""
    return (f'[apps.web]\ncommand = {lib.toml_list(command)}\ninstances = {instances}\n'
            f'listen = ["127.0.0.1:{port}"]\nbalance = "{balance}"\n{proxy}'
            f'min_uptime = "100ms"\n{extra}')


def daemon_ready(d, n):
    rc, out, _ = d.cli("ls", "--json", timeout=10)
    if rc != 0:
        return False
    try:
        rows = json.loads(out)
    except ValueError:
        return False
    for app in rows if isinstance(rows, list) else []:
        if app.get("name") == "web":
            ws = (app.get("status") or {}).get("workers", [])
            return len(ws) == n and all(w.get("state") == "online" for w in ws)
    return False


def daemon_case(ctx, res, chaos, command=None, instances=2, extra="", before=None,
                final_instances=None, secs=None):
    d = Daemon(res.tag)
    port = lib.free_port()
    try:
        if before:
            err = before(d)
            if err:
                res.check("set-up", False, err)
                return
        path = d.write_toml(daemon_toml(port, res.mode, command or worker_cmd("tw"),
                                        instances, extra))
        rc, out, _ = d.cli("start", path, timeout=60)
        if rc != 0:
            res.check("herd start", False, out.strip()[-400:])
            return
        rc, out, _ = d.cli("save", timeout=30)
        res.check("herd save", rc == 0, out.strip()[-300:])
        pid = d.pid()
        res.check("daemon found", pid is not None, "no process runs `herd daemon`")
        if pid is None:
            return
        rest_and_baseline(ctx, res, pid, port)
        under_load(ctx, res, port, lambda stop: chaos(d, port, stop), secs=secs)
        pid = d.pid() or pid
        n = final_instances or instances
        settle(res, pid, lambda: daemon_ready(d, n))
        no_zombies_no_strays(res, pid)
        rc, out, _ = d.cli("kill", timeout=30)
        res.check("herd kill", rc == 0, out.strip()[-300:])
        gone = wait_for(lambda: not alive(pid), 10)
        res.check("the daemon exits", gone, "still running 10 s after herd kill")
        if "panicked" in d.log_text():
            res.check("no panic", False, d.log_text()[-600:])
    finally:
        if d.pid():
            d.kill()
        if after_daemon_hooks.get(res.tag):
            after_daemon_hooks.pop(res.tag)()
    no_leftovers(res)


after_daemon_hooks = {}


def sc_reload(ctx, res):
    counts = {}
    slowest = [0.0, ""]
    lock = threading.Lock()

    def record(what, rc, secs):
        with lock:
            key = f"{what}:{rc}"
            counts[key] = counts.get(key, 0) + 1
            if secs > slowest[0]:
                slowest[0], slowest[1] = secs, what

    def client(d, i, stop):
        verbs = [["ls"], ["ls", "--json"], ["describe", "web"], ["ping"], ["metrics"]]
        k = i
        while not stop.is_set():
            v = verbs[k % len(verbs)]
            k += 1
            rc, _, secs = d.cli(*v, timeout=15)
            record(" ".join(v), rc, secs)

    def chaos(d, port, stop):
        threads = [threading.Thread(target=client, args=(d, i, stop)) for i in range(4)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        k = 0
        try:
            while True:
                at = t0 + k * 1.0
                if stop.wait(max(0.0, at - time.monotonic())):
                    break
                if k % 2 == 0:
                    rc, out, secs = d.cli("reload", "web", timeout=60)
                    record("reload", rc, secs)
                    if rc != 0:
                        res.note(f"reload exit {rc}: {out.strip()[-200:]}")
                else:
                    n = "3" if k % 4 == 1 else "2"
                    rc, out, secs = d.cli("scale", "web", n, timeout=60)
                    record(f"scale {n}", rc, secs)
                    if rc != 0:
                        res.note(f"scale exit {rc}: {out.strip()[-200:]}")
                k += 1
        finally:
            for t in threads:
                t.join()
            rc, _, _ = d.cli("scale", "web", "2", timeout=60)
        failed = {k: v for k, v in counts.items() if not k.endswith(":0")}
        res.check("every CLI command succeeded", not failed, f"{failed}")
        res.check("no CLI command blocked (> 10 s)", slowest[0] < 10,
                  f"{slowest[1]} took {slowest[0]:.1f} s")
        res.note("CLI: " + ", ".join(f"{k.rsplit(':', 1)[0]} ×{v}" for k, v in sorted(counts.items()))
                 + f"; slowest {slowest[1]} {slowest[0]:.2f} s")

    daemon_case(ctx, res, chaos)


def sc_daemon(ctx, res):
    cycle = 2.0 if ctx.quick else 5.0
    gaps = []

    def chaos(d, port, stop):
        while not stop.wait(cycle):
            pid = d.pid()
            if pid is None:
                res.check("daemon running before the kill", False, "")
                return
            old = lib.workers_of(pid)
            est = lib.established_inodes()
            held = sum(tcp_connections(w, est) for w in old)
            os.kill(pid, signal.SIGKILL)
            t0 = time.monotonic()
            died = wait_for(lambda: not any(alive(w) for w in old), 5)
            res.check("workers die with the daemon", died,
                      "; ".join(f"{w} {cmdline(w)}" for w in old if alive(w)))
            rc, out, secs = d.cli("resurrect", timeout=60)
            res.check("herd resurrect", rc == 0, out.strip()[-300:])
            up = wait_for(lambda: lib.http_get(port, "/", 0.5) == 200, 30)
            gap = time.monotonic() - t0
            res.check("serving again after resurrect", up, "no answer within 30 s")
            gaps.append(gap)
            # While nothing listens herd bench fails each request that comes due (at
            # -R, a failed connect costs the schedule, not each retry), and a connection
            # may lose one more at the edge of the gap.
            res.unavoidable += held + ctx.rate * gap + ctx.conns
            wait_for(lambda: daemon_ready(d, 2), 20, 0.2)

    daemon_case(ctx, res, chaos, extra="")
    if gaps:
        res.note(f"{len(gaps)} daemon SIGKILLs; gap kill -> serving again: "
                 f"median {sorted(gaps)[len(gaps) // 2] * 1000:.0f} ms, max {max(gaps) * 1000:.0f} ms")


TICKER = "import itertools,time\nfor i in itertools.count():\n print('tick',i,flush=True)\n time.sleep(0.005)\n"


def sc_diskfull(ctx, res):
    logs = {}

    def before(d):
        path = os.path.join(d.home, "logs")
        err = lib.mount_tmpfs(path, "1m")
        if err:
            return f"mount -t tmpfs refused ({err}): this scenario needs root"
        logs["dir"] = path
        after_daemon_hooks[res.tag] = lambda: lib.umount(path)
        return None

    # Full for half the storm, at least 5 s: the files' 8 KiB buffers take ~1 s of lines.
    spell_for = max(ctx.seconds / 2, 5.0)
    ticker = os.path.join(lib.WORK, "ticker.py")
    with open(ticker, "w") as f:
        f.write(TICKER)
    command = ["sh", "-c", f'python3 -u {ticker} & exec {lib.TW} --notify']

    def lines(path):
        try:
            with open(path, "rb") as f:
                return f.read().count(b"\n")
        except OSError:
            return 0

    def chaos(d, port, stop):
        out = os.path.join(logs["dir"], "web-0.out.log")
        if not wait_for(lambda: lines(out) > 0, 10):
            res.check("the worker's lines reach its log file", False, out)
            return
        fill = lib.fill_disk(logs["dir"])
        t_full = time.monotonic()
        warned = wait_for(lambda: "cannot" in d.log_text() and "log file" in d.log_text(), 10)
        res.check("herd warns that a log file cannot be written", warned,
                  d.log_text()[-300:])
        slow = 0.0
        while not stop.wait(0.5) and time.monotonic() - t_full < spell_for:
            rc, _, secs = d.cli("ls", timeout=15)
            slow = max(slow, secs)
            res.check("herd ls answers while the disk is full", rc == 0, f"exit {rc}") if rc else None
        res.check("nothing blocks: herd ls within 2 s", slow < 2.0, f"slowest {slow:.2f} s")
        n_before = lines(out)
        os.remove(fill)
        spell = time.monotonic() - t_full
        resumed = wait_for(lambda: lines(out) > n_before + 10, 10)
        res.check("lines resume once space returns", resumed, f"{n_before} -> {lines(out)}")
        again = wait_for(lambda: d.log_text().count("works again, after") >= 2, 10)
        res.check("herd says each log file works again", again, d.log_text()[-300:])
        counted = [int(m) for m in re.findall(r"(\d+) lines were lost", d.log_text())]
        res.check("herd counts the lines lost", sum(counted) > 0, f"{counted}")
        text = open(out, "rb").read().decode(errors="replace")
        noted = re.findall(r"\[herd\] (\d+) lines lost", text)
        res.check("the file notes the gap", bool(noted), text[-300:])
        ticks = sorted({int(m) for m in re.findall(r" tick (\d+)$", text, re.M)})
        missing = ticks[-1] - ticks[0] + 1 - len(ticks) if ticks else -1
        res.check("the gap noted is the lines missing", missing == sum(map(int, noted)),
                  f"ticks missing from web-0.out.log: {missing}, noted: {noted}")
        res.note(f"disk full for {spell:.1f} s (2 workers × ~200 lines/s): herd counted "
                 f"{'+'.join(map(str, counted))} lines lost; web-0.out.log notes "
                 f"{'+'.join(noted)}")
        stop.wait()

    daemon_case(ctx, res, chaos, command=command, before=before, secs=spell_for + 4)


def sc_fdlimit(ctx, res):
    args, _ = MODES[res.mode]
    summary = {}

    def chaos(h, stop):
        # The limit is set on the running herd (prlimit --pid): started under it, herd's
        # workers would inherit it too, and without CAP_SYS_RESOURCE (a container) they
        # cannot raise it back. The workers it starts from now on do get 300.
        r = subprocess.run(["prlimit", "--pid", str(h.pid), "--nofile=300:300"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            res.check("prlimit --pid herd --nofile=300:300", False, r.stderr.strip())
            return
        cpu = CpuMeter(h.pid)
        c = Clients(h.port, ctx.fd_clients, close=True, batch=ctx.fd_clients,
                    timeout=max(20, ctx.seconds * 2)).run()
        summary.update(ok=c.ok, failed=c.failed, cpu=cpu.cores(), fds=fd_count(h.pid))
        stop.wait()

    def after(h):
        # Not all of them can be served at once with 300 descriptors (with --proxy herd
        # needs two per client): they wait, and every one is answered.
        res.check("every client answered during the exhaustion",
                  summary.get("ok", 0) == ctx.fd_clients, f"{summary}")
        res.check("a new client is served", lib.http_get(h.port) == 200)
        old = h.workers()
        if old:
            os.kill(old[0], signal.SIGKILL)
            ok = wait_for(lambda: len([w for w in h.workers() if w not in old]) >= 1
                          and lib.http_get(h.admin, "/readyz", 1) == 200, 15)
            res.check("a killed worker is restarted", ok, "no replacement within 15 s")
        res.note(f"{ctx.fd_clients} clients at once: {summary.get('ok')} answered, "
                 f"{summary.get('failed')} failed; herd CPU {summary.get('cpu', 0):.2f} cores "
                 f"meanwhile, fds {summary.get('fds')} of 300")

    herd_run_case(ctx, res, 2, args, worker_cmd("tw"), chaos, after=after)


def sc_idle(ctx, res):
    args, kind = MODES[res.mode]
    seen = {}
    idle = ctx.idle
    if "proxy" in res.mode:
        # A relayed connection holds two of herd's descriptors: within the hard limit.
        idle = min(idle, (lib.nofile() - 100) // 2 - ctx.slowloris)
        if idle < ctx.idle:
            res.note(f"{idle} idle connections, not {ctx.idle}: herd's hard fd limit is "
                     f"{lib.nofile()} (not raisable here) and a relay takes two")

    def chaos(h, stop):
        c = Clients(h.port, idle, batch=500, timeout=120).run()
        slow = Slowloris(h.port, ctx.slowloris).start()
        seen.update(ok=c.ok, failed=c.failed, rss=rss_kib(h.pid), fds=fd_count(h.pid))
        stop.wait()
        seen["rss_end"] = rss_kib(h.pid)
        seen["slow_open"] = slow.open
        slow.finish()
        c.close_all()

    herd_run_case(ctx, res, 2, args, worker_cmd(kind), chaos)
    rss0 = res.base[0] or 0
    per = (max(seen.get("rss", 0), seen.get("rss_end", 0)) - rss0) * 1024 / max(1, seen.get("ok", 0))
    res.check(f"{idle} idle connections opened", seen.get("ok") == idle, f"{seen}")
    # Bounds: a handed-over connection is the worker's (herd keeps nothing); a relayed one
    # costs herd two sockets, a task and two 64 KiB copy buffers (COPY_BUF), which count
    # once their pages are touched: ~26 KiB on fresh memory, up to 128 KiB on reused.
    bound = 144 * 1024 if "proxy" in res.mode else 2 * 1024
    res.check("herd's memory per idle connection bounded", per <= bound,
              f"{per / 1024:.1f} KiB > {bound // 1024} KiB")
    res.note(f"{seen.get('ok')} idle + {ctx.slowloris} slowloris open: herd RSS "
             f"{rss0} -> {seen.get('rss')} KiB ({per / 1024:.2f} KiB per idle connection), "
             f"fds {res.base[1]} -> {seen.get('fds')}; slowloris still open at the end: "
             f"{seen.get('slow_open')}")


SPEW = """import os, sys, time
rate = float(sys.argv[1]) * 1e6
count = sys.argv[2]
chunk = (b"x" * 99 + b"\\n") * 10000
while not os.path.exists(count + ".go"):  # the rest run first
    time.sleep(0.05)
total, t0, last = 0, time.monotonic(), 0.0
out = sys.stdout.buffer
while True:
    out.write(chunk)
    out.flush()
    total += len(chunk)
    now = time.monotonic()
    ahead = total / rate - (now - t0)
    if ahead > 0:
        time.sleep(ahead)
    if now - last > 0.25:
        last = now
        with open(count + ".tmp", "w") as f:
            f.write(f"{total} {now - t0}")
        os.replace(count + ".tmp", count)
"""


def sc_spew(ctx, res):
    args, _ = MODES[res.mode]
    spew = os.path.join(lib.WORK, "spew.py")
    with open(spew, "w") as f:
        f.write(SPEW)
    count = os.path.join(lib.WORK, f"spew-{os.getpid()}-{time.monotonic_ns()}.count")
    # herd and the spewer on one CPU, the workers' serving threads and herd bench on
    # another: the question is whether herd's handling of the flood slows the workers
    # down, not whether a 2-core machine has CPU to spare for 100 MB/s of output.
    cpus = sorted(os.sched_getaffinity(0))
    noisy, quiet = str(cpus[-1]), str(cpus[0])
    res.bench_cpu = quiet
    worker = ["sh", "-c", f'if [ "$HERD_WORKER_ID" = 0 ]; then taskset -c {noisy} python3 {spew} '
              f'{ctx.spew_mb} {count} & fi; exec taskset -c {quiet} {lib.TW} --notify']
    seen = {}

    def read_count():
        try:
            with open(count) as f:
                b, t = f.read().split()
                return int(b), float(t)
        except (OSError, ValueError):
            return 0, 0.0

    def chaos(h, stop):
        open(count + ".go", "w").close()
        wait_for(lambda: read_count()[0] > 0, 10)
        b0, t0 = read_count()
        cpu = CpuMeter(h.pid)
        peak = 0
        while not stop.wait(0.25):
            peak = max(peak, rss_kib(h.pid) or 0)
        b1, t1 = read_count()
        seen.update(cpu=cpu.cores(), peak=peak, rate=(b1 - b0) / max(1e-3, t1 - t0) / 1e6)

    herd_run_case(ctx, res, 2, args, worker, chaos, out=subprocess.DEVNULL,
                  prefix=["taskset", "-c", noisy])
    rss0 = res.base[0] or 0
    res.check("herd's CPU bounded (< 1 core)", seen.get("cpu", 9) < 1.0, f"{seen}")
    res.check("herd's RSS bounded (+16 MiB)", seen.get("peak", 1 << 30) <= rss0 + 16384, f"{seen}")
    if res.load and res.p99_rest is not None and res.load["p99_ms"] is not None:
        res.check("p99 under the spew within max(10x rest, 100 ms)",
                  res.load["p99_ms"] <= max(10 * res.p99_rest, 100.0),
                  f"{res.p99_rest:.1f} -> {res.load['p99_ms']:.1f} ms")
    res.note(f"worker 0 wrote {seen.get('rate', 0):.0f} MB/s (asked {ctx.spew_mb}); herd "
             f"{seen.get('cpu', 0):.2f} cores, RSS peak {seen.get('peak')} KiB (baseline {rss0})")


SCENARIOS = {
    "kill": sc_kill,
    "sigstop": sc_sigstop,
    "sigstop-nohealth": lambda ctx, res: sc_sigstop(ctx, res, health=False),
    "reload": sc_reload,
    "daemon": sc_daemon,
    "diskfull": sc_diskfull,
    "fdlimit": sc_fdlimit,
    "idle": sc_idle,
    "spew": sc_spew,
}


# ---------------------------------------------------------------- the table

def fmt_errors(load):
    if not load:
        return "-"
    return ",".join(f"{k} {v}" for k, v in sorted(load["errors"].items())) or "0"


def table(results):
    head = ["scenario", "mode", "sent", "failed", "unavoid.", "beyond", "p99 rest→storm ms",
            "RSS KiB before→after", "fds", "verdict"]
    rows = []
    for r in results:
        ld = r.load or {}
        p99 = (f"{r.p99_rest:.1f}→{ld['p99_ms']:.1f}"
               if r.p99_rest is not None and ld.get("p99_ms") is not None else "-")
        rows.append([r.scenario, r.mode, str(ld.get("sent", "-")), fmt_errors(r.load),
                     str(int(r.unavoidable)) if r.judged else "n/j",
                     str(r.beyond()) if r.beyond() is not None else "-", p99,
                     f"{r.base[0]}→{r.after[0]}", f"{r.base[1]}→{r.after[1]}",
                     "ok" if r.ok() else "FAIL"])
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths))]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="every scenario, reduced (CI)")
    ap.add_argument("--seconds", type=float, help="storm length per case (default 60; 5 quick)")
    ap.add_argument("--only", help="scenarios, comma-separated: " + ",".join(SCENARIOS))
    ap.add_argument("--modes", help="balancing modes, comma-separated: " + ",".join(MODES))
    ap.add_argument("--rate", type=int, help="herd bench -R (default 400; 150 quick)")
    ap.add_argument("--idle", type=int, help="idle connections (default 10000; 2000 quick)")
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    a = ap.parse_args()
    default = os.path.join(lib.TARGET, "debug" if a.quick else "release", "herd")
    lib.set_binaries(os.environ.get("HERD", default))
    if os.geteuid() != 0:
        sys.exit("chaos.py needs root (mount of a tmpfs, prlimit above the hard limit)")
    only = a.only.split(",") if a.only else list(SCENARIOS)
    for name in only:
        if name not in SCENARIOS:
            ap.error(f"unknown scenario {name}")
    modes = a.modes.split(",") if a.modes else None
    for m in modes or []:
        if m not in MODES:
            ap.error(f"unknown mode {m}")
    ctx = Ctx(a)
    lib.raise_nofile()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    results = []
    t_all = time.monotonic()
    try:
        for name in only:
            full, quick = PLAN[name]
            for mode in (quick if a.quick else full):
                if modes and mode not in modes:
                    continue
                res = Result(name, mode)
                log(f"# {name} / {mode} ({ctx.seconds:g} s at {ctx.rate} req/s)")
                t = time.monotonic()
                try:
                    SCENARIOS[name](ctx, res)
                except Exception as e:
                    traceback.print_exc()
                    res.check("ran to the end", False, f"{e.__class__.__name__}: {e}")
                res.secs = time.monotonic() - t
                results.append(res)
                log(f"  {'ok' if res.ok() else 'FAIL'} in {res.secs:.0f} s; "
                    + "; ".join(res.notes))
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        lib.cleanup()
    total = time.monotonic() - t_all
    print(table(results))
    for r in results:
        for n in r.notes:
            print(f"  {r.scenario}/{r.mode}: {n}")
        for name, ok, detail in r.checks:
            if not ok:
                print(f"  {r.scenario}/{r.mode}: FAILED {name}: {detail}")
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"{len(results)} cases in {total:.0f} s; load average {' '.join(load)}; "
          f"herd {lib.HERD}")
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({"cases": [r.json() for r in results], "seconds": round(total),
                       "loadavg": load, "quick": a.quick, "storm_s": ctx.seconds,
                       "rate": ctx.rate}, f, indent=1)
    sys.exit(0 if results and all(r.ok() for r in results) else 1)


if __name__ == "__main__":
    main()
