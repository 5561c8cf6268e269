#!/usr/bin/env bash
# herd bench against the other load generators, on one server, in one run, alternating:
# wrk, wrk with a pipelining Lua script, autocannon (npm, scripts/bench/node), and oha when
# it is on PATH (`cargo install oha`: it is not built by this script). The server is
# examples/loadgen_target.rs (one thread, cheaper per request than any generator); the
# server is pinned to CPU 0 and the generators to CPU 1 (taskset), each with one thread.
# Prints per tool the median of ROUNDS runs: successful req/s, CPU per successful request,
# p99, and the ratios of herd bench to wrk.
#
#   scripts/bench/loadgen.sh [ROUNDS] [SECONDS] [CONNECTIONS]
#   QUOTA=30 scripts/bench/loadgen.sh …    each generator limited to 30 % of a core
source "$(dirname "$0")/lib.sh"

ROUNDS=${1:-3}
SECS=${2:-5}
CONNS=${3:-50}
need_wrk
log "# cargo build --release -p herd --example loadgen_target"
(cd "$ROOT" && cargo build --release -q -p herd --example loadgen_target) || { log "build failed"; exit 1; }
TARGET_BIN=$TARGET/release/examples/loadgen_target
NODE_DIR=$ROOT/scripts/bench/node
[ -x "$NODE_DIR/node_modules/.bin/autocannon" ] || (cd "$NODE_DIR" && npm ci --no-audit --no-fund >/dev/null) || { log "npm ci failed"; exit 1; }
AUTOCANNON=$NODE_DIR/node_modules/.bin/autocannon
CPUS=$(nproc)
if [ "$CPUS" -ge 2 ]; then SERVER_CPU=0; GEN_CPU=1; else SERVER_CPU=0; GEN_CPU=0; fi

PORT=$(free_port)
taskset -c "$SERVER_CPU" "$TARGET_BIN" "$PORT" >"$WORK/server.log" 2>&1 &
track $!
wait_port "$PORT" || { log "the server did not start"; exit 1; }
URL=http://127.0.0.1:$PORT/

cat >"$WORK/pipeline.lua" <<'LUA'
-- wrk's pipelining: 10 requests in one write (as wrk's scripts/pipeline.lua).
init = function(args)
  local r = {}
  for i = 1, 10 do r[i] = wrk.format(nil, "/") end
  req = table.concat(r)
end
request = function() return req end
LUA

G="taskset -c $GEN_CPU"
# QUOTA=N (percent of one core): each generator runs in a cgroup with that CPU quota, so the
# generator, not the server, sets the pace; req/s then compares what each tool does with the
# same CPU budget (the issue's "faster than wrk" on a machine too small to saturate one).
if [ -n "${QUOTA:-}" ]; then
    if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        CG=/sys/fs/cgroup/herd-loadgen-$$
        mkdir "$CG" && echo "$((QUOTA * 1000)) 100000" >"$CG/cpu.max"
    else
        CG=/sys/fs/cgroup/cpu/herd-loadgen-$$
        mkdir "$CG" && echo 100000 >"$CG/cpu.cfs_period_us" && echo $((QUOTA * 1000)) >"$CG/cpu.cfs_quota_us"
    fi || { log "cannot make a cgroup with a CPU quota (root and a cpu controller needed)"; exit 1; }
    trap '_cleanup; rmdir "$CG" 2>/dev/null' EXIT
    # The quota'd process: joins the cgroup, then becomes the generator.
    printf '#!/bin/sh\n{ echo $$ >%s/cgroup.procs || echo $$ >%s/tasks; } 2>/dev/null\nexec taskset -c %s "$@"\n' \
        "$CG" "$CG" "$GEN_CPU" >"$WORK/ingroup"
    chmod +x "$WORK/ingroup"
    G=$WORK/ingroup
    log "# each generator limited to $QUOTA % of one core ($CG)"
