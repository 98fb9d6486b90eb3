// libFuzzer harness for the stored form of a queued message (what the Redis
// queue store reads back from Redis: Redis is a peer too). Built by
// scripts/fuzz.sh (target `queuestore`).
//
// Checks: decoding never traps or reads out of bounds, and the format is
// canonical: whatever decodes encodes back to exactly the input bytes.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzStoredQueueMessage(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let message = StoredQueueMessage(decoding: bytes) else { return 0 }
    precondition(!message.target.isEmpty && !message.payload.isEmpty)
    precondition(message.encoded == bytes, "decode then encode changed the bytes")
    return 0
}
