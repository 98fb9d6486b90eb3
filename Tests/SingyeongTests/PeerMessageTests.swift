import Testing
@testable import Singyeong

/// Typed peer message bodies (Cluster/PeerMessages): encode → decode round
/// trips, malformed bodies, and fixed bytes pinning the wire format (peers
/// of other versions read and write exactly these).
@Suite struct PeerMessageTests {
    /// Decodes `bytes` as a peer body and hands the tape and body to `read`
    /// (which must not let pieces of the body escape).
    private func decoded<R>(_ bytes: [UInt8], _ read: (DocumentTape, UnsafeRawBufferPointer) -> R) -> R {
        bytes.withUnsafeBytes { body in
            var tape = DocumentTape()
            do {
                try MessagePackTapeDecoder.decode(body, into: &tape)
            } catch {
                Issue.record("undecodable \(bytes): \(error)")
            }
            return read(tape, body)
        }
    }

    /// MessagePack for `json` (a JSON document), to write malformed bodies briefly.
    private func pack(_ json: String) -> [UInt8] {
        var tape = DocumentTape()
        var text = Array(json.utf8)
        let count = text.count
        text.append(contentsOf: repeatElement(0, count: 64))
        text.withUnsafeBytes { try! JSONTapeDecoder.decode(UnsafeRawBufferPointer(rebasing: $0[0..<count]), into: &tape) }
        var w = FrameWriter(encoding: .msgpack)
        w.value(tape.value(tape.root))
        return w.bytes
    }

    // MARK: applications

    @Test(arguments: [
        ApplicationsMessage(full: true, add: ["a", "b"]),
        ApplicationsMessage(ack: true, add: ["new"]),
        ApplicationsMessage(remove: ["gone"]),
        ApplicationsMessage(full: true, ack: true, add: [], remove: ["x", "y"]),
        ApplicationsMessage(),
    ])
    func applicationsRoundTrip(message: ApplicationsMessage) {
        #expect(decoded(message.bytes) { tape, _ in ApplicationsMessage(tape: tape) } == message)
    }

