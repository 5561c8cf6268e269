#!/usr/bin/env bash
# health.sh — what do per-worker health checks cost herd? The issue's target: checks of 64
# workers every second cost herd <= 1 % of one core.
#
# ROUNDS times, alternating, herd run -i 64 -- herd-testworker, idle (no client):
#   base    no health check
#   checks  --health-check http:/healthz --health-interval 1s
# for each of the transports that reach a worker differently:
#   reuseport  (a connection from 127.254.H.L, steered to the slot by the BPF program)
#   proxy      (--proxy: a connection to the worker's private port)
# After all 64 are ready and 3 s of settling (the first checks go at the start-up pace),
# herd's own CPU time (utime + stime of /proc/<herd>/stat, every thread) is read over DUR
# seconds. Printed: per round herd's CPU in % of one core, then the medians and the cost of
# the checks (checks - base). herd logs at its default level (a debug line per check would
# cost more than the check).
#
# Run:     scripts/bench/health.sh             (ROUNDS=3 DUR=20, ~5 min)
#          NO_BUILD=1 ...  use the binaries already in target/release
# Not a timed test: CI does not run it.

. "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-20}
N=${N:-64}
[ "${NO_BUILD:-0}" = 1 ] || bench_build
TICK=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# measure MODE KIND: prints herd's CPU % of one core over DUR s
measure() {
    local mode=$1 kind=$2 args=() port logf t0 t1 checks
    port=$(free_port)
    [ "$mode" = proxy ] && args+=(--proxy)
    [ "$kind" = checks ] && args+=(--health-check http:/healthz --health-interval 1s --health-timeout 500ms)
    logf="$WORK/herd.$mode.$kind.log"
    start_herd "$logf" -i "$N" --listen "127.0.0.1:$port" "${args[@]}" -- "$TW"
    wait_ready "$logf" "$N" 60 >/dev/null || { log "!! not all ready"; tail -5 "$logf" >&2; exit 1; }
    sleep 3
    t0=$(cpu_ticks "$HERD_PID")
    sleep "$DUR"
    t1=$(cpu_ticks "$HERD_PID")
    checks=0
    [ "$kind" = checks ] && checks=$((N * DUR))
    stop_pid "$HERD_PID"
    grep -q 'worker.hung\|is hung\|never passed' "$logf" && bug "$mode: a healthy worker was found hung"
    awk -v a="$t0" -v b="$t1" -v hz="$TICK" -v d="$DUR" -v c="$checks" \
        'BEGIN{printf "%.3f %d\n", (b-a)/hz/d*100, c}'
}

for mode in reuseport proxy; do
    declare -a BASE=() CHECKS=()
    for r in $(seq 1 "$ROUNDS"); do
        read -r b _ < <(measure "$mode" base)
        read -r c n < <(measure "$mode" checks)
        echo "$mode round $r: herd CPU ${b}% (no checks) ${c}% (checks of $N workers every 1s: $n checks in ${DUR}s)"
        BASE+=("$b"); CHECKS+=("$c")
    done
    mb=$(printf '%s\n' "${BASE[@]}" | median)
    mc=$(printf '%s\n' "${CHECKS[@]}" | median)
    echo "$mode median: herd CPU ${mb}% without checks, ${mc}% with; the checks cost $(awk -v a="$mb" -v b="$mc" 'BEGIN{printf "%.3f", b-a}')% of one core (target <= 1%)"
done
bug_summary
