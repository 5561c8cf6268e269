#!/usr/bin/env python3
"""soak.py — the chaos mix in a loop for an hour (not in CI): does herd's primary stay
flat? Samples herd's RSS, fd count and CPU every --every seconds to a CSV and draws them
(hand-written SVG).

Three herds, all sampled, under `herd bench` at a fixed rate the whole time:
  A  herd run -i 3, reuseport, herd-testworker
  B  herd run -i 3, round-robin --proxy, health checks every 1 s, herd-testworker
  D  the daemon (HERD_HOME of its own), app `web`, 2 workers, reuseport
Each round, one phase of --phase seconds after another:
  kill     a random worker of A and of B SIGKILLed every 200 ms
  sigstop  a worker of B SIGSTOPped (health checks replace it; SIGKILLed after 2 s)
  reload   A: SIGHUP every 2 s, SIGTTIN/SIGTTOU in between; D: `herd reload web` and
           `herd scale web 3/2`, plus `herd ls` from 2 more clients
  idle     --idle idle keep-alive connections and 100 slowloris clients on B
  rest     nothing
At the end: the CSV and the SVG (default under target/chaos/), the requests sent and
failed per herd, and per herd the median RSS and fd count of the first and the last tenth
of the run (flat = within +25 % RSS, +8 fds).

Run:   scripts/chaos/soak.py                  (60 minutes)
       scripts/chaos/soak.py --minutes 10 --every 5 --out target/chaos/soak
Needs what chaos.py needs (root, herd and herd-testworker: HERD=path, default
$CARGO_TARGET_DIR/release/herd). Every process it starts is killed at exit.
"""
import argparse
import csv
import json
import os
import random
import signal
import statistics
import sys
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import (Bench, Clients, Daemon, HerdRun, Slowloris, alive, fd_count, log,  # noqa: E402
                 rss_kib, stat, wait_for)

PHASES = ["kill", "sigstop", "reload", "idle", "rest"]


class Sampler(threading.Thread):
    def __init__(self, targets, every, path):
        super().__init__(daemon=True)
        self.targets, self.every, self.path = targets, every, path
        self.stop = threading.Event()
        self.rows = []
        self.phase = "start"
        self.t0 = time.monotonic()

    def run(self):
        last = {}
        with open(self.path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["t_s", "phase", "herd", "pid", "rss_kib", "fds", "cpu_pct", "threads"])
            while True:
                now = time.monotonic()
                for name, get_pid in self.targets.items():
                    pid = get_pid()
                    s = stat(pid) if pid else None
                    if not s:
                        continue
                    prev = last.get(name)
                    cpu = 0.0
                    if prev and prev[0] == pid:
                        cpu = 100.0 * (s["cpu"] - prev[1]) / max(1e-3, now - prev[2])
                    last[name] = (pid, s["cpu"], now)
                    try:
                        threads = len(os.listdir(f"/proc/{pid}/task"))
                    except OSError:
                        threads = 0
                    row = [round(now - self.t0, 1), self.phase, name, pid, rss_kib(pid),
                           fd_count(pid), round(cpu, 1), threads]
                    if None in row:
                        continue
                    w.writerow(row)
                    self.rows.append(row)
                f.flush()
                if self.stop.wait(self.every):
                    break


