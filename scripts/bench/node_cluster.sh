#!/usr/bin/env bash
# node_cluster.sh — one unmodified Node cluster program: Node's own primary vs herd.
#
# The program is examples/node/basic.mjs (the article's "Basic Cluster Setup"; port from
# APP_PORT). Run alone it is Node's own primary forking os.cpus().length workers (NW, 2 on
# a 2-core machine); under herd it takes its worker branch and herd runs NW workers.
# Servers, all with NW workers of the same program, side by side on their own ports:
#   node-rr         APP_PORT=P node basic.mjs: Node's cluster, default round-robin
#                   scheduling (the primary accepts every connection and passes it on)
#   node-rr2        a second, identical node-rr: node-rr2/node-rr is the noise floor of
#                   this machine (two identical servers should give 1.000)
#   node-none       the same with NODE_CLUSTER_SCHED_POLICY=none (the workers share the
#                   primary's socket and accept themselves)
#   herd-shared     herd run -i NW --ready notify -- node basic.mjs  (no -p: herd binds
#                   the port when the first worker calls listen(P) and hands that one
#                   shared socket to every worker over Node's cluster protocol)
#   herd-reuseport  herd run -i NW --ready notify -p P -- node basic.mjs  (listen(P) gets
#                   the slot's own SO_REUSEPORT socket; the kernel spreads connections)
# Readiness: Node's own cluster is up once the port answers and NW distinct worker pids
# answered; herd once its stderr has NW "ready after" lines.
# Load: wrk -t2 -c64 -dDUR --latency, keep-alive and -H 'Connection: close' (a new
# connection per request), on 127.0.0.1. One warm-up run per server (not counted), then
# ROUNDS rounds over the five servers, the order rotating by one every round, so slow
# drifts of the noisy machine hit all of them alike.
#
# Run:     scripts/bench/node_cluster.sh           (ROUNDS=5 DUR=5s by default, ~5 min)
#          ROUNDS=7 DUR=10s scripts/bench/node_cluster.sh
# Output:  one line per wrk run (progress, stderr), then per connection type a table:
#          median req/s and p99 of each server, their ratios against node-rr and
#          against node-none (medians of the same run), wrk errors summed over the
#          rounds; then the per-round ratios (so the noise is visible) and the noise
#          floor (node-rr2 vs node-rr).
#          Target (the issue): with a new connection per request, herd-shared and
#          herd-reuseport >= 1.0x node-rr in req/s. herd has no round-robin mode yet
#          (it comes later): node-rr's primary hands out connections evenly, herd's
#          modes leave that to the kernel (shared: whichever worker accepts first;
#          reuseport: a hash per connection), so compare herd-shared with node-none too.
#          A miss smaller than node-rr2's spread is not a measurable difference.
# Checks:  "BUG: ..." (counted; exit status 1) when a herd case does not start or
#          has a worker not ready within READY_TIMEOUT (5 s), a "which is not a
#          worker" or an ERROR line in herd's log (WARN lines are shown), a herd
#          worker that exited during the run, herd not
#          exiting with code 0 on SIGTERM at the end, connect errors or non-2xx
#          answers in a herd case, or a herd worker's pid never answering.

source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-5}
DUR=${DUR:-5s}
PY=$(dirname "$0")/wrkparse.py
PROG=$ROOT/examples/node/basic.mjs

command -v node >/dev/null 2>&1 || { log "node not found"; exit 1; }
bench_build
need_wrk

NW=$(node -e 'console.log(require("os").cpus().length)')
[ "$NW" = 2 ] || log "# note: os.cpus().length = $NW here: Node's own primary forks $NW workers; herd runs -i $NW to match"

# pids_answering PORT N TIMEOUT_S: new connection per request until N distinct
# "Hello from worker PID" pids answered; prints the pids; 1 on timeout.
pids_answering() {
    python3 - "$@" <<'EOF'
import re, socket, sys, time
port, n, t = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
seen, end = set(), time.time() + t
while time.time() < end and len(seen) < n:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            buf = b""
            while True:
                d = s.recv(4096)
                if not d:
                    break
                buf += d
        m = re.search(rb"Hello from worker (\d+)", buf)
        if m:
            seen.add(int(m.group(1)))
    except OSError:
        time.sleep(0.02)
print(" ".join(map(str, sorted(seen))))
sys.exit(0 if len(seen) >= n else 1)
EOF
}

