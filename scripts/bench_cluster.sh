#!/usr/bin/env bash
# Cross-node SEND/BROADCAST versus local (release build): one redis-server and
# two nodes on loopback; senders on node A, receivers on node A (local) or on
# node B (cross-node). All processes share this machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
server=.build/release/singyeong
load=.build/release/singyeong-load
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free); pa=$(free); pb=$(free); ca=$(free); cb=$(free)
redis-server --port "$rport" --save '' --appendonly no >/dev/null &
rpid=$!
node() { CLUSTERING=true COOKIE=bench-cluster-cookie-0123 REDIS_DSN="redis://127.0.0.1:$rport/0" CLUSTER_TICK_MS=200 LOAD_BALANCE=false \
         BIND=127.0.0.1 LOG_LEVEL=warning "$server" --port "$1" --cluster-port "$2" --cluster-advertise "127.0.0.1:$2" & }
node "$pa" "$ca"; apid=$!
node "$pb" "$cb"; bpid=$!
trap 'kill $apid $bpid $rpid 2>/dev/null || true' EXIT
sleep 2
cpu() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
# Prints the load tool's result and each node's CPU seconds for the run: on
# separate machines the busier node bounds throughput, not the shared cores.
run() {
  echo "\$ singyeong-load $*"
  local a0 b0; a0=$(cpu $apid); b0=$(cpu $bpid)
  "$load" --port "$pa" "$@"
  python3 -c "import sys; a=float(sys.argv[3])-float(sys.argv[1]); b=float(sys.argv[4])-float(sys.argv[2]); print(f'server CPU: A {a:.2f} s, B {b:.2f} s')" "$a0" "$b0" "$(cpu $apid)" "$(cpu $bpid)"
  echo
}
run --mode send --senders 4 --receivers 8 --messages 200000
run --mode send --senders 4 --receivers 8 --messages 200000 --receiver-port "$pb"
run --mode send --senders 1 --receivers 8 --messages 20000 --window 1
run --mode send --senders 1 --receivers 8 --messages 20000 --window 1 --receiver-port "$pb"
run --mode broadcast --senders 4 --receivers 8 --messages 50000 --window 64
run --mode broadcast --senders 4 --receivers 8 --messages 50000 --window 64 --receiver-port "$pb"
