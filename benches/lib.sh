# What the NATS benchmarks (nats.sh, deliver.sh, web.sh) share; sourced, not
# run. Each script sets WORK (a temporary directory) first.
#   free_port                 a free loopback port
#   wait_port PORT            until something listens on PORT
#   track PID                 stopped (TERM, then waited for) on exit, last first; WORK removed
#   start_nats                a JetStream nats-server on a free port: sets PORT and URL
#   publish_simulated BIN N   N `simulate --faults` events dated 90 days ago on
#                             (none is time_in_future), published with `publish --raw`
PIDS=()
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do sleep 0.1; done; }
track() { PIDS+=("$1"); }
# Last started, first stopped: the nats-server goes last, so that no client
# is left retrying against a server that is gone.
cleanup() {
  local index
  for (( index=${#PIDS[@]}-1; index>=0; index-- )); do
    kill "${PIDS[index]}" 2>/dev/null || true; wait "${PIDS[index]}" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
start_nats() {
  PORT="$(free_port)"
  URL="nats://127.0.0.1:$PORT"
  nats-server -a 127.0.0.1 -p "$PORT" -js -sd "$WORK/js" 2>"$WORK/nats.log" & track $!
  wait_port "$PORT"
  echo "$(nats-server --version), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
}
publish_simulated() {
  local bin="$1" events="$2" start
  start="$(date -u -d '90 days ago' +%Y-%m-%dT00:00:00Z)"
  "$bin" simulate --faults --seed 7 --accounts $(( events / 11 + 100 )) --start "$start" 2>/dev/null \
    | head -n "$events" > "$WORK/events.jsonl"
  echo "generated $(wc -l < "$WORK/events.jsonl") lines"
  "$bin" publish --raw "$WORK/events.jsonl" --nats "$URL"
}
