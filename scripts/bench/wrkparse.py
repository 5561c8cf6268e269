#!/usr/bin/env python3
"""Parses `wrk --latency` output (file or stdin) into one JSON object:
rps, p50_ms, p99_ms, requests, connect/read/write/timeout errors, non2xx.
Used by overhead.sh and reload.sh."""
import json
import re
import sys

UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(m.group(1)) * UNIT[m.group(2)] if m else float("nan")


def parse(out):
    r = {"rps": float("nan"), "p50_ms": float("nan"), "p99_ms": float("nan"),
         "requests": 0, "connect": 0, "read": 0, "write": 0, "timeout": 0, "non2xx": 0}
    for line in out.splitlines():
        s = line.strip()
        m = re.match(r"Requests/sec:\s+([\d.]+)", s)
        if m:
            r["rps"] = float(m.group(1))
        m = re.match(r"(50|99)(?:\.000)?%\s+(\S+)", s)
        if m:
            r["p%s_ms" % m.group(1)] = ms(m.group(2))
        m = re.match(r"(\d+) requests in", s)
        if m:
            r["requests"] = int(m.group(1))
        m = re.match(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", s)
        if m:
            r["connect"], r["read"], r["write"], r["timeout"] = map(int, m.groups())
        m = re.match(r"Non-2xx or 3xx responses: (\d+)", s)
        if m:
            r["non2xx"] = int(m.group(1))
    return r


if __name__ == "__main__":
    src = open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin
    print(json.dumps(parse(src.read())))
