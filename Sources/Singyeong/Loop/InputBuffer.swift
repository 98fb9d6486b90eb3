import Glibc

/// A connection's own inbound bytes: only the leftover of a partial frame or
/// request that the shared read buffer could not finish.
///
/// Most reads are consumed entirely from the loop's shared `ReadScratch`, so
/// an idle connection owns no input memory at all. When a read ends inside a
/// frame, the tail moves here; later reads go straight into this buffer,
/// grown geometrically (or once to the size the protocol says it needs), so a
/// large message is never copied more than once per growth step. Released as
/// soon as it is empty again.
struct InputBuffer {
    private(set) var base: UnsafeMutableRawPointer?
    private(set) var capacity = 0
    private(set) var count = 0
    /// Extra bytes kept after the data of every buffer a frame may be parsed
    /// from: simdjson reads up to SIMDJSON_PADDING bytes past the end of its
    /// input (`JSONTapeDecoder.padding`), so this is at least SIMDJSON_PADDING.
    /// The module's one such constant (the fragment buffer, owned message
    /// copies and held frames use it too); it lives here, in the lowest layer
    /// that needs it. csimdjson.cpp's static_assert and a unit test check that
    /// simdjson never needs more.
    static let padding = 64

    var isEmpty: Bool { count == 0 }

    /// Makes room for at least `additional` more bytes.
    mutating func reserve(additional: Int) {
        let needed = count + additional
        if needed <= capacity { return }
        var newCapacity = max(capacity * 2, 4096)
        while newCapacity < needed { newCapacity *= 2 }
        guard let grown = realloc(base, newCapacity + InputBuffer.padding) else {
            fatalError("out of memory growing an input buffer to \(newCapacity) bytes")
        }
        base = grown
        capacity = newCapacity
    }

    /// Free space after the data.
    var writable: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base.map { $0 + count }, count: capacity - count)
    }

    /// The buffered bytes.
    var readable: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base, count: count)
    }

    mutating func didWrite(_ n: Int) { count += n }

    /// Appends a copy of `bytes`.
    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        reserve(additional: bytes.count)
        (base! + count).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        count += bytes.count
    }

    /// Drops the first `n` bytes; frees the memory once nothing is left.
    mutating func consume(_ n: Int) {
        if n >= count {
            release()
            return
        }
        if n > 0 {
            memmove(base!, base! + n, count - n)
            count -= n
        }
    }

    mutating func release() {
        free(base)
        base = nil
        capacity = 0
        count = 0
    }
}

/// The loop-wide read buffer every connection reads into first. There is one
/// thread, so one buffer serves every connection.
final class ReadScratch {
    let capacity: Int
    let base: UnsafeMutableRawPointer

    init(capacity: Int = 256 * 1024) {
        self.capacity = capacity
        base = .allocate(byteCount: capacity + InputBuffer.padding, alignment: 64)
    }
}
