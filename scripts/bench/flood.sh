#!/usr/bin/env bash
# flood.sh — does a flood of worker→primary messages slow the accept/handoff path?
#
# The worker is scripts/bench/flood-worker.mjs: examples/node/basic.mjs (a Node cluster
# worker, "Hello from worker PID") that can also send {herd:"count",key:"flood",n:1} to its
# primary. Its mode is switched at run time (file FLOOD_CTL + SIGUSR2, see the worker):
#   quiet   no messages (basic.mjs)
#   flood   messages as fast as the channel takes them (batches of 100 per event-loop
#           turn while process.send() reports room, else 1 ms pause)
#   req     one counter message per HTTP request (what a request counter does)
# Servers, 2 workers each, side by side on their own ports, all started once:
#   node-rr         APP_PORT=P NODE_CLUSTER_SCHED_POLICY=rr node flood-worker.mjs: Node's
#                   own cluster primary (round-robin handoff; it counts the messages too)
#   herd-rr         herd run -i 2 --ready notify --balance round-robin -p P -- node flood-worker.mjs
#   herd-reuseport  herd run -i 2 --ready notify -p P -- node flood-worker.mjs (no handoff:
#                   the flood only competes for CPU and for herd's attention)
# A case is a server in a mode. Every case is measured with wrk -t2 -c64 -dDUR, keep-alive
# and -H 'Connection: close' (a new connection, so a handoff, per request); the mode is
# switched on 0.2 s before wrk and back to quiet after it, so an idle server never floods
# while another is measured. ROUNDS rounds per connection type, the order of the 9 cases
# rotating by one every round.
# Messages/s: every switch makes each worker ask its primary for {herd:"stats"} and print
# the primary's flood total; (total at the end − total at the start) / time between the two
# answers, averaged over the 2 workers, is what the primary processed while the mode was on
# (the answer at the end comes after every message sent before it: one channel keeps its
# order, so the backlog is drained before the next case starts).
# Primary CPU %: utime+stime of the primary (/proc/PID/stat) during the wrk run / wall time.
#
# Run:     scripts/bench/flood.sh            (ROUNDS=3 DUR=4s by default, ~5 min)
#          ROUNDS=5 DUR=5s scripts/bench/flood.sh
# Output:  one line per wrk run (stderr); per connection type a table: per case median
#          req/s, ratio to the same server quiet (median of per-round ratios, and range),
#          p99, messages/s processed by the primary, primary CPU %, wrk errors summed;
#          at the end herd's own "counters of ..." line at exit (SIGTERM), checked against
#          what the workers sent (every message processed).
# Checks:  "BUG: ..." (counted; exit status 1): a herd case not starting, a herd worker
#          exiting, an ERROR in herd's log, non-2xx answers or connect errors in a quiet herd
#          case, herd's counter at exit differing from the messages its workers sent, herd
#          not exiting 0 on SIGTERM. Timeouts under a flood are the measured effect: shown,
#          not counted.

source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-3}
DUR=${DUR:-4s}
NW=2
PY=$(dirname "$0")/wrkparse.py
PROG=$(cd "$(dirname "$0")" && pwd)/flood-worker.mjs

command -v node >/dev/null 2>&1 || { log "node not found"; exit 1; }
( bench_build ) || { [ -x "$HERD" ] || exit 1; log "# build failed: using the existing $HERD ($(date -r "$HERD"))"; }
need_wrk
TCK=$(getconf CLK_TCK)

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}'; }
workers_of() { pgrep -P "$1" -x node | tr '\n' ' '; }

declare -A PORT PID LOGF SEQ
SERVERS=(node-rr herd-rr herd-reuseport)
MODES=(quiet flood req)
declare -A MODEARG=([quiet]=0 [flood]=1 [req]=req)

start_server() {
    local s=$1 p
    p=$(free_port)
    PORT[$s]=$p
    LOGF[$s]=$WORK/$s.log
    SEQ[$s]=0
    echo "0 0" >"$WORK/$s.ctl"
    export APP_PORT=$p FLOOD=0 FLOOD_CTL=$WORK/$s.ctl FLOOD_WORKERS=$NW
    case $s in
        node-rr)
            NODE_CLUSTER_SCHED_POLICY=rr node "$PROG" >"${LOGF[$s]}" 2>&1 &
            PID[$s]=$!
            track "${PID[$s]}"
            local i
            for i in $(seq 1 250); do
                [ "$(grep -c 'Worker .* started' "${LOGF[$s]}")" -ge "$NW" ] && break
                sleep 0.02
            done
            ;;
        herd-*)
            local args=(-i "$NW" --ready notify -p "$p")
            [ "$s" = herd-rr ] && args+=(--balance round-robin)
            if ! start_herd_ready "${LOGF[$s]}" "$NW" "${args[@]}" -- node "$PROG"; then
                bug "$s: herd run ${args[*]} did not get $NW workers ready; its log:"
                sed 's/^/    /' "${LOGF[$s]}" >&2
                exit 1
            fi
            PID[$s]=$HERD_PID
            ;;
    esac
    unset APP_PORT FLOOD FLOOD_CTL FLOOD_WORKERS
    wait_port "$p" || { log "$s: port $p never answered"; cat "${LOGF[$s]}" >&2; exit 1; }
    log "# $s: port $p, primary ${PID[$s]}, workers $(workers_of "${PID[$s]}")"
}

