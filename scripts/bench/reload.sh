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
# Part 2 (PARTS=node): an unmodified Node app, 2 workers, `wrk -t2 -c50 -d10s`
# keep-alive, one reload at t = 5 s, side by side:
#   herd           herd run -i 2 -p P -- node APP       (the drain preload, default)
#   herd-nodrain   the same with --no-node-drain        (herd before the preload)
#   pm2            pm2 start APP -i 2 (cluster mode), `pm2 reload` at 5 s
# for APP = a plain `http` app (plain) and examples/node/express.js (express).
# Target: 0 socket errors for herd. PM2 comes from `npm install pm2` in a temp
# dir (or PM2=/path/to/pm2), its PM2_HOME in the temp dir, `pm2 kill` at the end;
# without it the pm2 rows are skipped. Express needs `npm ci` in examples/node.
#
# Run:    scripts/bench/reload.sh            (ROUNDS=3 DUR=10 by default, ~6 min)
#         PARTS=node scripts/bench/reload.sh (only part 2, ~4 min; PARTS=testworker: part 1)
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

PARTS=${PARTS:-testworker,node}
if [[ ",$PARTS," == *,testworker,* ]]; then
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
fi

# ---- part 2: an unmodified Node app, herd vs herd --no-node-drain vs PM2 ----
NODE_RES=$WORK/node-results.txt
: >"$NODE_RES"
cat >"$WORK/plain.js" <<'JS'
require('http').createServer((req, res) => res.end('hello from ' + process.pid + '\n')).listen(Number(process.env.APP_PORT));
JS
EXPRESS=$ROOT/examples/node/express.js

pm2_setup() {
    if [ -n "${PM2:-}" ]; then return 0; fi
    mkdir -p "$WORK/pm2pkg"
    log "# npm install pm2 (in $WORK/pm2pkg)"
    if (cd "$WORK/pm2pkg" && npm install --no-audit --no-fund --silent pm2 >/dev/null 2>&1); then
        PM2=$WORK/pm2pkg/node_modules/.bin/pm2
    else
        log "npm install pm2 failed: the pm2 rows are skipped"; PM2=
    fi
}

# node_run SERVER APP ROUND: one wrk run with one reload at t = 5 s; a result line.
node_run() {
    local server=$1 app=$2 round=$3 port script wpid logf extra=() j
    port=$(free_port)
    script=$WORK/plain.js; [ "$app" = express ] && script=$EXPRESS
    logf=$WORK/node-$server-$app-$round.log
    case $server in
    herd | herd-nodrain)
        [ "$server" = herd-nodrain ] && extra=(--no-node-drain)
        APP_PORT=$port start_herd_ready "$logf" 2 -i 2 -p "$port" "${extra[@]}" -- node "$script" || return 1 ;;
    pm2)
        APP_PORT=$port PM2_HOME=$WORK/pm2home "$PM2" start "$script" -i 2 --name "bench-$app-$round" >"$logf" 2>&1 || { log "pm2 start failed"; return 1; }
        wait_port "$port" || { log "pm2 app not listening"; return 1; }
        sleep 1 ;; # both workers up
    esac
    wrk -t2 -c50 -d"${DUR}s" --latency "http://127.0.0.1:$port/" >"$WORK/wrk-node.out" 2>&1 &
    wpid=$!; track $wpid
    sleep 5
    case $server in
    pm2) PM2_HOME=$WORK/pm2home "$PM2" reload "bench-$app-$round" >>"$logf" 2>&1 ;;
    *) kill -HUP "$HERD_PID"
       [ "$(wait_log "$logf" 'reload of .* done' 1 $((DUR - 6)))" = timeout ] && bug "$server $app round $round: reload not done in time" ;;
    esac
    wait $wpid
    j=$(python3 "$PY" "$WORK/wrk-node.out")
    log "  node $app round $round $server: $j"
    printf '%s %s %s %s\n' "$server" "$app" "$round" "$j" >>"$NODE_RES"
    case $server in
    pm2) PM2_HOME=$WORK/pm2home "$PM2" delete all >/dev/null 2>&1 ;;
    *) stop_pid "$HERD_PID" ;;
    esac
}

if [[ ",$PARTS," == *,node,* ]]; then
    [ -d "$ROOT/examples/node/node_modules/express" ] || log "no express in examples/node/node_modules (npm ci there): the express runs fail"
    pm2_setup
    servers="herd herd-nodrain"
    [ -n "$PM2" ] && servers="$servers pm2"
    for r in $(seq 1 "$ROUNDS"); do
        for app in plain express; do
            for server in $servers; do node_run "$server" "$app" "$r"; done
        done
    done
    [ -n "$PM2" ] && PM2_HOME=$WORK/pm2home "$PM2" kill >/dev/null 2>&1
    python3 - "$NODE_RES" <<'EOF'
import json, statistics, sys
rows = []
for line in open(sys.argv[1]):
    server, app, rnd, j = line.split(" ", 3)
    rows.append(dict(server=server, app=app, rnd=int(rnd), **json.loads(j)))
print(f"\n{'app':<8} {'server':<13} {'rnd':>3} {'requests':>9} {'connect':>7} {'read':>5} {'write':>5} {'timeout':>7} {'non2xx':>6}")
for r in rows:
    print(f"{r['app']:<8} {r['server']:<13} {r['rnd']:>3} {r['requests']:>9} {r['connect']:>7} {r['read']:>5} {r['write']:>5} {r['timeout']:>7} {r['non2xx']:>6}")
print("\nfailed requests per reload (socket errors + non-2xx), median [min-max] over rounds; target 0 for herd:")
for app in ("plain", "express"):
    for server in ("herd", "herd-nodrain", "pm2"):
        e = [r["connect"] + r["read"] + r["write"] + r["timeout"] + r["non2xx"] for r in rows if r["app"] == app and r["server"] == server]
        if e:
            print(f"  {app:<8} {server:<13} {statistics.median(e):>6} [{min(e)}-{max(e)}]")
EOF
fi
bug_summary
