#!/usr/bin/env bash
# handoff_cpu.sh — what does a connection handed over by the primary cost the primary in CPU?
#
# The program is examples/node/basic.mjs (the article's "Basic Cluster Setup"), NW = 2
# workers, side by side on their own ports:
#   node-rr          APP_PORT=P NODE_CLUSTER_SCHED_POLICY=rr node basic.mjs: Node's own
#                    cluster primary accepts every connection and passes it on (baseline)
#   herd-rr          herd run -i 2 --ready notify --balance round-robin -p P -- node basic.mjs
#   herd-least-conn  the same with --balance least-conn  } only if `herd run --help` lists
#   herd-sticky      the same with --balance sticky      } the mode; skipped otherwise
# (sticky: every connection comes from 127.0.0.1, so one worker gets them all; the
# primary's work per connection is what is measured here, not the spread.)
# Load: wrk -t2 -c64 -dDUR -H 'Connection: close' on 127.0.0.1 — a new connection per
# request, so requests completed = connections handed over (wrk's socket errors are shown
# apart). Around each wrk run the primary's utime+stime (all its threads) is read from
# /proc/<pid>/stat (clock ticks, / sysconf(CLK_TCK)); the same for its node workers.
# One warm-up run per server (not counted), then ROUNDS rounds, the order rotating by one
# every round, so slow drifts of this noisy 2-core machine hit every server alike.
#
# Run:     scripts/bench/handoff_cpu.sh            (ROUNDS=5 DUR=5s by default, ~2-3 min)
#          ROUNDS=7 DUR=10s scripts/bench/handoff_cpu.sh
# Output:  one line per wrk run (stderr), then a table: median over the rounds of
#            primary CPU ms per 10 000 connections, and its ratio to node-rr
#            (per round, then the median of those ratios, and its range),
#            the primary's CPU % of one core during the run, req/s, the workers' CPU
#            ms per 10 000 connections (what the same connections cost the workers),
#          then each primary's VmRSS after all the rounds.
#          Clock ticks are 10 ms: with DUR=5s a primary using 0.3 s has a ±3 % tick error.
#          All processes share 2 cores with wrk: the CPU per connection of a primary also
#          depends on how many connections each wake-up finds (batching), so compare
#          servers at the same load, which is what the rotating rounds do.
# Checks:  "BUG: ..." (counted; exit status 1) when a herd case does not start or a worker
#          is not ready within READY_TIMEOUT (5 s), wrk connect errors or non-2xx in a herd
#          case, a worker exit or an ERROR in herd's log, herd not exiting 0 on SIGTERM.

source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-5}
DUR=${DUR:-5s}
NW=2
PY=$(dirname "$0")/wrkparse.py
PROG=$ROOT/examples/node/basic.mjs

command -v node >/dev/null 2>&1 || { log "node not found"; exit 1; }
# Others may be mid-edit: an existing release binary is good enough for a benchmark.
( bench_build ) || { [ -x "$HERD" ] || exit 1; log "# build failed: using the existing $HERD ($(date -r "$HERD"))"; }
need_wrk
TCK=$(getconf CLK_TCK)

# cpu_ticks PID...: utime+stime of the processes, summed (fields 14 and 15 of
# /proc/PID/stat; the fields are counted after the ")" that ends the command name).
cpu_ticks() {
    local p t=0 v
    for p in "$@"; do
        v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12 + $13}')
        t=$((t + ${v:-0}))
    done
    echo "$t"
}
workers_of() { pgrep -P "$1" -x node | tr '\n' ' '; }

declare -A PORT PID
declare -A MODE=([herd-rr]=round-robin [herd-least-conn]=least-conn [herd-sticky]=sticky)
SERVERS=(node-rr herd-rr)
HELP=$("$HERD" run --help 2>&1)
for m in least-conn sticky; do
    if grep -q -- "$m" <<<"$HELP"; then
        SERVERS+=("herd-$m")
    else
        log "# herd run --help does not list --balance $m: herd-$m skipped"
    fi
