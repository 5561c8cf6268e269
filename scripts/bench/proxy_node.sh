#!/usr/bin/env bash
# proxy_node.sh — `herd run --proxy` vs the same Node worker reached directly, for a
# hello-world answer and for an answer that costs ~0.1 ms of CPU (closer to a real app).
#
# One worker each (Node 20 has no SO_REUSEPORT, so two plain Node servers cannot share a
# port without the cluster module; one worker is "the same worker reached directly"):
#   direct    PORT=P node -e SERVER
#   direct2   a second identical one: direct2/direct is the noise floor
#   proxy     herd run -i 1 --proxy -p P -- node -e SERVER   (herd relays to the worker's
#             private PORT)
# Load: wrk -t2 -c64 -dDUR, keep-alive and Connection: close, ROUNDS alternating rounds.
# The relay's cost per request is a few syscalls, about what a hello-world worker spends:
# the ratio is lowest for hello-world and tends to 1 as the worker does real work.
#
# Run: scripts/bench/proxy_node.sh        (ROUNDS=5 DUR=4s, ~3 min)

. "$(dirname "$0")/lib.sh"
ROUNDS=${ROUNDS:-5}
DUR=${DUR:-4s}
need_wrk
bench_build
NODE=$(command -v node) || { log "node not on PATH"; exit 1; }

declare -A SERVER=(
    [hello]='require("http").createServer((q,s)=>s.end("Hello from worker "+process.pid+"\n")).listen(+process.env.PORT)'
    [work]='require("http").createServer((q,s)=>{let x=0;for(let i=0;i<100000;i++)x+=i%7;s.end("Hello "+x+"\n")}).listen(+process.env.PORT)'
)

for app in hello work; do
    pd=$(free_port); pd2=$(free_port); pp=$(free_port)
    PORT=$pd "$NODE" -e "${SERVER[$app]}" >/dev/null 2>&1 & track $!
    PORT=$pd2 "$NODE" -e "${SERVER[$app]}" >/dev/null 2>&1 & track $!
    "$HERD" run -i 1 --proxy -p "$pp" -- "$NODE" -e "${SERVER[$app]}" >"$WORK/herd-$app.log" 2>&1 & hp=$!; track $hp
    wait_port "$pd" && wait_port "$pd2" && wait_port "$pp" || { log "a server did not start"; exit 1; }
    for _ in $(seq 1 100); do grep -q "ready after" "$WORK/herd-$app.log" && break; sleep 0.05; done
    for mode in keepalive close; do
        hdr=(); [ "$mode" = close ] && hdr=(-H 'Connection: close')
        for r in $(seq 1 "$ROUNDS"); do
            for s in direct direct2 proxy; do
                case $s in direct) p=$pd ;; direct2) p=$pd2 ;; proxy) p=$pp ;; esac
                rps=$(wrk -t2 -c64 -d"$DUR" "${hdr[@]}" "http://127.0.0.1:$p/" | awk '/Requests\/sec/ {print $2}')
                echo "$app $mode $r $s $rps" >>"$WORK/results"
            done
        done
    done
    stop_pid "$hp"
done

echo "# proxy_node.sh: one Node worker, wrk -t2 -c64 -d$DUR, $ROUNDS alternating rounds, medians"
python3 - "$WORK/results" <<'PY'
import sys, statistics as st
rows = [l.split() for l in open(sys.argv[1])]
d = {}
for app, mode, r, s, rps in rows:
    d.setdefault((app, mode, s), {})[r] = float(rps)
print(f"{'app':6} {'mode':10} {'direct':>9} {'direct2':>9} {'proxy':>9} {'proxy/direct':>13} {'range':>12} {'noise':>7}")
for app in ("hello", "work"):
    for mode in ("keepalive", "close"):
        g = lambda s: d[(app, mode, s)]
        ratios = [g("proxy")[r] / g("direct")[r] for r in g("direct")]
        noise = [g("direct2")[r] / g("direct")[r] for r in g("direct")]
        print(f"{app:6} {mode:10} {st.median(g('direct').values()):9.0f} {st.median(g('direct2').values()):9.0f} "
              f"{st.median(g('proxy').values()):9.0f} {st.median(ratios):13.3f} {min(ratios):5.2f}-{max(ratios):<5.2f} {st.median(noise):7.3f}")
PY
