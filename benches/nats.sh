#!/usr/bin/env bash
# NATS benchmark of the live monitor (README "NATS benchmark"). Starts its own
# nats-server on a free port with a temporary store, and measures in one run:
#   (a) a bare async-nats consumer that only fetches and acknowledges,
#   (b) `lifewatch run` draining the same stream with persistence,
# over EVENTS (default 1,000,000) `simulate --faults` lines published with
# `publish --raw`; then (c) latency from publishing a failure event to its
# incident on INCIDENTS with `simulate --nats --rate 5000` as background load.
# Usage: [RUNS=3] benches/nats.sh [EVENTS]     (stops everything it started on exit)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-1000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
scripts/install-nats-server.sh >/dev/null
cargo build --release --quiet --bin lifewatch -p lifewatch
cargo build --release --quiet -p lifewatch-nats --example nats_bench
# LIFEWATCH_BIN measures another build (e.g. an older one, side by side);
# RUN_ARGS are extra arguments of `lifewatch run` (e.g. `--config FILE`).
BIN="${LIFEWATCH_BIN:-$CARGO_TARGET_DIR/release/lifewatch}"
read -r -a RUN_EXTRA <<<"${RUN_ARGS:-}"
BENCH="$CARGO_TARGET_DIR/release/examples/nats_bench"
WORK="$(mktemp -d)"
. benches/lib.sh
start_nats
publish_simulated "$BIN" "$EVENTS"

# (a) and (b) alternate RUNS times (default 3) on the same stream, each (b)
# on a fresh database and consumer; medians and their ratio are reported.
RUNS="${RUNS:-3}"
: >"$WORK/a.txt"; : >"$WORK/b.txt"
for run in $(seq "$RUNS"); do
  "$BENCH" bare "$URL" | tee -a "$WORK/a.txt"
  "$BENCH" reset "$URL"; rm -f "$WORK"/lifewatch.db*
  RUST_LOG=warn "$BIN" run --nats "$URL" --db "$WORK/lifewatch.db" "${RUN_EXTRA[@]}" 2>"$WORK/run.log" & RUN=$!; track $RUN
  "$BENCH" drain "$URL" | tee -a "$WORK/b.txt"
  kill -TERM "$RUN"; wait "$RUN" || { echo "monitor failed:"; cat "$WORK/run.log"; exit 1; }
done
median() { grep -o '= [0-9]*' "$1" | tr -dc '0-9\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
A=$(median "$WORK/a.txt"); B=$(median "$WORK/b.txt")
echo "median (a) bare consumer: $A events/s; median (b) lifewatch run: $B events/s"
echo "ratio of medians (b)/(a): $(python3 -c "print(f'{$B/$A:.0%}')")"

echo "(c) latency at 5000 events/s of background load:"
RUST_LOG=warn "$BIN" run --nats "$URL" --db "$WORK/lifewatch.db" "${RUN_EXTRA[@]}" 2>"$WORK/run.log" & RUN=$!; track $RUN
"$BIN" simulate --faults --seed 8 --nats "$URL" --rate 5000 --duration 40s 2>"$WORK/sim.log" & track $!
sleep 5   # let the background load reach its rate
"$BENCH" latency "$URL" 300 100
kill -TERM "$RUN"; wait "$RUN" && echo "monitor stopped cleanly"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
