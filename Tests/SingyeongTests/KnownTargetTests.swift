import Testing
@testable import Singyeong

/// An oracle that vouches for a fixed set of byte strings and records what
/// it was asked.
private final class RecordingOracle: KnownSpans {
    let known: Set<[UInt8]>
    var asked: [String] = []
    init(_ known: [String]) { self.known = Set(known.map { Array($0.utf8) }) }
    func isKnownJSON(_ bytes: UnsafeRawBufferPointer) -> Bool {
        asked.append(String(decoding: bytes, as: UTF8.self))
        return known.contains(Array(bytes))
    }
}

private func decode(_ text: String, lazy: Bool = true, oracle: KnownSpans?) -> Result<DocumentTape, DocumentDecodeError> {
    let bytes = Array(text.utf8)
    let padded = bytes + [UInt8](repeating: 0, count: JSONTapeDecoder.padding)
    var tape = DocumentTape()
    // Room enough for one pass (a pass that runs out asks the oracle again).
    tape.reserveStorage(nodes: 256, stringBytes: 4096)
    let error: DocumentDecodeError? = padded.withUnsafeBytes { raw in
        do throws(DocumentDecodeError) {
            try JSONTapeDecoder.decode(UnsafeRawBufferPointer(rebasing: raw[0..<bytes.count]), into: &tape,
                                       lazyPayload: lazy, knownTargets: oracle)
            return nil
        } catch { return error }
    }
    if let error { return .failure(error) }
    return .success(tape)
}

/// `SY_JSON_SKIP_KNOWN_TARGET`: the first container `target` in the root's
/// `d` whose bytes the oracle vouches for becomes one `.unexpanded` node with
/// its exact span; everything else decodes as without the oracle.
@Suite struct KnownTargetTests {
    static let target = #"{"application":"app","ops":[{"path":"/n","op":"$gte","to":{"value":0}}]}"#

