#!/usr/bin/env bash
# Queue throughput and latency, produce -> deliver -> ack (issue 14, point 7).
# Each round runs three rows, each on fresh processes:
#   memory  a release node, QUEUE_STORE=memory;
#   redis   a release node, QUEUE_STORE=redis, on a fresh redis-server;
#   streams the same workload done directly on a fresh redis-server with
#           Redis Streams (XADD; XREADGROUP COUNT 1 + XACK, pipelined as
#           QUEUE_REQUEST + QUEUE_ACK are): the reference for the redis row.
# The load is singyeong-load --mode queue (senders QUEUE into one queue; each
# receiver keeps one request outstanding and answers each delivery with an
# ACK and a new request). Both Redis rows use the same redis-server settings
# (no persistence: --save '' --appendonly no; an AOF would cost both alike).
# Prints each run and the medians, and the redis/streams ratio.
#   scripts/bench_queue.sh [ROUNDS] [SENDERS] [RECEIVERS] [MESSAGES]   (default 5 4 16 50000)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}; senders=${2:-4}; receivers=${3:-16}; messages=${4:-50000}
swift build -c release >/dev/null
server=.build/release/singyeong
load=.build/release/singyeong-load
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

start_redis() {
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
    --logfile "$tmp/redis.log" --daemonize yes --pidfile "$tmp/redis.pid"
  wait_port "$redis_port"
}
stop_redis() { redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true; sleep 0.2; }

# Runs the load against port $1 with protocol $2; prints "rate p50 p90 p99".
run_load() {
  local out
  out=$("$load" --port "$1" --protocol "$2" --mode queue --senders "$senders" --receivers "$receivers" \
        --messages "$messages" --window 64)
  echo "$(grep -Eo '[0-9]+ sends/s' <<<"$out" | grep -Eo '^[0-9]+') $(grep -Eo 'p50 [0-9]+  p90 [0-9]+  p99 [0-9]+' <<<"$out" | tr -s ' ' | cut -d' ' -f2,4,6)"
}

# A node with extra flags "$@"; runs the load, prints the row, records the rate.
node_row() {
  local name=$1; shift
  local port pid result cpu
  port=$(free_port)
  "$server" --port "$port" --bind 127.0.0.1 --log-level warning "$@" &
  pid=$!
  wait_port "$port"
  if [ "$name" = redis ]; then
    # QUEUE is refused until the store is connected.
    for _ in $(seq 100); do
      curl -s "http://127.0.0.1:$port/api/v1/queues" | grep -q '"store_available":true' && break; sleep 0.05
    done
  fi
  result=$(run_load "$port" gateway)
  cpu=$(awk '{print ($14 + $15) / 100}' /proc/$pid/stat)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  set -- $result
  echo "$name: $1 msg/s, latency us p50 $2 p90 $3 p99 $4, node CPU ${cpu} s"
  eval "${name}_rates+=($1)"
}

memory_rates=(); redis_rates=(); streams_rates=()
for _ in $(seq "$rounds"); do
  node_row memory
  start_redis
  node_row redis --queue-store redis --redis-dsn "redis://127.0.0.1:$redis_port"
  redis_cpu=$(awk '{print ($14 + $15) / 100}' "/proc/$(cat "$tmp/redis.pid")/stat")
  echo "       redis-server CPU for the redis row: ${redis_cpu} s"
  stop_redis
  start_redis
  set -- $(run_load "$redis_port" redis)
  redis_cpu=$(awk '{print ($14 + $15) / 100}' "/proc/$(cat "$tmp/redis.pid")/stat")
  stop_redis
  echo "streams: $1 msg/s, latency us p50 $2 p90 $3 p99 $4, redis-server CPU ${redis_cpu} s"
  streams_rates+=("$1")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m=$(median "${memory_rates[@]}"); r=$(median "${redis_rates[@]}"); s=$(median "${streams_rates[@]}")
echo "medians of $rounds rounds ($(date -u +%F), $(git rev-parse --short HEAD), $(nproc) cores, $senders senders, $receivers receivers):" \
     "memory $m msg/s, redis $r msg/s, streams $s msg/s, redis/streams $(awk -v r="$r" -v s="$s" 'BEGIN {printf "%.2f", r / s}')"
