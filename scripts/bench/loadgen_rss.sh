#!/usr/bin/env bash
# herd bench's memory over a long run: RSS of the generator at minute 1 and at the end of a
# MINUTES-minute run (default 10) at a fixed rate against examples/loadgen_target.rs, and
# their ratio (flat = within ±5 %). The rate keeps the run from taking a whole core of a
# shared machine; every answer still goes through the histograms and per-second counts.
#
#   scripts/bench/loadgen_rss.sh [MINUTES] [RATE] [CONNECTIONS]
source "$(dirname "$0")/lib.sh"

MINUTES=${1:-10}
RATE=${2:-20000}
CONNS=${3:-50}
bench_build
(cd "$ROOT" && cargo build --release -q -p herd --example loadgen_target) || { log "build failed"; exit 1; }
PORT=$(free_port)
"$TARGET/release/examples/loadgen_target" "$PORT" >"$WORK/server.log" 2>&1 &
track $!
wait_port "$PORT" || { log "the server did not start"; exit 1; }
"$HERD" bench -c "$CONNS" -R "$RATE" -d "${MINUTES}m" --json "http://127.0.0.1:$PORT/" >"$WORK/result.json" &
BENCH=$!
track "$BENCH"
rss() { awk '/^VmRSS/{print $2}' "/proc/$BENCH/status"; }
sleep 60
R1=$(rss)
log "# RSS at minute 1: $R1 kB"
for m in $(seq 2 "$MINUTES"); do
    sleep 60
    kill -0 "$BENCH" 2>/dev/null || break
    R=$(rss)
    [ -n "$R" ] && RN=$R && log "# RSS at minute $m: $R kB"
done
wait "$BENCH"
python3 - "$WORK/result.json" "$R1" "$RN" "$MINUTES" "$RATE" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
r1, rn, minutes, rate = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
print(f"{minutes} min at {rate} req/s: {j['requests']['ok']} answers, {j['requests']['errors']} errors, p99 {j['latency_us']['p99']/1000:.2f} ms")
print(f"RSS minute 1: {r1} kB, last minute: {rn} kB, ratio {rn/r1:.3f} ({'flat' if abs(rn/r1-1) <= 0.05 else 'NOT flat'}: ±5 %)")
PY
