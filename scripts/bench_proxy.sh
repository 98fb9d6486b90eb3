#!/usr/bin/env bash
# /api/v1/proxy throughput and added latency (release build), with wrk:
# the same small GET and POST against an nginx upstream directly, through one
# node, and through a second node (the REST call on node A, the client — and
# so the upstream request — on node B). nginx, the node(s), Redis and wrk
# share this machine's cores; see BENCHMARKS.md.
#   scripts/bench_proxy.sh [seconds per run, default 10] [connections, default 16]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
conns=${2:-16}
for p in nginx-light wrk redis-server; do
  dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done
[ -x .build/release/singyeong ] || swift build -c release --product singyeong
server=$PWD/.build/release/singyeong
py=.venv/bin/python
free() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.05; done; echo "no listener on $1:$2"; exit 1; }

# nginx answering 200 "ok" from memory, one worker (like the node: one thread).
up=$(free)
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<EOF
worker_processes 1;
error_log $work/nginx/error.log;
pid $work/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$up;
    location / { return 200 "ok\n"; }
  }
}
EOF
nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' &
pids+=($!)
wait_port 127.0.0.1 "$up"

# A client that registers the upstream as its ip and stays connected.
hold_client() {  # host port app
  "$py" - "$1" "$2" "$3" "127.0.0.1:$up" <<'PY' &
import json, sys, time
from websockets.sync.client import connect
host, port, app, ip = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ws = connect(f"ws://{host}:{port}/gateway/websocket", ping_interval=None)
ws.recv()
ws.send(json.dumps({"op": 1, "d": {"client_id": "bench", "application_id": app, "ip": ip}}))
assert json.loads(ws.recv())["op"] == 2
while True:
    time.sleep(30)
    ws.send(json.dumps({"op": 5, "d": {"client_id": "bench"}}))
    ws.recv()
PY
  pids+=($!)
}

lua() {  # method body-json
  cat > "$work/$1.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"method":"$1","route":"/x","query":{"application":"bench"}$2}'
EOF
  echo "$work/$1.lua"
}
run() {  # label, wrk args...
  local label=$1; shift
  echo "== $label"
  echo "\$ wrk -t1 -c$conns -d${seconds}s --latency $*"
  wrk -t1 -c"$conns" -d"${seconds}s" --latency "$@" | grep -E "Requests/sec|Latency  |50%|99%|Non-2xx|Socket errors"
  echo
}

# One node.
port=$(free)
"$server" --port "$port" --bind 127.0.0.1 --log-level warning &
pids+=($!)
wait_port 127.0.0.1 "$port"
hold_client 127.0.0.1 "$port" bench
sleep 1
run "direct GET (nginx)" "http://127.0.0.1:$up/x"
run "proxied GET, one node" -s "$(lua GET "")" "http://127.0.0.1:$port/api/v1/proxy"
run "direct POST 1 KiB (nginx)" -s <(printf 'wrk.method="POST"\nwrk.body=string.rep("x",1024)\n') "http://127.0.0.1:$up/x"
body=$(printf 'x%.0s' $(seq 1024))
run "proxied POST 1 KiB, one node" -s "$(lua POST ",\"body\":\"$body\"")" "http://127.0.0.1:$port/api/v1/proxy"
cpu=$(awk '{print ($14 + $15) / 100}' /proc/"${pids[1]}"/stat)
echo "node CPU seconds for the one-node runs: $cpu"
echo

# Two nodes: REST call on A, client on B.
rport=$(free)
redis-server --port "$rport" --save '' --appendonly no --daemonize no >/dev/null &
pids+=($!)
wait_port 127.0.0.1 "$rport"
start_node() {  # host; sets NODE_PORT (not a subshell, so pids stays complete)
  local p cp
  p=$(free); cp=$(free)
  "$server" --port "$p" --bind "$1" --clustering true --cookie bench-cluster-cookie-0123 --redis-dsn "redis://127.0.0.1:$rport/0" \
    --cluster-port "$cp" --cluster-advertise "$1:$cp" --load-balance false --log-level warning &
  pids+=($!)
  wait_port "$1" "$p"
  NODE_PORT=$p
}
start_node 127.0.0.2; pa=$NODE_PORT
start_node 127.0.0.3; pb=$NODE_PORT
sleep 3  # registry tick + link up
hold_client 127.0.0.3 "$pb" bench
sleep 1
run "proxied GET, REST on node A, client on node B" -s "$(lua GET "")" "http://127.0.0.2:$pa/api/v1/proxy"
