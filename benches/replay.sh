#!/usr/bin/env bash
# End-to-end replay benchmark of issue 2: `lifewatch replay --format jsonl` of a
# 1,000,000-event `simulate --faults` stream (random event ids) to /dev/null,
# against serde_json alone decoding the same file into owned typed envelopes
# (examples/decode_baseline.rs). Both run alternately, RUNS times each, in one
# run of this script; it prints the medians and the ratio, then the resident
# memory per tracked entity of a stream with about 1,000,000 entities.
#
#   benches/replay.sh            # RUNS=5 by default
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-5}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet --bin lifewatch --example decode_baseline
target_dir="${CARGO_TARGET_DIR:-target}"
bin="$target_dir/release/lifewatch"
baseline="$target_dir/release/examples/decode_baseline"
"$bin" simulate --seed 7 --accounts 90000 --faults --out "$work/events.jsonl" 2>"$work/sim.txt"
lines=$(wc -l <"$work/events.jsonl")
echo "stream: $lines lines, $(du -m "$work/events.jsonl" | cut -f1) MB ($(cat "$work/sim.txt"))"

seconds() { # prints the wall seconds of running "$@" with output discarded
  local start end
  start=$(date +%s.%N); "$@" >/dev/null 2>&1; end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: >"$work/base.txt"; : >"$work/replay.txt"
for _ in $(seq "$RUNS"); do
  seconds "$baseline" "$work/events.jsonl" >>"$work/base.txt"
  seconds "$bin" replay "$work/events.jsonl" --format jsonl >>"$work/replay.txt"
done
base=$(median <"$work/base.txt"); replay=$(median <"$work/replay.txt")
printf 'baseline serde_json owned decode: median %.3f s = %.0f events/s\n' "$base" "$(echo "$lines / $base" | bc -l)"
printf 'lifewatch replay --format jsonl:  median %.3f s = %.0f events/s\n' "$replay" "$(echo "$lines / $replay" | bc -l)"
printf 'ratio replay/baseline (events/s): %.2f\n' "$(echo "$base / $replay" | bc -l)"

# Memory: a stream with about a million entities (accounts, projects, disputes).
"$bin" simulate --seed 8 --accounts 300000 --faults --out "$work/big.jsonl" 2>/dev/null
/usr/bin/time -v "$bin" replay "$work/big.jsonl" --format jsonl 2>"$work/mem.txt" >/dev/null
rss_kb=$(awk -F: '/Maximum resident/ {gsub(/ /,"",$2); print $2}' "$work/mem.txt")
entities=$(sed -n 's/.* \([0-9]*\) entities.*/\1/p' "$work/mem.txt" | tail -1)
echo "memory: max RSS ${rss_kb} kB for ${entities} entities = $(( rss_kb * 1024 / entities )) bytes per entity"
