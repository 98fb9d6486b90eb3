/// The body of a `tags` frame (discovery, rest.md §6): `{"t": [tags]}`.
/// Decoding never fails: a body that is not a map, or a missing or
/// non-array `t`, asks for no tags (answered with no applications);
/// non-string tags are skipped.
struct TagsMessage: PeerMessageBody, Equatable {
    var tags: [String]

    init(tags: [String]) { self.tags = tags }

    func encode(into w: inout FrameWriter) {
        w.beginObject(count: 1)
        w.key("t"); PeerStringList.write(tags, into: &w)
        w.endObject()
    }

    init(tape: DocumentTape) {
        tags = tape.rootObject.map { PeerStringList.read($0, "t", tape: tape) } ?? []
    }
}
