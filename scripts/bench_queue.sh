#!/usr/bin/env bash
# Queue throughput and latency, produce -> deliver -> ack, on one node with
# queues in memory (issue 14, point 7, first part): for each round a fresh
# release node, singyeong-load --mode queue (senders QUEUE into one queue;
# each receiver keeps one QUEUE_REQUEST outstanding and answers each
# delivery with QUEUE_ACK and a new request), then the node is stopped.
# Prints each run and the median rate.
#   scripts/bench_queue.sh [ROUNDS] [SENDERS] [RECEIVERS]   (default 5 4 16)
# Not yet here: the Redis-backed store and the Redis Streams reference.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}; senders=${2:-4}; receivers=${3:-16}
swift build -c release >/dev/null
server=.build/release/singyeong
load=.build/release/singyeong-load
rates=()
for _ in $(seq "$rounds"); do
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$server" --port "$port" --bind 127.0.0.1 --log-level warning &
  pid=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  out=$("$load" --port "$port" --mode queue --senders "$senders" --receivers "$receivers" --messages 50000 --window 64)
  cpu=$(awk '{print ($14 + $15) / 100}' /proc/$pid/stat)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rate=$(grep -Eo '[0-9]+ sends/s' <<<"$out" | grep -Eo '^[0-9]+')
  lat=$(grep -Eo 'p50 [0-9]+  p90 [0-9]+  p99 [0-9]+' <<<"$out")
  echo "memory: $rate msg/s (produce->deliver->ack), latency us $lat, server CPU ${cpu} s"
  rates+=("$rate")
done
median=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "median of $rounds rounds ($(date -u +%F), $(git rev-parse --short HEAD), $(nproc) cores): memory $median msg/s"