declare -A PORT PID
# start_node NAME POLICY: Node's own primary; waits for NW distinct worker pids.
start_node() {
    local name=$1 policy=$2 p pids
    p=$(free_port)
    if [ "$policy" = rr ]; then
        APP_PORT=$p node "$PROG" >"$WORK/$name.log" 2>&1 &
    else
        APP_PORT=$p NODE_CLUSTER_SCHED_POLICY=$policy node "$PROG" >"$WORK/$name.log" 2>&1 &
    fi
    PID[$name]=$!
    track "${PID[$name]}"
    PORT[$name]=$p
    wait_port "$p" || { log "$name: port $p never answered"; cat "$WORK/$name.log" >&2; exit 1; }
    if ! pids=$(pids_answering "$p" "$NW" 10); then
        log "# note: $name: only worker pid(s) '$pids' answered in 10 s (Node's own cluster; not herd's)"
    fi
    log "# $name: port $p, primary ${PID[$name]}, workers answering: $pids"
}

# start_herd_case NAME shared|reuseport: herd with NW workers of the program; shared:
# no -p (herd binds on the workers' request), reuseport: -p PORT.
start_herd_case() {
    local name=$1 mode=$2 p pids
    p=$(free_port)
    PORT[$name]=$p
    export APP_PORT=$p
    local args=(-i "$NW" --ready notify)
    [ "$mode" = reuseport ] && args+=(-p "$p")
    [ "$mode" = round-robin ] && args+=(--balance round-robin -p "$p")
    if ! start_herd_ready "$WORK/$name.log" "$NW" "${args[@]}" -- node "$PROG"; then
        bug "$name: herd run ${args[*]} -- node basic.mjs (APP_PORT=$p) did not get $NW workers ready; its log:"
        sed 's/^/    /' "$WORK/$name.log" >&2
        exit 1
    fi
    unset APP_PORT
    PID[$name]=$HERD_PID
    if ! kill -0 "$HERD_PID" 2>/dev/null; then
        bug "$name: herd exited right after its workers were ready"; sed 's/^/    /' "$WORK/$name.log" >&2; exit 1
    fi
    if ! pids=$(pids_answering "$p" "$NW" 10); then
        bug "$name: only worker pid(s) '$pids' answered on port $p in 10 s, expected $NW"
    fi
    log "# $name: port $p, herd ${PID[$name]}, workers answering: $pids"
    log "#   $(grep -m1 'listening on' "$WORK/$name.log" | sed 's/^[^ ]* *//')"
}

start_node node-rr rr
start_node node-rr2 rr
start_node node-none none
start_herd_case herd-shared shared
start_herd_case herd-reuseport reuseport
start_herd_case herd-rr round-robin

