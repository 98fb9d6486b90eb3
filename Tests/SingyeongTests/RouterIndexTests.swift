import Testing
@testable import Singyeong

/// The store's string index must only narrow: for every query, the router's
/// (indexed) answer equals evaluating the query on every client, also after
/// metadata changes and removals.
@Suite struct RouterIndexTests {
    private static let roles = ["sink", "idle", "é", "e\u{301}", "1.0.0"]

    private func makeRecord(_ store: ClientStore, id: Int, rng: inout SplitMix64) -> ClientRecord {
        var metadata = ClientMetadata()
        metadata.setReserved(lastHeartbeatTime: 0, restricted: false, encoding: "json", ip: "10.0.0.\(id % 250)",
                             namespace: nil, receiveClientUpdates: false)
        var entries: [(String, Value)] = []
        switch rng.next() % 4 {
        case 0: entries.append(("role", .object(ValueObject([("type", .string("string")), ("value", .string(Self.roles[Int(rng.next() % 5)]))]))))
        case 1: entries.append(("role", .object(ValueObject([("type", .string("version")), ("value", .string("1.0.0"))]))))
        case 2: entries.append(("role", .object(ValueObject([("type", .string("integer")), ("value", .int(Int64(rng.next() % 3)))]))))
        default: break
        }
        if case .success(let update) = MetadataUpdate.validate(.object(ValueObject(entries))) {
            metadata.apply(update, strategy: .merge)
        }
        return ClientRecord(applicationID: "app", clientID: "c\(id)", handle: UInt64(id), restricted: false,
                            encoding: .json, receivesClientUpdates: false, socketIP: nil, tags: [],
                            metadata: metadata, session: nil)
    }

    private func query(_ value: String, op: String = "$eq") -> Query {
        let v: Value = .object(ValueObject([
            ("application", .string("app")),
            ("ops", .array([.object(ValueObject([("path", .string("/role")), ("op", .string(op)),
                                                 ("to", .object(ValueObject([("value", .string(value))])))]))])),
        ]))
        guard case .success(let q) = Query.parse(v) else { fatalError("test query did not parse") }
        return q
    }

    @Test func indexedAnswersEqualFullScans() {
        let store = ClientStore()
        let router = Router(store: store)
        var rng = SplitMix64(seed: 42)
        var records: [ClientRecord] = []
        for id in 0..<300 {
            let r = makeRecord(store, id: id, rng: &rng)
            store.add(r)
            records.append(r)
        }
        let queries = Self.roles.map { query($0) } + [query("sink", op: "$ne"), query("nobody"), query("10.0.0.7")]
        #expect(queries[0].indexableEquality != nil)
        #expect(query("1.0.0").indexableEquality == nil)  // SemVer operand: the version rule may apply
        func check() {
            for q in queries { #expect(router.listedClientIDs(q) == store.clientIDs(matching: q)) }
        }
        check()
        // Change some clients' metadata, remove others, and check again.
        for (i, r) in records.enumerated() where i % 3 == 0 {
            let role = Self.roles[i % Self.roles.count]
            if case .success(let update) = MetadataUpdate.validate(.object(ValueObject([("role", .object(ValueObject([("type", .string("string")), ("value", .string(role))])))]))) {
                store.updateMetadata(of: r) { $0.apply(update, strategy: i % 2 == 0 ? .merge : .replace) }
            }
        }
        for (i, r) in records.enumerated() where i % 7 == 0 { store.remove(r) }
        check()
        #expect(router.listedClientIDs(query("sink")).allSatisfy { id in records.first { $0.clientID == id }!.isRegistered })
    }
}