# switch SERVER MODE: sets the workers' mode; waits (max 10 s) until both workers printed
# the primary's stats for this switch. Prints the switch's sequence number.
switch() {
    local s=$1 m=$2 n i ws
    SEQ[$s]=$((SEQ[$s] + 1))
    n=${SEQ[$s]}
    echo "${MODEARG[$m]} $n" >"$WORK/$s.ctl"
    ws=$(workers_of "${PID[$s]}")
    # shellcheck disable=SC2086
    kill -USR2 $ws
    for i in $(seq 1 500); do
        [ "$(grep -c "FLOODSTAT pid=[0-9]* seq=$n " "${LOGF[$s]}")" -ge "$NW" ] && break
        sleep 0.02
    done
    [ "$(grep -c "FLOODSTAT pid=[0-9]* seq=$n " "${LOGF[$s]}")" -ge "$NW" ] || log "# $s: not every worker answered switch $n in 10 s"
}

LOAD0=$(cut -d" " -f1-3 /proc/loadavg)
for s in "${SERVERS[@]}"; do start_server "$s"; done

CASES=()
for s in "${SERVERS[@]}"; do for m in "${MODES[@]}"; do CASES+=("$s/$m"); done; done
NC=${#CASES[@]}
RES=$WORK/results.jsonl
: >"$RES"
for s in "${SERVERS[@]}"; do
    wrk -t2 -c64 -d1s "http://127.0.0.1:${PORT[$s]}/" >/dev/null 2>&1
    wrk -t2 -c64 -d1s -H 'Connection: close' "http://127.0.0.1:${PORT[$s]}/" >/dev/null 2>&1
done

for conn in close keepalive; do
    hdr=()
    [ "$conn" = close ] && hdr=(-H 'Connection: close')
    for r in $(seq 1 "$ROUNDS"); do
        k=$(((r - 1) % NC))
        for c in "${CASES[@]:k}" "${CASES[@]:0:k}"; do
            s=${c%/*}; m=${c#*/}
            switch "$s" "$m"; a=${SEQ[$s]}
            sleep 0.2
            p0=$(cpu_ticks "${PID[$s]}"); t0=$(date +%s.%N)
            out=$(wrk -t2 -c64 -d"$DUR" --latency "${hdr[@]}" "http://127.0.0.1:${PORT[$s]}/" 2>&1)
            p1=$(cpu_ticks "${PID[$s]}"); t1=$(date +%s.%N)
            switch "$s" quiet; b=${SEQ[$s]}
            j=$(printf '%s\n' "$out" | python3 "$PY")
            printf '{"conn":"%s","server":"%s","mode":"%s","round":%d,"log":"%s","a":%d,"b":%d,"ticks":%d,"tck":%d,"wall":%s,"r":%s}\n' \
                "$conn" "$s" "$m" "$r" "${LOGF[$s]}" "$a" "$b" $((p1 - p0)) "$TCK" \
                "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" "$j" >>"$RES"
            log "  $conn round $r $s $m: primary $((p1 - p0)) ticks, $j"
        done
    done
done

echo
echo "# flood.sh: scripts/bench/flood-worker.mjs, $NW workers, wrk -t2 -c64 -d$DUR --latency, $ROUNDS rounds"
python3 - "$RES" <<'EOF'
import json, re, statistics as st, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
STAT = re.compile(r"FLOODSTAT pid=(\d+) seq=(\d+) mode=\S+ t=(\d+) total=(\d+) sent=(\d+)")
stats = {}  # (log, seq) -> {pid: (t_ms, total)}
for log in {r["log"] for r in rows}:
    for line in open(log):
        m = STAT.search(line)
        if m:
            pid, seq, t, total, _ = map(int, m.groups())
            stats.setdefault((log, seq), {})[pid] = (t, total)
def msgs_per_s(x):
    a, b = stats.get((x["log"], x["a"]), {}), stats.get((x["log"], x["b"]), {})
    rates = [(b[p][1] - a[p][1]) / ((b[p][0] - a[p][0]) / 1000) for p in a if p in b and b[p][0] > a[p][0]]
    return sum(rates) / len(rates) if rates else float("nan")
def errs(x):
    r = x["r"]; return r["connect"] + r["read"] + r["write"] + r["timeout"] + r["non2xx"]
servers = ("node-rr", "herd-rr", "herd-reuseport")
modes = ("quiet", "flood", "req")
rounds = sorted({r["round"] for r in rows})
def get(conn, s, m, rnd):
    return next(r for r in rows if r["conn"] == conn and r["server"] == s and r["mode"] == m and r["round"] == rnd)
for conn in ("close", "keepalive"):
    title = "Connection: close (a new connection, so a handoff in the -rr servers, per request)" if conn == "close" else "keep-alive"
    print(f"\n== {title}: medians of {len(rounds)} alternating runs ==")
    print(f"{'server':<15} {'mode':<6} {'req/s':>8} {'x quiet':>8} {'range':>12} {'p99 ms':>8} {'msgs/s':>9} {'prim CPU%':>9} {'errors':>7}")
    for s in servers:
        for m in modes:
            xs = [get(conn, s, m, rnd) for rnd in rounds]
            rps = st.median(x["r"]["rps"] for x in xs)
            ratios = sorted(get(conn, s, m, rnd)["r"]["rps"] / get(conn, s, "quiet", rnd)["r"]["rps"] for rnd in rounds)
            p99 = st.median(x["r"]["p99_ms"] for x in xs)
            mps = st.median(msgs_per_s(x) for x in xs) if m != "quiet" else 0
            cpu = st.median(x["ticks"] / x["tck"] / x["wall"] * 100 for x in xs)
            e = sum(errs(x) for x in xs)
            rng = f"{ratios[0]:.3f}-{ratios[-1]:.3f}"
            print(f"{s:<15} {m:<6} {rps:>8.0f} {st.median(ratios):>8.3f} {rng:>12} {p99:>8.1f} {mps:>9.0f} {cpu:>8.0f}% {e:>7}")
    for s in servers:
        for m in modes:
            xs = [get(conn, s, m, rnd) for rnd in rounds]
            tot = {k: sum(x["r"][k] for x in xs) for k in ("connect", "read", "write", "timeout", "non2xx")}
            if any(tot.values()):
                print(f"  errors {s} {m}: " + ", ".join(f"{k} {n}" for k, n in tot.items()))
print("\n(x quiet = median over the rounds of req/s in this mode / req/s of the same server quiet in the same round;")
print(" msgs/s = flood messages the primary processed per second while the mode was on)")
EOF

# herd-specific checks, and herd's own counters line at exit
python3 - "$RES" <<'EOF' >"$WORK/errcheck"
import json, sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    x = r["r"]
    if r["server"].startswith("herd-") and (x["non2xx"] or x["requests"] == 0 or (r["mode"] == "quiet" and x["connect"])):
        print(f"{r['server']} {r['mode']} {r['conn']} round {r['round']}: connect errors {x['connect']}, non-2xx {x['non2xx']}, requests {x['requests']}")
EOF
while IFS= read -r line; do bug "$line"; done <"$WORK/errcheck"
echo
for s in herd-rr herd-reuseport; do
    f=${LOGF[$s]}
    check_notify "$f" "$s"
    n=$(grep -c ' exited' "$f")
    [ "${n:-0}" -gt 0 ] && { bug "$s: $n worker exit(s) during the run"; grep ' exited' "$f" | sed 's/^/    /' >&2; }
    grep -q ' ERROR ' "$f" && { bug "$s: herd logged errors:"; grep ' ERROR ' "$f" | head -n 10 | sed 's/^/    /' >&2; }
    grep ' WARN ' "$f" | head -n 5 | sed "s/^/# $s herd warning: /" >&2
    kill -0 "${PID[$s]}" 2>/dev/null || { bug "$s: herd (pid ${PID[$s]}) is gone before the end"; continue; }
    kill -TERM "${PID[$s]}"
    wait "${PID[$s]}"
    rc=$?
    [ "$rc" -eq 0 ] || { bug "$s: herd exited with code $rc on SIGTERM (expected 0)"; tail -n 8 "$f" | sed 's/^/    /' >&2; }
    # what herd counted (its last "counters of" line, logged at exit) vs what the workers sent
    total=$(grep 'counters of' "$f" | tail -n 1 | sed -n 's/.*"total":\([0-9]*\).*/\1/p')
    sent=$(grep -o 'FLOODSTAT pid=[0-9]* seq=[0-9]* mode=0 .* sent=[0-9]*' "$f" |
        awk '{split($2,p,"=");split($NF,n,"="); last[p[2]]=n[2]} END{s=0; for (k in last) s+=last[k]; print s}')
    echo "$s: herd's counters line at exit: flood total ${total:-?}; the workers sent $sent"
    [ "${total:-x}" = "$sent" ] || bug "$s: herd counted ${total:-nothing} flood messages, its workers sent $sent"
done
echo "load average (1, 5, 15 min) at the start: $LOAD0, at the end: $(cut -d" " -f1-3 /proc/loadavg) (2 cores; this benchmark alone keeps it near 3-4, well above that other programs shared the machine)"
bug_summary
