#!/usr/bin/env bash
# A local Starling cluster on one machine: a redis-server and three nodes (node-a, node-b, node-c).
#
#   scripts/cluster.sh [extra broker flags...]      e.g. scripts/cluster.sh --logLevel debug
#
# Ports (override with environment variables):
#   MQTT_PORTS="1883 1884 1885"   METRICS_PORTS="9100 9101 9102"   REDIS_PORT=6379   WORKERS=2
# Logs go to $LOG_DIR (default: a fresh directory under /tmp). Ctrl-C stops the nodes, then Redis.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
read -r -a MQTT <<<"${MQTT_PORTS:-1883 1884 1885}"
read -r -a METRICS <<<"${METRICS_PORTS:-9100 9101 9102}"
REDIS_PORT="${REDIS_PORT:-6379}"
WORKERS="${WORKERS:-2}"
NAMES=(node-a node-b node-c)
LOG_DIR="${LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/starling-cluster.XXXXXX")}"
mkdir -p "$LOG_DIR"

# The broker needs Node.js 26: the workspace's own binary (pnpm install fetches it; not the .bin/node
# wrapper, which would stand between this script and the process it stops), else whatever is on PATH.
NODE="$ROOT/node_modules/node/bin/node"
[[ -x "$NODE" ]] || NODE="$(command -v node)"

if [[ ${#MQTT[@]} -ne 3 || ${#METRICS[@]} -ne 3 ]]; then
  echo "cluster.sh: MQTT_PORTS and METRICS_PORTS need three ports each" >&2
  exit 2
fi
command -v redis-server >/dev/null || { echo "cluster.sh: redis-server not found (Debian/Ubuntu: apt-get install redis-server)" >&2; exit 2; }

PIDS=()
REDIS_PID=""
stopping=0
cleanup() {
  [[ $stopping -eq 1 ]] && return
  stopping=1
  trap - INT TERM
  echo
  echo "stopping the nodes..."
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ -n "$REDIS_PID" ]]; then
    echo "stopping redis-server..."
    kill -TERM "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
  fi
  echo "stopped (logs kept in $LOG_DIR)"
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

# Waits (bounded) until a log file has a line matching a pattern, or the process is gone.
await_line() {
  local file="$1" pattern="$2" pid="$3" what="$4"
  for _ in $(seq 1 300); do
    grep -q "$pattern" "$file" 2>/dev/null && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "cluster.sh: $what exited; its log ($file):" >&2
      tail -n 20 "$file" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "cluster.sh: $what did not start within 30 s; see $file" >&2
  return 1
}

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$LOG_DIR" >"$LOG_DIR/redis.log" 2>&1 &
REDIS_PID=$!
await_line "$LOG_DIR/redis.log" "Ready to accept connections" "$REDIS_PID" "redis-server on port $REDIS_PORT"

for i in 0 1 2; do
  "$NODE" "$ROOT/packages/core/src/bin/starling.ts" \
    --nodeId "${NAMES[$i]}" \
    --port "${MQTT[$i]}" \
    --metrics.port "${METRICS[$i]}" \
    --workers "$WORKERS" \
    --redis.url "redis://127.0.0.1:$REDIS_PORT" \
    "$@" >"$LOG_DIR/${NAMES[$i]}.log" 2>&1 &
  PIDS+=($!)
  await_line "$LOG_DIR/${NAMES[$i]}.log" '"starling listening"' "${PIDS[$i]}" "${NAMES[$i]}"
done

cat <<EOF

Starling cluster running: 3 nodes sharing redis://127.0.0.1:$REDIS_PORT

  node      MQTT                        metrics
  node-a    mqtt://127.0.0.1:${MQTT[0]}      http://127.0.0.1:${METRICS[0]}/metrics
  node-b    mqtt://127.0.0.1:${MQTT[1]}      http://127.0.0.1:${METRICS[1]}/metrics
  node-c    mqtt://127.0.0.1:${MQTT[2]}      http://127.0.0.1:${METRICS[2]}/metrics

Try it (mosquitto-clients): subscribe on one node, publish on another:
  mosquitto_sub -p ${MQTT[2]} -t 'demo/#' -q 1 -v
  mosquitto_pub -p ${MQTT[0]} -t demo/hello -m 'hi from node-a' -q 1

Logs: $LOG_DIR/{redis,node-a,node-b,node-c}.log
Press Ctrl-C to stop everything.
EOF

# Runs until Ctrl-C, or until a node exits on its own (then everything stops).
while true; do
  for i in 0 1 2; do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      echo "cluster.sh: ${NAMES[$i]} exited; see $LOG_DIR/${NAMES[$i]}.log" >&2
      exit 1
    fi
  done
  kill -0 "$REDIS_PID" 2>/dev/null || { echo "cluster.sh: redis-server exited; see $LOG_DIR/redis.log" >&2; exit 1; }
  sleep 1 &
  wait $! || true
done
