#!/usr/bin/env bash
# Compares server binaries on the gateway's SEND and BROADCAST scenarios,
# alternating them run by run so that all see the same (shared, noisy)
# machine: each round runs every binary once per scenario, the order
# rotating from round to round. Prints one line per run (sends/s; a
# BROADCAST reaches 8 receivers) and the median per binary and scenario.
#   scripts/bench_alternate.sh ROUNDS BINARY...
# The load tool is .build/release/singyeong-load (override with LOAD=...).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=$1; shift
bins=("$@")
load=${LOAD:-.build/release/singyeong-load}
scenarios=(
  "--mode send --senders 4 --receivers 8 --messages 200000"
  "--mode broadcast --senders 4 --receivers 8 --messages 50000 --window 64"
)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
run_one() {  # binary scenario-index
  local bin=$1 s=$2 port pid result cpu
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$bin" --port "$port" --bind 127.0.0.1 --log-level warning &
  pid=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  # shellcheck disable=SC2086
  result=$("$load" --port "$port" ${scenarios[$s]} | grep -Eo '[0-9]+ sends/s' | grep -Eo '^[0-9]+')
  cpu=$(awk '{print ($14 + $15) / 100}' /proc/$pid/stat)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$(basename "$bin") scenario=$s rate=$result server_cpu_s=$cpu" | tee -a "$out"
}
n=${#bins[@]}
for r in $(seq 0 $((rounds - 1))); do
  for s in "${!scenarios[@]}"; do
    for k in $(seq 0 $((n - 1))); do run_one "${bins[$(( (r + k) % n ))]}" "$s"; done
  done
done
echo "--- medians over $rounds rounds ---"
for s in "${!scenarios[@]}"; do
  echo "scenario $s: ${scenarios[$s]}"
  for bin in "${bins[@]}"; do
    rates=$(grep "^$(basename "$bin") scenario=$s " "$out" | sed 's/.*rate=\([0-9]*\).*/\1/' | sort -n)
    cpus=$(grep "^$(basename "$bin") scenario=$s " "$out" | sed 's/.*server_cpu_s=\([0-9.]*\).*/\1/' | sort -n)
    echo "  $(basename "$bin"): median $(echo "$rates" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') sends/s" \
         "(min $(echo "$rates" | head -1), max $(echo "$rates" | tail -1)), median server CPU" \
         "$(echo "$cpus" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') s"
  done
done
