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

    /// Number of bytes.
    var count: Int { header }

    /// Calls `body` with the bytes.
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try withUnsafeMutablePointerToElements { try body(UnsafeRawBufferPointer(start: $0, count: header)) }
    }
}
