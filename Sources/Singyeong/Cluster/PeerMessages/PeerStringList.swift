/// Reading the string arrays of peer message bodies (applications, tags):
/// a member that is missing or not an array counts as empty, and elements
/// that are not strings are skipped (what every receiver did before the
/// bodies had types).
enum PeerStringList {
    static func read(_ object: Int, _ name: StaticString, tape: DocumentTape) -> [String] {
        guard let array = tape.member(of: object, named: name), tape.kind(array) == .array else { return [] }
        var out: [String] = []
        for element in tape.elements(of: array) where tape.kind(element) == .string { out.append(tape.string(element)) }
        return out
    }

    static func write(_ strings: [String], into w: inout FrameWriter) {
        w.beginArray(count: strings.count)
        for string in strings { w.element(); w.string(string) }
        w.endArray()
    }
}