done

start_node_rr() {
    local p
    p=$(free_port)
    APP_PORT=$p NODE_CLUSTER_SCHED_POLICY=rr node "$PROG" >"$WORK/node-rr.log" 2>&1 &
    PID[node-rr]=$!
    track "${PID[node-rr]}"
    PORT[node-rr]=$p
    wait_port "$p" || { log "node-rr: port $p never answered"; cat "$WORK/node-rr.log" >&2; exit 1; }
    local i
    for i in $(seq 1 250); do
        [ "$(grep -c 'Worker .* started' "$WORK/node-rr.log")" -ge "$NW" ] && break
        sleep 0.02
    done
    log "# node-rr: port $p, primary ${PID[node-rr]}, workers $(workers_of "${PID[node-rr]}")"
}

start_herd_case() {
    local name=$1 mode=$2 p
    p=$(free_port)
    PORT[$name]=$p
    if ! APP_PORT=$p start_herd_ready "$WORK/$name.log" "$NW" -i "$NW" --ready notify --balance "$mode" -p "$p" -- node "$PROG"; then
        bug "$name: herd run --balance $mode did not get $NW workers ready; its log:"
        sed 's/^/    /' "$WORK/$name.log" >&2
        exit 1
    fi
    PID[$name]=$HERD_PID
    wait_port "$p" || { bug "$name: port $p never answered"; exit 1; }
    log "# $name: port $p, herd ${PID[$name]}, workers $(workers_of "$HERD_PID")"
}

LOAD0=$(cut -d" " -f1-3 /proc/loadavg)
start_node_rr
for s in "${SERVERS[@]:1}"; do start_herd_case "$s" "${MODE[$s]}"; done

