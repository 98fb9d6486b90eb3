/// An immutable run of bytes queued for sending, in one allocation (header and
/// bytes together, via `ManagedBuffer`).
///
/// It is a class so one encoded frame can sit in many connections' queues at
/// once (a BROADCAST builds each frame once and shares it): reference counting
/// frees it when the last connection has written it, or, for a frame taken
/// from a `FramePool`, gives it back to the pool.
final class OutboundBytes: ManagedBuffer<OutboundBytes.Header, UInt8> {
    struct Header {
        /// Bytes in use (at most the capacity).
        var count: Int
        /// Made by a `FramePool`, with its fixed capacity: may go back to it.
        let pooled: Bool
    }

    /// Allocates `count` bytes and lets `fill` write them (the single copy of
    /// an outgoing payload happens inside `fill`).
    static func make(count: Int, _ fill: (UnsafeMutableRawPointer) -> Void) -> OutboundBytes {
        let bytes = allocate(capacity: count, pooled: false)
        bytes.refill(count: count, fill)
        return bytes
    }

    /// An empty buffer of at least `capacity` bytes.
    static func allocate(capacity: Int, pooled: Bool) -> OutboundBytes {
        let buffer = OutboundBytes.create(minimumCapacity: max(capacity, 1)) { _ in Header(count: 0, pooled: pooled) }
        return unsafeDowncast(buffer, to: OutboundBytes.self)
    }

    /// Sets the count and lets `fill` write the bytes. Only for a buffer
    /// nobody else holds (new, or handed out again by its pool).
    func refill(count: Int, _ fill: (UnsafeMutableRawPointer) -> Void) {
        withUnsafeMutablePointers { header, elements in
            header.pointee.count = count
            fill(UnsafeMutableRawPointer(elements))
        }
    }

    /// A copy of `source`.
    static func copying(_ source: UnsafeRawBufferPointer) -> OutboundBytes {
        make(count: source.count) { destination in
            if let base = source.baseAddress { destination.copyMemory(from: base, byteCount: source.count) }
        }
    }

    /// A copy of a byte array (responses assembled off the hot path).
    static func copying(_ source: [UInt8]) -> OutboundBytes {
        source.withUnsafeBytes { copying($0) }
    }

    /// Number of bytes. Read through the header pointer rather than
    /// `header`, a class property whose every read pays a dynamic
    /// exclusivity check (~100 instructions, several per frame per flush):
    /// the header is written only by `refill`, while no queue holds the
    /// buffer, so no read can overlap a write.
    var count: Int { withUnsafeMutablePointerToHeader { $0.pointee.count } }

    /// Whether the buffer came from a `FramePool`.
    var isPooled: Bool { withUnsafeMutablePointerToHeader { $0.pointee.pooled } }

    /// Calls `body` with the bytes.
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let count = self.count
        return try withUnsafeMutablePointerToElements { try body(UnsafeRawBufferPointer(start: $0, count: count)) }
    }
}
