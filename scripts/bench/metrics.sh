#!/usr/bin/env bash
# metrics.sh — what does /metrics cost? The issue's targets:
#   1. a scrape of 64 workers: median <= 5 ms; herd's CPU for one scrape per second <= 1 %
#      of a core
#   2. the app's throughput under full load while a scraper asks every second: >= 0.99x of
#      the same without scraping
#   3. the daemon's RSS with the metrics on (10 apps x 2 workers, scraped): <= 12 MB
#
# 1. herd run -i 64 -- herd-testworker, idle: SCRAPES sequential GETs of /metrics (a new
#    connection each, as Prometheus after a failed keep-alive), client-side time, median and
#    p90; then herd's CPU time (utime + stime of /proc/<herd>/stat) over DUR s idle, and over
#    DUR s with one scrape a second; the difference is the scrapes' cost.
# 2. herd run -i 2 -p P -- herd-testworker: wrk -t2 -c64 -dWRK_DUR keep-alive on the app,
#    ROUNDS times, alternating: alone, and with a scraper asking /metrics every second;
#    median req/s of each and the ratio.
# 3. herd daemon with HERD_DAEMON_ADMIN, 10 apps x 2 herd-testworker: VmRSS of the daemon
#    after all are ready and 5 scrapes of /metrics and /metrics/app.
#
# Run:     scripts/bench/metrics.sh            (~3 min)
#          NO_BUILD=1 ...  use the binaries already in target/release
# Not a timed test: CI does not run it.

. "$(dirname "$0")/lib.sh"
SCRAPES=${SCRAPES:-300}
DUR=${DUR:-20}
ROUNDS=${ROUNDS:-5}
WRK_DUR=${WRK_DUR:-5s}
[ "${NO_BUILD:-0}" = 1 ] || bench_build
need_wrk
TICK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# --- 1. scrape latency and CPU, 64 workers
ADMIN=$(free_port); APP=$(free_port)
start_herd "$WORK/h64.log" -i 64 --listen "127.0.0.1:$APP" --admin "127.0.0.1:$ADMIN" -- "$TW"
wait_ready "$WORK/h64.log" 64 60 >/dev/null || { log "!! not all ready"; exit 1; }
sleep 2
read -r med p90 lines < <(python3 - "$ADMIN" "$SCRAPES" <<'PY'
import socket, statistics, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
times, size = [], 0
for _ in range(n):
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: herd\r\n\r\n")
    data = b""
    while True:
        c = s.recv(65536)
        if not c:
            break
        data += c
    s.close()
    times.append((time.perf_counter() - t0) * 1000)
    size = data.count(b"\n")
times.sort()
print(f"{statistics.median(times):.2f} {times[int(n * 0.9)]:.2f} {size}")
PY
)
echo "1. scrape of 64 workers ($lines lines): median ${med} ms, p90 ${p90} ms (target <= 5 ms median)"
t0=$(cpu_ticks "$HERD_PID"); sleep "$DUR"; t1=$(cpu_ticks "$HERD_PID")
for i in $(seq 1 "$DUR"); do curl -s -o /dev/null "http://127.0.0.1:$ADMIN/metrics"; sleep 1; done &
SCRAPER=$!
t2=$(cpu_ticks "$HERD_PID"); wait "$SCRAPER"; t3=$(cpu_ticks "$HERD_PID")
awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v hz="$TICK" -v s="$DUR" 'BEGIN{
  idle=(b-a)/hz/s*100; busy=(d-c)/hz/s*100;
  printf "1. herd CPU: %.2f%% of a core idle, %.2f%% with a scrape a second: the scrapes cost %.2f%% (target <= 1%%)\n", idle, busy, busy-idle }'
stop_pid "$HERD_PID"

# --- 2. throughput with and without a scraper
ADMIN=$(free_port); APP=$(free_port)
start_herd "$WORK/h2.log" -i 2 -p "$APP" --admin "127.0.0.1:$ADMIN" -- "$TW"
wait_ready "$WORK/h2.log" 2 >/dev/null || exit 1
rps() { wrk -t2 -c64 -d"$WRK_DUR" "http://127.0.0.1:$APP/" | awk '/Requests\/sec/{print $2}'; }
declare -a ALONE SCRAPED
for r in $(seq 1 "$ROUNDS"); do
    a=$(rps)
    (while :; do curl -s -o /dev/null "http://127.0.0.1:$ADMIN/metrics"; sleep 1; done) &
    SC=$!
    s=$(rps)
    kill "$SC" 2>/dev/null; wait "$SC" 2>/dev/null
    echo "2. round $r: ${a} req/s alone, ${s} req/s with a scrape a second"
    ALONE+=("$a"); SCRAPED+=("$s")
done
ma=$(printf '%s\n' "${ALONE[@]}" | median); ms=$(printf '%s\n' "${SCRAPED[@]}" | median)
echo "2. median: ${ma} req/s alone, ${ms} with scrapes: $(awk -v a="$ma" -v b="$ms" 'BEGIN{printf "%.3f", b/a}')x (target >= 0.99x)"
stop_pid "$HERD_PID"

# --- 3. the daemon's RSS with the metrics on
export HERD_HOME="$WORK/home"
DADMIN=$(free_port)
{
  for i in $(seq 1 10); do
    printf '[apps.a%s]\ncommand = ["%s"]\ninstances = 2\nlisten = ["127.0.0.1:0"]\n\n' "$i" "$TW"
  done
} >"$WORK/herd.toml"
HERD_DAEMON_ADMIN="127.0.0.1:$DADMIN" "$HERD" start "$WORK/herd.toml" >/dev/null || { log "!! herd start failed"; exit 1; }
for i in 1 2 3 4 5; do
  curl -s -o /dev/null "http://127.0.0.1:$DADMIN/metrics"
  curl -s -o /dev/null "http://127.0.0.1:$DADMIN/metrics/app"
done
DPID=$("$HERD" ping --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin).get("pid",""))' 2>/dev/null)
[ -n "$DPID" ] || DPID=$(pgrep -f "herd daemon" | head -1)
rss=$(awk '/VmRSS/{print $2}' "/proc/$DPID/status")
echo "3. daemon with 10 apps x 2 workers, scraped: VmRSS $(awk -v k="$rss" 'BEGIN{printf "%.1f", k/1024}') MB (target <= 12 MB)"
"$HERD" kill >/dev/null 2>&1
