/// The requests this node has sent to peers and still waits on, of every
/// kind (application announcements, queries, forwarded routes, proxied HTTP
/// requests, discovery). A request ends in one of three ways: every peer it
/// waits for answered, its deadline passed, or the links it waits on went
/// down. All three are handled here, once, so a new kind of request cannot
/// forget its cleanup when a link is lost (before this table each kind had
/// its own waiting set, deadline and loop in `Cluster.linkClosed`).
///
/// Peers are identified by their link's `ObjectIdentifier`: a link that
/// closes and is replaced is a different peer for the requests already sent.
final class PeerRequestTable {
    /// Why a request ended.
    enum Ending: Equatable {
        /// Everyone it waited for answered (or there was no one to ask), or
        /// its owner ended it.
        case answered
        case deadline
        /// The last link it waited on went down (`reason` as logged for it).
        case linkLost(reason: String)
    }

    /// One outstanding request. A kind subclasses it to hold what it gathers
    /// and overrides `ended` to complete.
    class Request {
        /// Set by `start`.
        fileprivate(set) var id: UInt64 = 0
        /// Links still to answer.
        fileprivate(set) var waiting: Set<ObjectIdentifier> = []
        fileprivate var deadline: DeadlineEntry?

        init() {}

        /// Called exactly once, after the request has left the table (so it
        /// may start new requests or end others).
        func ended(_ ending: Ending) {}
    }

    private var requests: [UInt64: Request] = [:]
    private var lastID: UInt64 = 0

    /// Requests waiting (for tests and metrics).
    var count: Int { requests.count }

    /// A fresh request id. Take it before sending: a send can close a link
    /// synchronously, and the request must be in the table by then (see
    /// `start`).
    func makeID() -> UInt64 {
        lastID += 1
        return lastID
    }

    /// Registers `request` as `id`, waiting for `peers`, ending after
    /// `deadlines`' duration at the latest. Register before sending the
    /// frames (a send that closes its link then finds the request in
    /// `linkLost`), then call `endIfComplete` once they are out: with no
    /// peer to wait for the request ends there, as answered.
    func start(_ request: Request, id: UInt64, waitingFor peers: Set<ObjectIdentifier>, deadlines: DeadlineQueue) {
        request.id = id
        request.waiting = peers
        let entry = DeadlineEntry { [unowned self, unowned request] in self.end(request.id, .deadline) }
        request.deadline = entry
        requests[id] = request
        deadlines.arm(entry)
    }

    /// The request `id`, if it is a `T` still waiting for `peer`; `peer` is
    /// then no longer waited for. Call `endIfComplete` after using the
    /// answer. Nil for an unknown or finished id, another kind, or a peer it
    /// does not wait for (a late or forged answer).
    func answer<T: Request>(_ id: UInt64, from peer: ObjectIdentifier, as _: T.Type) -> T? {
        guard let request = requests[id] as? T, request.waiting.remove(peer) != nil else { return nil }
        return request
    }

    /// Ends `request` (as answered) if it waits for no one any more.
    func endIfComplete(_ request: Request) {
        if request.waiting.isEmpty { end(request.id, .answered) }
    }

    /// Ends request `id` now, if it is still waiting, and returns it.
    @discardableResult
    func end(_ id: UInt64, _ ending: Ending) -> Request? {
        guard let request = requests.removeValue(forKey: id) else { return nil }
        request.deadline?.cancel()
        request.deadline = nil
        request.ended(ending)
        return request
    }

    /// Removes request `id` without ending it (its owner gave up on it).
    @discardableResult
    func cancel(_ id: UInt64) -> Request? {
        guard let request = requests.removeValue(forKey: id) else { return nil }
        request.deadline?.cancel()
        request.deadline = nil
        return request
    }

    /// `peer`'s link went down: nothing more will come from it. Requests
    /// that waited only for it end (`.linkLost`).
    func linkLost(_ peer: ObjectIdentifier, reason: String) {
        let affected = requests.values.filter { $0.waiting.contains(peer) }.sorted { $0.id < $1.id }
        for request in affected {
            request.waiting.remove(peer)
            if request.waiting.isEmpty { end(request.id, .linkLost(reason: reason)) }
        }
    }

    /// Requests of kind `T` waiting for `peer`.
    func count<T: Request>(of _: T.Type, waitingFor peer: ObjectIdentifier) -> Int {
        requests.values.lazy.filter { $0 is T && $0.waiting.contains(peer) }.count
    }
}
