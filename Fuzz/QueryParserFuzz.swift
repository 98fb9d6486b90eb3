// libFuzzer harness for the query parser and evaluator. Build and run
// (standard library only):
//   swiftc -O -sanitize=fuzzer,address -parse-as-library \
//     Sources/Singyeong/Metadata/*.swift Sources/Singyeong/Codec/DocumentTape.swift \
//     Sources/Singyeong/Codec/Value.swift Fuzz/QueryParserFuzz.swift -o /tmp/queryfuzz
//   /tmp/queryfuzz -max_total_time=60

/// Turns fuzzer bytes into a `Value`: each byte is an instruction (null,
/// bool, int, double, string, array, object), strings and member names are
/// drawn mostly from query vocabulary so the parser's deeper paths are
/// reached quickly. Depth and width are bounded so generation always ends.
private struct QueryFuzzGenerator {
    let bytes: UnsafeBufferPointer<UInt8>
    var position = 0

    static let words: [String] = [
        "application", "restricted", "key", "droppable", "optional", "ops", "selector",
        "path", "op", "to", "value", "default", "with", "type",
        "$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$contains", "$ncontains",
        "$and", "$or", "$nor", "$not", "$exists", "$min", "$max", "$avg",
        "/a/0", "/a", "/latency", "/region", "/guilds/1", "/info/ports/0", "/info/1", "/ver", "/", "/~0~1", "",
        "latency", "region", "guilds", "ver", "info", "api", "true", "eu", "1.10.0", "1.2.3-rc.1+b", "/missing",
        "01", "é", "e\u{301}",
    ]

    mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func string() -> String {
        let b = byte()
        if b < 230 { return Self.words[Int(b) % Self.words.count] }
        // Raw short string, possibly invalid UTF-8 (repaired on decoding).
        let n = Int(byte() % 8)
        var raw: [UInt8] = []
        for _ in 0..<n { raw.append(byte()) }
        return String(decoding: raw, as: UTF8.self)
    }

    mutating func value(depth: Int) -> Value {
        let b = byte()
        switch b % 10 {
        case 0: return .null
        case 1: return .bool(b & 0x10 != 0)
        case 2: return .int(Int64(Int8(bitPattern: byte())))
        case 3:
            var raw: UInt64 = 0
            for _ in 0..<8 { raw = raw << 8 | UInt64(byte()) }
            return b & 0x10 != 0 ? .int(Int64(bitPattern: raw)) : .uint(raw | (1 << 63))
        case 4:
            let specials: [Double] = [0.5, -0.0, 1.0, 50.0, 9223372036854775808.0, .infinity, .nan, 1e300]
            return b & 0x10 != 0 ? .double(specials[Int(byte()) % specials.count]) : .double(Double(Int8(bitPattern: byte())) / 4)
        case 5, 6: return .string(string())
        case 7:
            guard depth < 12 else { return .null }
            let n = Int(byte() % 6)
            var items: [Value] = []
            for _ in 0..<n { items.append(value(depth: depth + 1)) }
            return .array(items)
        default:
            guard depth < 12 else { return .string(string()) }
            let n = Int(byte() % 6)
            var object = ValueObject()
            for _ in 0..<n { object[string()] = value(depth: depth + 1) }
            return .object(object)
        }
    }
}

/// Client C of `query.md` §11, the fixed metadata every valid query is run against.
private let fuzzClient: ClientMetadata = {
    var m = ClientMetadata()
    var object = ValueObject()
    func entry(_ type: String, _ value: Value) -> Value {
        .object(ValueObject([("type", .string(type)), ("value", value)]))
    }
    object["latency"] = entry("integer", .int(50))
    object["region"] = entry("string", .string("eu"))
    object["guilds"] = entry("list", .array([.int(1), .int(2), .int(3)]))
    object["ver"] = entry("version", .string("1.10.0"))
    object["load"] = entry("float", .int(1))
    object["a"] = entry("list", .array([.string("x"), .double(0.5)]))
    object["info"] = entry("map", .object(ValueObject([("1", .string("one")),
                                                       ("ports", .array([.int(80), .int(443)]))])))
    if case .success(let update) = MetadataUpdate.validate(.object(object)) {
        m.apply(update, strategy: .merge)
    }
    m.setReserved(lastHeartbeatTime: 1, restricted: false, encoding: "json", ip: nil, namespace: nil,
                  receiveClientUpdates: false)
    return m
}()

/// Parses the generated value as a query (both contexts) and, when valid,
/// evaluates it and runs its selector; also feeds the same value to the
/// metadata validator. Any trap is a finding.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzQueryParser(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    var generator = QueryFuzzGenerator(bytes: UnsafeBufferPointer(start: data, count: size))
    let value = generator.value(depth: 0)
    switch Query.parse(value, context: size & 1 == 0 ? "target" : "query") {
    case .success(let query):
        _ = query.matchesBase(application: "api", restricted: false)
        _ = query.matchesOps(fuzzClient)
        if let selector = query.selector {
            var rng = SystemRandomNumberGenerator()
            let values = [selector.value(in: fuzzClient), .int(3), .double(2.5), nil]
            let chosen = selector.choose(among: values.count, value: { values[$0] }, using: &rng)
            precondition(chosen != nil && chosen! >= 0 && chosen! < values.count)
        }
        if let key = query.key { precondition(KeyHash.index(forKey: key, count: 7) < 7) }
    case .failure(let error):
        precondition(!error.detail.isEmpty)
    }
    switch MetadataUpdate.validate(value) {
    case .success(let update):
        var m = fuzzClient
        m.apply(update, strategy: size & 2 == 0 ? .merge : .replace)
        precondition(m.count >= ClientMetadata.reservedKeys.count)
    case .failure(let failure):
        _ = failure.extraInfo
    }
    return 0
}
