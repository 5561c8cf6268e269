#!/usr/bin/env bash
# reload.sh — do clients notice a zero-downtime reload (SIGHUP)?
#
# Server: herd run -i 2 -p P --ready notify -- herd-testworker --notify
# Load:   wrk -t2 -c64 -d10s --latency, keep-alive and `-H 'Connection: close'`.
# Each round runs wrk twice on a fresh herd, alternating:
#   steady   no signal (the baseline: errors that happen without any reload)
#   reload   SIGHUP at ~2 s, wait for herd's "reload of ... done" line, then a
#            second SIGHUP, wait for "done" again
# Target: zero socket errors (connect/read/write/timeout) and zero non-2xx in
# the reload runs; req/s ratio reload/steady is printed for information.
#
# Checks: every worker ready within READY_TIMEOUT (5 s) at start-up, no "which is not
#         a worker" in herd's log, each reload done in time; else "BUG: ..."
#         (counted; exit status 1).
#
# Run:    scripts/bench/reload.sh            (ROUNDS=3 DUR=10 by default, ~2.5 min)
# Output: a progress line per wrk run (stderr), then a table with, per run,
#         requests, socket errors, non-2xx, the two reloads' durations (SIGHUP ->
#         "done") and whether each finished. A read error in a keep-alive run
#         means a server closed a keep-alive connection that wrk was about to
#         reuse; herd-testworker now drains gracefully (on SIGTERM it answers the
#         next request of each connection with `Connection: close` for 1 s
#         before closing idle ones), so there should be none. The script prints
#         herd's log lines around the last reload of each kind.

source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-10}
PY=$(dirname "$0")/wrkparse.py

bench_build
need_wrk
RES=$WORK/results.txt
: >"$RES"

# wait_log LOGFILE PATTERN COUNT TIMEOUT_S: until PATTERN occurs COUNT times; prints ms waited or "timeout"
wait_log() {
    local f=$1 pat=$2 cnt=$3 t=$4 t0 now
    t0=$(date +%s%N)
    while :; do
        [ "$(grep -c -- "$pat" "$f")" -ge "$cnt" ] && { now=$(date +%s%N); echo $(((now - t0) / 1000000)); return 0; }
        now=$(date +%s%N)
        [ $(((now - t0) / 1000000000)) -ge "$t" ] && { echo timeout; return 1; }
        sleep 0.01
    done
}

one_run() { # conn kind round
    local conn=$1 kind=$2 round=$3 port logf hdr=() wpid r1=- r2=- out j
    port=$(free_port)
    logf=$WORK/herd-$conn-$kind-$round.log
    [ "$conn" = close ] && hdr=(-H 'Connection: close')
    start_herd_ready "$logf" 2 -i 2 -p "$port" --ready notify -- "$TW" --notify || exit 1
    wrk -t2 -c64 -d"${DUR}s" --latency "${hdr[@]}" "http://127.0.0.1:$port/" >"$WORK/wrk.out" 2>&1 &
    wpid=$!; track $wpid
    if [ "$kind" = reload ]; then
        sleep 2
        kill -HUP "$HERD_PID"
        r1=$(wait_log "$logf" 'reload of .* done' 1 $((DUR - 3)))
        kill -HUP "$HERD_PID"
        r2=$(wait_log "$logf" 'reload of .* done' 2 $((DUR - 3)))
        [ "$r1" = timeout ] || [ "$r2" = timeout ] &&
            bug "$conn reload round $round: a reload did not finish within $((DUR - 3)) s (reload1=$r1 reload2=$r2)"
    fi
    wait $wpid
    j=$(python3 "$PY" "$WORK/wrk.out")
    log "  $conn round $round $kind: reload1=${r1}ms reload2=${r2}ms $j"
    printf '%s %s %s %s %s %s %s %s\n' "$conn" "$kind" "$round" "$r1" "$r2" \
        "$(grep -c 'not a worker' "$logf")" "$(grep -c 'aborted' "$logf")" "$j" >>"$RES"
    if [ "$kind" = reload ]; then
        cp "$logf" "$WORK/last-reload-$conn.log"
    fi
    check_notify "$logf" "$conn $kind round $round"
    stop_pid "$HERD_PID"
}

for conn in keepalive close; do
    for r in $(seq 1 "$ROUNDS"); do
        one_run "$conn" steady "$r"
        one_run "$conn" reload "$r"
    done
done

python3 - "$RES" <<'EOF'
import json, statistics, sys
rows = []
for line in open(sys.argv[1]):
    conn, kind, rnd, r1, r2, ign, abort, j = line.split(" ", 7)
    rows.append(dict(conn=conn, kind=kind, rnd=int(rnd), r1=r1, r2=r2, ign=int(ign), abort=int(abort), **json.loads(j)))
print(f"\n{'conn':<9} {'run':<7} {'rnd':>3} {'requests':>9} {'connect':>7} {'read':>5} {'write':>5} {'timeout':>7} {'non2xx':>6} "
      f"{'HUP1->done ms':>13} {'HUP2->done ms':>13} {'ignored READY':>13}")
for r in rows:
    print(f"{r['conn']:<9} {r['kind']:<7} {r['rnd']:>3} {r['requests']:>9} {r['connect']:>7} {r['read']:>5} {r['write']:>5} "
          f"{r['timeout']:>7} {r['non2xx']:>6} {r['r1']:>13} {r['r2']:>13} {r['ign']:>13}")
print()
for conn in ("keepalive", "close"):
    st = statistics.median(r["rps"] for r in rows if r["conn"] == conn and r["kind"] == "steady")
    rl = statistics.median(r["rps"] for r in rows if r["conn"] == conn and r["kind"] == "reload")
    errs = sum(r["connect"] + r["read"] + r["write"] + r["timeout"] + r["non2xx"] for r in rows if r["conn"] == conn and r["kind"] == "reload")
    unfinished = sum((r["r1"] == "timeout") + (r["r2"] == "timeout") for r in rows if r["conn"] == conn and r["kind"] == "reload")
    print(f"{conn:<9} req/s reload/steady = {rl/st:.3f}   errors in reload runs = {errs} (target 0)   reloads not done in time = {unfinished}")
EOF
for f in "$WORK"/last-reload-*.log; do
    [ -e "$f" ] || continue
    echo "--- herd log of the last reload run ($(basename "$f" .log | sed 's/last-reload-//')), reload lines only:"
    grep -E 'received SIGHUP|reload of|not a worker|not ready|aborted|stopping worker|exited|spawned as|ready after|says it is stopping' "$f" | sed 's/^/  /' | head -40
done
bug_summary