def svg(rows, path, title):
    """Three panels (RSS MiB, fds, CPU %) against minutes, a line per herd."""
    colors = {"A": "#1f77b4", "B": "#d62728", "D": "#2ca02c"}
    W, H, ml, mr, ph, gap = 900, 720, 70, 110, 180, 50
    tmax = max([r[0] for r in rows] + [1]) / 60
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{ml}" y="22" font-size="15">{title}</text>']
    panels = [("RSS (MiB)", 4, lambda r: r[4] / 1024), ("open fds", 5, lambda r: r[5]),
              ("CPU (% of a core)", 6, lambda r: r[6])]
    for i, (label, _, val) in enumerate(panels):
        top = 45 + i * (ph + gap)
        vals = [val(r) for r in rows] or [1]
        vmax = max(vals) * 1.15 or 1
        x = lambda t: ml + (W - ml - mr) * (t / 60) / tmax  # noqa: E731
        y = lambda v: top + ph - ph * v / vmax  # noqa: E731
        out.append(f'<rect x="{ml}" y="{top}" width="{W - ml - mr}" height="{ph}" '
                   f'fill="none" stroke="#999"/>')
        out.append(f'<text x="{ml}" y="{top - 6}">{label}</text>')
        for k in range(5):
            v = vmax * k / 4
            label_v = f"{v:.0f}" if vmax >= 20 else f"{v:.2g}"
            out.append(f'<text x="{ml - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{label_v}</text>')
            out.append(f'<line x1="{ml}" x2="{W - mr}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                       f'stroke="#eee"/>')
        for k in range(6):
            t = tmax * k / 5 * 60
            out.append(f'<text x="{x(t):.1f}" y="{top + ph + 14}" text-anchor="middle">'
                       f'{t / 60:.1f}</text>')
        for name, color in colors.items():
            pts = [(x(r[0]), y(val(r))) for r in rows if r[2] == name]
            if pts:
                d = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
                out.append(f'<polyline id="{name}-{i}" fill="none" stroke="{color}" '
                           f'stroke-width="1.5" points="{d}"/>')
    for j, (name, color) in enumerate(colors.items()):
        out.append(f'<text x="{W - mr + 10}" y="{60 + j * 18}" fill="{color}">'
                   f'{ {"A": "A reuseport", "B": "B rr --proxy", "D": "D daemon"}[name]}</text>')
    out.append(f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle">minutes</text></svg>')
    with open(path, "w") as f:
        f.write("\n".join(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--every", type=float, default=5, help="seconds between samples")
    ap.add_argument("--phase", type=float, default=20, help="seconds per phase")
    ap.add_argument("--rate", type=int, default=100, help="herd bench -R per herd")
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--out", default=os.path.join(lib.TARGET, "chaos", "soak"),
                    help="prefix of the .csv and .svg")
    a = ap.parse_args()
    lib.set_binaries(os.environ.get("HERD", os.path.join(lib.TARGET, "release", "herd")))
    if os.geteuid() != 0:
        sys.exit("soak.py needs root")
    lib.raise_nofile()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tw = [lib.TW, "--notify"]
    totals = {"A": [0, 0, {}], "B": [0, 0, {}], "D": [0, 0, {}]}
    r = random.Random(1)
    try:
        A = HerdRun("soak:A", "a", ["--min-uptime", "50ms", "--max-restarts", "1000000"], tw, 3).ready()
        B = HerdRun("soak:B", "b", ["--balance", "round-robin", "--proxy", "--min-uptime", "50ms",
                                    "--max-restarts", "1000000", "--kill-timeout", "2s",
                                    "--health-check", "http:/healthz", "--health-interval", "1s", "--health-timeout", "500ms",
                                    "--health-failures", "3"], tw, 3).ready()
        D = Daemon("soak:D")
        dport = lib.free_port()
        toml = (f'[apps.web]\ncommand = {lib.toml_list(tw)}\ninstances = 2\n'
                f'listen = ["127.0.0.1:{dport}"]\nmin_uptime = "100ms"\n')
        rc, out, _ = D.cli("start", D.write_toml(toml), timeout=60)
        if rc != 0:
            sys.exit(f"herd start: {out}")
        ports = {"A": A.port, "B": B.port, "D": dport}
        sampler = Sampler({"A": lambda: A.pid, "B": lambda: B.pid, "D": D.pid}, a.every,
                          a.out + ".csv")
        sampler.start()
        end = time.monotonic() + a.minutes * 60
        rnd = 0
        while time.monotonic() < end:
            for phase in PHASES:
                left = end - time.monotonic()
                if left < 2:
                    break
                secs = min(a.phase, left)
                sampler.phase = phase
                benches = {k: Bench(p, a.rate, 8, secs) for k, p in ports.items()}
                stop = threading.Event()
                t = threading.Thread(target=run_phase, args=(phase, A, B, D, stop, r, a))
                t.start()
                for k, b in benches.items():
                    res = b.result()
                    totals[k][0] += res["sent"]
                    totals[k][1] += res["failed"]
                    for e, n in res["errors"].items():
                        totals[k][2][f"{phase}:{e}"] = totals[k][2].get(f"{phase}:{e}", 0) + n
                stop.set()
                t.join()
                for h in (A, B):
                    if h.p.poll() is not None:
                        sys.exit(f"herd {h.tag} exited: {h.tail()}")
            rnd += 1
            log(f"round {rnd} done, {max(0, end - time.monotonic()) / 60:.1f} min left")
        sampler.stop.set()
        sampler.join()
        rows = sampler.rows
        svg(rows, a.out + ".svg", f"herd soak: {a.minutes:g} min, {rnd} rounds of "
            f"{'/'.join(PHASES)} ({a.phase:g} s each)")
        print(f"{a.out}.csv, {a.out}.svg: {len(rows)} samples")
        verdict = 0
        for name in ("A", "B", "D"):
            mine = [x for x in rows if x[2] == name]
            k = max(1, len(mine) // 10)
            first, last = mine[:k], mine[-k:]
            med = lambda xs, i: statistics.median(x[i] for x in xs)  # noqa: E731
            r0, r1, f0, f1 = med(first, 4), med(last, 4), med(first, 5), med(last, 5)
            cpu = statistics.mean(x[6] for x in mine)
            flat = r1 <= max(r0 * 1.25, r0 + 4096) and f1 <= f0 + 8
            verdict |= not flat
            print(f"herd {name}: RSS {r0:.0f} -> {r1:.0f} KiB (max {max(x[4] for x in mine)}), "
                  f"fds {f0:.0f} -> {f1:.0f} (max {max(x[5] for x in mine)}), mean CPU "
                  f"{cpu:.1f} % of a core; requests sent {totals[name][0]}, failed "
                  f"{totals[name][1]} {json.dumps(totals[name][2])}; "
                  f"{'flat' if flat else 'GROWING'}")
        with open("/proc/loadavg") as f:
            print("load average", " ".join(f.read().split()[:3]))
        sys.exit(verdict)
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(130)
    finally:
        lib.cleanup()


def run_phase(phase, A, B, D, stop, r, a):
    if phase == "kill":
        while not stop.wait(0.2):
            for h in (A, B):
                ws = h.workers()
                if ws:
                    try:
                        os.kill(r.choice(ws), signal.SIGKILL)
                    except ProcessLookupError:
                        pass
    elif phase == "sigstop":
        ws = B.workers()
        if ws:
            v = r.choice(ws)
            os.kill(v, signal.SIGSTOP)
            wait_for(lambda: stop.is_set() or not alive(v), a.phase + 5, 0.1)
            if alive(v):
                os.kill(v, signal.SIGCONT)
    elif phase == "reload":
        def clients():
            while not stop.is_set():
                D.cli("ls", timeout=15)
        cl = [threading.Thread(target=clients) for _ in range(2)]
        for t in cl:
            t.start()
        k = 0
        while not stop.wait(1.0):
            if k % 2 == 0:
                A.p.send_signal(signal.SIGHUP)
                D.cli("reload", "web", timeout=60)
            else:
                A.p.send_signal(signal.SIGTTIN if k % 4 == 1 else signal.SIGTTOU)
                D.cli("scale", "web", "3" if k % 4 == 1 else "2", timeout=60)
            k += 1
        if k % 4 == 2 or k % 4 == 3:  # a SIGTTIN without its SIGTTOU
            A.p.send_signal(signal.SIGTTOU)
        D.cli("scale", "web", "2", timeout=60)
        for t in cl:
            t.join()
    elif phase == "idle":
        c = Clients(B.port, a.idle, batch=500, timeout=60).run()
        s = Slowloris(B.port, 100).start()
        stop.wait()
        s.finish()
        c.close_all()
    else:
        stop.wait()


if __name__ == "__main__":
    main()
