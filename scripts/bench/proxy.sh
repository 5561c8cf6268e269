#!/usr/bin/env bash
# proxy.sh — what does the proxy transport cost on the request path?
#
# In proxy mode (`herd run --proxy`) each worker listens on a private port of its own
# (env PORT) and herd accepts every client connection and relays its bytes to a worker.
# This compares, under wrk load on 127.0.0.1:
#   base         two `herd-testworker --port P` started by hand (SO_REUSEPORT, no herd):
#                the same two workers reached directly
#   base2        a second, identical pair on its own port: base2/base is the noise floor
#   proxy        herd run --proxy --balance round-robin -i 2 -p P2 -- herd-testworker --notify
#                (skipped, with a note, if this herd has no --proxy flag)
#   relay-copy   examples/relay_bench.rs `serve`: one current-thread tokio relay, like
#                herd's driver's, forwarding to the base pair with proxy::relay::relay;
#                relay-copy/base is the cost of one relay hop without the rest of herd.
#                (A splice(2) relay was measured here too, 0.94x the copy, and removed.)
# with `wrk -t2 -c64 -d5s --latency`, keep-alive and `-H 'Connection: close'`. All
# servers run side by side (idle ones cost nothing) and the wrk runs alternate between
# them ROUNDS times, the order rotating by one every round, so slow drifts of this noisy
# 2-core machine hit all of them alike.
#
# Run:     scripts/bench/proxy.sh               (ROUNDS=7 DUR=5s by default, ~7 min)
#          ROUNDS=9 DUR=10s scripts/bench/proxy.sh
#          NO_BUILD=1 ...   use the binaries already in target/release
# Output:  one line per wrk run (progress, stderr), then a table per connection type:
#          median req/s and p99 of each server, their ratios against base, and the
#          per-round ratios (their spread is the noise). A relayed hop costs real work
#          (two more sockets and a copy per byte), so there is no pass/fail target; the
#          number to watch is proxy/base and how close proxy comes to relay-copy.
# Checks:  a request through herd's proxy reaches a worker on a private port (not the
#          public one), every herd worker ready within READY_TIMEOUT (5 s) and no "which
#          is not a worker" in herd's log, else "BUG: ..." (counted; exit status 1).

source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-7}
DUR=${DUR:-5s}
PY=$(dirname "$0")/wrkparse.py
RELAY=${RELAY_BENCH:-$ROOT/target/release/examples/relay_bench}

if [ "${NO_BUILD:-0}" != 1 ]; then
    bench_build
    (cd "$ROOT" && cargo build --release -q -p herd --example relay_bench) || { log "build of relay_bench failed"; exit 1; }
fi
need_wrk

P1=$(free_port); P2=$(free_port); P4=$(free_port); PC=$(free_port)
for p in "$P1" "$P1" "$P4" "$P4"; do "$TW" --port "$p" >/dev/null 2>&1 & track $!; done
wait_port "$P1" && wait_port "$P4" || { log "baseline did not start"; exit 1; }
"$RELAY" serve "127.0.0.1:$P1" "$PC" >"$WORK/relay.log" 2>&1 & track $!
wait_port "$PC" || { log "relay_bench did not start"; exit 1; }

SERVERS=(base base2 relay-copy)
declare -A PORT=([base]=$P1 [base2]=$P4 [relay-copy]=$PC [proxy]=$P2)
if "$HERD" run --help 2>/dev/null | grep -q -- '--proxy'; then
    start_herd_ready "$WORK/proxy.log" 2 --proxy --balance round-robin -i 2 -p "$P2" -- "$TW" --notify || exit 1
    # The worker must be reached through its own private port, not the public one.
    env_body=$(curl -s --max-time 5 "http://127.0.0.1:$P2/env")
    wport=$(printf '%s\n' "$env_body" | sed -n 's/^PORT=//p')
    if [ -z "$wport" ] || [ "$wport" = "$P2" ]; then
        bug "proxy: worker answered with PORT='${wport}' (want a private port, not the public $P2): $(printf '%s' "$env_body" | tr '\n' ' ')"
    fi
    SERVERS+=(proxy)
else
    log "# $HERD has no --proxy flag yet: measuring base, base2 and the bare relay only"
fi

RES=$WORK/results.jsonl
: >"$RES"
# warm-up, not counted
for s in "${SERVERS[@]}"; do wrk -t2 -c64 -d1s "http://127.0.0.1:${PORT[$s]}/" >/dev/null 2>&1; done

n=${#SERVERS[@]}
for conn in keepalive close; do
    hdr=()
    [ "$conn" = close ] && hdr=(-H 'Connection: close')
    for r in $(seq 1 "$ROUNDS"); do
        k=$(((r - 1) % n))
        for s in "${SERVERS[@]:k}" "${SERVERS[@]:0:k}"; do
            out=$(wrk -t2 -c64 -d"$DUR" --latency "${hdr[@]}" "http://127.0.0.1:${PORT[$s]}/" 2>&1)
            j=$(printf '%s\n' "$out" | python3 "$PY")
            printf '{"conn":"%s","server":"%s","round":%d,"r":%s}\n' "$conn" "$s" "$r" "$j" >>"$RES"
            log "  $conn round $r $s: $j"
        done
    done
done

python3 - "$RES" "${SERVERS[@]}" <<'EOF_PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
servers = sys.argv[2:]
rounds = sorted({r["round"] for r in rows})

def get(conn, s, rnd):
    return next(r["r"] for r in rows if r["conn"] == conn and r["server"] == s and r["round"] == rnd)

def per_round(conn, num, den):
    return [get(conn, num, rnd)["rps"] / get(conn, den, rnd)["rps"] for rnd in rounds]

for conn in ("keepalive", "close"):
    print(f"\n== {conn}: median of {len(rounds)} alternating runs ==")
    print(f"{'server':<13} {'req/s':>10} {'p99 ms':>8} {'rps/base':>9} {'p99/base':>9} {'errors':>7}")
    med = {}
    for s in servers:
        rs = [r["r"] for r in rows if r["conn"] == conn and r["server"] == s]
        err = sum(x["connect"] + x["read"] + x["write"] + x["timeout"] + x["non2xx"] for x in rs)
        med[s] = (statistics.median(x["rps"] for x in rs), statistics.median(x["p99_ms"] for x in rs), err)
    b_rps, b_p99, _ = med["base"]
    for s, (rps, p99, err) in med.items():
        note = "  (noise floor)" if s == "base2" else ""
        print(f"{s:<13} {rps:>10.0f} {p99:>8.2f} {rps / b_rps:>9.3f} {p99 / b_p99:>9.3f} {err:>7}{note}")
    pairs = [(s, "base") for s in servers if s != "base"]
    if "proxy" in servers:
        pairs.append(("proxy", "relay-copy"))
    for num, den in pairs:
        v = per_round(conn, num, den)
        srt = sorted(v)
        print(f"  per-round rps {num + '/' + den:<26}: {' '.join(f'{x:.3f}' for x in v)}"
              f"   median {statistics.median(v):.3f}, range {srt[0]:.3f}-{srt[-1]:.3f}")
EOF_PY
[ -f "$WORK/proxy.log" ] && check_notify "$WORK/proxy.log" "proxy"
bug_summary
