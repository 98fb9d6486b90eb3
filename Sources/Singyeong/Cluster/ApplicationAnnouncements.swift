import Logging

/// Which applications this node tells its peers it has (cluster.md §4.1): a
/// full snapshot when a link comes up, then additions and removals on the
/// same ordered link, so a peer can skip this node for applications it has
/// no client of.
///
/// A new application's first client waits for its announcement to be
/// acknowledged by every peer (`announceNew`): once a client exists for
/// anyone to know of, every peer already asks this node about its
/// application, so skipping never hides a client. One mechanism of the
/// cluster, kept apart from membership and dialing (issue 11); it reaches
/// the links through `cluster`.
final class ApplicationAnnouncements {
    private let store: ClientStore
    private let requests: PeerRequestTable
    private let deadlines: DeadlineQueue
    private let logger: Logger
    /// The links to announce on: the owner, set right after init.
    weak var cluster: Cluster?
    /// Spares too: a spare that takes over must know what its peer has.
    private var links: [PeerLink] { cluster?.membership.allLinks ?? [] }

    /// Applications whose first client is waiting for peers to acknowledge
    /// the announcement (counted per waiting client); part of every snapshot.
    private var announcing: [String: Int] = [:]

    /// An announcement waiting for acknowledgements.
    final class Pending: PeerRequestTable.Request {
        let application: String
        let completion: (PeerRequestTable.Ending, _ missing: Int) -> Void
        init(application: String, completion: @escaping (PeerRequestTable.Ending, Int) -> Void) {
            self.application = application
            self.completion = completion
        }
        override func ended(_ ending: PeerRequestTable.Ending) { completion(ending, waiting.count) }
    }

    init(store: ClientStore, requests: PeerRequestTable, deadlines: DeadlineQueue, logger: Logger) {
        self.store = store
        self.requests = requests
        self.deadlines = deadlines
        self.logger = logger
    }

    /// The applications a new link learns first: those with clients here
    /// and those being announced.
    func snapshot() -> [String] {
        Array(Set(store.applications.keys).union(announcing.keys))
    }

    /// Whether identifying the first client of `application` has to wait
    /// for peers to learn of it (some peer could otherwise skip us).
    func mustAnnounce(_ application: String) -> Bool {
        store.application(application) == nil && links.contains { $0.isUp }
    }

    /// Announces a new application to every peer and calls `completion` once
    /// all acknowledged (or CLUSTER_QUERY_TIMEOUT_MS passed, or their links
    /// went down). The session sends READY only then.
    func announceNew(_ application: String, completion: @escaping () -> Void) {
        let id = requests.makeID()
        let body = ApplicationsMessage(ack: true, add: [application]).bytes
        // Everything registered before sending: a send can close a link
        // synchronously, and its `linkClosed` must find (and may finish)
        // this announcement.
        let up = links.filter { $0.isUp }
        announcing[application, default: 0] += 1
        let pending = Pending(application: application) { [unowned self] ending, missing in
            if ending == .deadline {
                self.logger.info("application announcement not acknowledged in time", metadata: ["app": "\(LogText.escape(application))", "missing": "\(missing)"])
            }
            if let n = self.announcing[application] { self.announcing[application] = n > 1 ? n - 1 : nil }
            completion()
        }
        requests.start(pending, id: id, waitingFor: Set(up.map { ObjectIdentifier($0) }), deadlines: deadlines)
        for link in up where link.isUp { link.send(.applications, requestID: id, body: body) }
        requests.endIfComplete(pending)
    }

    /// An announced application whose first client never registered (it
    /// left, or lost a race): withdraw it if nothing here uses it now, so
    /// peers stop asking and their sets do not grow with stray ids.
    func withdrawIfUnused(_ application: String) {
        guard store.application(application) == nil, announcing[application] == nil else { return }
        announceRemoved(application)
    }

    /// A peer acknowledged announcement `requestID`.
    func receiveAck(from link: PeerLink, requestID: UInt64) {
        guard let pending = requests.answer(requestID, from: ObjectIdentifier(link), as: Pending.self) else { return }
        requests.endIfComplete(pending)
    }

    /// Tells every peer at once that an application went away here (no
    /// acknowledgement needed: a peer that still asks us loses nothing).
    func announceRemoved(_ application: String) {
        let links = self.links
        guard !links.isEmpty else { return }
        let body = ApplicationsMessage(add: [], remove: [application]).bytes
        for link in links { link.send(.applications, body: body) }
    }
}
