#!/usr/bin/env bash
# Instructions the server executes for a fixed gateway workload: runs
# BINARY under `valgrind --tool=callgrind` while singyeong-load sends a
# fixed number of messages, then stops it and prints the total ("I refs").
# Deterministic up to a few hundred instructions per message
# (SWIFT_DETERMINISTIC_HASHING fixes the hash seed).
#   scripts/bench_callgrind.sh BINARY send|broadcast [OUT]
# MESSAGES (per sender; default 10000 for send, 5000 for broadcast) changes
# the workload's size (scripts/count_allocs.py runs two sizes).
# Valgrind 3.19 does not read the DWARF 5 of `swift build` binaries: pass a
# copy made with `strip -g` (symbols stay, so per-function costs are
# readable with `callgrind_annotate OUT`).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$1; mode=$2; out=${3:-$(mktemp /tmp/callgrind.XXXXXX)}
load=${LOAD:-.build/release/singyeong-load}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SWIFT_DETERMINISTIC_HASHING=1 valgrind --tool=callgrind ${CALLGRIND_FLAGS:-} --callgrind-out-file="$out" \
  "$bin" --port "$port" --bind 127.0.0.1 --log-level warning 2>"$out.log" &
pid=$!
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
case "$mode" in
  send) "$load" --port "$port" --mode send --senders 2 --receivers 4 --messages "${MESSAGES:-10000}" --window 64 >/dev/null ;;
  broadcast) "$load" --port "$port" --mode broadcast --senders 2 --receivers 4 --messages "${MESSAGES:-5000}" --window 64 >/dev/null ;;
  *) echo "mode: send or broadcast" >&2; kill "$pid"; exit 2 ;;
esac
kill -TERM "$pid"; wait "$pid" || true
echo "$mode $(basename "$bin"): $(grep -Eo 'I +refs: +[0-9,]+' "$out.log" | grep -Eo '[0-9,]+$') instructions ($out)"
