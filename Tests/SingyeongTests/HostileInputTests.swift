import Glibc
import Testing

@testable import Singyeong

/// Pure logic behind issue 10's bounds: the authentication limiter's
/// sources, the metadata budget's measure, and linear-time objects.
@Suite struct HostileInputTests {
    /// A peer address from its text form (IPv4 or IPv6).
    static func peer(_ text: String) -> PeerAddress {
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) { raw in
            if text.contains(":") {
                var sin6 = sockaddr_in6()
                sin6.sin6_family = sa_family_t(AF_INET6)
                _ = inet_pton(AF_INET6, text, &sin6.sin6_addr)
                raw.storeBytes(of: sin6, as: sockaddr_in6.self)
            } else {
                var sin = sockaddr_in()
                sin.sin_family = sa_family_t(AF_INET)
                _ = inet_pton(AF_INET, text, &sin.sin_addr)
                raw.storeBytes(of: sin, as: sockaddr_in.self)
            }
        }
        return PeerAddress(storage)
    }

    @Test(arguments: [
        // (failing source, other source, does the other share the count?)
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true),   // same /64
        ("2001:db8:1:2::1", "2001:db8:1:3::1", false),                   // next /64
        ("192.0.2.1", "192.0.2.2", false),                               // IPv4: per address
        ("192.0.2.1", "::ffff:192.0.2.1", true),                         // mapped = same IPv4
        ("::1", "::2", true),                                            // same /64
    ])
    func sourcesGroupIPv6By64(_ failing: String, _ other: String, _ shared: Bool) {
        let guardian = AuthGuard(password: "pw", failuresPerMinute: 3)
        for _ in 0..<3 { guardian.recordFailure(Self.peer(failing), now: 100) }
        #expect(guardian.isBlocked(Self.peer(failing), now: 100))
        #expect(guardian.isBlocked(Self.peer(other), now: 100) == shared)
        // The window ends: everyone may try again.
        #expect(!guardian.isBlocked(Self.peer(failing), now: 161))
    }

    @Test func aFullTableLimitsNewSourcesTogether() {
        let guardian = AuthGuard(password: "pw", failuresPerMinute: 2, maxTrackedSources: 4)
        for i in 1...4 { guardian.recordFailure(Self.peer("192.0.2.\(i)"), now: 0) }
        // Untracked sources are not let through unchecked: they share one count.
        #expect(!guardian.isBlocked(Self.peer("198.51.100.1"), now: 0))
        guardian.recordFailure(Self.peer("198.51.100.1"), now: 0)
        guardian.recordFailure(Self.peer("198.51.100.2"), now: 0)
        #expect(guardian.isBlocked(Self.peer("198.51.100.3"), now: 0))
        // Tracked sources keep their own count.
        #expect(!guardian.isBlocked(Self.peer("192.0.2.1"), now: 0))
    }

    @Test func noLimitMeansNeverBlocked() {
        let guardian = AuthGuard(password: "pw", failuresPerMinute: 0)
        for _ in 0..<100 { guardian.recordFailure(Self.peer("192.0.2.9"), now: 0) }
        #expect(!guardian.isBlocked(Self.peer("192.0.2.9"), now: 0))
    }

    // MARK: Metadata budget

    /// The tape measure and the value measure agree (the tape one is checked
    /// before conversion, the value one for the projected total).
    @Test(arguments: [
        "1", "\"abc\"", "[1,2,3]", "{\"a\":1,\"bb\":[true,null]}", "[[[\"x\"]],{}]", "\"\"",
    ])
    func tapeAndValueCostsAgree(_ json: String) throws {
        var tape = DocumentTape()
        try JSONTapeDecoder.decode(copying: Array(json.utf8), into: &tape)
        #expect(MetadataBudget.cost(ofNode: tape.root, in: tape) == MetadataBudget.cost(of: tape.value(tape.root)))
    }

    @Test func budgetFailuresOnTheTape() throws {
        let budget = MetadataBudget(maxKeys: 2, maxValueSize: 100, maxTotalSize: 150)
        func check(_ json: String) throws -> MetadataBudgetFailure? {
            var tape = DocumentTape()
            try JSONTapeDecoder.decode(copying: Array(json.utf8), into: &tape)
            return budget.check(updateObject: tape.root, in: tape)
        }
        #expect(try check(#"{"a":{"type":"integer","value":1}}"#) == nil)
        #expect(try check(#"{"a":1,"b":2,"c":3}"#) == .tooManyKeys(3, limit: 2))
        let long = String(repeating: "x", count: 60)
        // 24 (entry) + 1 (key) + 24 + 60 = 109 > 100
        #expect(try check(#"{"a":{"type":"string","value":"\#(long)"}}"#) == .valueTooLarge(key: "a", 109, limit: 100))
        let half = String(repeating: "y", count: 40)  // 24 + 1 + 24 + 40 = 89 each
        #expect(try check(#"{"a":{"type":"string","value":"\#(half)"},"b":{"type":"string","value":"\#(half)"}}"#)
            == .tooLarge(178, limit: 150))
    }

    @Test func projectedBudgetCountsOverwritesOnce() throws {
        let budget = MetadataBudget(maxKeys: 2, maxValueSize: 1000, maxTotalSize: 200)
        func update(_ pairs: [(String, Value)]) -> MetadataUpdate {
            var object = ValueObject()
            for (k, v) in pairs { object[k] = .object(ValueObject([("type", .string("string")), ("value", v)])) }
            guard case .success(let u) = MetadataUpdate.validate(.object(object)) else { fatalError() }
            return u
        }
        var metadata = ClientMetadata()
        let first = update([("a", .string(String(repeating: "a", count: 100)))])
        #expect(budget.check(first, appliedTo: metadata, strategy: .merge) == nil)
        metadata.apply(first, strategy: .merge)
        // Overwriting `a` with the same size stays within 200; a new key of that size does not.
        #expect(budget.check(first, appliedTo: metadata, strategy: .merge) == nil)
        let second = update([("b", .string(String(repeating: "b", count: 100)))])
        #expect(budget.check(second, appliedTo: metadata, strategy: .merge) == .tooLarge(298, limit: 200))
        // With replace, the old keys do not count.
        #expect(budget.check(second, appliedTo: metadata, strategy: .replace) == nil)
        let three = update([("x", .string("1")), ("y", .string("2")), ("z", .string("3"))])
        #expect(budget.check(three, appliedTo: ClientMetadata(), strategy: .merge) == .tooManyKeys(3, limit: 2))
    }

    // MARK: Linear-time objects

    /// Many members: the index keeps every name findable, repeated names keep
    /// the last value, and canonically equivalent spellings stay distinct.
    @Test func largeObjectsStayExact() {
        var object = ValueObject()
        for i in 0..<10_000 { object["k\(i)"] = .int(Int64(i)) }
        object["k5"] = .int(-5)
        object["e\u{301}"] = .int(1)
        object["\u{e9}"] = .int(2)
        #expect(object.count == 10_002)
        #expect(object["k9999"] == .int(9999))
        #expect(object["k5"] == .int(-5))
        #expect(object["e\u{301}"] == .int(1) && object["\u{e9}"] == .int(2))
        object["k0"] = nil
        #expect(object["k0"] == nil && object["k1"] == .int(1) && object.count == 10_001)
    }

    @Test func largeMetadataStaysExact() {
        var metadata = ClientMetadata()
        var object = ValueObject()
        for i in 0..<5_000 { object["m\(i)"] = .object(ValueObject([("type", .string("integer")), ("value", .int(Int64(i)))])) }
        guard case .success(let update) = MetadataUpdate.validate(.object(object)) else { Issue.record("invalid"); return }
        metadata.apply(update, strategy: .merge)
        #expect(metadata.value("m4999") == .int(4999))
        #expect(metadata.clientKeyCount == 5_000)
        metadata.apply(update, strategy: .replace)
        #expect(metadata.value("m17") == .int(17) && metadata.clientKeyCount == 5_000)
        metadata.setReserved(.lastHeartbeatTime, .int(7))
        #expect(metadata.clientKeyCount == 5_000 && metadata.value("last_heartbeat_time") == .int(7))
    }
}