    @Test func applicationsWireFormat() {
        #expect(ApplicationsMessage(full: true, ack: true, add: ["a"], remove: []).bytes == [
            0x84, 0xA4, 0x66, 0x75, 0x6C, 0x6C, 0xC3, 0xA3, 0x61, 0x63, 0x6B, 0xC3,
            0xA3, 0x61, 0x64, 0x64, 0x91, 0xA1, 0x61, 0xA6, 0x72, 0x65, 0x6D, 0x6F, 0x76, 0x65, 0x90,
        ])
        #expect(ApplicationsMessage(remove: ["r"]).bytes == [
            0x82, 0xA3, 0x61, 0x64, 0x64, 0x90, 0xA6, 0x72, 0x65, 0x6D, 0x6F, 0x76, 0x65, 0x91, 0xA1, 0x72,
        ])
    }

    @Test(arguments: [
        (#"[1]"#, nil),
        (#""text""#, nil),
        (#"{}"#, ApplicationsMessage()),
        (#"{"full": 1, "ack": "yes", "add": "a", "remove": {"b": 1}}"#, ApplicationsMessage()),
        (#"{"full": false, "add": ["a", 1, null, "b"]}"#, ApplicationsMessage(add: ["a", "b"])),
    ] as [(String, ApplicationsMessage?)])
    func applicationsLenient(json: String, expected: ApplicationsMessage?) {
        #expect(decoded(pack(json)) { tape, _ in ApplicationsMessage(tape: tape) } == expected)
    }

    // MARK: ping, routeResult

    @Test(arguments: [0, 1, 127, 128, -1, Int64.max, Int64.min] as [Int64])
    func pingAndRouteResultRoundTrip(n: Int64) {
        #expect(decoded(PingMessage(clientCount: n).bytes) { tape, _ in PingMessage(tape: tape) } == PingMessage(clientCount: n))
        #expect(decoded(RouteResultMessage(delivered: n).bytes) { tape, _ in RouteResultMessage(tape: tape) }
            == RouteResultMessage(delivered: n))
    }

    @Test func pingAndRouteResultWireFormat() {
        #expect(PingMessage(clientCount: 5).bytes == [0x81, 0xA1, 0x6E, 0x05])
        #expect(RouteResultMessage(delivered: 300).bytes == [0x81, 0xA1, 0x6E, 0xCD, 0x01, 0x2C])
    }

    @Test(arguments: [#"[]"#, #"{}"#, #"{"n": "3"}"#, #"{"n": 1.5}"#, #"{"m": 3}"#])
    func pingAndRouteResultMalformed(json: String) {
        #expect(decoded(pack(json)) { tape, _ in PingMessage(tape: tape) } == nil)
        #expect(decoded(pack(json)) { tape, _ in RouteResultMessage(tape: tape) } == RouteResultMessage(delivered: 0))
    }

    // MARK: tags, tagsResult

    @Test(arguments: [[], ["a"], ["prod", "eu", "ü"]] as [[String]])
    func tagsRoundTrip(strings: [String]) {
        #expect(decoded(TagsMessage(tags: strings).bytes) { tape, _ in TagsMessage(tape: tape) } == TagsMessage(tags: strings))
        #expect(decoded(TagsResultMessage(applications: strings).bytes) { tape, _ in TagsResultMessage(tape: tape) }
            == TagsResultMessage(applications: strings))
    }

    @Test func tagsWireFormat() {
        #expect(TagsMessage(tags: ["x"]).bytes == [0x81, 0xA1, 0x74, 0x91, 0xA1, 0x78])
        #expect(TagsResultMessage(applications: []).bytes == [0x81, 0xA1, 0x61, 0x90])
    }

    @Test(arguments: [
        (#"3"#, []), (#"{"t": "x", "a": "x"}"#, []), (#"{"t": ["x", 2], "a": [true, "y"]}"#, ["x"]),
    ] as [(String, [String])])
    func tagsLenient(json: String, tags: [String]) {
        #expect(decoded(pack(json)) { tape, _ in TagsMessage(tape: tape) } == TagsMessage(tags: tags))
        let applications = json.contains("\"y\"") ? ["y"] : []
        #expect(decoded(pack(json)) { tape, _ in TagsResultMessage(tape: tape) } == TagsResultMessage(applications: applications))
    }

    // MARK: event

    @Test(arguments: [
        EventMessage(event: "CLIENT_CONNECTED", application: "app"),
        EventMessage(event: "CLIENT_DISCONNECTED", application: ""),
    ])
    func eventRoundTrip(message: EventMessage) {
        #expect(decoded(message.bytes) { tape, _ in EventMessage(tape: tape) } == message)
    }

    @Test func eventWireFormat() {
        #expect(EventMessage(event: "CLIENT_CONNECTED", application: "a").bytes == [0x82, 0xA1, 0x74, 0xB0]
            + Array("CLIENT_CONNECTED".utf8) + [0xA3, 0x61, 0x70, 0x70, 0xA1, 0x61])
    }

    @Test(arguments: [
        #"[]"#, #"{"t": "CLIENT_CONNECTED"}"#, #"{"app": "a"}"#, #"{"t": "SEND", "app": "a"}"#,
        #"{"t": "CLIENT_CONNECTED", "app": 1}"#, #"{"t": 1, "app": "a"}"#,
    ])
    func eventMalformed(json: String) {
        #expect(decoded(pack(json)) { tape, _ in EventMessage(tape: tape) } == nil)
    }

    // MARK: query, route, deliver (pieces in the client's encoding)

    /// A piece in `encoding`: JSON text, or the MessagePack of that JSON.
    private func piece(_ json: String, _ encoding: PayloadEncoding) -> [UInt8] {
        encoding == .json ? Array(json.utf8) : pack(json)
    }

    @Test(arguments: [PayloadEncoding.json, .msgpack], [false, true])
    func queryRoundTrip(encoding: PayloadEncoding, flags: Bool) {
        let q = piece(#"{"application": "app", "ops": [{"path": "/x", "op": "$eq", "to": {"value": 1}}]}"#, encoding)
        q.withUnsafeBytes { q in
            let message = QueryMessage(encoding: encoding, query: q, descriptors: flags, withFallback: !flags)
            // Compared inside: the decoded pieces live only as long as the body.
            #expect(decoded(message.bytes) { tape, body in QueryMessage(tape: tape, body: body) == message })
        }
    }

    @Test func queryWireFormat() {
        let json = Array(#"{"a":1}"#.utf8)
        json.withUnsafeBytes { q in
            #expect(QueryMessage(encoding: .json, query: q, descriptors: true, withFallback: false).bytes
                == [0x84, 0xA3, 0x65, 0x6E, 0x63, 0x00, 0xA1, 0x71, 0xA7] + json
                + [0xA4, 0x6C, 0x69, 0x73, 0x74, 0xC3, 0xA3, 0x6F, 0x70, 0x74, 0xC2])
        }
        [UInt8]([0x81, 0xA1, 0x61, 0x01]).withUnsafeBytes { q in
            #expect(QueryMessage(encoding: .msgpack, query: q, descriptors: false, withFallback: true).bytes
                == [0x84, 0xA3, 0x65, 0x6E, 0x63, 0x01, 0xA1, 0x71, 0x81, 0xA1, 0x61, 0x01,
                    0xA4, 0x6C, 0x69, 0x73, 0x74, 0xC2, 0xA3, 0x6F, 0x70, 0x74, 0xC3])
        }
    }

    @Test(arguments: [
        #"[]"#, #"{}"#, #"{"enc": 0, "list": true}"#, #"{"enc": 0, "q": {"application": "a"}}"#, #"{"enc": 0, "q": 5}"#,
    ])
    func queryMalformed(json: String) {
        #expect(decoded(pack(json)) { tape, body in QueryMessage(tape: tape, body: body) } == nil)
    }

    @Test func queryDefaults() {
        // No `enc` (or anything but 0) is MessagePack; `list`/`opt` default to false.
        let message = decoded(pack(#"{"enc": "0", "q": {"application": "a"}, "list": 1, "opt": null}"#)) { tape, body in
            QueryMessage(tape: tape, body: body).map { ($0.encoding, Array($0.query), $0.descriptors, $0.withFallback) }
        }
        #expect(message?.0 == .msgpack)
        #expect(message?.1 == pack(#"{"application": "a"}"#))
        #expect(message?.2 == false && message?.3 == false)
    }

    @Test(arguments: [PayloadEncoding.json, .msgpack], [false, true])
    func routeRoundTrip(encoding: PayloadEncoding, withNonce: Bool) {
        let q = piece(#"{"application": "app"}"#, encoding)
        let payload = piece(#"{"hello": ["world", 1, null]}"#, encoding)
        let nonce = piece(#""n-1""#, encoding)
        q.withUnsafeBytes { q in
            payload.withUnsafeBytes { payload in
                nonce.withUnsafeBytes { nonce in
                    for (event, all) in [("SEND", false), ("BROADCAST", true)] as [(StaticString, Bool)] {
                        let message = RouteMessage(event: event, encoding: encoding, all: all, query: q,
                                                   nonce: withNonce ? nonce : nil, payload: payload)
                        // Compared inside: the decoded pieces live only as long as the body.
                        #expect(decoded(message.bytes) { tape, body in RouteMessage(tape: tape, body: body) == message })
                    }
                }
            }
        }
    }

    @Test func routeWireFormat() {
        let q = Array("{}".utf8), payload = Array("1".utf8), nonce = Array("2".utf8)
        q.withUnsafeBytes { q in
            payload.withUnsafeBytes { payload in
                nonce.withUnsafeBytes { nonce in
                    let bytes = RouteMessage(event: "SEND", encoding: .json, all: false, query: q, nonce: nonce, payload: payload).bytes
                    #expect(bytes == [0x86, 0xA1, 0x74, 0xA4, 0x53, 0x45, 0x4E, 0x44, 0xA3, 0x65, 0x6E, 0x63, 0x00,
                                      0xA3, 0x61, 0x6C, 0x6C, 0xC2, 0xA1, 0x71, 0xA2, 0x7B, 0x7D,
                                      0xA5, 0x6E, 0x6F, 0x6E, 0x63, 0x65, 0xA1, 0x32,
                                      0xA7, 0x70, 0x61, 0x79, 0x6C, 0x6F, 0x61, 0x64, 0xA1, 0x31])
                }
            }
        }
    }

    @Test(arguments: [
        #"[]"#, #"{"q": {}, "payload": 1}"#, #"{"t": 1, "q": {}, "payload": 1}"#, #"{"t": "SEND", "payload": 1}"#,
        #"{"t": "SEND", "q": {}}"#, #"{"t": "SEND", "enc": 0, "q": {}, "payload": "1"}"#,
    ])
    func routeMalformed(json: String) {
        #expect(decoded(pack(json)) { tape, body in RouteMessage(tape: tape, body: body) } == nil)
    }

    @Test func routeLenient() {
        // Any `t` but BROADCAST is SEND; a JSON nonce that is not a string is
        // none; a JSON payload that is not a string is nil (counted, not delivered).
        let message = decoded(pack(#"{"t": "OTHER", "enc": 0, "all": 1, "q": "{}", "nonce": 3, "payload": [1]}"#)) { tape, body in
            RouteMessage(tape: tape, body: body).map { ($0.event.description, $0.all, Array($0.query), $0.nonce == nil, $0.payload == nil) }
        }
        #expect(message?.0 == "SEND")
        #expect(message?.1 == false)
        #expect(message?.2 == Array("{}".utf8))
        #expect(message?.3 == true && message?.4 == true)
    }

    @Test(arguments: [PayloadEncoding.json, .msgpack], [false, true])
    func deliverRoundTrip(encoding: PayloadEncoding, withNonce: Bool) {
        let payload = piece(#"{"big": "\#(String(repeating: "x", count: 70_000))"}"#, encoding)
        let nonce = piece(#""n""#, encoding)
        payload.withUnsafeBytes { payload in
            nonce.withUnsafeBytes { nonce in
                for handles in [[], [1], [0, 127, 128, 1 << 40, UInt64.max]] as [[UInt64]] {
                    let message = DeliverMessage(event: "BROADCAST", encoding: encoding, nonce: withNonce ? nonce : nil,
                                                 payload: payload, handles: handles)
                    // Compared inside: the decoded pieces live only as long as the body.
                    #expect(decoded(message.bytes) { tape, body in DeliverMessage(tape: tape, body: body) == message })
                }
            }
        }
    }

    @Test func deliverPiecesAreSlicesOfTheBody() {
        let payload = pack(#"{"a": [1, 2, 3]}"#)
        payload.withUnsafeBytes { payload in
            let bytes = DeliverMessage(event: "SEND", encoding: .msgpack, nonce: nil, payload: payload, handles: [7]).bytes
            bytes.withUnsafeBytes { body in
                var tape = DocumentTape()
                try! MessagePackTapeDecoder.decode(body, into: &tape)
                let message = DeliverMessage(tape: tape, body: body)!
                let start = message.payload.baseAddress! - body.baseAddress!
                #expect(start > 0 && start + message.payload.count <= body.count)
            }
        }
    }

    @Test func deliverWireFormat() {
        [UInt8]([0x93, 0x01, 0x02, 0x03]).withUnsafeBytes { payload in
            #expect(DeliverMessage(event: "SEND", encoding: .msgpack, nonce: nil, payload: payload, handles: [1, UInt64.max]).bytes
                == [0x84, 0xA1, 0x74, 0xA4, 0x53, 0x45, 0x4E, 0x44, 0xA3, 0x65, 0x6E, 0x63, 0x01,
                    0xA7, 0x70, 0x61, 0x79, 0x6C, 0x6F, 0x61, 0x64, 0x93, 0x01, 0x02, 0x03,
                    0xA2, 0x74, 0x6F, 0x92, 0x01, 0xFF])
        }
    }

    @Test(arguments: [
        #"[]"#, #"{"payload": 1, "to": [1]}"#, #"{"t": "OTHER", "payload": 1, "to": [1]}"#, #"{"t": "SEND", "to": [1]}"#,
        #"{"t": "SEND", "payload": 1, "to": 1}"#, #"{"t": "SEND", "payload": 1}"#, #"{"t": "SEND", "enc": 0, "payload": 1, "to": [1]}"#,
    ])
    func deliverMalformed(json: String) {
        #expect(decoded(pack(json)) { tape, body in DeliverMessage(tape: tape, body: body) } == nil)
    }

    @Test func deliverLenient() {
        let message = decoded(pack(#"{"t": "SEND", "enc": 0, "nonce": 1, "payload": "p", "to": [1, "2", 3.0, 4]}"#)) { tape, body in
            DeliverMessage(tape: tape, body: body).map { ($0.nonce == nil, Array($0.payload), $0.handles) }
        }
        #expect(message?.0 == true)
        #expect(message?.1 == Array("p".utf8))
        #expect(message?.2 == [1, 4])
    }

    // MARK: queryResult

    private func local(_ handle: UInt64, _ client: String, selector: Value? = nil) -> Candidate {
        let record = ClientRecord(applicationID: "app", clientID: client, handle: handle, restricted: false, encoding: .json,
                                  receivesClientUpdates: false, socketIP: handle == 1 ? "10.0.0.1" : nil, tags: [],
                                  metadata: ClientMetadata(), session: nil)
        return Candidate(applicationID: "app", clientID: client, selectorValue: selector, record: record)
    }

    /// What a receiver can compare of a candidate.
    private func fields(_ c: Candidate) -> String {
        "\(c.handle)|\(c.applicationID)|\(c.clientID)|\(String(describing: c.selectorValue))"
    }

    @Test(arguments: [false, true])
    func queryResultRoundTrip(descriptors: Bool) {
        let matches = [local(1, "a", selector: .int(3)), local(UInt64.max, "b", selector: .string("x"))]
        let fallback = [local(0, "c")]
        for (m, f) in [(matches, [Candidate]()), ([], fallback), ([], [])] {
            let message = QueryResultMessage(matches: m, fallback: f, descriptors: descriptors)
            decoded(message.bytes) { tape, body in
                let answer = QueryResultMessage(tape: tape, body: body, node: nil)
                // Remote candidates: the handle travels, the record does not.
                let expected = { (c: Candidate) in fields(Candidate(applicationID: c.applicationID, clientID: c.clientID,
                                                                    selectorValue: c.selectorValue, record: nil,
                                                                    handle: c.record!.handle)) }
                #expect(answer.matches.map(fields) == m.map(expected))
                #expect(answer.fallback.map(fields) == f.map(expected))
                #expect(answer.matches.allSatisfy { $0.record == nil && ($0.descriptor != nil) == descriptors })
                #expect(answer.descriptors == (descriptors && !(m.isEmpty && f.isEmpty)))
                if descriptors, let first = answer.matches.first?.descriptor {
                    var t = DocumentTape()
                    try? MessagePackTapeDecoder.decode(copying: first, into: &t)
                    #expect(t.rootObject.flatMap { t.member(of: $0, named: "client_id") }.map { t.string($0) } == "a")
                    #expect(t.rootObject.flatMap { t.member(of: $0, named: "socket_ip") }.map { t.string($0) } == "10.0.0.1")
                }
            }
        }
    }

    /// A candidate without a local record is not written, and the array
    /// count leaves it out too (it used to count it: a body announcing an
    /// element that never followed).
    @Test func queryResultSkipsRemoteCandidatesWhole() {
        let remote = Candidate(applicationID: "app", clientID: "r", selectorValue: nil, record: nil, handle: 9)
        let message = QueryResultMessage(matches: [local(2, "c"), remote, local(3, "d")], fallback: [remote], descriptors: false)
        decoded(message.bytes) { tape, body in
            let answer = QueryResultMessage(tape: tape, body: body, node: nil)
            #expect(answer.matches.map(\.clientID) == ["c", "d"])
            #expect(answer.fallback.isEmpty)
        }
        #expect(message.bytes == QueryResultMessage(matches: [local(2, "c"), local(3, "d")], fallback: [], descriptors: false).bytes)
    }

    @Test func queryResultWireFormat() {
        #expect(QueryResultMessage(matches: [], fallback: [], descriptors: true).bytes == [0x82, 0xA1, 0x6D, 0x90, 0xA1, 0x66, 0x90])
        #expect(QueryResultMessage(matches: [local(2, "c", selector: .int(7))], fallback: [], descriptors: false).bytes
            == [0x82, 0xA1, 0x6D, 0x91, 0x95, 0x02, 0xA3, 0x61, 0x70, 0x70, 0xA1, 0x63, 0x07, 0xC0, 0xA1, 0x66, 0x90])
    }

    @Test(arguments: [
        (#"[]"#, 0, 0),
        (#"{"m": 1, "f": {"a": 1}}"#, 0, 0),
        (#"{"m": [[1, "a", "c", null, null], [1, "a", "c", null], ["1", "a", "c", null, null], [1, 2, "c", null, null], 5]}"#, 1, 0),
        (#"{"f": [[-1, "a", "c", {"v": 1}, "not a descriptor"]]}"#, 0, 1),
    ] as [(String, Int, Int)])
    func queryResultLenient(json: String, matches: Int, fallback: Int) {
        decoded(pack(json)) { tape, body in
            let answer = QueryResultMessage(tape: tape, body: body, node: nil)
            #expect(answer.matches.count == matches)
            #expect(answer.fallback.count == fallback)
            #expect(!answer.descriptors)
            if let c = answer.fallback.first {
                #expect(c.handle == UInt64.max)
                #expect(c.selectorValue == .object(ValueObject([("v", .int(1))])))
            }
        }
    }

    // MARK: proxy, proxyResult (a MessagePack header and a raw tail)

    /// Splits a raw-tail body as a link does and hands header tape and tail to `read`.
    private func decodedRawTail<R>(_ bytes: [UInt8], _ read: (DocumentTape, UnsafeRawBufferPointer) -> R) -> R {
        bytes.withUnsafeBytes { body in
            var tape = DocumentTape()
            let tail = try! PeerFrameCodec.decodeBody(.proxy, body, into: &tape)
            return read(tape, tail)
        }
    }

    /// A raw-tail body with `json` (packed) as its header.
    private func rawTail(_ json: String, tail: [UInt8] = [1, 2]) -> [UInt8] {
        PeerFrameCodec.rawTailBody(header: pack(json), tail: tail)
    }

    @Test(arguments: [nil, [], [0, 1, 2, 255]] as [[UInt8]?])
    func proxyRoundTrip(body: [UInt8]?) {
        let message = ProxyMessage(handle: UInt64.max, method: "POST", route: "/a?b=c", headers: [("x-a", "1"), ("x-a", "2")],
                                   callerIP: "::1", body: body)
        #expect(decodedRawTail(message.bytes) { tape, tail in ProxyMessage(tape: tape, tail: tail) } == message)
    }

    @Test func proxyWireFormat() {
        let header: [UInt8] = [0x86, 0xA1, 0x68, 0x05, 0xA1, 0x6D, 0xA3, 0x47, 0x45, 0x54, 0xA1, 0x72, 0xA1, 0x2F,
                               0xA2, 0x68, 0x64, 0x91, 0x92, 0xA1, 0x61, 0xA1, 0x62, 0xA1, 0x78, 0xA0, 0xA1, 0x62, 0xC3]
        #expect(ProxyMessage(handle: 5, method: "GET", route: "/", headers: [("a", "b")], callerIP: "", body: [9]).bytes
            == [0, 0, 0, UInt8(header.count)] + header + [9])
    }

    @Test(arguments: [
        #"[]"#, #"{"m": "GET", "r": "/", "x": "", "hd": []}"#, #"{"h": "1", "m": "GET", "r": "/", "x": "", "hd": []}"#,
        #"{"h": 1, "r": "/", "x": "", "hd": []}"#, #"{"h": 1, "m": "GET", "x": "", "hd": []}"#,
        #"{"h": 1, "m": "GET", "r": "/", "hd": []}"#, #"{"h": 1, "m": "GET", "r": "/", "x": ""}"#,
        #"{"h": 1, "m": 2, "r": "/", "x": "", "hd": []}"#,
    ])
    func proxyMalformed(json: String) {
        #expect(decodedRawTail(rawTail(json)) { tape, tail in ProxyMessage(tape: tape, tail: tail) } == nil)
    }

    @Test func proxyLenient() {
        // Headers that are not string pairs are skipped; no `b`: no body, whatever follows.
        let message = decodedRawTail(rawTail(#"{"h": -1, "m": "GET", "r": "/", "x": "ip", "hd": [["a", "b"], ["c"], [1, "d"], "e"]}"#)) {
            tape, tail in ProxyMessage(tape: tape, tail: tail)
        }
        #expect(message == ProxyMessage(handle: UInt64.max, method: "GET", route: "/", headers: [("a", "b")], callerIP: "ip", body: nil))
        let noHeaders = decodedRawTail(rawTail(#"{"h": 1, "m": "GET", "r": "/", "x": "", "hd": 5, "b": true}"#)) {
            tape, tail in ProxyMessage(tape: tape, tail: tail)
        }
        #expect(noHeaders == ProxyMessage(handle: 1, method: "GET", route: "/", headers: [], callerIP: "", body: [1, 2]))
    }

    @Test(arguments: [200, 404, 599] as [Int64], [[], [7, 0, 7]] as [[UInt8]])
    func proxyResultRoundTrip(status: Int64, body: [UInt8]) {
        let message = ProxyResultMessage(status: status, headers: [("content-type", "text/plain")], body: body)
        #expect(decodedRawTail(message.bytes) { tape, tail in ProxyResultMessage(tape: tape, tail: tail) } == message)
    }

    @Test func proxyResultWireFormat() {
        #expect(ProxyResultMessage(status: 200, headers: [], body: [0x41]).bytes
            == [0, 0, 0, 9, 0x82, 0xA1, 0x73, 0xCC, 0xC8, 0xA2, 0x68, 0x64, 0x90, 0x41])
    }

    @Test(arguments: [#"[]"#, #"{"hd": []}"#, #"{"s": 199, "hd": []}"#, #"{"s": 600, "hd": []}"#, #"{"s": "200", "hd": []}"#, #"{"s": 200}"#])
    func proxyResultMalformed(json: String) {
        #expect(decodedRawTail(rawTail(json)) { tape, tail in ProxyResultMessage(tape: tape, tail: tail) } == nil)
    }
}
