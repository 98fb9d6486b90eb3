import Testing
@testable import Singyeong

/// Frames go back to the pool exactly when the last output queue that held
/// them has written them, and never while anyone else still holds them.
@Suite struct FramePoolTests {
    private func frame(_ pool: FramePool, _ text: String) -> OutboundBytes {
        let bytes = Array(text.utf8)
        return pool.make(count: bytes.count) { destination in
            bytes.withUnsafeBytes { destination.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        }
    }

    private func text(_ bytes: OutboundBytes) -> String {
        bytes.withBytes { String(decoding: $0, as: UTF8.self) }
    }

    @Test func aSharedFrameReturnsWhenItsLastQueueHasWrittenIt() {
        let pool = FramePool()
        var first = OutboundQueue(), second = OutboundQueue()
        do {
            let shared = frame(pool, "broadcast")
            first.append(shared)
            second.append(shared)
        }
        #expect(pool.allocated == 1)
        first.advance(9, recyclingInto: pool)
        #expect(pool.freeCount == 0)     // the second queue still holds it
        second.advance(4, recyclingInto: pool)
        #expect(pool.freeCount == 0)     // not fully written yet
        second.advance(5, recyclingInto: pool)
        #expect(pool.freeCount == 1)
        let again = frame(pool, "next")
        #expect(pool.reused == 1 && pool.allocated == 1)
        #expect(text(again) == "next" && again.count == 4)
    }

    @Test func aFrameHeldOutsideTheQueuesIsNotTakenBack() {
        let pool = FramePool()
        var queue = OutboundQueue()
        let kept = frame(pool, "kept")
        queue.append(kept)
        queue.advance(4, recyclingInto: pool)
        #expect(pool.freeCount == 0)
        #expect(text(kept) == "kept")
        let other = frame(pool, "other")
        #expect(other !== kept && text(kept) == "kept")
    }

    @Test func onlySmallPooledFramesAreReusedAndTheFreeListIsBounded() {
        let pool = FramePool()
        var queue = OutboundQueue()
        let big = String(repeating: "x", count: FramePool.frameCapacity + 1)
        queue.append(frame(pool, big))
        queue.append(OutboundBytes.copying(Array("plain".utf8)))
        queue.advance(big.utf8.count + 5, recyclingInto: pool)
        #expect(pool.freeCount == 0 && pool.allocated == 0)
        for _ in 0..<(FramePool.maxFreeFrames + 10) { queue.append(frame(pool, "m")) }
        queue.advance(FramePool.maxFreeFrames + 10, recyclingInto: pool)
        #expect(pool.freeCount == FramePool.maxFreeFrames)
    }

    /// A drained queue keeps its slots only up to `keptSlots`: a burst
    /// does not pin a large slot array on an idle connection.
    @Test func aDrainedQueueKeepsAtMostKeptSlots() {
        let pool = FramePool()
        var queue = OutboundQueue()
        for _ in 0..<8 { queue.append(frame(pool, "s")) }
        queue.advance(8, recyclingInto: pool)
        #expect(queue.slotCapacity >= 8 && queue.slotCapacity <= OutboundQueue.keptSlots)
        let burst = OutboundQueue.keptSlots * 4
        for _ in 0..<burst { queue.append(frame(pool, "b")) }
        #expect(queue.slotCapacity >= burst)
        queue.advance(burst, recyclingInto: pool)
        #expect(queue.isEmpty)
        #expect(queue.slotCapacity <= OutboundQueue.keptSlots)
    }
}
