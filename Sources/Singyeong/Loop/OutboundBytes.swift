/// An immutable run of bytes queued for sending, in one allocation (header and
/// bytes together, via `ManagedBuffer`).
///
/// It is a class so one encoded frame can sit in many connections' queues at
/// once (a BROADCAST builds each frame once and shares it): reference counting
/// frees it when the last connection has written it.
final class OutboundBytes: ManagedBuffer<Int, UInt8> {
    /// Allocates `count` bytes and lets `fill` write them (the single copy of
    /// an outgoing payload happens inside `fill`).
    static func make(count: Int, _ fill: (UnsafeMutableRawPointer) -> Void) -> OutboundBytes {
        let buffer = OutboundBytes.create(minimumCapacity: max(count, 1)) { _ in count }
        let bytes = unsafeDowncast(buffer, to: OutboundBytes.self)
        bytes.withUnsafeMutablePointerToElements { fill(UnsafeMutableRawPointer($0)) }
        return bytes
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
    /// the header is written once, by `create` in `make`, and never again,
    /// so no read can overlap a write.
    var count: Int { withUnsafeMutablePointerToHeader { $0.pointee } }

    /// Calls `body` with the bytes.
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let count = self.count
        return try withUnsafeMutablePointerToElements { try body(UnsafeRawBufferPointer(start: $0, count: count)) }
    }
}
