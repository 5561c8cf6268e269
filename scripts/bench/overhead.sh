#!/usr/bin/env bash
# overhead.sh — what does running the workers under herd cost on the request path?
#
# Compares, under wrk load on 127.0.0.1:
#   base       two `herd-testworker --port P` started by hand (each binds
#              0.0.0.0:P with SO_REUSEPORT; no herd at all)
#   base2      a second, identical pair on its own port: base2/base shows the
#              noise floor of this machine (two identical servers should give 1.000)
#   reuseport  herd run -i 2 -p P2 --balance reuseport -- herd-testworker --notify
#   shared     herd run -i 2 -p P3 --balance shared    -- herd-testworker --notify
# with `wrk -t2 -c64 -d5s --latency`, keep-alive and `-H 'Connection: close'`.
# The four servers run side by side on four ports (idle ones cost nothing) and
# the wrk runs alternate base, base2, reuseport, shared, base, ... ROUNDS times
# (the order rotates by one every round), so slow drifts of this noisy 2-core
# machine hit all of them alike.
#
# Run:     scripts/bench/overhead.sh            (ROUNDS=7 DUR=5s by default, ~5 min)
#          ROUNDS=9 DUR=10s scripts/bench/overhead.sh
# Output:  one line per wrk run (progress, stderr), then a table per
#          connection type: median req/s and p99 of each server, and the ratios
#          against the base medians of the same run.
#            rps ratio = herd/base, target >= 0.97
#            p99 ratio = herd/base, target <= 1.05
#          base2's ratios are the noise floor: a herd miss smaller than base2's
#          spread (see the per-round ratios) is not a measurable cost.
#          Non-zero socket errors or non-2xx are printed too. Numbers are only
#          meaningful as ratios; absolute req/s depend on the machine's noise.
# Checks:  every herd worker ready within READY_TIMEOUT (5 s) and no "which is
#          not a worker" in herd's log, else "BUG: ..." (counted; exit status 1).

source "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-7}
DUR=${DUR:-5s}
PY=$(dirname "$0")/wrkparse.py

bench_build
need_wrk

P1=$(free_port); P2=$(free_port); P3=$(free_port); P4=$(free_port)
for p in "$P1" "$P1" "$P4" "$P4"; do "$TW" --port "$p" >/dev/null 2>&1 & track $!; done
wait_port "$P1" && wait_port "$P4" || { log "baseline did not start"; exit 1; }

start_herd_ready "$WORK/reuseport.log" 2 -i 2 -p "$P2" --balance reuseport -- "$TW" --notify || exit 1
start_herd_ready "$WORK/shared.log" 2 -i 2 -p "$P3" --balance shared -- "$TW" --notify || exit 1

SERVERS=(base base2 reuseport shared)
declare -A PORT=([base]=$P1 [base2]=$P4 [reuseport]=$P2 [shared]=$P3)
RES=$WORK/results.jsonl
: >"$RES"
# warm-up, not counted
for s in "${SERVERS[@]}"; do wrk -t2 -c64 -d1s "http://127.0.0.1:${PORT[$s]}/" >/dev/null 2>&1; done

for conn in keepalive close; do
    hdr=()
    [ "$conn" = close ] && hdr=(-H 'Connection: close')
    for r in $(seq 1 "$ROUNDS"); do
        k=$(((r - 1) % 4))
        for s in "${SERVERS[@]:k}" "${SERVERS[@]:0:k}"; do
            out=$(wrk -t2 -c64 -d"$DUR" --latency "${hdr[@]}" "http://127.0.0.1:${PORT[$s]}/" 2>&1)
            j=$(printf '%s\n' "$out" | python3 "$PY")
            printf '{"conn":"%s","server":"%s","round":%d,"r":%s}\n' "$conn" "$s" "$r" "$j" >>"$RES"
            log "  $conn round $r $s: $j"
        done
    done
done

python3 - "$RES" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for conn in ("keepalive", "close"):
    print(f"\n== {conn}: median of {max(r['round'] for r in rows)} alternating runs ==")
    print(f"{'server':<10} {'req/s':>10} {'p99 ms':>8} {'rps/base':>9} {'p99/base':>9} {'errors':>7}  verdict")
    med = {}
    for s in ("base", "base2", "reuseport", "shared"):
        rs = [r["r"] for r in rows if r["conn"] == conn and r["server"] == s]
        err = sum(x["connect"] + x["read"] + x["write"] + x["timeout"] + x["non2xx"] for x in rs)
        med[s] = (statistics.median(x["rps"] for x in rs), statistics.median(x["p99_ms"] for x in rs), err)
    b_rps, b_p99, _ = med["base"]
    for s, (rps, p99, err) in med.items():
        rr, pr = rps / b_rps, p99 / b_p99
        verdict = "" if s == "base" else "(noise floor)" if s == "base2" else ("ok" if rr >= 0.97 and pr <= 1.05 else
                  "MISS (" + ", ".join(x for x, bad in (("rps<0.97", rr < 0.97), ("p99>1.05", pr > 1.05)) if bad) + ")")
        print(f"{s:<10} {rps:>10.0f} {p99:>8.2f} {rr:>9.3f} {pr:>9.3f} {err:>7}  {verdict}")
    # per-round ratios show how noisy the machine is
    for s in ("base2", "reuseport", "shared"):
        per = []
        for rnd in sorted({r["round"] for r in rows}):
            b = next(r["r"] for r in rows if r["conn"] == conn and r["server"] == "base" and r["round"] == rnd)
            h = next(r["r"] for r in rows if r["conn"] == conn and r["server"] == s and r["round"] == rnd)
            per.append(f"{h['rps']/b['rps']:.3f}")
        v = sorted(float(x) for x in per)
        print(f"  per-round rps ratio {s:<9}: {' '.join(per)}   median {statistics.median(v):.3f}, range {v[0]:.3f}-{v[-1]:.3f}")
EOF
for m in reuseport shared; do check_notify "$WORK/$m.log" "overhead $m"; done
bug_summary
