#!/usr/bin/env bash
# dashboard.sh — what does watching cost the daemon? Its CPU and RSS with one `herd monit`
# and one web dashboard open, 10 apps x 2 workers; and `herd monit`'s own CPU against
# `pm2 monit`'s on the same 10 apps.
#
# herd: 10 apps of 2 herd-testworker workers under the daemon. Three phases of DUR seconds
# each (after a 3 s warm-up), ROUNDS times, medians:
#   idle       nothing watches
#   watched    `herd monit` in a tmux window of 120x40 + the dashboard in headless Chromium
#              (Debian's, opened on `herd dashboard`'s URL: the page's script runs, its event
#              stream and the selected worker's log stream stay open)
#   daemon CPU utime + stime of the daemon over the phase; RSS at its end
# PM2: 10 apps of 2 instances of a trivial Node http server in cluster mode (PM2 from npm in
# a temp dir, PM2_HOME there, `pm2 kill` at the end); `pm2 monit` in the same tmux window.
# The issue's targets: the daemon <= 2 % of a core and <= 14 MB RSS, watched.
#
# Run:     scripts/bench/dashboard.sh            (DUR=20 ROUNDS=3, ~5 min with PM2)
#          NO_BUILD=1 PM2=0 ...
# Not a timed test: CI does not run it.

. "$(dirname "$0")/lib.sh"
APPS=${APPS:-10}
DUR=${DUR:-20}
ROUNDS=${ROUNDS:-3}
PM2=${PM2:-1}
[ "${NO_BUILD:-0}" = 1 ] || bench_build
for tool in tmux chromium; do
    command -v "$tool" >/dev/null || { log "!! $tool is missing (apt-get install $tool)"; exit 1; }
done
TICK=$(getconf CLK_TCK)
pct() { awk -v a="$1" -v b="$2" -v hz="$TICK" -v d="$DUR" 'BEGIN{printf "%.2f", (b-a)/hz/d*100}'; }

# phase DAEMON_PID MONITOR_CMD URL: prints "daemon% daemon_rss_kib monitor%"
phase() {
    local dpid=$1 cmd=$2 url=$3 s="bench-dash-$$" mpid=0 bpid=0 m0=0 m1=0 d0 d1 rss
    if [ -n "$cmd" ]; then
        tmux new-session -d -s "$s" -x 120 -y 40 "$cmd"
        mpid=$(tmux display-message -p -t "$s" '#{pane_pid}')
    fi
    if [ -n "$url" ]; then
        rm -rf "$WORK/chromium"
        chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
            --disable-background-networking --disable-component-update --disable-sync \
            --user-data-dir="$WORK/chromium" --remote-debugging-port=0 "$url" >/dev/null 2>&1 &
        bpid=$!
    fi
    sleep 3
    [ "$mpid" = 0 ] || m0=$(tree_ticks "$mpid")
    d0=$(tree_ticks "$dpid")
    sleep "$DUR"
    d1=$(tree_ticks "$dpid")
    [ "$mpid" = 0 ] || m1=$(tree_ticks "$mpid")
    rss=$(rss_kib "$dpid")
    [ "$mpid" = 0 ] || tmux kill-session -t "$s"
    [ "$bpid" = 0 ] || { kill "$bpid"; wait "$bpid" 2>/dev/null; }
    echo "$(pct "$d0" "$d1") $rss $(pct "$m0" "$m1")"
}

export HERD_HOME="$WORK/home"
: >"$WORK/herd.toml"
for i in $(seq 1 "$APPS"); do
    printf '[apps.app%s]\ncommand = ["%s"]\ninstances = 2\nlisten = ["127.0.0.1:0"]\n\n' "$i" "$TW" >>"$WORK/herd.toml"
done
"$HERD" start "$WORK/herd.toml" >/dev/null || { log "!! herd start failed"; exit 1; }
DPID=$("$HERD" ping | sed -n 's/.*(pid \([0-9]*\).*/\1/p')
URL=$("$HERD" dashboard)
declare -a IC IR WC WR HM
for r in $(seq 1 "$ROUNDS"); do
    read -r c rss _ < <(phase "$DPID" "" "")
    echo "round $r idle:    daemon ${c}% of a core, RSS $((rss / 1024)) MiB"
    IC+=("$c"); IR+=("$rss")
    read -r c rss m < <(phase "$DPID" "HERD_HOME=$HERD_HOME $HERD monit" "$URL")
    echo "round $r watched: daemon ${c}% of a core, RSS $((rss / 1024)) MiB; herd monit ${m}%"
    WC+=("$c"); WR+=("$rss"); HM+=("$m")
done
"$HERD" kill >/dev/null 2>&1
med() { printf '%s\n' "$@" | median; }
mib() { awk -v k="$1" 'BEGIN{printf "%.1f", k/1024}'; }
echo "median idle:    daemon $(med "${IC[@]}")% of a core, RSS $(mib "$(med "${IR[@]}")") MiB"
echo "median watched: daemon $(med "${WC[@]}")% of a core, RSS $(mib "$(med "${WR[@]}")") MiB (targets <= 2%, <= 14 MB); herd monit $(med "${HM[@]}")% of a core"

if [ "$PM2" = 1 ]; then
    mkdir -p "$WORK/pm2pkg" && (cd "$WORK/pm2pkg" && npm install --no-audit --no-fund --silent pm2 >/dev/null 2>&1)
    PM2_BIN="$WORK/pm2pkg/node_modules/.bin/pm2"
    if [ -x "$PM2_BIN" ]; then
        export PM2_HOME="$WORK/pm2home"
        for i in $(seq 1 "$APPS"); do
            printf 'require("http").createServer((q, s) => s.end("ok\\n")).listen(%s);\n' "$(free_port)" >"$WORK/server$i.js"
            "$PM2_BIN" start "$WORK/server$i.js" -i 2 --name "app$i" >/dev/null 2>&1
        done
        sleep 5
        GOD=$(cat "$PM2_HOME/pm2.pid" 2>/dev/null)
        declare -a PM PC
        for r in $(seq 1 "$ROUNDS"); do
            read -r c rss m < <(phase "$GOD" "PM2_HOME=$PM2_HOME $PM2_BIN monit" "")
            echo "round $r pm2 monit: ${m}% of a core; God daemon ${c}%, RSS $((rss / 1024)) MiB"
            PM+=("$m"); PC+=("$c")
        done
        "$PM2_BIN" kill >/dev/null 2>&1
        pm=$(med "${PM[@]}"); hm=$(med "${HM[@]}")
        echo "median pm2 monit: ${pm}% of a core (God daemon $(med "${PC[@]}")%)"
        awk -v h="$hm" -v p="$pm" 'BEGIN{ if (h > 0) printf "pm2 monit uses %.1fx the CPU of herd monit on the same %s apps\n", p/h, '"$APPS"'; else print "herd monit used no measurable CPU" }'
    else
        echo "pm2: npm install pm2 failed: skipped"
    fi
fi