SERVERS=(node-rr node-rr2 node-none herd-shared herd-reuseport herd-rr)
NS=${#SERVERS[@]}
RES=$WORK/results.jsonl
: >"$RES"
# warm-up (JIT, connection paths), not counted
for s in "${SERVERS[@]}"; do
    wrk -t2 -c64 -d2s "http://127.0.0.1:${PORT[$s]}/" >/dev/null 2>&1
    wrk -t2 -c64 -d1s -H 'Connection: close' "http://127.0.0.1:${PORT[$s]}/" >/dev/null 2>&1
done

for conn in keepalive close; do
    hdr=()
    [ "$conn" = close ] && hdr=(-H 'Connection: close')
    for r in $(seq 1 "$ROUNDS"); do
        k=$(((r - 1) % NS))
        for s in "${SERVERS[@]:k}" "${SERVERS[@]:0:k}"; do
            out=$(wrk -t2 -c64 -d"$DUR" --latency "${hdr[@]}" "http://127.0.0.1:${PORT[$s]}/" 2>&1)
            j=$(printf '%s\n' "$out" | python3 "$PY")
            printf '{"conn":"%s","server":"%s","round":%d,"r":%s}\n' "$conn" "$s" "$r" "$j" >>"$RES"
            log "  $conn round $r $s: $j"
        done
    done
done

echo
echo "# node_cluster.sh: examples/node/basic.mjs, $NW workers each, wrk -t2 -c64 -d$DUR --latency, $ROUNDS rounds"
python3 - "$RES" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
SERVERS = ("node-rr", "node-rr2", "node-none", "herd-shared", "herd-reuseport", "herd-rr")
HERD = ("herd-shared", "herd-reuseport", "herd-rr")
rounds = sorted({r["round"] for r in rows})
def errs(x):
    return x["connect"] + x["read"] + x["write"] + x["timeout"] + x["non2xx"]
def get(conn, s, rnd):
    return next(r["r"] for r in rows if r["conn"] == conn and r["server"] == s and r["round"] == rnd)
for conn in ("keepalive", "close"):
    title = "keep-alive" if conn == "keepalive" else "Connection: close (new connection per request)"
    print(f"\n== {title}: median of {len(rounds)} alternating runs ==")
    print(f"{'server':<15} {'req/s':>9} {'p99 ms':>8} {'rps/rr':>7} {'p99/rr':>7} {'rps/none':>8} {'p99/none':>8} {'errors':>7}  note")
    med = {}
    for s in SERVERS:
        rs = [get(conn, s, rnd) for rnd in rounds]
        med[s] = (statistics.median(x["rps"] for x in rs), statistics.median(x["p99_ms"] for x in rs),
                  sum(errs(x) for x in rs))
    rr_rps, rr_p99, _ = med["node-rr"]
    no_rps, no_p99, _ = med["node-none"]
    nf = [get(conn, "node-rr2", rnd)["rps"] / get(conn, "node-rr", rnd)["rps"] for rnd in rounds]
    for s, (rps, p99, err) in med.items():
        note = ""
        if s == "node-rr2":
            note = "(noise floor)"
        elif s in HERD and conn == "close":
            if rps / rr_rps >= 1.0:
                note = "target >= 1.0 x node-rr: met"
            else:
                spread = max(abs(1 - x) for x in nf)
                note = "target >= 1.0 x node-rr: MISS" + (" (within noise floor)" if rps / rr_rps >= 1 - spread else "")
        print(f"{s:<15} {rps:>9.0f} {p99:>8.2f} {rps/rr_rps:>7.3f} {p99/rr_p99:>7.3f} {rps/no_rps:>8.3f} {p99/no_p99:>8.3f} {err:>7}  {note}")
    for base in ("node-rr", "node-none"):
        for s in SERVERS:
            if s == base or (base == "node-none" and s not in HERD):
                continue
            per = [get(conn, s, rnd)["rps"] / get(conn, base, rnd)["rps"] for rnd in rounds]
            v = sorted(per)
            print(f"  per-round rps {s:>14} / {base:<9}: {' '.join(f'{x:.3f}' for x in per)}"
                  f"   median {statistics.median(v):.3f}, range {v[0]:.3f}-{v[-1]:.3f}")
    v = sorted(nf)
    spread = max(abs(1 - x) for x in v)
    print(f"  noise floor: two identical node-rr servers differ by {min(abs(1-x) for x in v)*100:.1f}-"
          f"{spread*100:.1f} % per round (node-rr2/node-rr median {statistics.median(v):.3f}, "
          f"range {v[0]:.3f}-{v[-1]:.3f}): ratios within {1-spread:.2f}-{1+spread:.2f} are not resolved")
    e = {s: [get(conn, s, rnd) for rnd in rounds] for s in SERVERS}
    for s in SERVERS:
        tot = {k: sum(x[k] for x in e[s]) for k in ("connect", "read", "write", "timeout", "non2xx")}
        if any(tot.values()):
            print(f"  errors {s}: " + ", ".join(f"{k} {n}" for k, n in tot.items()))
print("\nnote: node-rr's and herd-rr's primaries accept every connection and deal them out in turn")
print("(target for herd-rr with a new connection per request: >= 1.3x node-rr); herd-shared leaves")
print("it to whichever worker accepts first (like node-none), herd-reuseport to the kernel's hash.")
EOF

# herd-specific checks: errors under load, workers that died, clean shutdown
python3 - "$RES" <<'EOF' >"$WORK/errcheck"
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["server"].startswith("herd-") and (r["r"]["connect"] or r["r"]["non2xx"] or r["r"]["requests"] == 0):
        print(f"{r['server']} {r['conn']} round {r['round']}: connect errors {r['r']['connect']}, "
              f"non-2xx {r['r']['non2xx']}, requests {r['r']['requests']}")
EOF
while IFS= read -r line; do bug "$line"; done <"$WORK/errcheck"
for s in herd-shared herd-reuseport herd-rr; do
    check_notify "$WORK/$s.log" "$s"
    n=$(grep -c ' exited' "$WORK/$s.log")
    if [ "${n:-0}" -gt 0 ]; then
        bug "$s: $n worker exit(s) during the run:"; grep ' exited' "$WORK/$s.log" | sed 's/^/    /' >&2
    fi
    if grep -q ' ERROR ' "$WORK/$s.log"; then
        bug "$s: herd logged errors:"; grep ' ERROR ' "$WORK/$s.log" | head -n 10 | sed 's/^/    /' >&2
    fi
    grep ' WARN ' "$WORK/$s.log" | head -n 10 | sed "s/^/# $s herd warning: /" >&2
    kill -0 "${PID[$s]}" 2>/dev/null || { bug "$s: herd (pid ${PID[$s]}) is gone before the end"; continue; }
    kill -TERM "${PID[$s]}"
    wait "${PID[$s]}"
    rc=$?
    [ "$rc" -eq 0 ] || { bug "$s: herd exited with code $rc on SIGTERM (expected 0); last lines:"; tail -n 8 "$WORK/$s.log" | sed 's/^/    /' >&2; }
done
bug_summary
