import Glibc

/// A connection's unsent output: a FIFO of shared byte runs, written with
/// `writev` (plain TCP) or copied into one TLS record buffer (TLS).
///
/// The queue counts its bytes so the owner can enforce its bound (a peer that
/// does not read gets disconnected, nobody else slows down). The bound is
/// checked against `chargedBytes`, what the queued chunks really cost: a
/// stream of tiny frames (pongs to a ping flood that is never read) costs far
/// more in allocation headers and queue slots than in payload, and counting
/// payload alone let one client hold many times MAX_PENDING_BYTES (issue 10).
/// An empty queue keeps its slot storage up to `keptSlots` slots (2 KB, half
/// the smallest input buffer a connection has once it has read): dropping
/// it every time the queue drained, or keeping too few slots for one loop
/// turn's frames, cost array growth (an allocation) per turn for a
/// receiver that keeps up (count_allocs.py: 0.17 allocations per SEND with
/// 16 slots, 0.25 per BROADCAST with 64, when 2 senders' windows of 64
/// land on 4 receivers).
///
/// Written frames that came from a `FramePool` and that no one else holds
/// go back to the pool (`advance`).
struct OutboundQueue {
    /// Slot capacity kept when the queue drains.
    static let keptSlots = 256

    private var chunks: [OutboundBytes] = []
    /// Index of the first unsent chunk; the array is compacted lazily.
    private var first = 0
    /// Bytes of `chunks[first]` already sent.
    private var firstOffset = 0
    /// Unsent bytes in total.
    private(set) var pendingBytes = 0
    /// Memory held for the unsent chunks: their bytes plus `chunkOverhead`
    /// each (released when a chunk is fully written).
    private(set) var chargedBytes = 0

    /// What one queued chunk costs besides its bytes: the `OutboundBytes`
    /// object header and count (24 bytes) and malloc's rounding and chunk
    /// header (up to 24), and the queue's slot (8, twice that while the
    /// array has grown geometrically). Measured against RSS by
    /// test_hostile_gateway.py's ping flood.
    static let chunkOverhead = 64

    var isEmpty: Bool { pendingBytes == 0 }

    /// Slots the queue's storage holds (for the `keptSlots` bound's test).
    var slotCapacity: Int { chunks.capacity }

    mutating func append(_ bytes: OutboundBytes) {
        guard bytes.count > 0 else { return }
        chunks.append(bytes)
        pendingBytes += bytes.count
        chargedBytes += bytes.count + Self.chunkOverhead
    }

    /// Marks `n` bytes as sent; fully written pooled frames that this queue
    /// held last go back to `pool`.
    mutating func advance(_ n: Int, recyclingInto pool: FramePool? = nil) {
        var remaining = n
        pendingBytes -= n
        while remaining > 0 {
            let left = chunks[first].count - firstOffset
            if remaining >= left {
                remaining -= left
                chargedBytes -= chunks[first].count + Self.chunkOverhead
                first += 1
                firstOffset = 0
            } else {
                firstOffset += remaining
                remaining = 0
            }
        }
        if first == chunks.count {
            recycleWritten(into: pool)
            // Drained: keep a little storage, drop a grown one so idle
            // connections stay small.
            chunks.removeAll(keepingCapacity: chunks.capacity <= Self.keptSlots)
            first = 0
        } else if first > 32 && first * 2 > chunks.count {
            recycleWritten(into: pool)
            chunks.removeFirst(first)
            first = 0
        }
    }

    /// Gives the written chunks (`chunks[..<first]`) that only this queue
    /// still holds back to `pool`, just before the queue lets go of them.
    private mutating func recycleWritten(into pool: FramePool?) {
        guard let pool else { return }
        let written = first
        chunks.withUnsafeMutableBufferPointer { buffer in
            for i in 0..<written where isKnownUniquelyReferenced(&buffer[i]) { pool.recycle(buffer[i]) }
        }
    }

    /// Fills `iovecs` with up to `iovecs.count` unsent ranges; returns how many.
    func fill(_ iovecs: UnsafeMutableBufferPointer<iovec>) -> Int {
        var n = 0
        var index = first
        while index < chunks.count && n < iovecs.count {
            let chunk = chunks[index]
            let offset = index == first ? firstOffset : 0
            chunk.withUnsafeMutablePointerToElements { pointer in
                iovecs[n] = iovec(iov_base: UnsafeMutableRawPointer(pointer + offset), iov_len: chunk.count - offset)
            }
            n += 1
            index += 1
        }
        return n
    }

    /// Copies up to `destination.count` unsent bytes (in order) into
    /// `destination`; returns how many. Used to build one TLS record from
    /// several small frames.
    func copyFront(into destination: UnsafeMutableRawBufferPointer) -> Int {
        var copied = 0
        var index = first
        while index < chunks.count && copied < destination.count {
            let chunk = chunks[index]
            let offset = index == first ? firstOffset : 0
            let n = min(chunk.count - offset, destination.count - copied)
            chunk.withBytes { source in
                (destination.baseAddress! + copied).copyMemory(from: source.baseAddress! + offset, byteCount: n)
            }
            copied += n
            index += 1
        }
        return copied
    }

    mutating func removeAll() {
        chunks = []
        first = 0
        firstOffset = 0
        pendingBytes = 0
        chargedBytes = 0
    }
}
