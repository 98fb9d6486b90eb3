/// The body of a `tagsResult` frame: `{"a": [application ids]}`, the
/// receiver's applications having all the asked tags. Decoding never fails:
/// anything malformed is an empty answer; non-string ids are skipped.
struct TagsResultMessage: PeerMessageBody, Equatable {
    var applications: [String]

    init(applications: [String]) { self.applications = applications }

    func encode(into w: inout FrameWriter) {
        w.beginObject(count: 1)
        w.key("a"); PeerStringList.write(applications, into: &w)
        w.endObject()
    }

    init(tape: DocumentTape) {
        applications = tape.rootObject.map { PeerStringList.read($0, "a", tape: tape) } ?? []
    }
}
