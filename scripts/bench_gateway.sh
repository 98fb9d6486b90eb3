#!/usr/bin/env bash
# Gateway throughput and latency on one node (release build): starts the
# server on a free port and runs singyeong-load scenarios against it.
# Both processes share this machine's cores; see BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
server=.build/release/singyeong
load=.build/release/singyeong-load
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$server" --port "$port" --bind 127.0.0.1 --log-level warning &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
run() { echo "\$ singyeong-load $*"; "$load" --port "$port" "$@"; echo; }
run --mode send --senders 4 --receivers 8 --messages 200000
run --mode send --senders 1 --receivers 8 --messages 50000 --window 1
run --mode send --senders 4 --receivers 8 --messages 50000 --payload-bytes 4096
run --mode broadcast --senders 4 --receivers 8 --messages 50000 --window 64
run --mode broadcast --senders 1 --receivers 100 --messages 5000 --window 16
run --mode send --senders 4 --receivers 8 --messages 2500 --window 16 --population 10000
cpu=$(awk '{print ($14 + $15) / 100}' /proc/$pid/stat)
echo "server CPU seconds for all scenarios: $cpu"
