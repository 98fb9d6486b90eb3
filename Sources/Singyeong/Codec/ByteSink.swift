/// Where the JSON emitter writes. `[UInt8]` is one; `ChunkedByteSink` is the
/// fast one for the streaming transcoders. Stdlib only.
protocol ByteSink {
    mutating func append(_ byte: UInt8)
    mutating func append(contentsOf bytes: UnsafeRawBufferPointer)
}

extension Array: ByteSink where Element == UInt8 {}

/// Collects output in a small fixed buffer and appends it to a byte array a
/// chunk at a time. Array's own append costs a non-inlined call with a
/// uniqueness and capacity check per piece; a 16 MiB payload of tiny
/// values is millions of pieces (half the MessagePack → JSON time, by
/// `perf`). Hand-written because that cost is this product's hot spot.
struct ChunkedByteSink: ByteSink {
    private let chunk: UnsafeMutableRawBufferPointer
    private var used = 0
    private let out: UnsafeMutablePointer<[UInt8]>

    /// Appends to `out` through a stack buffer of `chunkSize` bytes; what
    /// `body` wrote is in `out` when it returns (also when it throws).
    static func appending<R, E: Error>(to out: inout [UInt8], chunkSize: Int = 16384,
                                       _ body: (inout ChunkedByteSink) throws(E) -> R) throws(E) -> R {
        try withUnsafeMutablePointer(to: &out) { (target) throws(E) -> R in
            try withUnsafeTemporaryAllocation(byteCount: chunkSize, alignment: 16) { (chunk) throws(E) -> R in
                var sink = ChunkedByteSink(chunk: chunk, out: target)
                defer { sink.flush() }
                return try body(&sink)
            }
        }
    }

    private init(chunk: UnsafeMutableRawBufferPointer, out: UnsafeMutablePointer<[UInt8]>) {
        self.chunk = chunk
        self.out = out
    }

    @inline(__always) mutating func append(_ byte: UInt8) {
        if used == chunk.count { flush() }
        chunk[used] = byte
        used += 1
    }

    @inline(__always) mutating func append(contentsOf bytes: UnsafeRawBufferPointer) {
        let n = bytes.count
        if n > chunk.count - used {
            flush()
            if n > chunk.count { out.pointee.append(contentsOf: bytes); return }
        }
        let destination = chunk.baseAddress! + used
        if n <= 8 {
            // Most pieces are a few bytes: a loop beats a call to memmove.
            for k in 0..<n { destination.storeBytes(of: bytes.load(fromByteOffset: k, as: UInt8.self), toByteOffset: k, as: UInt8.self) }
        } else {
            destination.copyMemory(from: bytes.baseAddress!, byteCount: n)
        }
        used += n
    }

    mutating func flush() {
        guard used > 0 else { return }
        out.pointee.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[0..<used]))
        used = 0
    }
}
