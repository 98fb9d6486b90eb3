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

