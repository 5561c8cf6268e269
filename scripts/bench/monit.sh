#!/usr/bin/env bash
# monit.sh — what does watching cost? `herd monit` against `pm2 monit` on the same apps.
#
# One app of N (default 64) workers: herd-testworker under the herd daemon; for PM2, a
# trivial Node http server in PM2's cluster mode (N instances; PM2 from `npm install pm2`
# in a temp dir, PM2_HOME there, `pm2 kill` at the end; skipped with a note if it cannot
# run). Each monitor runs in a tmux window of 120x40 (a real terminal) for DUR seconds
# after a 3 s warm-up; measured over those DUR seconds, ROUNDS times, medians:
#   monit CPU   utime + stime of the monitor's process (pm2 monit: its whole process tree)
#   daemon CPU  the herd daemon's (or PM2's God daemon's) CPU meanwhile
# The issue's target: herd monit <= 2 % of a core with 64 workers.
#
# Run:     scripts/bench/monit.sh                 (N=64 DUR=20 ROUNDS=3, ~4 min with PM2)
#          NO_BUILD=1 PM2=0 ...
# Not a timed test: CI does not run it.

. "$(dirname "$0")/lib.sh"
N=${N:-64}
DUR=${DUR:-20}
ROUNDS=${ROUNDS:-3}
PM2=${PM2:-1}
[ "${NO_BUILD:-0}" = 1 ] || bench_build
command -v tmux >/dev/null || apt-get install -y tmux >/dev/null 2>&1
TICK=$(getconf CLK_TCK)

pct() { awk -v a="$1" -v b="$2" -v hz="$TICK" -v d="$DUR" 'BEGIN{printf "%.2f", (b-a)/hz/d*100}'; }

# measure SESSION_CMD DAEMON_PID: prints "monitor% daemon%"
measure() {
    local cmd=$1 dpid=$2 s="bench-monit-$$" mpid m0 m1 d0 d1
    tmux new-session -d -s "$s" -x 120 -y 40 "$cmd"
    sleep 3
    mpid=$(tmux display-message -p -t "$s" '#{pane_pid}')
    m0=$(tree_ticks "$mpid"); d0=$(tree_ticks "$dpid")
    sleep "$DUR"
    m1=$(tree_ticks "$mpid"); d1=$(tree_ticks "$dpid")
    tmux kill-session -t "$s"
    echo "$(pct "$m0" "$m1") $(pct "$d0" "$d1")"
}

export HERD_HOME="$WORK/home"
printf '[apps.big]\ncommand = ["%s"]\ninstances = %s\nlisten = ["127.0.0.1:0"]\n' "$TW" "$N" >"$WORK/herd.toml"
"$HERD" start "$WORK/herd.toml" >/dev/null || { log "!! herd start failed"; exit 1; }
DPID=$("$HERD" ping | sed -n 's/.*(pid \([0-9]*\).*/\1/p')
declare -a HM HD
for r in $(seq 1 "$ROUNDS"); do
    read -r m d < <(measure "HERD_HOME=$HERD_HOME $HERD monit" "$DPID")
    echo "herd monit round $r: monit ${m}% of a core, daemon ${d}% ($N workers)"
    HM+=("$m"); HD+=("$d")
done
"$HERD" kill >/dev/null 2>&1
echo "herd monit median: monit $(printf '%s\n' "${HM[@]}" | median)% of a core, daemon $(printf '%s\n' "${HD[@]}" | median)% (target <= 2%)"

if [ "$PM2" = 1 ]; then
    mkdir -p "$WORK/pm2pkg" && (cd "$WORK/pm2pkg" && npm install --no-audit --no-fund --silent pm2 >/dev/null 2>&1)
    PM2_BIN="$WORK/pm2pkg/node_modules/.bin/pm2"
    if [ -x "$PM2_BIN" ]; then
        export PM2_HOME="$WORK/pm2home"
        PORT=$(free_port)
        printf 'require("http").createServer((q, s) => s.end("ok\\n")).listen(%s);\n' "$PORT" >"$WORK/server.js"
        "$PM2_BIN" start "$WORK/server.js" -i "$N" --name big >/dev/null 2>&1
        sleep 5
        PPID_GOD=$(cat "$PM2_HOME/pm2.pid" 2>/dev/null)
        declare -a PM PD
        for r in $(seq 1 "$ROUNDS"); do
            read -r m d < <(measure "PM2_HOME=$PM2_HOME $PM2_BIN monit" "$PPID_GOD")
            echo "pm2 monit round $r: monit ${m}% of a core, God daemon ${d}% ($N workers)"
            PM+=("$m"); PD+=("$d")
        done
        "$PM2_BIN" kill >/dev/null 2>&1
        pm=$(printf '%s\n' "${PM[@]}" | median)
        echo "pm2 monit median: monit ${pm}% of a core, God daemon $(printf '%s\n' "${PD[@]}" | median)%"
        hm=$(printf '%s\n' "${HM[@]}" | median)
        awk -v h="$hm" -v p="$pm" 'BEGIN{ if (h > 0) printf "pm2 monit uses %.1fx the CPU of herd monit\n", p/h; else print "herd monit used no measurable CPU" }'
    else
        echo "pm2: npm install pm2 failed: skipped"
    fi
fi
