import Testing
@testable import Singyeong

/// Metadata types, SemVer, UPDATE_METADATA validation and merge/replace
/// (`protocol.md` §4.6, §7).
@Suite struct MetadataTypeTests {
    /// The precomputed hashes of the reserved keys are their key hashes, and
    /// a reserved key is found by them.
    @Test(arguments: ClientMetadata.ReservedKey.allCases)
    func reservedKeyHashesArePrecomputedRight(key: ClientMetadata.ReservedKey) {
        #expect(key.hash == ClientMetadata.keyHash(key.rawValue))
        var metadata = ClientMetadata()
        metadata.setReserved(lastHeartbeatTime: 7, restricted: true, encoding: "json", ip: "10.0.0.1",
                             namespace: "ns", receiveClientUpdates: true)
        #expect(metadata.value(key) != nil)
        #expect(metadata.value(key) == metadata.value(key.rawValue))
    }

    @Test(arguments: [
        (MetadataType.string, #""x""#, #""x""# as String?),
        (.string, "1", nil),
        (.integer, "1", "1"),
        (.integer, "-9223372036854775808", "-9223372036854775808"),
        (.integer, "18446744073709551615", "18446744073709551615"),
        (.integer, "1.0", nil),
        (.integer, "true", nil),
        (.float, "1.5", "1.5"),
        (.float, "1", "1.0"),                      // Recommended: integer accepted, stored as float
        (.float, "-7", "-7.0"),
        (.float, "1e3", "1000.0"),
        (.float, #""1.5""#, nil),
        (.version, #""1.2.3""#, #""1.2.3""#),
        (.version, #""1.2""#, nil),
        (.version, #""v1.2.3""#, nil),
        (.version, "123", nil),
        (.list, "[1, \"a\", null]", "[1, \"a\", null]"),
        (.list, #""[1]""#, nil),
        (.boolean, "false", "false"),
        (.boolean, "0", nil),
        (.map, #"{"a": [1]}"#, #"{"a": [1]}"#),
        (.map, "[]", nil),
        (.string, "null", nil), (.integer, "null", nil), (.float, "null", nil), (.version, "null", nil),
        (.list, "null", nil), (.boolean, "null", nil), (.map, "null", nil),
    ])
    func validation(_ type: MetadataType, _ input: String, _ stored: String?) {
        #expect(type.validate(QueryTestJSON.parse(input)) == stored.map(QueryTestJSON.parse))
    }

    @Test func floatStoredAsDouble() {
        #expect(MetadataType.float.validate(.int(3)) == .double(3))
        #expect(MetadataType.float.validate(.uint(UInt64.max)) == .double(18446744073709551616.0))
        #expect(MetadataType(rawValue: "integer") == .integer && MetadataType(rawValue: "int") == nil)
    }
}

@Suite struct SemanticVersionTests {
    @Test(arguments: [
        "0.0.0", "1.2.3", "10.20.30", "1.1.2-prerelease+meta", "1.1.2+meta", "1.1.2+meta-valid",
        "1.0.0-alpha", "1.0.0-beta", "1.0.0-alpha.beta", "1.0.0-alpha.beta.1", "1.0.0-alpha.1",
        "1.0.0-alpha0.valid", "1.0.0-alpha.0valid", "1.0.0-alpha-a.b-c-somethinglong+build.1-aef.1-its-okay",
        "1.0.0-rc.1+build.1", "2.0.0-rc.1+build.123", "1.2.3-beta", "10.2.3-DEV-SNAPSHOT", "1.2.3-SNAPSHOT-123",
        "2.0.0+build.1848", "2.0.1-alpha.1227", "1.0.0-0A.is.legal", "1.0.0+0.build.1-rc.10000aaa-kk-0.1",
        "99999999999999999999999.999999999999999999.99999999999999999", "1.0.0-x-y-z.--", "1.2.3+001",
    ])
    func valid(_ text: String) {
        #expect(SemanticVersion(text) != nil)
    }

    @Test(arguments: [
        "", "1", "1.2", "1.2.3-0123", "1.2.3-0123.0123", "1.1.2+.123", "+invalid", "-invalid", "-invalid+invalid",
        "-invalid.01", "alpha", "alpha.beta", "1.0.0-alpha_beta", "1.0.0-alpha..", "1.0.0-alpha..1",
        "01.1.1", "1.01.1", "1.1.01", "1.2.3.DEV", "1.2-SNAPSHOT", "1.2.31.2.3----RC-SNAPSHOT.12.09.1--..12+788",
        "+justmeta", "9.8.7+meta+meta", "9.8.7-whatever+meta+meta", "v1.2.3", "1.2.3-", "1.2.3+", "1.2.3 ",
        " 1.2.3", "1.2.3-é", "1.2.3-a.", "1.2.3+a.",
    ])
    func invalid(_ text: String) {
        #expect(SemanticVersion(text) == nil)
    }

    @Test func precedenceChain() {
        let chain = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
                     "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.9.0", "1.10.0", "2.0.0", "2.1.0", "2.1.1",
                     "10.0.0", "99999999999999999999.0.0"]
        for i in chain.indices {
            for j in chain.indices {
                let expected = i == j ? 0 : (i < j ? -1 : 1)
                #expect(SemanticVersion.compare(chain[i], chain[j]) == expected, "\(chain[i]) vs \(chain[j])")
            }
        }
        #expect(SemanticVersion("1.0.0+a")! == SemanticVersion("1.0.0+b")!)
        #expect(SemanticVersion("1.0.0-a+x")! < SemanticVersion("1.0.0")!)
        #expect(SemanticVersion.compare("1.0.0", "1.0") == nil)
        #expect(SemanticVersion.compare("1.0.0-2", "1.0.0-10") == -1)
        #expect(SemanticVersion.compare("1.0.0-a.2", "1.0.0-a.b") == -1)
        #expect(SemanticVersion.compare("1.0.0-B", "1.0.0-a") == -1)        // ASCII order
    }
}

@Suite struct MetadataUpdateTests {
    private func failure(_ json: String) -> MetadataValidationFailure? {
        if case .failure(let f) = MetadataUpdate.validate(QueryTestJSON.parse(json)) { return f }
        return nil
    }

    @Test(arguments: ["[]", "null", "5", #""x""#])
    func notAnObject(_ json: String) {
        #expect(failure(json) == .notAnObject)
        #expect(failure(json)?.extraInfo == .string("metadata update must be an object"))
    }

    @Test(arguments: [
        (#"{"k": {"type": "bogus", "value": 1}}"#, "k: type 'bogus' doesn't exists"),
        (#"{"k": {"type": 5, "value": 1}}"#, "k: type '5' doesn't exists"),
        (#"{"k": {"type": null, "value": 1}}"#, "k: type 'null' doesn't exists"),
        (#"{"k": {"type": ["list"], "value": 1}}"#, "k: type '[...]' doesn't exists"),
        (#"{"k": {"type": "Integer", "value": 1}}"#, "k: type 'Integer' doesn't exists"),
        (#"{"ip": {"type": "string", "value": "1.2.3.4"}}"#, "ip: forbidden metadata key"),
        (#"{"restricted": {"type": "boolean", "value": false}}"#, "restricted: forbidden metadata key"),
        (#"{"receive_client_updates": {"type": "boolean", "value": true}}"#, "receive_client_updates: forbidden metadata key"),
        (#"{"namespace": {"type": "nope", "value": "x"}}"#, "namespace: type 'nope' doesn't exists"),
        (#"{"last_heartbeat_time": {"type": "integer", "value": "bad"}}"#, "last_heartbeat_time: forbidden metadata key"),
        (#"{"k": {"type": "integer", "value": "1"}}"#, "k: value fails validation for 'integer'"),
        (#"{"k": {"type": "integer", "value": true}}"#, "k: value fails validation for 'integer'"),
        (#"{"k": {"type": "version", "value": "1.2"}}"#, "k: value fails validation for 'version'"),
        (#"{"k": {"type": "string", "value": null}}"#, "k: value fails validation for 'string'"),
        (#"{"k": 5}"#, "k: entry must be an object with type and value"),
        (#"{"k": {"type": "string"}}"#, "k: entry must be an object with type and value"),
        (#"{"k": {"value": "x"}}"#, "k: entry must be an object with type and value"),
        (#"{"k": null}"#, "k: entry must be an object with type and value"),
    ])
    func singleKeyMessages(_ json: String, _ message: String) {
        let f = failure(json)
        #expect(f?.errors.map(\.message) == [message])
        #expect(f?.errors.first?.key == message.split(separator: ":").first.map(String.init))
    }

    @Test func allOrNothingWithOrderedErrorMap() {
        let f = failure(#"""
        {"good": {"type": "string", "value": "x"}, "b": {"type": "integer", "value": 1.5},
         "a": {"type": "wat", "value": 1}, "encoding": {"type": "string", "value": "json"}}
        """#)
        #expect(f?.errors == [
            MetadataKeyError(key: "b", message: "b: value fails validation for 'integer'"),
            MetadataKeyError(key: "a", message: "a: type 'wat' doesn't exists"),
            MetadataKeyError(key: "encoding", message: "encoding: forbidden metadata key"),
        ])
        guard case .object(let map)? = f?.extraInfo else { Issue.record("no map"); return }
        #expect(Array(map.names) == ["b", "a", "encoding"])
        #expect(map["a"] == .string("a: type 'wat' doesn't exists"))
    }

    @Test func extraEntryMembersIgnoredAndFloatConverted() throws {
        let u = try MetadataUpdate.validate(QueryTestJSON.parse(#"{"f": {"type": "float", "value": 2, "note": "x"}}"#)).get()
        #expect(u.entries == [MetadataUpdate.Entry(key: "f", type: .float, value: .double(2))])
        #expect(try MetadataUpdate.validate(QueryTestJSON.parse("{}")).get().entries.isEmpty)
    }
}

@Suite struct ClientMetadataTests {
    private func update(_ json: String) -> MetadataUpdate {
        try! MetadataUpdate.validate(QueryTestJSON.parse(json)).get()
    }

    private func base() -> ClientMetadata {
        var m = ClientMetadata()
        m.apply(update(#"{"a": {"type": "integer", "value": 1}, "b": {"type": "string", "value": "x"}}"#), strategy: .merge)
        m.setReserved(lastHeartbeatTime: 5, restricted: true, encoding: "msgpack", ip: nil, namespace: "ns",
                      receiveClientUpdates: true)
        return m
    }

    @Test func reservedKeysAndTypes() {
        #expect(ClientMetadata.reservedKeys == ["last_heartbeat_time", "ip", "restricted", "encoding", "namespace",
                                                "receive_client_updates"])
        let m = base()
        #expect(m.entry("last_heartbeat_time")! == (MetadataType.integer, Value.int(5)))
        #expect(m.entry("ip")! == (MetadataType.string, Value.null))
        #expect(m.entry("restricted")! == (MetadataType.boolean, Value.bool(true)))
        #expect(m.entry("encoding")! == (MetadataType.string, Value.string("msgpack")))
        #expect(m.entry("namespace")! == (MetadataType.string, Value.string("ns")))
        #expect(m.entry("receive_client_updates")! == (MetadataType.boolean, Value.bool(true)))
        #expect(m.isRestricted)
        #expect(ClientMetadata.isReserved("ip") && !ClientMetadata.isReserved("IP") && !ClientMetadata.isReserved("ip "))
        #expect(m.entry("nope") == nil)
    }

    @Test func mergeOverwritesIncomingKeysOnly() {
        var m = base()
        m.apply(update(#"{"b": {"type": "integer", "value": 2}, "c": {"type": "boolean", "value": false}}"#), strategy: .merge)
        #expect(m.entries.map(\.key) == ["a", "b", "last_heartbeat_time", "ip", "restricted", "encoding", "namespace",
                                         "receive_client_updates", "c"])
        #expect(m.entry("a")! == (MetadataType.integer, Value.int(1)))
        #expect(m.entry("b")! == (MetadataType.integer, Value.int(2)))
        #expect(m.entry("c")! == (MetadataType.boolean, Value.bool(false)))
    }

    @Test func replaceDropsNonReservedKeys() {
        var m = base()
        m.apply(update(#"{"c": {"type": "list", "value": [1]}}"#), strategy: .replace)
        #expect(m.entries.map(\.key) == ["last_heartbeat_time", "ip", "restricted", "encoding", "namespace",
                                         "receive_client_updates", "c"])
        m.apply(update("{}"), strategy: .replace)
        #expect(m.count == 6)
        #expect(m.entry("encoding")?.value == .string("msgpack"))
    }

    @Test func reservedKeysWinAndStayQueryable() throws {
        var m = ClientMetadata()
        m.apply(update(#"{"x": {"type": "integer", "value": 1}}"#), strategy: .merge)
        m.setReserved(lastHeartbeatTime: 1, restricted: false, encoding: "json", ip: "10.0.0.1", namespace: nil,
                      receiveClientUpdates: false)
        m.setReserved(.lastHeartbeatTime, .int(2))
        #expect(m.entry("last_heartbeat_time")?.value == .int(2))
        #expect(m.count == 7)
        let q = try Query.parse(QueryTestJSON.parse(#"""
        {"ops": [{"path": "/namespace", "op": "$eq", "to": {"value": null}},
                 {"path": "/ip", "op": "$eq", "to": {"value": "10.0.0.1"}},
                 {"path": "/last_heartbeat_time", "op": "$gte", "to": {"value": 2}},
                 {"path": "/receive_client_updates", "op": "$eq", "to": {"value": false}}]}
        """#)).get()
        #expect(q.matchesOps(m))
    }

    @Test func keysCompareByBytes() {
        var m = ClientMetadata()
        m.apply(update(#"{"e\u0301": {"type": "integer", "value": 1}, "\u00e9": {"type": "integer", "value": 2}}"#), strategy: .merge)
        #expect(m.count == 2)
        #expect(m.value("e\u{301}") == .int(1))
        #expect(m.value("\u{E9}") == .int(2))
    }

    /// `bytesEqual` compares exact UTF-8 bytes: small (inline) and large
    /// strings, equal lengths with different bytes, canonical equivalents
    /// (not equal), and a Substring-derived string.
    @Test(arguments: [
        ("", "", true), ("a", "a", true), ("a", "b", false), ("ab", "a", false),
        ("sink", "sinK", false), ("e\u{301}", "\u{E9}", false), ("\u{E9}", "\u{E9}", true),
        (String(repeating: "x", count: 100), String(repeating: "x", count: 100), true),
        (String(repeating: "x", count: 99) + "y", String(repeating: "x", count: 100), false),
        (String("--role--".dropFirst(2).dropLast(2)), "role", true),
    ] as [(String, String, Bool)])
    func bytesEqual(a: String, b: String, equal: Bool) {
        #expect(ClientMetadata.bytesEqual(a, b) == equal)
        #expect(ClientMetadata.bytesEqual(b, a) == equal)
    }
}
