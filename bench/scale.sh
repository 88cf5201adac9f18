#!/usr/bin/env bash
# What each extra instance costs Redis (docs/architecture.md, "Where the
# fleet's ceiling is"). For N in $INSTANCES (default "1 2 4 8"): a fresh
# private Redis and Mosquitto and N bridges, all pinned to CPU 0; instance 0
# holds the ingest lease, every instance tails the history. The S1
# generator (mqttbench stream, pinned to CPU 1) publishes QoS 1 messages in
# a closed loop and reads them back from instance 0 over WebSocket for
# $DURATION. Afterwards Redis's own CPU time (INFO cpu) and its time per
# command (INFO commandstats), divided by the messages delivered, say what
# one message costs Redis with N instances tailing.
#
#   bench/scale.sh                # 1 2 4 8 instances, 10 s each
#   INSTANCES="1 3" DURATION=5s bench/scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
instances=${INSTANCES:-1 2 4 8}
duration=${DURATION:-10s}
bridge_bin=${BRIDGE_BIN:-/tmp/mqttbridge-scale}
bench_bin=${MQTTBENCH_BIN:-/tmp/mqttbench-scale}
go build -o "$bridge_bin" ./cmd/mqttbridge
(cd bench && go build -o "$bench_bin" .)
work=$(mktemp -d /tmp/mqttbench-scale.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 200); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; echo "not ready: $1" >&2; return 1; }
cpu() { redis-cli -p "$1" info cpu | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.6f", s}'; }

echo "commit $(git rev-parse --short HEAD), $(date -u '+%d %b %Y %H:%M UTC'), $duration per row, load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '| instances | msg/s | Redis CPU µs/msg | EVALSHA µs/msg | XREAD µs/msg | XREAD calls/msg | bridge CPU (sum) |\n|---:|---:|---:|---:|---:|---:|---:|\n'
for n in $instances; do
  rport=$(free_port); mport=$(free_port)
  taskset -c 0 redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --daemonize no --loglevel warning --dir "$work" >/dev/null &
  pids+=($!)
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nlog_dest none\n' "$mport" >"$work/m.conf"
  taskset -c 0 /usr/sbin/mosquitto -c "$work/m.conf" &
  pids+=($!)
  until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.1; done
  bpids=()
  addrs=()
  for i in $(seq 0 $((n - 1))); do
    hport=$(free_port)
    taskset -c 0 "$bridge_bin" --http-addr "127.0.0.1:$hport" --mqtt-url "mqtt://127.0.0.1:$mport" --topics 'bench/#' \
      --redis-url "redis://127.0.0.1:$rport/0" --redis-key-prefix bench: --instance-id "scale$i" --log-level warn >"$work/bridge$i.log" 2>&1 &
    bpids+=($!); pids+=($!); addrs+=("127.0.0.1:$hport")
    wait_http "http://127.0.0.1:$hport/readyz"
    [ "$i" = 0 ] && sleep 1 # instance 0 takes the ingest lease
  done
  redis-cli -p "$rport" config resetstat >/dev/null
  before=$(cpu "$rport")
  out=$(taskset -c 1 "$bench_bin" stream -json -sub ws -mqtt "127.0.0.1:$mport" -topic bench/s1 \
    -ws-url "ws://${addrs[0]}/v1/ws?filter=bench%2Fs1" -duration "$duration" -warmup 2s \
    -pids "$(IFS=,; echo "${bpids[*]}")")
  after=$(cpu "$rport")
  stats=$(redis-cli -p "$rport" info commandstats)
  python3 - "$n" "$before" "$after" "$out" "$stats" <<'EOF'
import json, sys
n, before, after, out, stats = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4]), sys.argv[5]
msgs = out["delivered_total"] + out.get("probes", 0)
cmd = {}
for line in stats.splitlines():
    if line.startswith("cmdstat_"):
        name, rest = line[8:].split(":", 1)
        kv = dict(p.split("=") for p in rest.split(","))
        cmd[name] = (int(kv["calls"]), float(kv["usec"]))
ev = cmd.get("evalsha", (0, 0))[1] + cmd.get("eval", (0, 0))[1]
xr_calls, xr_usec = cmd.get("xread", (0, 0))
bridges = sum(out.get("pid_cpu_pct", {}).values())
valid = "" if out.get("valid") else " (invalid: %s)" % out.get("invalid")
print("| %s | %.0f | %.1f | %.1f | %.2f | %.3f | %.0f%% |%s" % (n, out["msgs_per_s"], (after - before) * 1e6 / msgs, ev / msgs, xr_usec / msgs, xr_calls / msgs, bridges, valid))
EOF
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
done
