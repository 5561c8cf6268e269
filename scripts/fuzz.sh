#!/usr/bin/env bash
# fuzz.sh — run every fuzz target of fuzz/ for SECONDS each (default 20), one after the
# other, from the committed seeds (fuzz/corpus/NAME, never written to: new inputs go to a
# temporary corpus). A crash stops the run with libFuzzer's report and the input under
# fuzz/artifacts/NAME/; reproduce it with `cargo +nightly fuzz run NAME fuzz/artifacts/NAME/crash-…`.
#
# Run:    scripts/fuzz.sh            (CI: 20 s each)
#         scripts/fuzz.sh 600        (10 minutes each)
#         TARGETS="channel herd_toml" scripts/fuzz.sh 60
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${1:-20}
targets=${TARGETS:-$(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^herd-fuzz$')}
work=$(mktemp -d /tmp/herd-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
cargo +nightly fuzz build
for t in $targets; do
    mkdir -p "$work/$t"
    echo "== $t: $seconds s"
    if ! cargo +nightly fuzz run "$t" "$work/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$work/$t.log" 2>&1; then
        tail -n 60 "$work/$t.log" >&2
        echo "fuzz target $t failed: its input is under fuzz/artifacts/$t/" >&2
        exit 1
    fi
    grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$work/$t.log" || true
done
echo "every fuzz target ran $seconds s without a finding"
