/// The body of a `routeResult` frame: `{"n": delivered}`, how many clients
/// the receiver of a `route` delivered to. Decoding never fails: anything
/// but a map with an integer `n` counts as 0 delivered (the sender then
/// answers `no_route`, as for a silent peer).
struct RouteResultMessage: PeerMessageBody, Equatable {
    var delivered: Int64

    init(delivered: Int64) { self.delivered = delivered }

    func encode(into w: inout FrameWriter) {
        w.beginObject(count: 1)
        w.key("n"); w.int(delivered)
        w.endObject()
    }

    init(tape: DocumentTape) {
        delivered = tape.rootObject.flatMap { tape.member(of: $0, named: "n") }.flatMap { tape.int64($0) } ?? 0
    }
}
