#!/usr/bin/env bash
# admin.sh — how fast does the admin listener answer /readyz, idle and under full load?
#
# herd run -i 2 --admin 127.0.0.1:A -- herd-testworker, then ROUNDS times, alternating:
#   idle   PROBES sequential GETs of /readyz (a new connection each, as a kubelet probe
#          does), nothing else running
#   loaded the same while wrk -t2 -c64 -dDUR keeps the app's port as busy as it can
#          (keep-alive), so herd's loop competes with the workers for the 2 cores
# Each probe's time is measured by the client (connect, request, answer to EOF) with
# Python's perf_counter; the medians and p99 of each round are printed, then the median
# over the rounds and loaded/idle. The issue's target: /readyz in <= 1 ms median under load.
# The app's req/s during each loaded round is printed too.
#
# Run:     scripts/bench/admin.sh                 (ROUNDS=5 PROBES=500 DUR=6s, ~1 min)
#          NO_BUILD=1 ...  use the binaries already in target/release
# Not a timed test: CI does not run it.

. "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-5}
PROBES=${PROBES:-500}
DUR=${DUR:-6s}
[ "${NO_BUILD:-0}" = 1 ] || bench_build
need_wrk

APP=$(free_port); ADMIN=$(free_port)
start_herd "$WORK/herd.log" -i 2 --admin "127.0.0.1:$ADMIN" -p "$APP" -- "$TW"
wait_ready "$WORK/herd.log" 2 >/dev/null || { cat "$WORK/herd.log" >&2; exit 1; }

probe() { # probe ROUND KIND: prints "KIND median_ms p99_ms"
    python3 - "$ADMIN" "$PROBES" "$2" <<'PY'
import socket, statistics, sys, time
port, n, kind = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
times = []
for _ in range(n):
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /readyz HTTP/1.1\r\nHost: herd\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    times.append((time.perf_counter() - t0) * 1000)
    if not data.startswith(b"HTTP/1.1 200"):
        print(f"BUG: /readyz answered {data[:40]!r}", file=sys.stderr)
times.sort()
print(kind, f"{statistics.median(times):.3f}", f"{times[int(len(times) * 0.99) - 1]:.3f}")
PY
}

declare -a IDLE LOADED
for r in $(seq 1 "$ROUNDS"); do
    read -r _ im ip < <(probe "$r" idle)
    wrk -t2 -c64 -d"$DUR" "http://127.0.0.1:$APP/" >"$WORK/wrk.$r" 2>&1 &
    WRK=$!
    sleep 1 # wrk at full load before the probes start
    read -r _ lm lp < <(probe "$r" loaded)
    wait "$WRK"
    rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.$r")
    log "round $r: idle median ${im} ms p99 ${ip} ms; loaded median ${lm} ms p99 ${lp} ms; app ${rps} req/s"
    IDLE+=("$im"); LOADED+=("$lm")
done
mi=$(printf '%s\n' "${IDLE[@]}" | median)
ml=$(printf '%s\n' "${LOADED[@]}" | median)
echo "# admin.sh: /readyz, $PROBES probes per round, $ROUNDS rounds, app under wrk -t2 -c64 when loaded"
echo "idle median of medians:   $mi ms"
echo "loaded median of medians: $ml ms"
awk -v a="$ml" -v b="$mi" 'BEGIN{printf "loaded/idle: %.2f\n", a/b}'