NS=${#SERVERS[@]}
RES=$WORK/results.jsonl
: >"$RES"
for s in "${SERVERS[@]}"; do
    wrk -t2 -c64 -d2s -H 'Connection: close' "http://127.0.0.1:${PORT[$s]}/" >/dev/null 2>&1
done

for r in $(seq 1 "$ROUNDS"); do
    k=$(((r - 1) % NS))
    for s in "${SERVERS[@]:k}" "${SERVERS[@]:0:k}"; do
        pp=${PID[$s]}
        # shellcheck disable=SC2046
        ws=$(workers_of "$pp")
        p0=$(cpu_ticks "$pp"); w0=$(cpu_ticks $ws); t0=$(date +%s.%N)
        out=$(wrk -t2 -c64 -d"$DUR" --latency -H 'Connection: close' "http://127.0.0.1:${PORT[$s]}/" 2>&1)
        p1=$(cpu_ticks "$pp"); w1=$(cpu_ticks $ws); t1=$(date +%s.%N)
        j=$(printf '%s\n' "$out" | python3 "$PY")
        printf '{"server":"%s","round":%d,"prim_ticks":%d,"work_ticks":%d,"wall":%s,"tck":%d,"r":%s}\n' \
            "$s" "$r" $((p1 - p0)) $((w1 - w0)) "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" "$TCK" "$j" >>"$RES"
        log "  round $r $s: primary $((p1 - p0)) ticks, workers $((w1 - w0)) ticks, $j"
    done
done

declare -A RSS
for s in "${SERVERS[@]}"; do RSS[$s]=$(awk '/^VmRSS:/{print $2}' "/proc/${PID[$s]}/status" 2>/dev/null); done

echo
echo "# handoff_cpu.sh: examples/node/basic.mjs, $NW workers, wrk -t2 -c64 -d$DUR -H 'Connection: close', $ROUNDS rounds"
python3 - "$RES" "${SERVERS[@]}" <<'EOF'
import json, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
servers = sys.argv[2:]
rounds = sorted({r["round"] for r in rows})
def get(s, rnd):
    return next(r for r in rows if r["server"] == s and r["round"] == rnd)
def per10k(x, key):
    n = x["r"]["requests"]
    return x[key] / x["tck"] * 1000 / n * 10000 if n else float("nan")
def errs(x):
    r = x["r"]; return r["connect"] + r["read"] + r["write"] + r["timeout"] + r["non2xx"]
print(f"\n{'server':<16} {'prim ms/10k':>11} {'x node-rr':>9} {'range':>13} {'prim CPU%':>9} {'req/s':>8} {'workers ms/10k':>14} {'errors':>7}")
for s in servers:
    xs = [get(s, rnd) for rnd in rounds]
    ms = st.median(per10k(x, "prim_ticks") for x in xs)
    ratios = sorted(per10k(get(s, rnd), "prim_ticks") / per10k(get("node-rr", rnd), "prim_ticks") for rnd in rounds)
    cpu = st.median(x["prim_ticks"] / x["tck"] / x["wall"] * 100 for x in xs)
    rps = st.median(x["r"]["rps"] for x in xs)
    wms = st.median(per10k(x, "work_ticks") for x in xs)
    rng = f"{ratios[0]:.2f}-{ratios[-1]:.2f}"
    print(f"{s:<16} {ms:>11.0f} {st.median(ratios):>9.2f} {rng:>13} {cpu:>8.0f}% {rps:>8.0f} {wms:>14.0f} {sum(errs(x) for x in xs):>7}")
print("\nper round, primary CPU ms per 10 000 connections:")
for s in servers:
    print(f"  {s:<16} " + " ".join(f"{per10k(get(s, rnd), 'prim_ticks'):6.0f}" for rnd in rounds))
print("(x node-rr = median over the rounds of herd/node in the same round; range = min-max of those ratios)")
EOF
echo
for s in "${SERVERS[@]}"; do
    printf '%-16s primary VmRSS after the run: %s kB\n' "$s" "${RSS[$s]:-?}"
done

# herd-specific checks
python3 - "$RES" <<'EOF' >"$WORK/errcheck"
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["server"].startswith("herd-") and (r["r"]["connect"] or r["r"]["non2xx"] or r["r"]["requests"] == 0):
        print(f"{r['server']} round {r['round']}: connect errors {r['r']['connect']}, non-2xx {r['r']['non2xx']}, requests {r['r']['requests']}")
EOF
while IFS= read -r line; do bug "$line"; done <"$WORK/errcheck"
for s in "${SERVERS[@]:1}"; do
    check_notify "$WORK/$s.log" "$s"
    n=$(grep -c ' exited' "$WORK/$s.log")
    [ "${n:-0}" -gt 0 ] && { bug "$s: $n worker exit(s) during the run"; grep ' exited' "$WORK/$s.log" | sed 's/^/    /' >&2; }
    grep -q ' ERROR ' "$WORK/$s.log" && { bug "$s: herd logged errors:"; grep ' ERROR ' "$WORK/$s.log" | head -n 10 | sed 's/^/    /' >&2; }
    grep ' WARN ' "$WORK/$s.log" | head -n 5 | sed "s/^/# $s herd warning: /" >&2
    kill -0 "${PID[$s]}" 2>/dev/null || { bug "$s: herd (pid ${PID[$s]}) is gone before the end"; continue; }
    kill -TERM "${PID[$s]}"
    wait "${PID[$s]}"
    rc=$?
    [ "$rc" -eq 0 ] || { bug "$s: herd exited with code $rc on SIGTERM (expected 0)"; tail -n 8 "$WORK/$s.log" | sed 's/^/    /' >&2; }
done
echo "load average (1, 5, 15 min) at the start: $LOAD0, at the end: $(cut -d" " -f1-3 /proc/loadavg) (2 cores; this benchmark alone keeps it near 3-4, well above that other programs shared the machine)"
bug_summary
