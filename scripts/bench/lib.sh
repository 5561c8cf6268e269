# Shared helpers for the scripts in scripts/bench/ (sourced, not run).
#
# Provides: ROOT, HERD, TW (herd-testworker), WORK (temp dir, removed at exit),
# bench_build, need_wrk, free_port, track PID, start_herd, wait_ready,
# start_herd_ready, bug, check_notify, bug_summary, stop_pid,
# wait_port, median. Every process started through these helpers is killed by
# the EXIT trap.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# Where cargo builds: CARGO_TARGET_DIR when set (as cargo itself reads it).
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
HERD=$TARGET/release/herd
TW=$TARGET/release/herd-testworker
WORK=$(mktemp -d /tmp/herd-bench.XXXXXX)
_TRACKED=()

log() { printf '%s\n' "$*" >&2; }

bench_build() {
    # herd-testworker is built only with herd's `testworker` feature (it is kept out of
    # `cargo install`). `-p herd` is needed: from the workspace root, `herd/testworker`
    # would name herd's dev-dependency on itself, which a plain build leaves out.
    log "# cargo build --release -p herd --features testworker"
    (cd "$ROOT" && cargo build --release -q -p herd --features testworker) || { log "build failed"; exit 1; }
}

need_wrk() {
    command -v wrk >/dev/null 2>&1 && return 0
    log "# installing wrk"
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y wrk >/dev/null 2>&1; }
    command -v wrk >/dev/null 2>&1 || { log "wrk not available"; exit 1; }
}

free_port() {
    python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

track() { _TRACKED+=("$1"); }

_cleanup() {
    local p
    for p in "${_TRACKED[@]}"; do kill -TERM "$p" 2>/dev/null; done
    sleep 0.3
    for p in "${_TRACKED[@]}"; do
        kill -KILL "$p" 2>/dev/null
        # herd puts each worker in its own process group: kill leftovers too.
        pkill -KILL -P "$p" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap _cleanup EXIT
trap 'exit 130' INT TERM

# start_herd LOGFILE HERD-RUN-ARGS... ; sets HERD_PID
start_herd() {
    local logf=$1; shift
    "$HERD" run "$@" >"$logf" 2>&1 &
    HERD_PID=$!
    track "$HERD_PID"
}

# wait_ready LOGFILE N [TIMEOUT_S]: waits until herd logged N "ready after"
# lines. Prints the seconds waited. Returns 1 on timeout.
wait_ready() {
    local logf=$1 n=$2 t=${3:-30} start now c
    start=$(date +%s.%N)
    while :; do
        c=$(grep -c 'ready after' "$logf" 2>/dev/null)
        [ "${c:-0}" -ge "$n" ] && break
        now=$(date +%s.%N)
        if awk -v a="$start" -v b="$now" -v t="$t" 'BEGIN{exit !(b-a>t)}'; then
            log "!! only ${c:-0}/$n workers ready after ${t}s ($(grep -c 'not a worker' "$logf") notify messages ignored)"
            return 1
        fi
        sleep 0.02
    done
    now=$(date +%s.%N)
    awk -v a="$start" -v b="$now" 'BEGIN{printf "%.2f\n", b-a}'
}

# wait_port PORT: until something accepts on 127.0.0.1:PORT (max 10 s).
wait_port() {
    local i
    for i in $(seq 1 500); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.02
    done
    return 1
}

# stop_pid PID: SIGTERM, wait up to 5 s, then SIGKILL.
stop_pid() {
    local p=$1 i
    kill -TERM "$p" 2>/dev/null || return 0
    for i in $(seq 1 250); do kill -0 "$p" 2>/dev/null || break; sleep 0.02; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    return 0
}

# median of the numbers on stdin
# CPU ticks (utime + stime) of a process and all its descendants.
tree_ticks() {
    local pid=$1 total=0 t c
    t=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null) || { echo 0; return; }
    total=$t
    for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        total=$((total + $(tree_ticks "$c")))
    done
    echo "$total"
}

# Resident memory of a process, in KiB.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

median() {
    python3 -c 'import sys,statistics;v=[float(x) for x in sys.stdin.read().split()];print(statistics.median(v) if v else "nan")'
}

# Regression checks. herd once dropped READY=1 sent before it handled the
# worker's spawn result ("notify message from pid P, which is not a worker:
# ignored"; the worker then waited for the 10 s listen timeout). That is fixed;
# the scripts no longer work around it but report it: `bug TEXT` prints
# "BUG: TEXT" and counts it, bug_summary prints the count at the end and fails
# (exit status 1) if there was any.
bug() { log "BUG: $*"; printf '%s\n' "$*" >>"$WORK/bugs"; }
bug_count() { if [ -f "$WORK/bugs" ]; then wc -l <"$WORK/bugs"; else echo 0; fi; }
# check_notify LOGFILE WHAT: a BUG for every herd log with "which is not a worker".
check_notify() {
    local n
    n=$(grep -c 'not a worker' "$1" 2>/dev/null)
    [ "${n:-0}" -gt 0 ] && bug "$2: herd ignored $n notify message(s) from its own workers ('which is not a worker')"
    return 0
}
bug_summary() {
    local n
    n=$(bug_count)
    if [ "$n" -gt 0 ]; then
        echo "BUG: $n regression check(s) failed:"
        sed 's/^/  BUG: /' "$WORK/bugs"
        return 1
    fi
    echo "regression checks: 0 BUG (every worker ready within ${READY_TIMEOUT}s, no 'which is not a worker')"
}

# start_herd_ready LOGFILE N HERD-RUN-ARGS...: start_herd, then wait until N
# workers are ready. Not all ready within READY_TIMEOUT s (default 5; the test
# worker is ready in a few ms) is a BUG; the wait then goes on up to 30 s so the
# measurement still has all workers. Sets HERD_PID.
READY_TIMEOUT=${READY_TIMEOUT:-5}
start_herd_ready() {
    local logf=$1 n=$2; shift 2
    start_herd "$logf" "$@"
    if ! wait_ready "$logf" "$n" "$READY_TIMEOUT" >/dev/null 2>&1; then
        bug "herd run $*: only $(grep -c 'ready after' "$logf")/$n workers ready after ${READY_TIMEOUT}s ($(grep -c 'not a worker' "$logf") notify messages ignored)"
        wait_ready "$logf" "$n" 30 >/dev/null || { log "herd never got $n workers ready"; return 1; }
    fi
    return 0
}
