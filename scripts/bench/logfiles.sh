#!/usr/bin/env bash
# logfiles.sh — how fast worker output reaches the daemon's log files.
#
# Runs examples/logfiles_bench.rs (release) ROUNDS times: the FileSink's lines/s to real
# files (text and JSON) as a ratio of the same sink writing to /dev/null, and the whole
# path (pipes → Output::start_to → files) against the same path into a discarding sink,
# with the share of lines dropped when 4 workers print as fast as they can.
#
# Run: scripts/bench/logfiles.sh [LINES] [DIR]   (LINES=2000000; DIR: a temp dir, or a
#      directory on the disk to measure; ROUNDS=3)
# Not a timed test: read the ratios, on an otherwise idle machine.

. "$(dirname "$0")/lib.sh"
LINES=${1:-2000000}
DIR=${2:-$WORK/logs}
ROUNDS=${ROUNDS:-3}
log "# cargo build --release --example logfiles_bench"
(cd "$ROOT" && cargo build --release -q --example logfiles_bench) || { log "build failed"; exit 1; }
for round in $(seq 1 "$ROUNDS"); do
    echo "## round $round"
    "$ROOT/target/release/examples/logfiles_bench" "$LINES" "$DIR"
done
