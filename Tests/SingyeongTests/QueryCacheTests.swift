import Testing
@testable import Singyeong

/// The compiled-query cache: hits only on identical bytes and encoding,
/// never keeps invalid queries, stays within its capacity.
@Suite struct QueryCacheTests {
    private func lookup(_ cache: QueryCache, _ text: String, tag: UInt8 = 0, compiled: inout Int) -> Bool {
        let bytes = Array(text.utf8)
        let result = bytes.withUnsafeBytes { raw in
            cache.query(for: raw, tag: tag) {
                compiled += 1
                return text.contains("bad") ? .failure(QueryError(detail: "bad")) : Query.parse(.object(ValueObject([("application", .string(text))])))
            }
        }
        if case .success = result { return true }
        return false
    }

    @Test func hitsOnlyOnIdenticalBytesAndTag() {
        let cache = QueryCache(capacity: 8)
        var compiled = 0
        #expect(lookup(cache, "app-a", compiled: &compiled))
        #expect(lookup(cache, "app-a", compiled: &compiled))
        #expect(compiled == 1)
        #expect(lookup(cache, "app-b", compiled: &compiled))
        #expect(lookup(cache, "app-a", tag: 1, compiled: &compiled))
        #expect(compiled == 3)
        #expect(cache.hits == 1 && cache.misses == 3)
    }

    /// The word-at-a-time hash sees every byte and the length: targets that
    /// differ in one byte anywhere (in a full word or in the tail) or only in
    /// trailing zero bytes hash apart, and each is compiled once.
    @Test func hashSeesEveryByteAndTheLength() {
        var seen = Set<UInt64>()
        var inputs = 0
        for length in 0...40 {
            let base = [UInt8](repeating: 0x61, count: length)
            var variants = [base, base + [0]]
            for position in 0..<length {
                var changed = base
                changed[position] ^= 0x01
                variants.append(changed)
            }
            for bytes in variants {
                for tag: UInt8 in [0, 1] {
                    inputs += 1
                    seen.insert(bytes.withUnsafeBytes { QueryCache.hash($0, tag: tag) })
                }
            }
        }
        // base + [0] of one length is base of the next with its last byte
        // changed to 0x00, not 0x60: every input is distinct.
        #expect(seen.count == inputs)
        let cache = QueryCache(capacity: 64)
        var compiled = 0
        for length in [7, 8, 9, 15, 16, 17] {
            let text = String(repeating: "q", count: length)
            #expect(lookup(cache, text, compiled: &compiled))
            #expect(lookup(cache, text, compiled: &compiled))
        }
        #expect(compiled == 6)
    }

    @Test func invalidQueriesAreNotKept() {
        let cache = QueryCache(capacity: 8)
        var compiled = 0
        #expect(!lookup(cache, "bad", compiled: &compiled))
        #expect(!lookup(cache, "bad", compiled: &compiled))
        #expect(compiled == 2)
    }

    @Test func boundedByCapacity() {
        let cache = QueryCache(capacity: 4)
        var compiled = 0
        for i in 0..<10 { _ = lookup(cache, "app-\(i)", compiled: &compiled) }
        // The oldest were dropped when the cache filled: compiling again.
        _ = lookup(cache, "app-0", compiled: &compiled)
        #expect(compiled == 11)
    }
}

