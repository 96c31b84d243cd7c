#!/usr/bin/env bash
# Store benchmark of issue 3: persisting replay (`replay --db`) of the
# 1,000,000-event `simulate --faults --seed 7 --accounts 90000` stream (random
# event ids) against the in-memory replay of the same file, alternately, RUNS
# times each; then the time to restore the engine from the full database
# (opening it for writing refolds the log: `replay --db DB` of an empty file),
# and the database's bytes per event. Prints medians.
#
#   benches/store.sh            # RUNS=3 by default
#   RUNS=5 benches/store.sh     # as README reports it
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet --bin lifewatch
bin="${CARGO_TARGET_DIR:-target}/release/lifewatch"
"$bin" simulate --seed 7 --accounts 90000 --faults --out "$work/events.jsonl" 2>"$work/sim.txt"
lines=$(wc -l <"$work/events.jsonl")
echo "stream: $lines lines, $(du -m "$work/events.jsonl" | cut -f1) MB ($(cat "$work/sim.txt"))"
# Timings are only comparable at a similar load: print it.
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
: >"$work/empty.jsonl"

seconds() { # prints the wall seconds of running "$@" with output discarded
  local start end
  start=$(date +%s.%N); "$@" >/dev/null 2>&1; end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: >"$work/memory.txt"; : >"$work/db.txt"; : >"$work/restore.txt"
for run in $(seq "$RUNS"); do
  seconds "$bin" replay "$work/events.jsonl" --format jsonl >>"$work/memory.txt"
  rm -f "$work"/run.db*
  seconds "$bin" replay --db "$work/run.db" "$work/events.jsonl" --format jsonl >>"$work/db.txt"
  seconds "$bin" replay --db "$work/run.db" "$work/empty.jsonl" --format jsonl >>"$work/restore.txt"
done
memory=$(median <"$work/memory.txt"); db=$(median <"$work/db.txt"); restore=$(median <"$work/restore.txt")
accepted=$("$bin" replay "$work/events.jsonl" --format jsonl 2>&1 >/dev/null | sed -n 's/.* \([0-9]*\) accepted.*/\1/p')
bytes=$(stat -c %s "$work/run.db")
printf 'in-memory replay:   median %.3f s = %.0f events/s\n' "$memory" "$(echo "$lines / $memory" | bc -l)"
printf 'replay --db:        median %.3f s = %.0f events/s\n' "$db" "$(echo "$lines / $db" | bc -l)"
printf 'ratio db/memory (events/s): %.2f\n' "$(echo "$memory / $db" | bc -l)"
printf 'restore (open for writing, refold %s events): median %.3f s\n' "$accepted" "$restore"
printf 'database: %s bytes = %.0f bytes per accepted event\n' "$bytes" "$(echo "$bytes / $accepted" | bc -l)"
