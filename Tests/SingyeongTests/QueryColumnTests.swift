import Testing
@testable import Singyeong

/// Column tests must answer exactly what full evaluation answers: per
/// comparison over a table of stored values × literals × operators, and
/// through the router's column scans while clients come, go, change their
/// metadata and send heartbeats.
@Suite struct QueryColumnTests {
    /// Stored values, `nil` = key missing. Strings, arrays and objects are
    /// the `other` kind.
    private static let stored: [Value?] = [
        nil, .null, .bool(true), .bool(false),
        .int(.min), .int(-1), .int(0), .int(1), .int(2), .int(.max),
        .uint(UInt64(Int64.max) + 1), .uint(.max),
        .double(-0.5), .double(0), .double(-0.0), .double(0.5), .double(1), .double(2.5),
        .double(9_223_372_036_854_775_808.0), .double(18_446_744_073_709_551_616.0),
        .double(.infinity), .double(-.infinity), .double(.nan),
        .string(""), .string("1"), .string("1.0.0"), .string("sink"), .string("é"), .string("e\u{301}"),
        .array([.int(1)]), .array([.string("sink")]), .object(ValueObject([("a", .int(1))])),
    ]
    private static let literals: [Value] = [
        .null, .bool(true), .bool(false),
        .int(.min), .int(-1), .int(0), .int(1), .int(.max),
        .uint(UInt64(Int64.max) + 1), .uint(.max),
        .double(-0.5), .double(0), .double(1), .double(2.5), .double(.infinity), .double(-.infinity), .double(.nan),
        .string(""), .string("sink"), .string("é"), .string("1"),
    ]
    private static let scalarOps: [ComparisonOperator] = [.eq, .ne, .gt, .gte, .lt, .lte]

    private func metadata(_ value: Value?) -> ClientMetadata {
        var m = ClientMetadata()
        guard let value else { return m }
        let type: String
        switch value {
        case .null, .string: type = "string"
        case .bool: type = "boolean"
        case .int, .uint: type = "integer"
        case .double: type = "float"
        case .array: type = "list"
        case .object: type = "map"
        }
        let update = MetadataUpdate.validate(.object(ValueObject([("k", .object(ValueObject([("type", .string(type)), ("value", value)])))])))
        guard case .success(let u) = update else { return m }
        m.apply(u, strategy: .merge)
        return m
    }

