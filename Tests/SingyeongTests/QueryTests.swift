import Testing
@testable import Singyeong

// MARK: - Test helpers

/// A minimal JSON reader for test tables: keeps integers (`1`) and floats
/// (`1.0`, `1e3`) apart like the real decoder; traps on malformed input
/// (tables are hand-written).
enum QueryTestJSON {
    static func parse(_ text: String) -> Value {
        var reader = Reader(bytes: Array(text.utf8))
        let value = reader.value()
        reader.skipSpace()
        precondition(reader.i == reader.bytes.count, "trailing JSON in \(text)")
        return value
    }

    private struct Reader {
        let bytes: [UInt8]
        var i = 0

        mutating func skipSpace() {
            while i < bytes.count, [0x20, 0x0A, 0x0D, 0x09].contains(bytes[i]) { i += 1 }
        }

        mutating func expect(_ c: Character) {
            skipSpace()
            precondition(i < bytes.count && bytes[i] == c.asciiValue!, "expected \(c) at \(i)")
            i += 1
        }

        mutating func literal(_ word: String) -> Bool {
            let w = Array(word.utf8)
            guard bytes.count - i >= w.count, Array(bytes[i..<i + w.count]) == w else { return false }
            i += w.count
            return true
        }

        mutating func value() -> Value {
            skipSpace()
            precondition(i < bytes.count, "unexpected end")
            switch bytes[i] {
            case UInt8(ascii: "{"):
                i += 1
                var members: [(String, Value)] = []
                skipSpace()
                if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(ValueObject(members)) }
                while true {
                    skipSpace()
                    let name = string()
                    expect(":")
                    members.append((name, value()))
                    skipSpace()
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    expect("}")
                    return .object(ValueObject(members))
                }
            case UInt8(ascii: "["):
                i += 1
                var items: [Value] = []
                skipSpace()
                if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                while true {
                    items.append(value())
                    skipSpace()
                    if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                    expect("]")
                    return .array(items)
                }
            case UInt8(ascii: "\""):
                return .string(string())
            default:
                if literal("true") { return .bool(true) }
                if literal("false") { return .bool(false) }
                if literal("null") { return .null }
                return number()
            }
        }

        mutating func string() -> String {
            expect("\"")
            var out: [UInt8] = []
            while bytes[i] != UInt8(ascii: "\"") {
                if bytes[i] == UInt8(ascii: "\\") {
                    i += 1
                    switch bytes[i] {
                    case UInt8(ascii: "n"): out.append(0x0A)
                    case UInt8(ascii: "t"): out.append(0x09)
                    case UInt8(ascii: "u"):
                        let hex = String(decoding: bytes[i + 1...i + 4], as: UTF8.self)
                        out += Array(String(Unicode.Scalar(UInt32(hex, radix: 16)!)!).utf8)
                        i += 4
                    default: out.append(bytes[i])
                    }
                } else {
                    out.append(bytes[i])
                }
                i += 1
            }
            i += 1
            return String(decoding: out, as: UTF8.self)
        }

        mutating func number() -> Value {
            let start = i
            var isFloat = false
            while i < bytes.count, "+-0123456789.eE".utf8.contains(bytes[i]) {
                if [UInt8(ascii: "."), UInt8(ascii: "e"), UInt8(ascii: "E")].contains(bytes[i]) { isFloat = true }
                i += 1
            }
            let text = String(decoding: bytes[start..<i], as: UTF8.self)
            if !isFloat {
                if let v = Int64(text) { return .int(v) }
                if let v = UInt64(text) { return .uint(v) }
            }
            return .double(Double(text)!)
        }
    }
}

/// Builds metadata from `{"key": {"type": ..., "value": ...}}` JSON.
func queryTestMetadata(_ json: String, restricted: Bool = false) -> ClientMetadata {
    var metadata = ClientMetadata()
    guard case .success(let update) = MetadataUpdate.validate(QueryTestJSON.parse(json)) else {
        preconditionFailure("bad test metadata \(json)")
    }
    metadata.apply(update, strategy: .merge)
    metadata.setReserved(lastHeartbeatTime: 1_700_000_000_000, restricted: restricted, encoding: "json",
                         ip: "10.0.0.5", namespace: nil, receiveClientUpdates: false)
    return metadata
}

/// Client C of `query.md` §11.
let querySpecClientC = queryTestMetadata("""
{"latency": {"type": "integer", "value": 50},
 "region": {"type": "string", "value": "eu"},
 "guilds": {"type": "list", "value": [1, 2, 3]},
 "tags": {"type": "list", "value": ["a", "b"]},
 "empty": {"type": "list", "value": []},
 "ver": {"type": "version", "value": "1.10.0"},
 "beta": {"type": "boolean", "value": true},
 "load": {"type": "float", "value": 0.5},
 "key2": {"type": "integer", "value": 5},
 "info": {"type": "map", "value": {"zone": "a", "ports": [80, 443], "nested": {"x": 1}, "1": "one"}}}
""")

enum QueryExpectation: Sendable { case match, noMatch, invalid }

/// One numbered row of the §11 table: `json` is either a single op (wrapped
/// as `{"application": "api", "ops": [op]}`) or, when `whole`, the query.
struct QuerySpecCase: Sendable, CustomTestStringConvertible {
    let number: Int
    let json: String
    let whole: Bool
    let expected: QueryExpectation
    var testDescription: String { "#\(number) \(json)" }

