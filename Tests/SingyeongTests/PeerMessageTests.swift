import Testing
@testable import Singyeong

/// Typed peer message bodies (Cluster/PeerMessages): encode → decode round
/// trips, malformed bodies, and fixed bytes pinning the wire format (peers
/// of other versions read and write exactly these).
@Suite struct PeerMessageTests {
    /// Decodes `bytes` as a peer body and hands the tape and body to `read`.
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
}