    @Test func columnTestEqualsFullEvaluationForEveryStoredValueLiteralAndOperator() {
        var checked = 0
        for op in Self.scalarOps {
            for literal in Self.literals {
                let comparison = Comparison(path: MetadataPath(topLevelKey: "k"), op: op, operand: .literal(literal))
                if case .string = literal, op != .eq {
                    #expect(ScalarTest(comparison) == nil, "only $eq takes a string literal")
                    continue
                }
                guard let test = ScalarTest(comparison) else {
                    Issue.record("\(op) \(literal) is not a column test")
                    continue
                }
                for value in Self.stored {
                    let m = metadata(value)
                    // The table is about values the metadata can hold.
                    if value != nil, m.entry("k") == nil { continue }
                    let scalar = MetadataScalar(m.entry("k")?.value)
                    var confirmed = true
                    if case .string(let text) = literal { confirmed = test.confirm(m, key: "k", text: text) }
                    let answer = test.matches(scalar) && confirmed
                    #expect(answer == comparison.matches(m),
                            "\(String(describing: value)) \(op.rawValue) \(literal)")
                    checked += 1
                }
            }
        }
        #expect(checked > 2_000)
    }

    @Test func aStringEqualityHitIsConfirmedOnTheBytes() {
        let comparison = Comparison(path: MetadataPath(topLevelKey: "k"), op: .eq, operand: .literal(.string("é")))
        guard let test = ScalarTest(comparison) else {
            Issue.record("string $eq is not a column test")
            return
        }
        #expect(test.needsConfirmation)
        #expect(test.confirm(metadata(.string("é")), key: "k", text: "é"))
        // Canonically equivalent, different bytes: not equal (query.md §6.3).
        #expect(!test.confirm(metadata(.string("e\u{301}")), key: "k", text: "é"))
        #expect(!test.confirm(metadata(nil), key: "k", text: "é"))
        // A SemVer literal may meet the version rule: not a column test.
        #expect(ScalarTest(Comparison(path: MetadataPath(topLevelKey: "k"), op: .eq, operand: .literal(.string("1.0.0")))) == nil)
    }

    @Test func onlyScalarComparisonsOfTopLevelKeysBecomeColumnTests() {
        func plan(_ ops: String) -> [ScalarTest]? {
            guard case .success(let q) = Query.parse(QueryTestJSON.parse("{\"application\":\"a\",\"ops\":\(ops)}")) else {
                Issue.record("did not parse: \(ops)")
                return nil
            }
            return q.plan.scalarTests
        }
        #expect(plan("[]")?.count == 0)
        #expect(plan(#"[{"path":"/n","op":"$gte","to":{"value":0}}]"#)?.count == 1)
        #expect(plan(#"[{"n":{"$gt":1,"$lt":5}}]"#)?.count == 2)
        #expect(plan(#"[{"op":"$and","with":[{"path":"/n","op":"$eq","to":{"value":null}},{"path":"/b","op":"$ne","to":{"value":true}}]}]"#)?.count == 2)
        #expect(plan(#"[{"path":"/n","op":"$eq","to":{"value":"x"}}]"#)?.count == 1)
        #expect(plan(#"[{"path":"/n","op":"$ne","to":{"value":"x"}}]"#) == nil)           // string, not $eq
        #expect(plan(#"[{"path":"/n","op":"$eq","to":{"value":"1.0.0"}}]"#) == nil)       // SemVer string
        #expect(plan(#"[{"path":"/n/0","op":"$eq","to":{"value":1}}]"#) == nil)           // nested path
        #expect(plan(#"[{"path":"/n","op":"$in","to":{"value":[1]}}]"#) == nil)            // array operator
        #expect(plan(#"[{"path":"/n","op":"$eq","to":{"path":"/m"}}]"#) == nil)            // path operand
        #expect(plan(#"[{"op":"$or","with":[{"path":"/n","op":"$eq","to":{"value":1}}]}]"#) == nil)
        let nine = (0..<9).map { #"{"path":"/k\#($0)","op":"$gte","to":{"value":0}}"# }.joined(separator: ",")
        #expect(plan("[\(nine)]") == nil)                                                  // more than the column budget
    }

    // MARK: Column scans through the router

    private func record(_ id: Int, n: Value?, restricted: Bool) -> ClientRecord {
        var m = metadata(n)
        m.setReserved(lastHeartbeatTime: Int64(id), restricted: restricted, encoding: "json", ip: nil,
                      namespace: nil, receiveClientUpdates: false)
        return ClientRecord(applicationID: "app", clientID: "c\(id)", handle: UInt64(id), restricted: restricted,
                            encoding: .json, receivesClientUpdates: false, socketIP: nil, tags: [],
                            metadata: m, session: nil)
    }

    private func query(_ ops: String, restricted: Bool = false) -> Query {
        let text = "{\"application\":\"app\",\"restricted\":\(restricted),\"ops\":\(ops)}"
        guard case .success(let q) = Query.parse(QueryTestJSON.parse(text)) else { fatalError("test query did not parse") }
        return q
    }

    /// 400 clients: string `$eq` goes through the string index; 200: through
    /// the columns (`Router.columnScanLimit`).
    @Test(arguments: [400, 200])
    func columnScansEqualFullScansAcrossStoreChanges(clients: Int) {
        let store = ClientStore()
        let router = Router(store: store)
        var rng = SplitMix64(seed: 7)
        var records: [ClientRecord] = []
        func randomValue() -> Value? { Self.stored[Int(rng.next() % UInt64(Self.stored.count))] }
        for id in 0..<clients {
            let r = record(id, n: randomValue(), restricted: rng.next() % 5 == 0)
            store.add(r)
            records.append(r)
        }
        let queries = [
            query("[]"), query("[]", restricted: true),
            query(#"[{"path":"/k","op":"$gte","to":{"value":0}}]"#),
            query(#"[{"path":"/k","op":"$ne","to":{"value":1}}]"#, restricted: true),
            query(#"[{"k":{"$gt":-1,"$lte":1.5}}]"#),
            query(#"[{"path":"/k","op":"$eq","to":{"value":null}}]"#),
            query(#"[{"path":"/last_heartbeat_time","op":"$lt","to":{"value":200}}]"#),
            query(#"[{"path":"/k","op":"$lt","to":{"value":2}},{"path":"/last_heartbeat_time","op":"$gte","to":{"value":100}}]"#),
            query(#"[{"path":"/absent","op":"$ne","to":{"value":false}}]"#),
            query(#"[{"path":"/k","op":"$eq","to":{"value":"sink"}}]"#),
            query(#"[{"path":"/k","op":"$eq","to":{"value":"é"}}]"#, restricted: true),
            query(#"[{"path":"/k","op":"$eq","to":{"value":"sink"}},{"path":"/last_heartbeat_time","op":"$lt","to":{"value":300}}]"#),
        ]
        for q in queries { #expect(q.plan.scalarTests != nil) }
        func check(_ when: String) {
            for q in queries { #expect(router.listedClientIDs(q) == store.clientIDs(matching: q), "\(when): \(q.ops)") }
        }
        check("after adding")
        for (i, r) in records.enumerated() {
            switch i % 6 {
            case 0: store.remove(r)
            case 1:
                let m = metadata(randomValue())
                store.updateMetadata(of: r) { metadata in
                    metadata = m
                    metadata.copyReserved(from: r.metadata)
                }
            case 2: store.touchHeartbeat(r, milliseconds: Int64(rng.next() % 400))
            default: break
            }
        }
        check("after removals, updates and heartbeats")
        for id in clients..<(clients + 50) { store.add(record(id, n: randomValue(), restricted: false)) }
        check("after adding again")
        let app = store.application("app")!
        for column in app.columns { #expect(column.scalars.count == app.clients.count) }
        #expect(app.restrictedFlags.count == app.clients.count)
    }

    @Test func columnsAreBoundedAndOnlyIdleOnesAreReplaced() {
        let store = ClientStore()
        let router = Router(store: store)
        for id in 0..<10 { store.add(record(id, n: .int(Int64(id)), restricted: false)) }
        let app = store.application("app")!
        for key in 0..<ClientStore.maxColumns {
            _ = router.listedClientIDs(query(#"[{"path":"/x\#(key)","op":"$eq","to":{"value":1}}]"#))
        }
        #expect(app.columns.count == ClientStore.maxColumns)
        #expect(app.columnsBuilt == ClientStore.maxColumns)
        // A ninth key while every column is fresh: answered by the full
        // evaluation, no column built or replaced.
        let ninth = query(#"[{"path":"/k","op":"$gte","to":{"value":5}}]"#)
        for _ in 0..<3 { #expect(router.listedClientIDs(ninth) == store.clientIDs(matching: ninth)) }
        #expect(!app.columns.contains { $0.key == "k" })
        #expect(app.columnsBuilt == ClientStore.maxColumns)
        // After enough queries on one key the others are idle and replaceable.
        let busy = query(#"[{"path":"/x0","op":"$eq","to":{"value":1}}]"#)
        for _ in 0...ClientStore.columnIdleQueries { _ = router.listedClientIDs(busy) }
        #expect(router.listedClientIDs(ninth) == store.clientIDs(matching: ninth))
        #expect(app.columns.contains { $0.key == "k" })
        #expect(app.columns.count == ClientStore.maxColumns)
        #expect(app.columnsBuilt == ClientStore.maxColumns + 1)
    }

    /// A SEND without selector or key draws its one client during the
    /// column scan: always a match, and every match can be drawn.
    @Test func aSendDrawsOneMatchUniformly() {
        let store = ClientStore()
        let router = Router(store: store)
        for id in 0..<100 { store.add(record(id, n: id % 10 == 5 ? .string("sink") : .int(Int64(id)), restricted: false)) }
        for ops in [#"[{"path":"/k","op":"$eq","to":{"value":"sink"}}]"#, #"[{"path":"/k","op":"$gte","to":{"value":89}}]"#] {
            let q = query(ops)
            let matches = store.clientIDs(matching: q)
            #expect(matches.count == 10)
            var drawn: [String: Int] = [:]
            for _ in 0..<2_000 {
                router.resolveLocally(q, purpose: .one) { chosen in
                    #expect(chosen.count == 1)
                    if let c = chosen.first { drawn[c.clientID, default: 0] += 1 }
                }
            }
            #expect(Set(drawn.keys) == matches)
            // Each of 10 expects 200 draws; 100 is more than 7 standard deviations off.
            #expect(drawn.values.allSatisfy { $0 > 100 })
        }
    }

    /// A string `$eq` hit is a hash match; a hash that collides must not
    /// make a client a candidate. Collisions are forged by overwriting
    /// column entries with the literal's scalar and marking the column as
    /// it marks itself when two strings with one hash are stored.
    @Test func hashCollisionsInAColumnAreRejected() {
        let store = ClientStore()
        let router = Router(store: store)
        for id in 0..<20 { store.add(record(id, n: .string(id < 2 ? "sink" : "idle"), restricted: false)) }
        let q = query(#"[{"path":"/k","op":"$eq","to":{"value":"sink"}}]"#)
        #expect(router.listedClientIDs(q) == ["c0", "c1"])
        guard let column = store.application("app")?.columns.first(where: { $0.key == "k" }) else {
            Issue.record("no column for k")
            return
        }
        #expect(!column.hashesCollide)
        for i in column.scalars.indices { column.forge(MetadataScalar(.string("sink")), at: i) }
        column.noteCollision()
        #expect(router.listedClientIDs(q) == ["c0", "c1"])
        var drawn: Set<String> = []
        for _ in 0..<500 {
            router.resolveLocally(q, purpose: .one) { chosen in
                #expect(chosen.count == 1)
                if let c = chosen.first { drawn.insert(c.clientID) }
            }
        }
        #expect(drawn == ["c0", "c1"])
    }

    /// The column counts the strings its clients hold, so that the check
    /// of a literal stays exact and the bookkeeping shrinks with them.
    @Test func aColumnCountsTheStringsItsClientsHold() {
        let store = ClientStore()
        let router = Router(store: store)
        var records: [ClientRecord] = []
        for id in 0..<6 {
            let r = record(id, n: .string(["a", "b", "c"][id % 3]), restricted: false)
            store.add(r)
            records.append(r)
        }
        let q = query(#"[{"path":"/k","op":"$eq","to":{"value":"a"}}]"#)
        #expect(router.listedClientIDs(q) == ["c0", "c3"])
        guard let column = store.application("app")?.columns.first(where: { $0.key == "k" }) else {
            Issue.record("no column for k")
            return
        }
        #expect(column.heldStringCount == 3)
        #expect(column.isExact(text: "a", textHash: ClientMetadata.keyHash("a")))
        #expect(!column.hashesCollide)
        // Clients holding "c" leave or change to a number: "c" is no longer held.
        store.remove(records[2])
        let m = metadata(.int(1))
        store.updateMetadata(of: records[5]) { metadata in
            metadata = m
            metadata.copyReserved(from: records[5].metadata)
        }
        #expect(column.heldStringCount == 2)
        #expect(router.listedClientIDs(q) == ["c0", "c3"])
        for r in records where r.isRegistered { store.remove(r) }
        #expect(store.application("app") == nil)
    }

    /// `isExact` remembers its last answer; the answer must still follow
    /// every change of the strings held. Asked with a literal whose hash a
    /// client's other string holds (as a collision would have it), the
    /// answer flips as that string comes and goes.
    @Test func theRememberedExactAnswerFollowsTheStringsHeld() {
        let store = ClientStore()
        let router = Router(store: store)
        let holder = record(0, n: .string("a"), restricted: false)
        store.add(holder)
        store.add(record(1, n: .string("b"), restricted: false))
        _ = router.listedClientIDs(query(#"[{"path":"/k","op":"$eq","to":{"value":"a"}}]"#))
        guard let column = store.application("app")?.columns.first(where: { $0.key == "k" }) else {
            Issue.record("no column for k")
            return
        }
        let hashOfA = ClientMetadata.keyHash("a")
        #expect(column.isExact(text: "a", textHash: hashOfA))
        #expect(!column.isExact(text: "q", textHash: hashOfA))
        #expect(!column.isExact(text: "q", textHash: hashOfA))  // remembered
        store.remove(holder)  // nobody holds that hash any more
        #expect(column.isExact(text: "q", textHash: hashOfA))
        store.add(record(2, n: .string("a"), restricted: false))
        #expect(!column.isExact(text: "q", textHash: hashOfA))
        #expect(column.isExact(text: "b", textHash: ClientMetadata.keyHash("b")))
        column.noteCollision()
        #expect(!column.isExact(text: "b", textHash: ClientMetadata.keyHash("b")))
    }

    /// The store remembers the application of the last query object; the
    /// answer must follow applications appearing and disappearing.
    @Test func theRememberedApplicationFollowsTheStore() {
        let store = ClientStore()
        let q = query(#"[]"#)
        #expect(store.application(of: q) == nil)
        #expect(store.application(of: q) == nil)  // remembered
        let first = record(0, n: .int(1), restricted: false)
        store.add(first)
        let app = store.application(of: q)
        #expect(app != nil && app === store.application("app"))
        #expect(store.application(of: q) === app)
        store.remove(first)
        #expect(store.application(of: q) == nil)
        store.add(record(1, n: .int(1), restricted: false))
        #expect(store.application(of: q) === store.application("app"))
        #expect(store.application(of: q) !== app)
    }
}
