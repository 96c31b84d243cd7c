#!/usr/bin/env bash
# Web benchmark (docs/benchmarks.md "Web"): the dashboard's home page and
# GET /api/incidents?limit=100 under load, on a database of EVENTS (default
# 1,000,000) `simulate --faults` events, served by `lifewatch run --listen`
# while that monitor is writing (simulate --nats publishes RATE events/s to
# it during the measurement). Load generator: oha (crates.io), installed into
# target/tools when missing. Reports requests/s and p50/p99 per route.
# Usage: [RATE=2000] [DURATION=20] [CONNECTIONS=8] benches/web.sh [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS="${1:-1000000}"
RATE="${RATE:-2000}"
SECONDS_EACH="${DURATION:-20}"
CONNECTIONS="${CONNECTIONS:-8}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
scripts/install-nats-server.sh >/dev/null
PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
OHA="$(command -v oha || echo "$CARGO_TARGET_DIR/tools/bin/oha")"
[ -x "$OHA" ] || cargo install oha --locked --quiet --root "$CARGO_TARGET_DIR/tools"
cargo build --release --quiet --bin lifewatch -p lifewatch
BIN="$CARGO_TARGET_DIR/release/lifewatch"
WORK="$(mktemp -d)"
. benches/lib.sh
WEB="$(free_port)"
trap "exit 130" INT TERM

START="$(date -u -d '90 days ago' +%Y-%m-%dT00:00:00Z)"
"$BIN" simulate --faults --seed 7 --accounts $(( EVENTS / 11 + 100 )) --start "$START" 2>/dev/null \
  | head -n "$EVENTS" > "$WORK/events.jsonl"
"$BIN" replay --db "$WORK/lifewatch.db" --quiet "$WORK/events.jsonl" > /dev/null
echo "database of $(wc -l < "$WORK/events.jsonl") lines: $(du -h "$WORK/lifewatch.db" | cut -f1), $("$BIN" incidents --db "$WORK/lifewatch.db" -o jsonl | wc -l) incidents"

start_nats
RUST_LOG=warn "$BIN" run --nats "$URL" --db "$WORK/lifewatch.db" --listen "127.0.0.1:$WEB" 2>"$WORK/run.log" & track $!
until curl -sf "http://127.0.0.1:$WEB/healthz" > /dev/null; do sleep 0.2; done
# The writer's load: live events (dated now) at RATE per second for the whole measurement.
"$BIN" simulate --faults --seed 8 --nats "$URL" --rate "$RATE" --duration "$(( 3 * SECONDS_EACH + 15 ))s" 2>"$WORK/sim.log" & track $!
sleep 5
# The home page twice: as everyone loads it (rendered pages are kept 500 ms),
# and with a different query string on every request (never kept: the cost
# of rendering it), through oha's random URLs.
for route in "/" '/[?]since=-[1-9][0-9]{4}h' "/api/incidents?limit=100" "/api/incidents?status=open&limit=100"; do
  url="http://127.0.0.1:$WEB$route"; random=()
  case "$route" in *"["*) random=(--rand-regex-url); url="http://127[.]0[.]0[.]1:$WEB$route" ;; esac
  "$OHA" --no-tui -z "${SECONDS_EACH}s" -c "$CONNECTIONS" "${random[@]}" --output-format json "$url" > "$WORK/oha.json"
  python3 - "$route" "$WORK/oha.json" <<'PY'
import json, sys
route, path = sys.argv[1], sys.argv[2]
r = json.load(open(path))
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
print(f"{route:42} {s['requestsPerSec']:8.0f} req/s   p50 {p['p50']*1000:6.2f} ms   p99 {p['p99']*1000:6.2f} ms   statuses {codes}")
PY
done
accepted="$(curl -s "http://127.0.0.1:$WEB/metrics" | awk '/^lifewatch_events_accepted_total/ {s += $2} END {print s + 0}')"
echo "the monitor accepted $accepted live events while measured (RATE=$RATE/s); load average $(cut -d' ' -f1-3 /proc/loadavg)"
