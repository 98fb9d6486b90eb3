/// The body of an `applications` frame: `{"full"?: true, "ack"?: true,
/// "add": [ids], "remove": [ids]}`, keys in that order, `full` and `ack`
/// written only when true.
///
/// Decoding is lenient, as before: a body that is not a map is ignored
/// (nil), `full` and `ack` count only as the boolean true, a missing or
/// non-array `add`/`remove` is empty and non-string elements are skipped.
struct ApplicationsMessage: PeerMessageBody, Equatable {
    /// A snapshot (replaces what the receiver knew) rather than a change.
    var full = false
    /// The sender waits for an `applicationsAck` with the same request id.
    var ack = false
    var add: [String] = []
    var remove: [String] = []

    func encode(into w: inout FrameWriter) {
        w.beginObject(count: (full ? 3 : 2) + (ack ? 1 : 0))
        if full { w.key("full"); w.bool(true) }
        if ack { w.key("ack"); w.bool(true) }
        w.key("add"); PeerStringList.write(add, into: &w)
        w.key("remove"); PeerStringList.write(remove, into: &w)
        w.endObject()
    }

    init(full: Bool = false, ack: Bool = false, add: [String] = [], remove: [String] = []) {
        self.full = full
        self.ack = ack
        self.add = add
        self.remove = remove
    }

    init?(tape: DocumentTape) {
        guard let root = tape.rootObject else { return nil }
        full = tape.member(of: root, named: "full").flatMap { tape.bool($0) } == true
        ack = tape.member(of: root, named: "ack").flatMap { tape.bool($0) } == true
        add = PeerStringList.read(root, "add", tape: tape)
        remove = PeerStringList.read(root, "remove", tape: tape)
    }
}
