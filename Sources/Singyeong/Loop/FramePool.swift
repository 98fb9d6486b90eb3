/// Reused buffers for the frames of routed messages, so a SEND or BROADCAST
/// in steady state allocates nothing (issue 13: the frame was the one heap
/// allocation per message; BENCHMARKS.md, "Heap allocations per routed
/// message").
///
/// A frame of at most `frameCapacity` bytes is taken from the free list (or
/// allocated with that capacity). It comes back when a connection's output
/// queue, having written it, finds that it holds the last reference
/// (`OutboundQueue.advance`); a frame still held elsewhere is simply freed
/// by reference counting when that holder lets go. Bounded: at most
/// `maxFreeFrames` wait in the list (~560 KB), the rest are freed.
///
/// One per event loop, used only on its thread.
final class FramePool {
    /// Frames up to this size are pooled: a routed message with a payload
    /// of a few hundred bytes. Larger ones are allocated to size.
    static let frameCapacity = 512
    static let maxFreeFrames = 1024

    /// Touched for every routed message, so exempt from dynamic
    /// exclusivity checking (each check cost ~100 instructions and a
    /// thread-local lookup): one thread, and `make` and `recycle` only pop
    /// and append, calling out to nothing while they do.
    @exclusivity(unchecked) private var free: [OutboundBytes] = []
    /// Frames handed out and taken back, for tests and benchmarks.
    private(set) var reused: UInt64 = 0
    private(set) var allocated: UInt64 = 0

    init() {
        free.reserveCapacity(Self.maxFreeFrames)
    }

    /// A frame of `count` bytes written by `fill`.
    func make(count: Int, _ fill: (UnsafeMutableRawPointer) -> Void) -> OutboundBytes {
        guard count <= Self.frameCapacity else { return OutboundBytes.make(count: count, fill) }
        let bytes: OutboundBytes
        if let recycled = free.popLast() {
            bytes = recycled
            reused &+= 1
        } else {
            bytes = OutboundBytes.allocate(capacity: Self.frameCapacity, pooled: true)
            allocated &+= 1
        }
        bytes.refill(count: count, fill)
        return bytes
    }

    /// Takes back a pooled frame that nobody else holds (the caller checked
    /// with `isKnownUniquelyReferenced`).
    func recycle(_ bytes: OutboundBytes) {
        guard bytes.isPooled, free.count < Self.maxFreeFrames else { return }
        free.append(bytes)
    }

    /// Frames waiting in the free list.
    var freeCount: Int { free.count }
}
