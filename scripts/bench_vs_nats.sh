#!/usr/bin/env bash
# The same workloads against a singyeong node and against nats-server
# (issue 13): for every workload and round, a fresh node and a fresh
# nats-server are started one after the other (the order alternating from
# round to round), singyeong-load runs against each (--protocol nats for the
# latter), and the server is stopped. Prints one line per run, then a table
# of medians: workload, singyeong, nats-server, ratio (singyeong divided by
# nats-server: above 1 is better for singyeong in a rate, worse in a latency).
#   scripts/bench_vs_nats.sh [ROUNDS]        (default 5; needs nats-server in PATH)
# Both servers and the load tool share the machine; see BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
swift build -c release >/dev/null
server=.build/release/singyeong
load=.build/release/singyeong-load
nats=${NATS_SERVER:-nats-server}
command -v "$nats" >/dev/null || { echo "nats-server not found (apt-get install nats-server)" >&2; exit 1; }

# name | metric | singyeong-load flags (both sides) | extra flags: node | extra flags: nats
# The nats side subscribes a queue group (SEND) or plain subscribers
# (BROADCAST) on one subject; --target only changes the node's query.
# (c) uses the default window (256 per sender): with 64, both sides are
# latency-bound (64 broadcasts in flight), not throughput-bound.
# (e): the node scans the column of 10,000 non-matching clients per
# message; both sides send 50,000 messages per sender.
workloads=(
  "a. SEND 4→16, \$gte on integer idx|rate|--mode send --senders 4 --receivers 16 --messages 200000 --target gte||"
  "b. SEND 4→16, \$eq role=sink (indexed)|rate|--mode send --senders 4 --receivers 16 --messages 200000||"
  "c. BROADCAST 1→16 (broadcasts/s)|rate|--mode broadcast --senders 1 --receivers 16 --messages 100000||"
  "d. SEND 4→16 \$eq at 5,000 msg/s|latency|--mode send --senders 4 --receivers 16 --messages 6250 --rate 5000||"
  "e. SEND 4→16, \$gte, 10,000 idle clients|rate|--mode send --senders 4 --receivers 16 --window 16 --target gte --population 10000 --messages 50000||"
)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
out=$(mktemp)
trap 'rm -f "$out" "$out.load" "$out.time"' EXIT

run_one() {  # side workload-index
  local side=$1 w=$2 port pid name metric common node_extra nats_extra flags cpu
  IFS='|' read -r name metric common node_extra nats_extra <<<"${workloads[$w]}"
  port=$(free_port)
  if [ "$side" = singyeong ]; then
    "$server" --port "$port" --bind 127.0.0.1 --log-level warning &
    flags="$common $node_extra"
  else
    "$nats" -a 127.0.0.1 -p "$port" 2>/dev/null &
    flags="--protocol nats $common $nats_extra"
  fi
  pid=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  # shellcheck disable=SC2086
  { TIMEFORMAT='%U %S %R'; time "$load" --port "$port" $flags >"$out.load"; } 2>"$out.time"
  cpu=$(awk '{print ($14 + $15) / 100}' /proc/$pid/stat)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local rate lat load_cpu wall
  rate=$(grep -Eo '[0-9]+ sends/s' "$out.load" | grep -Eo '^[0-9]+')
  lat=$(grep -Eo 'p50 [0-9]+  p90 [0-9]+  p99 [0-9]+( +p999 [0-9]+)?' "$out.load" | awk '{print $2 "/" $6 "/" ($8 == "" ? "-" : $8)}')
  load_cpu=$(awk '{print $1 + $2}' "$out.time"); wall=$(awk '{print $3}' "$out.time")
  echo "w=$w side=$side rate=$rate lat_us=$lat server_cpu_s=$cpu load_cpu_s=$load_cpu wall_s=$wall" | tee -a "$out"
}

for r in $(seq 0 $((rounds - 1))); do
  for w in "${!workloads[@]}"; do
    if (( r % 2 == 0 )); then run_one singyeong "$w"; run_one nats "$w"
    else run_one nats "$w"; run_one singyeong "$w"; fi
  done
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() {  # workload side key [k-th of a/b/c]
  grep "^w=$1 side=$2 " "$out" | sed "s/.* $3=\([^ ]*\).*/\1/" | cut -d/ -f"${4:-1}" | median
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { r = a / b; printf (r >= 0.1 ? "%.2f" : "%.2g"), r }'; }
echo
echo "medians of $rounds rounds ($(date -u +%F), $(git rev-parse --short HEAD), $(nproc) cores)"
echo "| workload | singyeong | nats-server | ratio | server CPU s per run (singyeong / nats-server) |"
echo "|---|---|---|---|---|"
for w in "${!workloads[@]}"; do
  IFS='|' read -r name metric _ <<<"${workloads[$w]}"
  cpu="$(field "$w" singyeong server_cpu_s) / $(field "$w" nats server_cpu_s)"
  if [ "$metric" = rate ]; then
    s=$(field "$w" singyeong rate); n=$(field "$w" nats rate)
    echo "| $name | $s msg/s | $n msg/s | $(ratio "$s" "$n") | $cpu |"
  else
    for k in 1 2 3; do
      label=$(echo "p50 p99 p999" | cut -d' ' -f$k)
      s=$(field "$w" singyeong lat_us "$k"); n=$(field "$w" nats lat_us "$k")
      echo "| $name, $label latency | $s µs | $n µs | $(ratio "$s" "$n") | $cpu |"
    done
  fi
done
