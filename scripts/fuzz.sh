#!/usr/bin/env bash
# Builds every libFuzzer target and runs each for FUZZ_SECONDS (default 60).
# A target is a Fuzz/*.swift entry point compiled together with the parser
# sources it exercises (those depend only on the standard library).
# Fuzz/corpus/<target>/ holds committed seeds, including every input that
# once crashed a target (regressions are re-run first).
# Exit status is non-zero if any target fails to build or finds a crash.
# Safety settings match the shipped binary (Package.swift: release is plain
# -O): bounds, overflow and precondition checks stay on; never -Ounchecked,
# which would turn the very bugs fuzzing looks for into silent memory reads.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
out=.build-fuzz
mkdir -p "$out"

codec="Sources/Singyeong/Codec/DocumentTape.swift Sources/Singyeong/Codec/KnownSpans.swift Sources/Singyeong/Codec/MessagePackTapeDecoder.swift Sources/Singyeong/Codec/UTF8Validator.swift Sources/Singyeong/Codec/TapeEncoders.swift Sources/Singyeong/Codec/ByteSink.swift Sources/Singyeong/Codec/ValueEncoders.swift Sources/Singyeong/Codec/Value.swift"

# The JSON decoder calls simdjson through the CSimdjson C API: compile that
# C++ shim with the fuzzer's instrumentation and give swiftc a module map.
mkdir -p "$out/csimdjson-module"
printf 'module CSimdjson {\n  header "%s/Sources/CSimdjson/include/csimdjson.h"\n  export *\n}\n' "$PWD" > "$out/csimdjson-module/module.modulemap"
clang++ -std=c++17 -O1 -g -fsanitize=fuzzer-no-link,address -I Sources/CSimdjson/include -c Sources/CSimdjson/csimdjson.cpp -o "$out/csimdjson-fuzz.o"
json_extra="-I $out/csimdjson-module $out/csimdjson-fuzz.o -lsimdjson -lstdc++"

declare -A extra=([json]="$json_extra" [rest]="$json_extra" [queuepeer]="$json_extra")
declare -A sources=(
  [query]="$(ls Sources/Singyeong/Metadata/*.swift | tr '\n' ' ') Sources/Singyeong/Codec/DocumentTape.swift Sources/Singyeong/Codec/Value.swift Fuzz/QueryParserFuzz.swift"
  [msgpack]="$codec Sources/Singyeong/Codec/MessagePackToJSON.swift Fuzz/FuzzCanonicalValue.swift Fuzz/FuzzLazyTape.swift Fuzz/MessagePackDecoderFuzz.swift"
  [peer]="$codec Sources/Singyeong/Cluster/PeerFrame.swift Sources/Singyeong/Loop/OutboundBytes.swift Fuzz/PeerFrameFuzz.swift"
  [json]="$codec Sources/Singyeong/Codec/JSONTapeDecoder.swift Sources/Singyeong/Codec/EnvelopeTemplate.swift Sources/Singyeong/Loop/InputBuffer.swift Sources/Singyeong/Codec/MessagePackToJSON.swift Sources/Singyeong/Codec/JSONToMessagePack.swift Fuzz/FuzzCanonicalValue.swift Fuzz/FuzzLazyTape.swift Fuzz/JSONDecoderFuzz.swift"
  [rest]="$codec Sources/Singyeong/Codec/JSONTapeDecoder.swift Sources/Singyeong/Loop/InputBuffer.swift $(ls Sources/Singyeong/Metadata/*.swift | tr '\n' ' ') Sources/Singyeong/HTTP/HTTPRequestParser.swift Sources/Singyeong/HTTP/HTTPRequestHead.swift Sources/Singyeong/HTTP/HTTPResponse.swift Sources/Singyeong/REST/RESTBody.swift Sources/Singyeong/HTTP/URLQuery.swift Sources/Singyeong/Loop/OutboundBytes.swift Sources/Singyeong/Proxy/ProxyRequest.swift Sources/Singyeong/Proxy/UpstreamURL.swift Sources/Singyeong/Proxy/ProxyResponse.swift Sources/Singyeong/Routing/QueryCache.swift Fuzz/RESTRequestFuzz.swift"
  [queuepeer]="$codec $(ls Sources/Singyeong/Metadata/*.swift | tr '\n' ' ') Sources/Singyeong/Codec/FrameWriter.swift Sources/Singyeong/Codec/MessagePackToJSON.swift Sources/Singyeong/Codec/JSONToMessagePack.swift Sources/Singyeong/Codec/JSONTapeDecoder.swift Sources/Singyeong/Codec/EnvelopeTemplate.swift Sources/Singyeong/Loop/InputBuffer.swift Sources/Singyeong/Codec/PeerPiece.swift Sources/Singyeong/Codec/PayloadEncoding.swift Sources/Singyeong/Routing/QueueName.swift Sources/Singyeong/Queue/QueuePeerMessage.swift Fuzz/QueuePeerMessageFuzz.swift"
  [queuestore]="Sources/Singyeong/Queue/StoredQueueMessage.swift Sources/Singyeong/Codec/PayloadEncoding.swift Fuzz/StoredQueueMessageFuzz.swift"
  [http]="Sources/Singyeong/HTTP/HTTPRequestParser.swift Sources/Singyeong/HTTP/HTTPRequestHead.swift Fuzz/HTTPRequestParserFuzz.swift"
  [websocket]="Sources/Singyeong/WebSocket/WebSocketFrameDecoder.swift Sources/Singyeong/WebSocket/WebSocketFrameEncoder.swift Sources/Singyeong/Codec/UTF8Validator.swift Sources/Singyeong/Loop/InputBuffer.swift Fuzz/WebSocketFrameDecoderFuzz.swift"
)

status=0
for name in ${FUZZ_TARGETS:-$(printf '%s\n' "${!sources[@]}" | sort)}; do
  # shellcheck disable=SC2086
  if ! swiftc -O -sanitize=fuzzer,address -parse-as-library ${sources[$name]} ${extra[$name]:-} -o "$out/fuzz-$name" >"$out/$name.build.log" 2>&1; then
    grep -v "Cannot export local symbol" "$out/$name.build.log" | tail -30
    echo "fuzz-$name: build failed"; status=1; continue
  fi
  mkdir -p "$out/corpus-$name"
  if "$out/fuzz-$name" -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 -artifact_prefix="$out/$name-" "$out/corpus-$name" $([ -d "Fuzz/corpus/$name" ] && echo "Fuzz/corpus/$name") >"$out/$name.log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out/$name.log" | grep -o '[0-9]*$' || echo '?')
    echo "fuzz-$name: ok, $runs runs in ${seconds}s, no crash"
  else
    grep -E "ERROR|Fatal error|precondition|failed|crash" "$out/$name.log" | head -20
    for artifact in "$out/$name"-crash-* "$out/$name"-leak-* "$out/$name"-timeout-*; do
      [ -e "$artifact" ] && { echo "input $artifact:"; od -A d -c "$artifact" | head -20; }
    done
    echo "fuzz-$name: FAILED (log: $out/$name.log)"; status=1
  fi
done
exit $status