    /// (frame, what the oracle is asked, in order, whether the target is skipped)
    static let cases: [(String, [String], Bool)] = [
        (#"{"op":4,"t":"SEND","d":{"target":\#(target),"nonce":1,"payload":{"a":1}}}"#, [target], true),
        (#"{"op":4,"d":{"payload":[1],"target":\#(target)}}"#, [target], true),
        // Whitespace inside is part of the bytes: another span, not known.
        (#"{"d":{"target":{ "application":"app"}}}"#, [#"{ "application":"app"}"#], false),
        // Scalars are never asked about (they cost one value to walk).
        (#"{"d":{"target":"app"}}"#, [], false),
        (#"{"d":{"target":null}}"#, [], false),
        // Only under the root's "d".
        (#"{"target":\#(target)}"#, [], false),
        (#"{"d":{"x":{"target":\#(target)}}}"#, [], false),
        (#"{"x":{"d":{"target":\#(target)}}}"#, [], false),
        // Only the first "target": a repeated key is walked.
        (#"{"d":{"target":\#(target),"target":\#(target)}}"#, [target], true),
        // Strings holding brackets and escaped quotes end where JSON says.
        (#"{"d":{"target":{"a":"}]\"{["},"payload":1}}"#, [#"{"a":"}]\"{["}"#], false),
    ]

    @Test(arguments: cases)
    func skipsOnlyTheVouchedTarget(_ text: String, asked: [String], skipped: Bool) throws {
        let oracle = RecordingOracle([Self.target])
        let tape = try decode(text, oracle: oracle).get()
        let full = try decode(text, oracle: nil).get()
        #expect(oracle.asked == asked)
        let root = try #require(tape.rootObject)
        let d = tape.member(of: root, named: "d")
        let first = d.flatMap { d in tape.members(of: d).first { tape.isString($0.key, equalTo: "target") }?.value }
        #expect((first.map { tape.kind($0) == .unexpanded } ?? false) == skipped)
        if skipped, let first {
            let bytes = Array(text.utf8)
            #expect(String(decoding: bytes[tape.span(first)], as: UTF8.self) == Self.target)
            // Everything outside the target is as the full decode has it.
            let fullD = try #require(full.member(of: full.root, named: "d"))
            #expect(tape.count(d!) == full.count(fullD))
            for name in ["nonce", "payload"] as [StaticString] {
                #expect(tape.member(of: d!, named: name).map { tape.span($0) } == full.member(of: fullD, named: name).map { full.span($0) })
            }
        } else {
            #expect(tape.nodeCount == full.nodeCount)
        }
    }

    /// A skipped target cannot hide an error elsewhere in the frame.
    @Test(arguments: [
        #"{"d":{"target":\#(target),"payload":{"a":}}}"#,
        #"{"d":{"target":\#(target),"nonce":01}}"#,
        #"{"d":{"target":\#(target)}} x"#,
        #"{"d":{"target":\#(target)}"#,
        #"{"d":{"target":\#(target),}}"#,
    ])
    func errorsAroundAKnownTargetStillFail(_ text: String) {
        let oracle = RecordingOracle([Self.target])
        guard case .failure = decode(text, oracle: oracle) else {
            Issue.record("accepted: \(text)")
            return
        }
        guard case .failure = decode(text, oracle: nil) else {
            Issue.record("the full decode accepted: \(text)")
            return
        }
    }

    /// A known span that would nest deeper here than the decoder allows is
    /// walked, and refused, as without the oracle (it may have been
    /// validated at a shallower depth).
    @Test func depthIsCheckedForAKnownTarget() {
        // The target sits at depth 2 (root 0, "d" 1); depth 64 is refused.
        let deep = String(repeating: "[", count: 63) + String(repeating: "]", count: 63)
        let ok = String(repeating: "[", count: 62) + String(repeating: "]", count: 62)
        let oracle = RecordingOracle([deep, ok])
        guard case .failure = decode(#"{"d":{"target":\#(deep)}}"#, oracle: oracle) else {
            Issue.record("a target nesting past the limit was accepted")
            return
        }
        guard case .failure = decode(#"{"d":{"target":\#(deep)}}"#, oracle: nil) else {
            Issue.record("the full decode accepted the deep target")
            return
        }
        let tape = try? decode(#"{"d":{"target":\#(ok)}}"#, oracle: oracle).get()
        // root, "d", d, "target", the target
        #expect(tape.map { $0.kind(4) == .unexpanded } == true)
    }

    /// Without `lazyPayload` (every non-routed re-decode) nothing is skipped.
    @Test func onlyWithLazyPayloads() throws {
        let oracle = RecordingOracle([Self.target])
        let tape = try decode(#"{"d":{"target":\#(Self.target)}}"#, lazy: false, oracle: oracle).get()
        #expect(oracle.asked.isEmpty)
        #expect(!tape.hasUnexpanded)
    }
}

/// The query cache as the decoder's oracle: it vouches only for JSON
/// targets it compiled, and the lookup it did is reused by the next query.
@Suite struct QueryCacheOracleTests {
    @Test func vouchesOnlyForCompiledJSON() {
        let cache = QueryCache(capacity: 8)
        let good = Array(#"{"application":"a"}"#.utf8), bad = Array(#"{"ops":7}"#.utf8)
        var compiled = 0
        func query(_ bytes: [UInt8], tag: UInt8) -> Bool {
            let result = bytes.withUnsafeBytes { raw in
                cache.query(for: raw, tag: tag) {
                    compiled += 1
                    var t = DocumentTape()
                    guard (try? JSONTapeDecoder.decode(copying: bytes, into: &t)) != nil else { return .failure(QueryError(detail: "json")) }
                    return Query.parse(t.value(t.root))
                }
            }
            if case .success = result { return true }
            return false
        }
        func known(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { cache.isKnownJSON($0) } }
        #expect(!known(good))
        #expect(query(good, tag: 1))      // a MessagePack entry is not JSON
        #expect(!known(good))
        #expect(!query(bad, tag: 0))      // refused queries are not kept
        #expect(!known(bad))
        #expect(query(good, tag: 0))
        #expect(known(good))
        #expect(!known(Array(#"{"application":"b"}"#.utf8)))
        let before = compiled
        #expect(query(good, tag: 0) && compiled == before)
        // The remembered entry answers only for its own bytes and tag.
        #expect(known(good))
        #expect(query(Array(#"{"application":"c"}"#.utf8), tag: 0) && compiled == before + 1)
        #expect(query(good, tag: 1) && compiled == before + 1)
    }
}
