/// HTTP headers in proxy bodies: `[[name, value]...]`. Reading is lenient:
/// anything but an array is no headers, and entries that are not a pair of
/// strings are skipped (headers are filtered again where they are used).
enum PeerHeaders {
    static func write(_ headers: [(String, String)], into w: inout FrameWriter) {
        w.beginArray(count: headers.count)
        for (name, value) in headers {
            w.element()
            w.beginArray(count: 2)
            w.element(); w.string(name)
            w.element(); w.string(value)
            w.endArray()
        }
        w.endArray()
    }

    static func read(_ node: Int, tape: DocumentTape) -> [(String, String)] {
        guard tape.kind(node) == .array else { return [] }
        var out: [(String, String)] = []
        for pair in tape.elements(of: node) where tape.kind(pair) == .array && tape.count(pair) == 2 {
            let parts = Array(tape.elements(of: pair))
            guard tape.kind(parts[0]) == .string, tape.kind(parts[1]) == .string else { continue }
            out.append((tape.string(parts[0]), tape.string(parts[1])))
        }
        return out
    }

    static func same(_ a: [(String, String)], _ b: [(String, String)]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }
}