    var queryJSON: String { whole ? json : "{\"application\": \"api\", \"ops\": [\(json)]}" }
}

private func op(_ path: String, _ name: String, _ value: String) -> String {
    "{\"path\": \"\(path)\", \"op\": \"\(name)\", \"to\": {\"value\": \(value)}}"
}

private func row(_ n: Int, _ path: String, _ name: String, _ value: String, _ e: QueryExpectation) -> QuerySpecCase {
    QuerySpecCase(number: n, json: op(path, name, value), whole: false, expected: e)
}

private func raw(_ n: Int, _ json: String, _ e: QueryExpectation, whole: Bool = false) -> QuerySpecCase {
    QuerySpecCase(number: n, json: json, whole: whole, expected: e)
}

private func logical(_ name: String, _ ops: [String]) -> String {
    "{\"op\": \"\(name)\", \"with\": [\(ops.joined(separator: ", "))]}"
}

/// `query.md` §11 rows 1–88 (client C).
let querySpecCasesC: [QuerySpecCase] = [
    row(1, "/latency", "$eq", "50", .match),
    row(2, "/latency", "$eq", "50.0", .match),
    row(3, "/latency", "$eq", "\"50\"", .noMatch),
    row(4, "/latency", "$ne", "40", .match),
    row(5, "/latency", "$ne", "50", .noMatch),
    row(6, "/latency", "$ne", "\"50\"", .match),
    row(7, "/latency", "$gt", "10", .match),
    row(8, "/latency", "$gt", "50", .noMatch),
    row(9, "/latency", "$gte", "50", .match),
    row(10, "/latency", "$lt", "100.5", .match),
    row(11, "/latency", "$lte", "49", .noMatch),
    row(12, "/latency", "$lt", "\"10\"", .noMatch),
    row(13, "/latency", "$gt", "null", .noMatch),
    row(14, "/latency", "$lt", "true", .noMatch),
    row(15, "/region", "$eq", "\"eu\"", .match),
    row(16, "/region", "$eq", "\"EU\"", .noMatch),
    row(17, "/region", "$gt", "\"de\"", .match),
    row(18, "/region", "$gt", "5", .noMatch),
    row(19, "/region", "$in", "[\"eu\", \"us\"]", .match),
    row(20, "/region", "$in", "[\"us\"]", .noMatch),
    row(21, "/region", "$in", "{\"eu\": 1}", .invalid),
    row(22, "/region", "$nin", "[\"us\"]", .match),
    row(23, "/region", "$nin", "[\"eu\"]", .noMatch),
    row(24, "/guilds", "$contains", "2", .match),
    row(25, "/guilds", "$contains", "2.0", .match),
    row(26, "/guilds", "$contains", "\"2\"", .noMatch),
    row(27, "/guilds", "$contains", "4", .noMatch),
    row(28, "/guilds", "$ncontains", "4", .match),
    row(29, "/region", "$contains", "\"e\"", .noMatch),
    row(30, "/region", "$ncontains", "\"e\"", .match),
    row(31, "/guilds", "$eq", "[1, 2, 3]", .match),
    row(32, "/guilds", "$eq", "[3, 2, 1]", .noMatch),
    row(33, "/guilds/0", "$eq", "1", .match),
    row(34, "/guilds/2", "$gte", "3", .match),
    row(35, "/guilds/3", "$eq", "1", .noMatch),
    row(36, "/guilds/01", "$eq", "2", .noMatch),
    row(37, "/empty", "$contains", "1", .noMatch),
    row(38, "/empty", "$eq", "[]", .match),
    row(39, "/tags", "$in", "[[\"a\", \"b\"]]", .match),
    row(40, "/ver", "$eq", "\"1.10.0\"", .match),
    row(41, "/ver", "$gt", "\"1.9.0\"", .match),
    row(42, "/ver", "$lt", "\"1.2.0\"", .noMatch),
    row(43, "/ver", "$gte", "\"1.10.0+build.7\"", .match),
    row(44, "/ver", "$lt", "\"1.10.0-rc.1\"", .noMatch),
    row(45, "/beta", "$eq", "true", .match),
    row(46, "/beta", "$gt", "false", .noMatch),
    row(47, "/load", "$lte", "0.5", .match),
    row(48, "/info/zone", "$eq", "\"a\"", .match),
    row(49, "/info/ports/1", "$eq", "443", .match),
    row(50, "/info/ports", "$contains", "80", .match),
    row(51, "/info/nested/x", "$gte", "1", .match),
    row(52, "/info/1", "$eq", "\"one\"", .match),
    row(53, "/info", "$eq", "{\"zone\": \"a\", \"ports\": [80, 443], \"nested\": {\"x\": 1}, \"1\": \"one\"}", .match),
    row(54, "/key2", "$eq", "5", .match),
    row(55, "/missing", "$eq", "1", .noMatch),
    row(56, "/missing", "$gt", "0", .noMatch),
    row(57, "/missing", "$ne", "1", .match),
    row(58, "/missing", "$nin", "[1]", .match),
    row(59, "/missing", "$ncontains", "1", .match),
    row(60, "/namespace", "$eq", "null", .match),
    row(61, "/restricted", "$eq", "false", .match),
    row(62, "/encoding", "$eq", "\"json\"", .match),
    raw(63, logical("$and", [op("/latency", "$gt", "10"), op("/latency", "$lt", "100")]), .match),
    raw(64, logical("$and", [op("/latency", "$gt", "10"), op("/region", "$eq", "\"us\"")]), .noMatch),
    raw(65, logical("$and", []), .match),
    raw(66, logical("$or", [op("/missing", "$eq", "1"), op("/latency", "$eq", "50")]), .match),
    raw(67, logical("$or", [op("/latency", "$eq", "50"), op("/missing", "$eq", "1")]), .match),
    raw(68, logical("$or", []), .noMatch),
    raw(69, logical("$nor", [op("/region", "$eq", "\"us\""), op("/latency", "$gt", "100")]), .match),
    raw(70, logical("$nor", [op("/region", "$eq", "\"eu\"")]), .noMatch),
    raw(71, logical("$nor", [op("/missing", "$eq", "1")]), .match),
    raw(72, logical("$nor", []), .match),
    raw(73, op("/latency", "$gt", "10") + ", " + op("/region", "$eq", "\"eu\""), .match),
    raw(74, #"{"path":"/load","op":"$lt","to":{"path":"/latency","default":0}}"#, .match),
    raw(75, #"{"path":"/latency","op":"$eq","to":{"path":"/latency","default":0}}"#, .match),
    raw(76, #"{"path":"/latency","op":"$eq","to":{"path":"/nope","default":50}}"#, .match),
    raw(77, #"{"path":"/latency","op":"$eq","to":{"path":"/nope"}}"#, .noMatch),
    raw(78, #"{"path":"/latency","op":"$eq","to":{"type":"integer","value":50}}"#, .match),
    raw(79, #"{"latency": {"$lte": 100}}"#, .match),
    raw(80, #"{"latency": {"$gt": 10, "$lt": 20}}"#, .noMatch),
    raw(81, #"{"latency": {"$or": [{"$eq": 10}, {"$gt": 40}]}}"#, .match),
    raw(82, #"{"guilds": {"$contains": 3}}"#, .match),
    raw(83, #"{"missing": {"$ne": 1}}"#, .match),
    raw(84, #"{"path":"latency","op":"$eq","to":{"value":50}}"#, .invalid),
    raw(85, #"{"path":"/latency","op":"$exists","to":{"value":true}}"#, .invalid),
    raw(86, #"{"application": "other", "ops": []}"#, .noMatch, whole: true),
    raw(87, #"{"ops": []}"#, .match, whole: true),
    raw(88, #"{"application": "api"}"#, .match, whole: true),
]

/// `query.md` §11 rows 89–92 (restricted client R).
let querySpecCasesR: [QuerySpecCase] = [
    raw(89, #"{"application": "api", "ops": []}"#, .noMatch, whole: true),
    raw(90, #"{"application": "api", "restricted": true}"#, .match, whole: true),
    raw(91, #"{"application": "api", "restricted": "true"}"#, .match, whole: true),
    raw(92, #"{"application": "api", "restricted": 1}"#, .noMatch, whole: true),
]

/// Runs one row against a client of application `api`.
private func check(_ c: QuerySpecCase, _ metadata: ClientMetadata) {
    switch Query.parse(QueryTestJSON.parse(c.queryJSON)) {
    case .failure(let error):
        #expect(c.expected == .invalid, "unexpected invalid query: \(error.detail)")
    case .success(let query):
        #expect(c.expected != .invalid, "expected an invalid query")
        let matched = query.matches(application: "api", metadata: metadata)
        #expect(matched == (c.expected == .match))
    }
}

// MARK: - §11 tables

@Suite struct QuerySpecTableTests {
    @Test(arguments: querySpecCasesC)
    func clientC(_ c: QuerySpecCase) { check(c, querySpecClientC) }

    @Test(arguments: querySpecCasesR)
    func restrictedClientR(_ c: QuerySpecCase) {
        check(c, queryTestMetadata("{}", restricted: true))
    }

    @Test func tableIsComplete() {
        #expect(querySpecCasesC.map(\.number) == Array(1...88))
        #expect(querySpecCasesR.map(\.number) == Array(89...92))
    }
}

// MARK: - Selectors, optional, key (rows 93–102)

/// Clients A–E of `query.md` §11 (application `api`, none restricted).
private let selectorClients: [(id: String, metadata: ClientMetadata)] = [
    ("A", queryTestMetadata(#"{"latency": {"type": "integer", "value": 10}, "region": {"type": "string", "value": "eu"}}"#)),
    ("B", queryTestMetadata(#"{"latency": {"type": "integer", "value": 50}, "region": {"type": "string", "value": "eu"}}"#)),
    ("C", queryTestMetadata(#"{"latency": {"type": "integer", "value": 30}, "region": {"type": "string", "value": "eu"}}"#)),
    ("D", queryTestMetadata(#"{"region": {"type": "string", "value": "eu"}}"#)),
    ("E", queryTestMetadata(#"{"latency": {"type": "string", "value": "fast"}, "region": {"type": "string", "value": "eu"}}"#)),
]

/// The routing pipeline of §10 on a single node, enough for rows 93–102:
/// returns the candidate ids after optional + selector.
private func route(_ queryJSON: String, clients: [(id: String, metadata: ClientMetadata)], seed: UInt64 = 1) -> [String] {
    guard case .success(let q) = Query.parse(QueryTestJSON.parse(queryJSON)) else {
        Issue.record("invalid query \(queryJSON)")
        return []
    }
    var candidates = clients.filter { q.matches(application: "api", metadata: $0.metadata) }
    var fallback = false
    if candidates.isEmpty && q.optional {
        candidates = clients.filter { q.matchesBase(application: "api", metadata: $0.metadata) }
        fallback = true
    }
    if !fallback, let selector = q.selector {
        var rng = SplitMix64(seed: seed)
        guard let i = selector.choose(among: candidates.count, value: { selector.value(in: candidates[$0].metadata) }, using: &rng) else {
            return []
        }
        candidates = [candidates[i]]
    }
    return candidates.map(\.id)
}

@Suite struct QuerySelectorTests {
    @Test(arguments: [
        (93, #"{"application": "api", "selector": {"$min": "latency"}}"#, "A"),
        (94, #"{"application": "api", "selector": {"$max": "latency"}}"#, "B"),
        (95, #"{"application": "api", "selector": {"$avg": "latency"}}"#, "C"),
        (102, #"{"application": "api", "selector": {"$min": "latency"}}"#, "A"),
        (0, #"{"application": "api", "selector": {"$max": "/latency"}}"#, "B"),
    ])
    func numericSelectors(_ n: Int, _ query: String, _ expected: String) {
        for seed in UInt64(0)..<20 {
            #expect(route(query, clients: selectorClients, seed: seed) == [expected], "row \(n)")
        }
    }

    @Test func row96NobodyNumericIsUniformRandom() {
        var seen: Set<String> = []
        for seed in UInt64(0)..<200 {
            let chosen = route(#"{"application": "api", "selector": {"$min": "nope"}}"#, clients: selectorClients, seed: seed)
            #expect(chosen.count == 1)
            seen.formUnion(chosen)
        }
        #expect(seen == ["A", "B", "C", "D", "E"])
    }

    @Test func row97EmptyCandidatesChooseNothing() {
        let q = #"{"application": "api", "ops": [{"path": "/region", "op": "$eq", "to": {"value": "us"}}], "selector": {"$min": "latency"}}"#
        #expect(route(q, clients: selectorClients).isEmpty)
        var rng = SplitMix64(seed: 1)
        #expect(Selector.min(MetadataPath(topLevelKey: "x")).choose(among: 0, value: { _ in nil }, using: &rng) == nil)
    }

    @Test func row98OptionalFallsBackToBaseFilter() {
        let q = #"{"application": "api", "ops": [{"path": "/region", "op": "$eq", "to": {"value": "us"}}], "optional": true, "selector": {"$min": "latency"}}"#
        #expect(route(q, clients: selectorClients) == ["A", "B", "C", "D", "E"])
    }

    @Test func row99DroppableWithNoClients() throws {
        let text = #"{"application": "api", "ops": [{"path": "/region", "op": "$eq", "to": {"value": "us"}}], "optional": true, "droppable": true}"#
        #expect(route(text, clients: []).isEmpty)
        let q = try Query.parse(QueryTestJSON.parse(text)).get()
        #expect(q.droppable && q.optional)
    }

    @Test func row100KeyHashOverSortedCandidates() {
        let q = #"{"application": "api", "ops": [{"path": "/latency", "op": "$gte", "to": {"value": 30}}], "key": "a"}"#
        let ids = route(q, clients: selectorClients.reversed()).sorted(by: KeyHash.bytewiseLess)
        #expect(ids == ["B", "C"])
        #expect(ids[KeyHash.index(forKey: "a", count: ids.count)] == "B")
    }

    @Test func row101KeyHashOverAllCandidates() throws {
        let text = #"{"application": "api", "ops": [], "key": "user-42"}"#
        let q = try Query.parse(QueryTestJSON.parse(text)).get()
        #expect(q.key == "user-42")
        let ids = route(text, clients: selectorClients).sorted(by: KeyHash.bytewiseLess)
        #expect(ids[KeyHash.index(forKey: q.key!, count: ids.count)] == "E")
    }

    @Test func tiesAreBrokenUniformly() {
        let values: [Value] = [.int(5), .double(5.0), .int(9), .uint(UInt64(Int64.max) + 1), .int(5)]
        var counts = [0, 0, 0, 0, 0]
        var rng = SplitMix64(seed: 42)
        for _ in 0..<3000 {
            counts[Selector.min(MetadataPath(topLevelKey: "k")).choose(among: 5, value: { values[$0] }, using: &rng)!] += 1
        }
        #expect(counts[2] == 0 && counts[3] == 0)
        for i in [0, 1, 4] { #expect(counts[i] > 800 && counts[i] < 1200, "counts \(counts)") }
        #expect(Selector.max(MetadataPath(topLevelKey: "k")).choose(among: 5, value: { values[$0] }, using: &rng) == 3)
    }

    @Test func avgPicksClosestToMean() {
        // mean 4: 1 is 3 away, 6 is 2 away, 5 is 1 away.
        let values: [Value] = [.int(1), .double(6), .string("x"), .int(5), .null]
        var rng = SplitMix64(seed: 3)
        #expect(Selector.avg(MetadataPath(topLevelKey: "k")).choose(among: 5, value: { values[$0] }, using: &rng) == 3)
    }

    @Test(arguments: [
        (#"{"$min": "latency"}"#, true),
        (#"{"$max": "a/b"}"#, true),
        (#"{"$avg": "/info/x"}"#, true),
        (#"{}"#, false),
        (#"{"$min": 1}"#, false),
        (#"{"$median": "x"}"#, false),
        (#"{"$min": "a", "$max": "b"}"#, false),
        (#""latency""#, false),
    ])
    func selectorParsing(_ json: String, _ valid: Bool) {
        let result = Query.parse(QueryTestJSON.parse("{\"selector\": \(json)}"))
        switch result {
        case .success(let q): #expect(valid && q.selector != nil)
        case .failure(let e):
            #expect(!valid)
            #expect(e.detail == #"selector: must be {"$min"|"$max"|"$avg": "<key>"}"#)
        }
    }

    @Test func selectorKeyIsTopLevelUnlessSlash() throws {
        let a = try Query.parse(QueryTestJSON.parse(#"{"selector": {"$max": "a/b"}}"#)).get()
        #expect(a.selector == .max(MetadataPath(topLevelKey: "a/b")))
        let b = try Query.parse(QueryTestJSON.parse(#"{"selector": {"$avg": "/info/x"}}"#)).get()
        #expect(b.selector?.path.segments.map(\.name) == ["info", "x"])
        #expect(try Query.parse(QueryTestJSON.parse(#"{"selector": null}"#)).get().selector == nil)
    }
}

// MARK: - Parse errors, coercions, v1 translation, paths

@Suite struct QueryParseTests {
    @Test(arguments: [
        ("[]", "target", "target: must be an object"),
        ("5", "query", "query: must be an object"),
        (#"{"application": 5}"#, "target", "application: must be a string or null"),
        (#"{"application": ["a"]}"#, "target", "application: must be a string or null"),
        (#"{"ops": {}}"#, "target", "ops: must be an array"),
        (#"{"ops": "x"}"#, "target", "ops: must be an array"),
        (#"{"ops": [{"latency": {"$eq": 1}}, {"latency": {"$eq": 1}}, {"path": "/a", "op": "$exists", "to": {"value": 1}}]}"#, "target", "ops[2]: unknown op $exists"),
        (#"{"ops": [{"path": "latency", "op": "$eq", "to": {"value": 1}}]}"#, "target", "ops[0].path: must start with `/`"),
        (#"{"ops": [{"path": "", "op": "$eq", "to": {"value": 1}}]}"#, "target", "ops[0].path: must start with `/`"),
        (#"{"ops": [{"path": 5, "op": "$eq", "to": {"value": 1}}]}"#, "target", "ops[0].path: must be a string"),
        (#"{"ops": [{"op": "$eq", "to": {"value": 1}}]}"#, "target", "ops[0].path: missing"),
        (#"{"ops": [{"latency": {"$eq": 1}}, {"path": "/a", "op": "$eq", "to": {"default": 1}}]}"#, "target", "ops[1].to: must be an object with value or path"),
        (#"{"ops": [{"latency": {"$eq": 1}}, {"path": "/a", "op": "$eq", "to": 1}]}"#, "target", "ops[1].to: must be an object with value or path"),
        (#"{"ops": [{"latency": {"$eq": 1}}, {"path": "/a", "op": "$eq"}]}"#, "target", "ops[1].to: must be an object with value or path"),
        (#"{"ops": [{"path": "/a", "op": "$eq", "to": {"path": "a"}}]}"#, "target", "ops[0].to.path: must start with `/`"),
        (#"{"ops": [{"op": "$and", "with": {}}]}"#, "target", "ops[0].with: must be an array"),
        (#"{"ops": [{"op": "$or"}]}"#, "target", "ops[0].with: must be an array"),
        (#"{"ops": [{"a": {"$eq": 1}}, {"a": {"$eq": 1}}, {"a": {"$eq": 1}}, {"path": "/a", "op": "$in", "to": {"value": "x"}}]}"#, "target", "ops[3]: $in needs an array value"),
        (#"{"ops": [{"path": "/a", "op": "$nin", "to": {"value": {"x": 1}}}]}"#, "target", "ops[0]: $nin needs an array value"),
        (#"{"ops": [{"op": "$and", "with": [{"a": {"$eq": 1}}, {"a": {"$eq": 1}}, {"path": "/a", "op": "$foo", "to": {"value": 1}}]}]}"#, "target", "ops[0].with[2]: unknown op $foo"),
        (#"{"ops": [{"op": "$or", "with": [{"op": "$nor", "with": [{"path": "x", "op": "$eq", "to": {"value": 1}}]}]}]}"#, "target", "ops[0].with[0].with[0].path: must start with `/`"),
        (#"{"ops": [5]}"#, "target", "ops[0]: must be an object"),
        (#"{"ops": [{"latency": 5}]}"#, "target", "ops[0].latency: must be an object"),
        (#"{"ops": [{"latency": {"$not": {"$eq": 1}}}]}"#, "target", "ops[0].latency: unknown op $not"),
        (#"{"ops": [{"latency": {"$in": 5}}]}"#, "target", "ops[0].latency: $in needs an array value"),
        (#"{"ops": [{"latency": {"$or": 5}}]}"#, "target", "ops[0].latency.$or: must be an array"),
        (#"{"ops": [{"latency": {"$or": [{"$eq": 1}, 5]}}]}"#, "target", "ops[0].latency.$or[1]: must be an object"),
        (#"{"ops": [{"latency": {"$or": [{"$exists": 1}]}}]}"#, "target", "ops[0].latency.$or[0]: unknown op $exists"),
        (#"{"ops": [{"op": 5}]}"#, "target", "ops[0].op: must be an object"),
        (#"{"selector": {"$min": "a"}, "ops": 1}"#, "target", "ops: must be an array"),
    ])
    func errors(_ json: String, _ context: String, _ detail: String) {
        switch Query.parse(QueryTestJSON.parse(json), context: context) {
        case .success: Issue.record("expected invalid: \(json)")
        case .failure(let e): #expect(e.detail == detail)
        }
    }

    @Test(arguments: [
        (#"true"#, true), (#""true""#, true), (#"false"#, false), (#"1"#, false),
        (#""yes""#, false), (#"null"#, false), (#""TRUE""#, false), (#"{}"#, false),
    ])
    func flagCoercion(_ json: String, _ expected: Bool) throws {
        let q = try Query.parse(QueryTestJSON.parse("{\"restricted\": \(json), \"droppable\": \(json), \"optional\": \(json)}")).get()
        #expect(q.includeRestricted == expected && q.droppable == expected && q.optional == expected)
    }

    @Test func defaultsAndKeyCoercion() throws {
        let q = try Query.parse(QueryTestJSON.parse(#"{"key": 5, "ops": null, "application": null, "extra": [1]}"#)).get()
        #expect(q == Query())
        #expect(q.application == nil && q.key == nil && q.ops.isEmpty && q.selector == nil)
        #expect(!q.includeRestricted && !q.droppable && !q.optional)
        #expect(try Query.parse(QueryTestJSON.parse(#"{"key": "k"}"#)).get().key == "k")
    }

    /// v1 elements compile to exactly what the equivalent v2 ops compile to.
    @Test(arguments: [
        (#"{"latency": {"$lte": 100}}"#, #"{"path": "/latency", "op": "$lte", "to": {"value": 100}}"#),
        (#"{"a/b~c": {"$eq": 1}}"#, #"{"path": "/a~1b~0c", "op": "$eq", "to": {"value": 1}}"#),
        (#"{"latency": {"$gt": 10, "$lt": 20}}"#,
         #"{"op": "$and", "with": [{"path": "/latency", "op": "$gt", "to": {"value": 10}}, {"path": "/latency", "op": "$lt", "to": {"value": 20}}]}"#),
        (#"{"a": {"$eq": 1}, "b": {"$ne": 2}}"#,
         #"{"op": "$and", "with": [{"path": "/a", "op": "$eq", "to": {"value": 1}}, {"path": "/b", "op": "$ne", "to": {"value": 2}}]}"#),
        (#"{"score": {"$or": [{"$eq": 10}, {"$gt": 5, "$lt": 7}]}}"#,
         #"{"op": "$or", "with": [{"path": "/score", "op": "$eq", "to": {"value": 10}}, {"op": "$and", "with": [{"path": "/score", "op": "$gt", "to": {"value": 5}}, {"path": "/score", "op": "$lt", "to": {"value": 7}}]}]}"#),
        (#"{"r": {"$nor": []}}"#, #"{"op": "$nor", "with": []}"#),
        (#"{"r": {"$in": ["eu"]}}"#, #"{"path": "/r", "op": "$in", "to": {"value": ["eu"]}}"#),
        (#"{"op": {"$eq": "x"}}"#, #"{"path": "/op", "op": "$eq", "to": {"value": "x"}}"#),
        (#"{}"#, #"{"op": "$and", "with": []}"#),
    ])
    func v1Translation(_ v1: String, _ v2: String) throws {
        let a = try Query.parse(QueryTestJSON.parse("{\"ops\": [\(v1)]}")).get()
        let b = try Query.parse(QueryTestJSON.parse("{\"ops\": [\(v2)]}")).get()
        #expect(a.ops == b.ops)
    }

    @Test func v1AndV2MixedInOneArrayAndInWith() throws {
        let q = try Query.parse(QueryTestJSON.parse(#"""
        {"application": "api", "ops": [{"latency": {"$gt": 10}},
          {"op": "$or", "with": [{"region": {"$eq": "us"}}, {"path": "/region", "op": "$eq", "to": {"value": "eu"}}]}]}
        """#)).get()
        #expect(q.matchesOps(querySpecClientC))
    }

    @Test(arguments: [
        ("/", [""]),
        ("/a/", ["a", ""]),
        ("/a//b", ["a", "", "b"]),
        ("/a~1b/c~0d", ["a/b", "c~d"]),
        ("/~01", ["~1"]),
        ("/~2x~", ["~2x~"]),
        ("/é/ü", ["é", "ü"]),
    ])
    func pathSplitting(_ text: String, _ segments: [String]) {
        #expect(MetadataPath(parsing: text)?.segments.map(\.name) == segments)
    }

    @Test(arguments: [("0", 0), ("7", 7), ("10", 10), ("01", -1), ("00", -1), ("-1", -1), ("1a", -1), ("", -1),
                      ("99999999999999999999999", -1)])
    func arrayIndexSegments(_ name: String, _ index: Int) {
        #expect(MetadataPath.Segment(name).index == index)
    }

    @Test func nestingAndOpCountLimits() {
        func nested(_ depth: Int) -> String {
            var s = #"{"path": "/a", "op": "$eq", "to": {"value": 1}}"#
            for _ in 1..<depth { s = "{\"op\": \"$and\", \"with\": [\(s)]}" }
            return "{\"ops\": [\(s)]}"
        }
        #expect((try? Query.parse(QueryTestJSON.parse(nested(32))).get()) != nil)
        guard case .failure(let e) = Query.parse(QueryTestJSON.parse(nested(33))) else {
            Issue.record("33 levels accepted"); return
        }
        #expect(e.detail.hasSuffix("nested deeper than 32 levels"))
        #expect(e.detail.hasPrefix("ops[0]" + String(repeating: ".with[0]", count: 32)))

        let one = #"{"path": "/a", "op": "$eq", "to": {"value": 1}}"#
        let ok = "{\"ops\": [" + Array(repeating: one, count: 1024).joined(separator: ",") + "]}"
        #expect((try? Query.parse(QueryTestJSON.parse(ok)).get()) != nil)
        let tooMany = "{\"ops\": [" + Array(repeating: one, count: 1025).joined(separator: ",") + "]}"
        #expect(Query.parse(QueryTestJSON.parse(tooMany)) == .failure(QueryError(detail: "ops[1024]: more than 1024 ops in query")))

        var v1 = #"{"$eq": 1}"#
        for _ in 1...40 { v1 = "{\"$or\": [\(v1)]}" }
        guard case .failure(let e1) = Query.parse(QueryTestJSON.parse("{\"ops\": [{\"k\": \(v1)}]}")) else {
            Issue.record("deep v1 accepted"); return
        }
        #expect(e1.detail.hasSuffix("nested deeper than 32 levels"))
    }
}

// MARK: - Value semantics beyond the table

@Suite struct QueryValueSemanticsTests {
    private func matches(_ opJSON: String, _ metadata: ClientMetadata) -> Bool {
        let q = try! Query.parse(QueryTestJSON.parse("{\"ops\": [\(opJSON)]}")).get()
        return q.matchesOps(metadata)
    }

    @Test(arguments: [
        // (a, b, expected order or nil)
        (Value.int(Int64.max), Value.double(9223372036854775808.0), -1 as Int?),
        (.int(Int64.max), .double(9223372036854775807.0), -1),          // the double is 2^63
        (.int(Int64.min), .double(-9223372036854775808.0), 0),
        (.int(9007199254740993), .double(9007199254740992.0), 1),       // 2^53+1 vs 2^53
        (.int(3), .double(3.5), -1),
        (.int(-3), .double(-3.5), 1),
        (.int(-3), .double(-2.5), -1),
        (.int(0), .double(-0.0), 0),
        (.uint(UInt64.max), .double(18446744073709551616.0), -1),
        (.uint(UInt64.max), .double(18446744073709549568.0), 1),
        (.uint(9223372036854775808), .double(9223372036854775808.0), 0),
        (.uint(9223372036854775808), .int(Int64.max), 1),
        (.int(-1), .uint(9223372036854775808), -1),
        (.double(.infinity), .int(Int64.max), 1),
        (.double(.nan), .int(1), nil),
        (.double(1), .string("1"), nil),
        (.bool(true), .bool(false), nil),
    ])
    func numericOrder(_ a: Value, _ b: Value, _ expected: Int?) {
        #expect(ValueComparison.order(a, b) == expected)
        #expect(ValueComparison.order(b, a) == expected.map { -$0 })
    }

    @Test(arguments: [
        ("a", "b", -1), ("", "a", -1), ("ab", "a", 1), ("Z", "a", -1), ("\u{FF}", "\u{10000}", -1),
        ("e\u{301}", "\u{E9}", -1), ("\u{E9}", "\u{E9}", 0), ("\u{FFFD}", "\u{1F600}", -1),
    ])
    func bytewiseStringOrder(_ a: String, _ b: String, _ expected: Int) {
        #expect(ValueComparison.order(.string(a), .string(b)) == expected)
        #expect(KeyHash.bytewiseLess(a, b) == (expected < 0))
    }

    @Test func stringEqualityIsByCodePointsNotCanonicalEquivalence() {
        let m = queryTestMetadata(#"{"s": {"type": "string", "value": "e\u0301"}}"#)
        #expect(!matches(#"{"path": "/s", "op": "$eq", "to": {"value": "\u00e9"}}"#, m))
        #expect(matches(#"{"path": "/s", "op": "$eq", "to": {"value": "e\u0301"}}"#, m))
        // Keys too: a precomposed key name does not find a decomposed one.
        #expect(matches(#"{"path": "/s", "op": "$eq", "to": {"path": "/\u00e9", "default": "e\u0301"}}"#, m))
    }

    @Test func versionRuleNeedsVersionTypeAndSingleSegment() {
        let m = queryTestMetadata(#"""
        {"ver": {"type": "version", "value": "1.10.0"}, "s": {"type": "string", "value": "1.10.0"},
         "m": {"type": "map", "value": {"v": "1.10.0"}}, "other": {"type": "version", "value": "1.9.0"}}
        """#)
        #expect(matches(#"{"path": "/ver", "op": "$gt", "to": {"value": "1.9.0"}}"#, m))
        #expect(!matches(#"{"path": "/s", "op": "$gt", "to": {"value": "1.9.0"}}"#, m))       // string order
        #expect(!matches(#"{"path": "/m/v", "op": "$gt", "to": {"value": "1.9.0"}}"#, m))     // nested: no rule
        #expect(!matches(#"{"path": "/ver", "op": "$gt", "to": {"value": "1.9"}}"#, m))       // unparsable: undefined
        #expect(!matches(#"{"path": "/ver", "op": "$lt", "to": {"value": "1.9"}}"#, m))
        #expect(matches(#"{"path": "/ver", "op": "$ne", "to": {"value": "1.9"}}"#, m))
        #expect(matches(#"{"path": "/ver", "op": "$gt", "to": {"path": "/other"}}"#, m))     // path operand
        #expect(matches(#"{"path": "/ver", "op": "$in", "to": {"value": ["1.10.0+b1"]}}"#, m))
        #expect(matches(#"{"ver": {"$eq": "1.10.0+abc"}}"#, m))
        #expect(!matches(#"{"path": "/s", "op": "$eq", "to": {"value": "1.10.0+abc"}}"#, m))
    }

    @Test func pathOperandsAndDefaults() {
        let m = queryTestMetadata(#"{"a": {"type": "list", "value": [1, 2]}, "x": {"type": "integer", "value": 2}, "s": {"type": "string", "value": "q"}}"#)
        #expect(matches(#"{"path": "/x", "op": "$in", "to": {"path": "/a"}}"#, m))
        #expect(!matches(#"{"path": "/x", "op": "$in", "to": {"path": "/s"}}"#, m))          // non-array → false
        #expect(matches(#"{"path": "/x", "op": "$nin", "to": {"path": "/s"}}"#, m))          // … and $nin true
        #expect(matches(#"{"path": "/x", "op": "$in", "to": {"path": "/nope", "default": [2]}}"#, m))
        #expect(matches(#"{"path": "/x", "op": "$nin", "to": {"path": "/nope"}}"#, m))        // missing operand
        #expect(matches(#"{"path": "/x", "op": "$eq", "to": {"value": 2, "path": "/nope"}}"#, m))  // value wins
        #expect(matches(#"{"path": "/a", "op": "$contains", "to": {"path": "/x"}}"#, m))
        #expect(matches(#"{"path": "/x", "op": "$eq", "to": {"value": null, "path": "/x"}}"#, m) == false)
        #expect(matches(#"{"path": "/nope", "op": "$eq", "to": {"path": "/nope", "default": null}}"#, m) == false)
    }

    @Test func objectsAndNestedArraysCompareNumerically() {
        let m = queryTestMetadata(#"{"o": {"type": "map", "value": {"a": [1, {"b": 2.0}], "c": null}}}"#)
        #expect(matches(#"{"path": "/o", "op": "$eq", "to": {"value": {"c": null, "a": [1.0, {"b": 2}]}}}"#, m))
        #expect(!matches(#"{"path": "/o", "op": "$eq", "to": {"value": {"a": [1.0, {"b": 2}]}}}"#, m))
        #expect(!matches(#"{"path": "/o", "op": "$gt", "to": {"value": {}}}"#, m))
        #expect(matches(#"{"path": "/o/a/1/b", "op": "$eq", "to": {"value": 2}}"#, m))
        #expect(matches(#"{"path": "/o/c", "op": "$eq", "to": {"value": null}}"#, m))
        #expect(!matches(#"{"path": "/o/c/x", "op": "$eq", "to": {"value": null}}"#, m))
        #expect(!matches(#"{"path": "/o/a/b", "op": "$eq", "to": {"value": null}}"#, m))
    }

    @Test func baseFilter() throws {
        let q = try Query.parse(QueryTestJSON.parse(#"{"application": "api"}"#)).get()
        #expect(q.matchesBase(application: "api", restricted: false))
        #expect(!q.matchesBase(application: "api", restricted: true))
        #expect(!q.matchesBase(application: "API", restricted: false))
        #expect(!q.matchesBase(application: "apix", restricted: false))
        let any = try Query.parse(QueryTestJSON.parse(#"{"restricted": true}"#)).get()
        #expect(any.matchesBase(application: "whatever", restricted: true))
    }
}

// MARK: - Consistent hashing

@Suite struct KeyHashTests {
    @Test(arguments: [
        ("a", UInt64(0xaf63_dc4c_8601_ec8c)),
        ("user-42", 0x32c6_d7a5_4d35_dacb),
        ("", 0xcbf2_9ce4_8422_2325),
    ])
    func fnvVectors(_ key: String, _ hash: UInt64) {
        #expect(KeyHash.fnv1a64(key) == hash)
    }

    @Test(arguments: [("a", 3, 1), ("user-42", 3, 0), ("user-42", 2, 1), ("user-42", 5, 4), ("", 3, 2), ("x", 1, 0)])
    func indices(_ key: String, _ count: Int, _ index: Int) {
        #expect(KeyHash.index(forKey: key, count: count) == index)
    }

    @Test func candidateOrder() {
        #expect(KeyHash.candidateLess(("a", "z"), ("b", "a")))
        #expect(KeyHash.candidateLess(("a", "a"), ("a", "b")))
        #expect(!KeyHash.candidateLess(("a", "b"), ("a", "b")))
        #expect(KeyHash.candidateLess(("B", "x"), ("a", "x")))
    }
}
