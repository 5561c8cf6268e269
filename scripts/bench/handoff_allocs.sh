#!/usr/bin/env bash
# handoff_allocs.sh — heap allocations in herd's primary per handed-over connection.
#
# The issue asks the handoff path to allocate nothing per connection beyond what the kernel
# needs. This runs herd under heaptrack in each handoff transport, drives new-connection
# load (wrk -H 'Connection: close'), and reports
#     (allocations with load − allocations of the same run without load) / connections
# i.e. what the connections cost, start-up and timers left out. 0.00 is the goal.
#
#   round-robin/newconn    examples/node/basic.mjs: Node cluster workers (`newconn` + fd)
#   round-robin/connection examples/node/sticky.js: the "connection" message + net.Socket
#   least-conn/connection  the same, with the open-connection counts herd asks for
#   sticky/connection      the same, the worker chosen by the client address
#   round-robin/proxy      herd-testworker behind --proxy (relayed: a task per connection)
#
# Run: scripts/bench/handoff_allocs.sh      (DUR=5s per run; needs heaptrack and wrk)
# Not a timed test: allocation counts do not depend on the machine's speed.

. "$(dirname "$0")/lib.sh"
DUR=${DUR:-5s}
command -v heaptrack >/dev/null || { log "heaptrack not installed (apt-get install heaptrack)"; exit 1; }
need_wrk
bench_build
NODE=$(command -v node) || { log "node not on PATH"; exit 1; }

# run NAME LOAD(0|1) HERD-FLAGS... -- COMMAND...  → prints "allocations connections"
run() {
    local load=$1; shift
    local port out pid try
    for try in 1 2 3; do
        port=$(free_port)
        out=$WORK/ht.$RANDOM
        APP_PORT=$port heaptrack -o "$out" "$HERD" run -i 2 -p "$port" "$@" >"$WORK/herd.log" 2>&1 &
        pid=$!
        track "$pid"
        wait_port "$port" && grep -q "listening on" "$WORK/herd.log" && break
        # The port was taken between free_port and herd's bind (other benchmarks): again.
        wait "$pid" 2>/dev/null
        [ "$try" = 3 ] && { log "herd did not listen"; cat "$WORK/herd.log" >&2; echo "0 0"; return; }
    done
    # Both workers ready: the log says so for each.
    for _ in $(seq 1 100); do
        [ "$(grep -c 'ready after' "$WORK/herd.log")" -ge 2 ] && break
        sleep 0.1
    done
    local conns=0
    if [ "$load" = 1 ]; then
        conns=$(wrk -t2 -c16 -d"$DUR" -H 'Connection: close' "http://127.0.0.1:$port/" |
            awk '/requests in/ {print $1}')
    else
        sleep "${DUR%s}"
    fi
    # heaptrack's child is herd: stop herd itself, then wait for heaptrack to write.
    pkill -INT -P "$pid" -x herd 2>/dev/null || kill -INT "$pid"
    wait "$pid" 2>/dev/null
    local allocs
    allocs=$(heaptrack_print -f "$out.zst" 2>/dev/null | awk '/^calls to allocation functions:/ {print $5}')
    echo "$allocs $conns"
}

cases=(
    "round-robin/newconn|--balance round-robin -- $NODE $ROOT/examples/node/basic.mjs"
    "round-robin/connection|--balance round-robin -- $NODE $ROOT/examples/node/sticky.js"
    "least-conn/connection|--balance least-conn -- $NODE $ROOT/examples/node/sticky.js"
    "sticky/connection|--balance sticky -- $NODE $ROOT/examples/node/sticky.js"
    "round-robin/proxy|--proxy -- $TW"
)
printf '# handoff_allocs.sh: 2 workers, wrk -t2 -c16 -d%s Connection: close\n' "$DUR"
printf '%-24s %12s %12s %12s %16s\n' mode idle-allocs load-allocs connections allocs/connection
for c in "${cases[@]}"; do
    name=${c%%|*}
    read -r -a flags <<<"${c#*|}"
    read -r idle _ <<<"$(run 0 "${flags[@]}")"
    read -r loaded conns <<<"$(run 1 "${flags[@]}")"
    per=$(python3 -c "print(f'{($loaded - $idle) / max($conns, 1):.2f}')")
    printf '%-24s %12s %12s %12s %16s\n' "$name" "$idle" "$loaded" "$conns" "$per"
done
