/// The body of an `event` frame (protocol.md §8.10–8.11): `{"t": event,
/// "app": application}`, for the receiver's subscribers. Decoding gives nil
/// unless the body is a map with string `t` and `app` and `t` is
/// CLIENT_CONNECTED or CLIENT_DISCONNECTED (anything else is ignored).
struct EventMessage: PeerMessageBody, Equatable {
    /// CLIENT_CONNECTED or CLIENT_DISCONNECTED.
    var event: StaticString
    var application: String

    init(event: StaticString, application: String) {
        self.event = event
        self.application = application
    }

    static func == (a: EventMessage, b: EventMessage) -> Bool {
        a.event.description == b.event.description && a.application == b.application
    }

    func encode(into w: inout FrameWriter) {
        w.beginObject(count: 2)
        w.key("t"); w.string(event)
        w.key("app"); w.string(application)
        w.endObject()
    }

    init?(tape: DocumentTape) {
        guard let root = tape.rootObject,
              let t = tape.member(of: root, named: "t"), tape.kind(t) == .string,
              let app = tape.member(of: root, named: "app"), tape.kind(app) == .string else { return nil }
        if tape.isString(t, equalTo: "CLIENT_CONNECTED") {
            event = "CLIENT_CONNECTED"
        } else if tape.isString(t, equalTo: "CLIENT_DISCONNECTED") {
            event = "CLIENT_DISCONNECTED"
        } else {
            return nil
        }
        application = tape.string(app)
    }
}
