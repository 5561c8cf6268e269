#!/usr/bin/env bash
# cluster_axum.sh — an axum hello server under herd::Cluster (one single-threaded worker per
# CPU) vs the same app as one multi-threaded tokio process on the same cores, and the cost
# of counting every request with herd's batched counter.
#
# The app is crates/herd/examples/axum_heavy.rs, route `/`:
#   single     SINGLE_PROCESS=1 PORT=P axum_heavy: one process, tokio's multi-thread runtime
#   single2    a second, identical one: single2/single is the noise floor of this machine
#   cluster    PORT=P axum_heavy: herd::Cluster, one worker per CPU (reuseport)
#   counted    COUNT=1 PORT=P axum_heavy: the same, every request does count("requests", 1)
# Load: wrk -t2 -c64 -dDUR, keep-alive and Connection: close, ROUNDS alternating rounds, the
# order rotating every round. Targets (issue 4): cluster/single >= 0.95, counted/cluster >= 0.98.
#
# Run: scripts/bench/cluster_axum.sh        (ROUNDS=5 DUR=4s, ~4 min)

. "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-5}
DUR=${DUR:-4s}
need_wrk
log "# cargo build --release --example axum_heavy"
(cd "$ROOT" && cargo build --release -q -p herd --example axum_heavy) || { log "build failed"; exit 1; }
APP=$ROOT/target/release/examples/axum_heavy

SERVERS=(single single2 cluster counted)
declare -A PORTS
for s in "${SERVERS[@]}"; do
    p=$(free_port); PORTS[$s]=$p
    case $s in
        single|single2) SINGLE_PROCESS=1 PORT=$p "$APP" >"$WORK/$s.log" 2>&1 & ;;
        cluster) PORT=$p "$APP" >"$WORK/$s.log" 2>&1 & ;;
        counted) COUNT=1 PORT=$p "$APP" >"$WORK/$s.log" 2>&1 & ;;
    esac
    track $!
    wait_port "$p" || { log "$s did not start"; cat "$WORK/$s.log" >&2; exit 1; }
done
# The clusters are ready when every worker said so.
NCPU=$(nproc)
for s in cluster counted; do
    for _ in $(seq 1 200); do
        [ "$(grep -c 'ready after' "$WORK/$s.log")" -ge "$NCPU" ] && break
        sleep 0.05
    done
done

NS=${#SERVERS[@]}
for mode in keepalive close; do
    hdr=(); [ "$mode" = close ] && hdr=(-H 'Connection: close')
    for r in $(seq 1 "$ROUNDS"); do
        k=$(( (r - 1) % NS ))
        for s in "${SERVERS[@]:k}" "${SERVERS[@]:0:k}"; do
            rps=$(wrk -t2 -c64 -d"$DUR" "${hdr[@]}" "http://127.0.0.1:${PORTS[$s]}/" | awk '/Requests\/sec/ {print $2}')
            echo "$mode $r $s ${rps:-0}" >>"$WORK/results"
        done
    done
done

echo "# cluster_axum.sh: axum_heavy '/', $NCPU CPUs, wrk -t2 -c64 -d$DUR, $ROUNDS rounds, medians"
python3 - "$WORK/results" <<'PY'
import sys, statistics as st
d = {}
for line in open(sys.argv[1]):
    mode, r, s, rps = line.split()
    d.setdefault((mode, s), {})[r] = float(rps)
def ratio(mode, a, b):
    xs = [d[(mode, a)][r] / d[(mode, b)][r] for r in d[(mode, b)] if d[(mode, b)][r] > 0]
    return st.median(xs), min(xs), max(xs)
print(f"{'mode':10} {'single':>9} {'single2':>9} {'cluster':>9} {'counted':>9}  {'cluster/single':>16} {'counted/cluster':>17} {'noise':>7}")
for mode in ("keepalive", "close"):
    med = {s: st.median(d[(mode, s)].values()) for s in ("single", "single2", "cluster", "counted")}
    c = ratio(mode, "cluster", "single"); k = ratio(mode, "counted", "cluster"); n = ratio(mode, "single2", "single")
    print(f"{mode:10} {med['single']:9.0f} {med['single2']:9.0f} {med['cluster']:9.0f} {med['counted']:9.0f}  "
          f"{c[0]:6.3f} ({c[1]:.2f}-{c[2]:.2f}) {k[0]:7.3f} ({k[1]:.2f}-{k[2]:.2f}) {n[0]:7.3f}")
PY
for s in cluster counted; do
    grep -q "counters of" "$WORK/$s.log" 2>/dev/null && grep "counters of" "$WORK/$s.log" | tail -1 >&2
done
