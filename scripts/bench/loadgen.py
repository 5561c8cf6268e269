#!/usr/bin/env python3
"""Runs one load generator command and prints one JSON line: successful req/s, the
generator's CPU time per successful request (user + system, from the kernel's accounting of
the finished child), and the tool's own summary. Used by loadgen.sh.

usage: loadgen.py TOOL -- COMMAND...   (TOOL: herd, wrk, autocannon, oha)
"""
import json
import os
import re
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wrkparse import parse as wrk_parse  # noqa: E402


def main():
    tool = sys.argv[1]
    cmd = sys.argv[sys.argv.index("--") + 1:]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = p.stdout
    if tool == "herd":
        j = json.loads(out)
        ok, secs = j["requests"]["ok"], j["duration_s"]
        extra = {"errors": j["requests"]["errors"], "non2xx": j["requests"]["non_2xx"],
                 "p99_ms": j["latency_us"]["p99"] / 1000}
    elif tool == "wrk":
        w = wrk_parse(out)
        m = re.search(r"requests in ([\d.]+)(s|m)", out)
        secs = float(m.group(1)) * (60 if m.group(2) == "m" else 1) if m else float("nan")
        ok = w["requests"] - w["non2xx"]
        extra = {"errors": w["connect"] + w["read"] + w["write"] + w["timeout"],
                 "non2xx": w["non2xx"], "p99_ms": w["p99_ms"]}
    elif tool == "autocannon":
        j = json.loads(out)
        ok, secs = j["2xx"], j["duration"]
        extra = {"errors": j["errors"], "non2xx": j["non2xx"], "p99_ms": j["latency"]["p99"]}
    elif tool == "oha":
        j = json.loads(out)
        codes = j.get("statusCodeDistribution", {})
        ok = sum(v for k, v in codes.items() if k.startswith("2"))
        secs = j["summary"]["total"]
        extra = {"errors": sum(j.get("errorDistribution", {}).values()),
                 "p99_ms": j["latencyPercentiles"]["p99"] * 1000}
    else:
        raise SystemExit(f"unknown tool {tool}")
    print(json.dumps({"tool": tool, "rps": ok / secs if secs else float("nan"), "ok": ok,
                      "cpu_us_per_req": cpu / ok * 1e6 if ok else float("nan"),
                      "cpu_cores": cpu / wall, "exit": p.returncode, **extra}))


if __name__ == "__main__":
    main()
