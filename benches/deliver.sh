#!/usr/bin/env bash
# Notification delivery benchmark (docs/benchmarks.md "Notifications"). Starts
# its own nats-server and webhook receivers on free ports, and measures in one run:
#   (a) `lifewatch run` draining EVENTS (default 300,000) `simulate --faults`
#       lines with no channels, and with every team's transitions routed to a
#       webhook that never answers, alternating RUNS times (default 3): the
#       medians and their ratio (delivery must not slow ingestion);
#   (b) a burst: the transitions that (a) left pending, delivered from a
#       standing start to a webhook that accepts (at least 10,000).
# Usage: [RUNS=3] benches/deliver.sh [EVENTS]     (stops everything it started on exit)
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-300000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
scripts/install-nats-server.sh >/dev/null
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
cargo build --release --quiet --bin lifewatch -p lifewatch
cargo build --release --quiet -p lifewatch-nats --example nats_bench
cargo build --release --quiet -p lifewatch-web --example webhook_sink
BIN="$CARGO_TARGET_DIR/release/lifewatch"
BENCH="$CARGO_TARGET_DIR/release/examples/nats_bench"
SINK="$CARGO_TARGET_DIR/release/examples/webhook_sink"
WORK="$(mktemp -d)"
. benches/lib.sh
HOOK_PORT="$(free_port)"
start_nats
publish_simulated "$BIN" "$EVENTS"

# Every team routes every transition to one webhook channel.
{
  printf '[delivery]\ntimeout = "10s"\n\n[[channels]]\nname = "hook"\nkind = "webhook"\nurl = "http://127.0.0.1:%s/hook"\n' "$HOOK_PORT"
  for team in platform-oncall accounts-oncall billing-support customer-support launch-ops; do
    printf '\n[[teams]]\nname = "%s"\nroutes = [{ channel = "hook" }]\ninhibit_during_outage = false\n' "$team"
  done
} > "$WORK/channels.toml"

drain() { # $1: label, $2...: extra run arguments
  local label="$1"; shift
  "$BENCH" reset "$URL"; rm -f "$WORK"/lifewatch.db*
  RUST_LOG=warn "$BIN" run --nats "$URL" --db "$WORK/lifewatch.db" "$@" 2>"$WORK/run.log" & local run=$!; track $run
  "$BENCH" drain "$URL" | sed "s/^/$label: /" | tee -a "$WORK/$label.txt"
  kill -TERM "$run"; wait "$run" || { echo "monitor failed:"; cat "$WORK/run.log"; exit 1; }
}

RUNS="${RUNS:-3}"
: >"$WORK/plain.txt"; : >"$WORK/hanging.txt"
"$SINK" "127.0.0.1:$HOOK_PORT" hang & HANG=$!; track $HANG
wait_port "$HOOK_PORT"
for run in $(seq "$RUNS"); do
  drain plain
  drain hanging --config "$WORK/channels.toml"
done
median() { grep -o '= [0-9]*' "$1" | tr -dc '0-9\n' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
P=$(median "$WORK/plain.txt"); H=$(median "$WORK/hanging.txt")
echo "(a) median drain, no channels: $P events/s; every transition to a hanging webhook: $H events/s"
echo "(a) ratio of medians (hanging)/(no channels): $(python3 -c "print(f'{$H/$P:.1%}')")"

# (b) The last hanging run left its deliveries pending: deliver them to a receiver that accepts.
PENDING=$(python3 -c "import sqlite3; print(sqlite3.connect('$WORK/lifewatch.db').execute(\"select count(*) from deliveries where state='pending'\").fetchone()[0])")
kill "$HANG"; wait "$HANG" 2>/dev/null || true
"$SINK" "127.0.0.1:$HOOK_PORT" accept & track $!
wait_port "$HOOK_PORT"
STARTED=$(date +%s%3N)
RUST_LOG=warn "$BIN" run --nats "$URL" --db "$WORK/lifewatch.db" --config "$WORK/channels.toml" 2>"$WORK/run.log" & RUN=$!; track $RUN
while :; do
  read -r COUNT FIRST LAST < <(curl -s "http://127.0.0.1:$HOOK_PORT/count")
  [ "$COUNT" -ge "$PENDING" ] && break
  sleep 0.2
done
kill -TERM "$RUN"; wait "$RUN" || { echo "monitor failed:"; cat "$WORK/run.log"; exit 1; }
echo "(b) burst: $COUNT deliveries in $((LAST - FIRST)) ms from the first to the last request = $(python3 -c "print(round($COUNT*1000/max(1,$LAST-$FIRST)))")/s; $((LAST - STARTED)) ms from the monitor's start"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