fi
run() { # run NAME TOOL COMMAND...
    local name=$1 tool=$2; shift 2
    python3 "$ROOT/scripts/bench/loadgen.py" "$tool" -- "$@" | sed "s/^{/{\"name\": \"$name\", /" >>"$WORK/results.jsonl"
}
oha_bin=$(command -v oha || true)
for round in $(seq 1 "$ROUNDS"); do
    log "# round $round/$ROUNDS"
    # The order turns each round, so no tool always runs first (or after the same one).
    tools=(herd wrk autocannon herd_p10 wrk_p10 autocannon_p10)
    [ -n "$oha_bin" ] && tools+=(oha)
    n=${#tools[@]}
    for i in $(seq 0 $((n - 1))); do
        t=${tools[$(((i + round) % n))]}
        case $t in
        herd) run herd herd $G "$HERD" bench -t 1 -c "$CONNS" -d "$SECS" --json "$URL" ;;
        herd_p10) run herd_p10 herd $G "$HERD" bench -t 1 -c "$CONNS" -p 10 -d "$SECS" --json "$URL" ;;
        wrk) run wrk wrk $G wrk -t 1 -c "$CONNS" -d "${SECS}s" --latency "$URL" ;;
        wrk_p10) run wrk_p10 wrk $G wrk -t 1 -c "$CONNS" -d "${SECS}s" --latency -s "$WORK/pipeline.lua" "$URL" ;;
        autocannon) run autocannon autocannon $G "$AUTOCANNON" -c "$CONNS" -d "$SECS" -j "$URL" ;;
        autocannon_p10) run autocannon_p10 autocannon $G "$AUTOCANNON" -c "$CONNS" -p 10 -d "$SECS" -j "$URL" ;;
        oha) run oha oha $G "$oha_bin" -c "$CONNS" -z "${SECS}s" --no-tui --output-format json "$URL" ;;
        esac
    done
done

python3 - "$WORK/results.jsonl" "$CPUS" "$ROUNDS" "$SECS" "$CONNS" "${QUOTA:-100}" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cpus, rounds, secs, conns, quota = sys.argv[2:]
by = {}
for r in rows:
    by.setdefault(r["name"], []).append(r)
med = lambda name, k: statistics.median(r[k] for r in by[name])
limit = f", limited to {quota} % of it" if quota != "100" else ""
print(f"{cpus} CPUs; server on CPU 0, each generator on CPU 1{limit} with one thread; {conns} connections, {secs} s, median of {rounds} rounds, alternating")
print(f"{'tool':16} {'req/s (2xx)':>12} {'CPU µs/req':>11} {'gen cores':>9} {'p99 ms':>8} {'errors':>7}")
for name in ["herd", "wrk", "autocannon", "oha", "herd_p10", "wrk_p10", "autocannon_p10"]:
    if name not in by:
        if name == "oha":
            print(f"{'oha':16} not measured: not installed (cargo install oha)")
        continue
    print(f"{name:16} {med(name,'rps'):12.0f} {med(name,'cpu_us_per_req'):11.2f} {med(name,'cpu_cores'):9.2f} {med(name,'p99_ms'):8.2f} {med(name,'errors'):7.0f}")
def ratio(a, b, k):
    return med(a, k) / med(b, k)
print()
print(f"herd bench / wrk, no pipelining: {ratio('herd','wrk','rps'):.2f}x req/s, {ratio('herd','wrk','cpu_us_per_req'):.2f}x CPU per request")
print(f"herd bench -p 10 / wrk + Lua pipelining 10: {ratio('herd_p10','wrk_p10','rps'):.2f}x req/s, {ratio('herd_p10','wrk_p10','cpu_us_per_req'):.2f}x CPU per request")
print(f"herd bench / autocannon: {ratio('herd','autocannon','rps'):.2f}x req/s; -p 10: {ratio('herd_p10','autocannon_p10','rps'):.2f}x")
if "oha" in by:
    print(f"herd bench / oha: {ratio('herd','oha','rps'):.2f}x req/s")
busy = [n for n in by if med(n, 'cpu_cores') >= 0.9 * int(quota) / 100]
print("generators that used their whole CPU budget (the generator was the bottleneck): " + (", ".join(busy) or "none"))
PY
