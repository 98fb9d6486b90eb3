/// The body of a `queryResult` frame, the answer to a `query`: `{"m":
/// [candidate...], "f": [candidate...]}` — the matches, then the fallback
/// (base-filter clients when nothing matched and the query is optional).
/// Each candidate is `[handle, application id, client id, selector value |
/// nil, descriptor | nil]`.
///
/// Encoding writes this node's candidates (they have records); decoding
/// gives the peer's, as remote candidates of `node`. Decoding never fails:
/// a body that is not a map, or a missing or non-array `m`/`f`, has no
/// candidates; a candidate that is not a 5-element array with an integer
/// handle and string ids is skipped, a selector value of nil is none and a
/// descriptor that is not a map is none. Descriptors are copied out of the
/// body (the candidates outlive the frame).
struct QueryResultMessage: PeerMessageBody {
    var matches: [Candidate]
    var fallback: [Candidate]
    /// Whether candidates carry their descriptors (listings). Decoded: whether any does.
    var descriptors: Bool

    init(matches: [Candidate], fallback: [Candidate], descriptors: Bool) {
        self.matches = matches
        self.fallback = fallback
        self.descriptors = descriptors
    }

    func encode(into w: inout FrameWriter) {
        w.beginObject(count: 2)
        w.key("m"); write(matches, into: &w)
        w.key("f"); write(fallback, into: &w)
        w.endObject()
    }

    var encodedCapacity: Int { 64 + 48 * (matches.count + fallback.count) }

    private func write(_ candidates: [Candidate], into w: inout FrameWriter) {
        // Only local candidates (with a record) are written, and the count
        // says so: a count including the others would announce elements
        // that never follow. (This node's answers hold only local ones.)
        w.beginArray(count: candidates.lazy.filter { $0.record != nil }.count)
        for candidate in candidates {
            guard let record = candidate.record else { continue }
            w.element()
            w.beginArray(count: 5)
            w.element(); w.int(Int64(bitPattern: record.handle))
            w.element(); w.string(record.applicationID)
            w.element(); w.string(record.clientID)
            w.element()
            if let value = candidate.selectorValue { w.value(value) } else { w.null() }
            w.element()
            if descriptors { ClientDescriptor.write(record, into: &w) } else { w.null() }
            w.endArray()
        }
        w.endArray()
    }

    init(tape: DocumentTape, body: UnsafeRawBufferPointer, node: RemoteNode?) {
        matches = []
        fallback = []
        guard let root = tape.rootObject else { descriptors = false; return }
        if let m = tape.member(of: root, named: "m") { QueryResultMessage.read(m, node: node, tape: tape, body: body, into: &matches) }
        if let f = tape.member(of: root, named: "f") { QueryResultMessage.read(f, node: node, tape: tape, body: body, into: &fallback) }
        descriptors = matches.contains { $0.descriptor != nil } || fallback.contains { $0.descriptor != nil }
    }

    private static func read(_ array: Int, node: RemoteNode?, tape: DocumentTape, body: UnsafeRawBufferPointer,
                             into out: inout [Candidate]) {
        guard tape.kind(array) == .array else { return }
        for element in tape.elements(of: array) where tape.kind(element) == .array && tape.count(element) == 5 {
            let parts = Array(tape.elements(of: element))
            guard let handle = tape.int64(parts[0]), tape.kind(parts[1]) == .string, tape.kind(parts[2]) == .string else { continue }
            let selector = tape.kind(parts[3]) == .null ? nil : tape.value(parts[3])
            let descriptor = tape.kind(parts[4]) == .object ? Array(UnsafeRawBufferPointer(rebasing: body[tape.span(parts[4])])) : nil
            out.append(Candidate(applicationID: tape.string(parts[1]), clientID: tape.string(parts[2]), selectorValue: selector,
                                 record: nil, node: node, handle: UInt64(bitPattern: handle), descriptor: descriptor))
        }
    }
}
