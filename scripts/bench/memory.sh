#!/usr/bin/env bash
# memory.sh — how much memory and how many threads does herd's primary use?
#
# Measures VmRSS and Threads from /proc/<herd pid>/status (the primary only,
# not the workers) once all workers are ready and after 1 s of idling, for:
#   sleep    herd run -i N -- sleep infinity             (no listener)
#   tw       herd run -i N -p P --ready notify -- herd-testworker --notify
# with N = 2 and 64, alternating (2, 64, 2, 64, ...) ROUNDS times.
# Targets: RSS <= 8 MB with -i 2, <= 16 MB with -i 64.
# `sleep` workers send no READY=1, so they count as ready after herd's 500 ms
# auto delay.
#
# Checks: every worker ready within READY_TIMEOUT (5 s), no "which is not a worker"
#         in herd's log; else "BUG: ..." (counted; exit status 1).
#
# Run:    scripts/bench/memory.sh        (ROUNDS=5 by default, ~1 min)
# Output: per case the median VmRSS (MB), its min-max over the rounds, the
#         thread count, and ok/MISS against the target. RSS also includes
#         herd's share of libc etc. (it is what `ps` and the OOM killer see).

source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-5}
bench_build
RES=$WORK/mem.txt
: >"$RES"

measure() { # kind n round
    local kind=$1 n=$2 r=$3 logf=$WORK/mem-$1-$2-$3.log rss thr
    if [ "$kind" = sleep ]; then
        start_herd_ready "$logf" "$n" -i "$n" -- sleep infinity || exit 1
    else
        start_herd_ready "$logf" "$n" -i "$n" -p "$(free_port)" --ready notify -- "$TW" --notify || exit 1
    fi
    sleep 1
    rss=$(awk '/^VmRSS:/{print $2}' "/proc/$HERD_PID/status")
    thr=$(awk '/^Threads:/{print $2}' "/proc/$HERD_PID/status")
    local ready ign
    ready=$(grep -c 'ready after' "$logf"); ign=$(grep -c 'not a worker' "$logf")
    echo "$kind $n $r $rss $thr $ready $ign" >>"$RES"
    log "  $kind -i $n round $r: VmRSS ${rss} kB, threads $thr, ready $ready/$n, READY=1 dropped by herd: $ign"
    check_notify "$logf" "$kind -i $n round $r"
    stop_pid "$HERD_PID"
}

for r in $(seq 1 "$ROUNDS"); do
    for kind in sleep tw; do
        for n in 2 64; do measure "$kind" "$n" "$r"; done
    done
done

python3 - "$RES" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"\n{'workers':<8} {'-i':>3} {'VmRSS MB (median)':>18} {'min-max':>12} {'threads':>8} {'target':>7}  verdict  ready-at-sample")
for kind in ("sleep", "tw"):
    for n in ("2", "64"):
        v = [int(r[3]) / 1024 for r in rows if r[0] == kind and r[1] == n]
        t = sorted({r[4] for r in rows if r[0] == kind and r[1] == n})
        if not v:
            print(f"{kind:<8} {n:>3}  (no sample)")
            continue
        tgt = 8 if n == "2" else 16
        m = statistics.median(v)
        print(f"{kind:<8} {n:>3} {m:>18.2f} {min(v):>5.2f}-{max(v):<6.2f} {','.join(t):>8} {tgt:>5} MB  {'ok' if m <= tgt else 'MISS':<7}  {'/'.join(r[5] for r in rows if r[0] == kind and r[1] == n)} of {n}")
EOF
bug_summary
