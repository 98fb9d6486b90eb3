import Glibc

/// Compiled queries by the exact bytes they arrived as.
///
/// Services usually send the same target over and over; compiling it each
/// time means building a `Value` tree and the compiled ops (a few dozen small
/// allocations). The cache maps the target's encoded bytes (JSON text or
/// MessagePack, tagged by encoding) to the compiled `Query`, so a repeated
/// target costs one hash and one byte comparison. Only valid queries are
/// kept. Bounded: when full it is emptied and refills with what is in use.
final class QueryCache {
    private struct Entry {
        let key: [UInt8]
        let query: Query
    }

    // Touched for every message, so exempt from dynamic exclusivity checking
    // (BENCHMARKS.md, "Checked release build"). No two accesses can
    // overlap: one thread; `query(for:)` runs `compile` between accesses,
    // never inside one, and dictionary and counter operations call nothing
    // else.
    @exclusivity(unchecked) private var entries: [UInt64: Entry] = [:]
    let capacity: Int
    @exclusivity(unchecked) private(set) var hits: UInt64 = 0
    @exclusivity(unchecked) private(set) var misses: UInt64 = 0

    init(capacity: Int = 1024) {
        self.capacity = capacity
        entries.reserveCapacity(capacity)
    }

    /// The entry `isKnownJSON` found last, so that the target the decoder
    /// skipped is hashed and looked up once. Checked by its bytes like any
    /// entry, so it can never answer for other bytes.
    @exclusivity(unchecked) private var lastKnown: Entry?

    /// The compiled query for `bytes`, compiling (and remembering) on a miss.
    func query(for bytes: UnsafeRawBufferPointer, tag: UInt8, compile: () -> Result<Query, QueryError>) -> Result<Query, QueryError> {
        if let known = lastKnown, Self.entry(known, holds: bytes, tag: tag) {
            hits &+= 1
            return .success(known.query)
        }
        let hash = QueryCache.hash(bytes, tag: tag)
        if let entry = entries[hash], Self.entry(entry, holds: bytes, tag: tag) {
            hits &+= 1
            return .success(entry.query)
        }
        misses &+= 1
        let result = compile()
        if case .success(let query) = result, bytes.count <= 4096 {
            if entries.count >= capacity {
                entries.removeAll(keepingCapacity: true)
                lastKnown = nil
            }
            var key = [tag]
            key.append(contentsOf: bytes)
            entries[hash] = Entry(key: key, query: query)
        }
        return result
    }

    private static func entry(_ entry: Entry, holds bytes: UnsafeRawBufferPointer, tag: UInt8) -> Bool {
        entry.key.count == bytes.count + 1 && entry.key[0] == tag
            && entry.key.withUnsafeBytes { memcmpEqual($0.baseAddress! + 1, bytes.baseAddress, bytes.count) }
    }

    /// A 64-bit hash of the tag and the bytes, eight bytes per step (every
    /// SEND hashes its target: byte-at-a-time FNV-1a cost ~5 instructions a
    /// byte, about 400 for a typical target; callgrind, BENCHMARKS.md). Not
    /// keyed: a client that makes targets collide only replaces cache
    /// entries, and a lookup always compares the bytes.
    static func hash(_ bytes: UnsafeRawBufferPointer, tag: UInt8) -> UInt64 {
        let multiplier: UInt64 = 0x9E37_79B9_7F4A_7C15
        var h = (0xcbf2_9ce4_8422_2325 ^ UInt64(tag) << 56 ^ UInt64(bytes.count)) &* multiplier
        var i = 0
        let count = bytes.count
        while i + 8 <= count {
            h = (h ^ bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)) &* multiplier
            h ^= h >> 29
            i += 8
        }
        if i < count {
            var tail: UInt64 = 0
            while i < count {
                tail = tail << 8 | UInt64(bytes[i])
                i += 1
            }
            h = (h ^ tail) &* multiplier
        }
        return h ^ h >> 32
    }
}

/// Byte equality of two raw regions (libc `memcmp`, vectorised).
private func memcmpEqual(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer?, _ count: Int) -> Bool {
    guard count > 0, let b else { return true }
    return memcmp(a, b, count) == 0
}

/// The gateway's JSON decoder skips a SEND / BROADCAST target whose bytes are
/// cached: only targets that decoded (and compiled) are ever stored, so the
/// bytes were validated as JSON when they were first seen.
extension QueryCache: KnownSpans {
    func isKnownJSON(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let tag: UInt8 = 0  // JSON, as `GatewaySession.parseQuery` tags it
        guard let entry = entries[QueryCache.hash(bytes, tag: tag)], Self.entry(entry, holds: bytes, tag: tag) else {
            return false
        }
        lastKnown = entry
        return true
    }
}
