import Testing
@testable import Singyeong

/// `Router.route` end to end without sockets: fake peers (`PeerNetwork`), a
/// fake local delivery and a fake sender. Each case checks which of the
/// three plans ran (local, forward to the only peer, gather) and what the
/// sender and the recipients saw.
@Suite struct RouterRouteTests {
    /// A remote node as the fake network names it.
    final class FakeNode: RemoteNode, Hashable {
        let name: String
        init(_ name: String) { self.name = name }
        static func == (a: FakeNode, b: FakeNode) -> Bool { a === b }
        func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
    }

    /// Peers that hold the applications in `applications` (per node) and
    /// answer queries with `remoteMatches`, at once or when `answer` runs.
    final class FakePeers: PeerNetwork {
        var nodes: [FakeNode: Set<String>] = [:]
        var remoteMatches: [Candidate] = []
        var forwardAnswer = 1
        var holdAnswers = false
        var pending: [() -> Void] = []
        private(set) var forwarded: [(node: String, payload: [UInt8], query: [UInt8], all: Bool)] = []
        private(set) var delivered: [(node: String, handles: [UInt64], payload: [UInt8])] = []
        private(set) var scatters = 0

        private func holding(_ application: String?) -> [FakeNode] {
            nodes.filter { application == nil || $0.value.contains(application!) }.map(\.key).sorted { $0.name < $1.name }
        }
        func mayHaveCandidates(ofApplication application: String?) -> Bool { !holding(application).isEmpty }
        func onlyPeer(for query: Query) -> RemoteNode? {
            let nodes = holding(query.application)
            return nodes.count == 1 ? nodes[0] : nil
        }
        func scatter(encodedQuery: UnsafeRawBufferPointer, encoding: PayloadEncoding, application: String?, descriptors: Bool,
                     withFallback: Bool, completion: @escaping ([Candidate], [Candidate]) -> Void) {
            scatters += 1
            let matches = remoteMatches
            run { completion(matches, []) }
        }
        func deliver(_ message: RoutedMessage, to node: RemoteNode, handles: [UInt64]) {
            delivered.append(((node as! FakeNode).name, handles, Array(message.payload)))
        }
        func forward(_ message: RoutedMessage, query encodedQuery: UnsafeRawBufferPointer, all: Bool, to node: RemoteNode,
                     completion: @escaping (Int) -> Void) {
            forwarded.append(((node as! FakeNode).name, Array(message.payload), Array(encodedQuery), all))
            let answer = forwardAnswer
            run { completion(answer) }
        }
        private func run(_ answer: @escaping () -> Void) {
            if holdAnswers { pending.append(answer) } else { answer() }
        }
        func broadcastEvent(_ event: StaticString, application: String) {}
        func mustAnnounce(_ application: String) -> Bool { false }
        func announceNewApplication(_ application: String, completion: @escaping () -> Void) { completion() }
        func withdrawIfUnused(_ application: String) {}
        func gatherTags(_ tags: [String], local: Set<String>, completion: @escaping (Set<String>) -> Void) { completion(local) }
    }

    /// Records what reached this node's clients by the router's own delivery.
    final class FakeLocal: LocalDelivery {
        private(set) var delivered: [(clients: [String], payload: [UInt8])] = []
        func deliverLocally(_ message: RoutedMessage, to recipients: [ClientRecord]) {
            delivered.append((recipients.map(\.clientID), Array(message.payload)))
        }
        func announceLocally(event: StaticString, application: String) {}
    }

    /// The sender: which frames came back as `no_route`.
    final class FakeOrigin: RouteOrigin {
        private(set) var noRoutes: [[UInt8]] = []
        func noRoute(_ message: OwnedRoutedMessage) { noRoutes.append(message.withMessage { Array($0.payload) }) }
    }

    /// What one `route` call did.
    struct Outcome {
        var status: RouteStatus
        var here: [String]
        var copies: Int
    }

    let store = ClientStore()
    let router: Router
    let peers = FakePeers()
    let local = FakeLocal()
    let origin = FakeOrigin()
    static let payload: [UInt8] = Array(#""hello""#.utf8)
    static let target: [UInt8] = Array(#"{"application":"app"}"#.utf8)

    init() {
        router = Router(store: store)
        router.local = local
    }

    private func addClient(_ id: String, application: String = "app") {
        var metadata = ClientMetadata()
        metadata.setReserved(lastHeartbeatTime: 0, restricted: false, encoding: "json", ip: "127.0.0.1",
                             namespace: nil, receiveClientUpdates: false)
        store.add(ClientRecord(applicationID: application, clientID: id, handle: UInt64(store.count + 1), restricted: false,
                               encoding: .json, receivesClientUpdates: false, socketIP: nil, tags: [],
                               metadata: metadata, session: nil))
    }

    private func query(droppable: Bool = false) -> Query {
        var fields: [(String, Value)] = [("application", .string("app")), ("ops", .array([]))]
        if droppable { fields.append(("droppable", .bool(true))) }
        guard case .success(let q) = Query.parse(.object(ValueObject(fields))) else { fatalError("test query did not parse") }
        return q
    }

    private func route(_ q: Query, purpose: RoutingPurpose = .one) -> Outcome {
        var here: [String] = []
        var copies = 0
        let status = Self.payload.withUnsafeBytes { payload in
            Self.target.withUnsafeBytes { target in
                router.route(q, target: target, purpose: purpose,
                             message: RoutedMessage(event: "SEND", encoding: .json, nonce: nil, payload: payload),
                             origin: origin,
                             copy: {
                                 copies += 1
                                 return OwnedRoutedMessage(copying: RoutedMessage(event: "SEND", encoding: .json, nonce: nil, payload: payload))
                             },
                             deliverHere: { candidates in here += candidates.map(\.clientID) })
            }
        }
        return Outcome(status: status, here: here, copies: copies)
    }

    private func remote(_ id: String, on node: FakeNode, handle: UInt64) -> Candidate {
        Candidate(applicationID: "app", clientID: id, selectorValue: nil, record: nil, node: node, handle: handle)
    }

    @Test func withoutPeersDeliversHereNowWithoutCopying() {
        addClient("a")
        let outcome = route(query())
        #expect(outcome.status == .delivered)
        #expect(outcome.here == ["a"])
        #expect(outcome.copies == 0)
        #expect(router.metrics.value(.send, .routed) == 1)
    }

    @Test func withoutPeersOrMatchesOwesNoRouteUnlessDroppable() {
        #expect(route(query()).status == .noRoute)
        #expect(route(query(droppable: true)).status == .dropped)
        #expect(router.metrics.value(.send, .noRoute) == 1)
        #expect(router.metrics.value(.send, .dropped) == 1)
        #expect(origin.noRoutes.isEmpty)
    }

    @Test func peersWithoutTheApplicationAreNotAsked() {
        addClient("a")
        peers.nodes[FakeNode("b")] = ["other"]
        router.peers = peers
        let outcome = route(query())
        #expect(outcome.status == .delivered && outcome.here == ["a"])
        #expect(peers.scatters == 0 && peers.forwarded.isEmpty)
    }

    @Test func theOnlyPeerWithCandidatesGetsTheMessageForwarded() {
        let b = FakeNode("b")
        peers.nodes[b] = ["app"]
        router.peers = peers
        let outcome = route(query(), purpose: .all)
        #expect(outcome.status == .pending)
        #expect(outcome.here.isEmpty)
        #expect(peers.scatters == 0)
        #expect(peers.forwarded.count == 1)
        #expect(peers.forwarded.first?.node == "b" && peers.forwarded.first?.all == true)
        #expect(peers.forwarded.first?.payload == Self.payload && peers.forwarded.first?.query == Self.target)
        #expect(outcome.copies == 1)  // kept for a no_route echo
        #expect(origin.noRoutes.isEmpty)
    }

    @Test func aForwardThatReachedNobodyAnswersTheSender() {
        peers.nodes[FakeNode("b")] = ["app"]
        peers.forwardAnswer = 0
        router.peers = peers
        #expect(route(query()).status == .pending)
        #expect(origin.noRoutes == [Self.payload])
        #expect(router.metrics.value(.send, .noRoute) == 1)
        // Droppable: no copy, no answer, counted as dropped.
        let dropped = route(query(droppable: true))
        #expect(dropped.copies == 0)
        #expect(origin.noRoutes.count == 1)
        #expect(router.metrics.value(.send, .dropped) == 1)
    }

    @Test func localCandidatesAndOnePeerGatherThenDeliverBoth() {
        addClient("a")
        let b = FakeNode("b")
        peers.nodes[b] = ["app"]
        peers.remoteMatches = [remote("r1", on: b, handle: 7), remote("r2", on: b, handle: 9)]
        peers.holdAnswers = true
        router.peers = peers
        let outcome = route(query(), purpose: .all)
        #expect(outcome.status == .pending)
        #expect(outcome.here.isEmpty)  // nothing delivered before the peers answered
        #expect(peers.forwarded.isEmpty && peers.scatters == 1)
        #expect(local.delivered.isEmpty)
        for answer in peers.pending { answer() }
        #expect(local.delivered.map(\.clients) == [["a"]])
        #expect(local.delivered.first?.payload == Self.payload)
        #expect(peers.delivered.count == 1)
        #expect(peers.delivered.first?.node == "b" && peers.delivered.first?.handles == [7, 9])
        #expect(peers.delivered.first?.payload == Self.payload)
    }

    @Test func severalPeersGatherAndOneSendReachesExactlyOneClient() {
        let b = FakeNode("b"), c = FakeNode("c")
        peers.nodes = [b: ["app"], c: ["app"]]
        peers.remoteMatches = [remote("rb", on: b, handle: 1), remote("rc", on: c, handle: 2)]
        router.peers = peers
        #expect(route(query()).status == .pending)
        #expect(peers.scatters == 1)
        #expect(peers.delivered.count == 1 && peers.delivered[0].handles.count == 1)
        #expect(local.delivered.isEmpty)
    }

    @Test func aGatherThatFindsNothingAnswersTheSenderOnce() {
        let b = FakeNode("b"), c = FakeNode("c")
        peers.nodes = [b: ["app"], c: ["app"]]
        router.peers = peers
        #expect(route(query()).status == .pending)
        #expect(origin.noRoutes == [Self.payload])
        #expect(peers.delivered.isEmpty && local.delivered.isEmpty)
        _ = route(query(droppable: true))
        #expect(origin.noRoutes.count == 1)
    }

    /// The router holds the sender until the peers answered (a weak
    /// reference per message made every retain and release of a session
    /// slow), tells it of the `no_route`, and then lets it go; a session
    /// whose connection is gone ignores it (`GatewaySession.noRoute`).
    @Test func aSenderIsHeldUntilThePeersAnsweredThenReleased() {
        let b = FakeNode("b"), c = FakeNode("c")
        peers.nodes = [b: ["app"], c: ["app"]]
        peers.holdAnswers = true
        router.peers = peers
        var gone: FakeOrigin? = FakeOrigin()
        weak let watched = gone
        Self.payload.withUnsafeBytes { payload in
            Self.target.withUnsafeBytes { target in
                _ = router.route(query(), target: target, purpose: .one,
                                 message: RoutedMessage(event: "SEND", encoding: .json, nonce: nil, payload: payload),
                                 origin: gone!,
                                 copy: { OwnedRoutedMessage(copying: RoutedMessage(event: "SEND", encoding: .json, nonce: nil, payload: payload)) },
                                 deliverHere: { _ in })
            }
        }
        gone = nil
        #expect(watched != nil)  // held while the peers are asked
        do {
            let answers = peers.pending
            peers.pending.removeAll()
            for answer in answers { answer() }
            #expect(router.metrics.value(.send, .noRoute) == 1)
            #expect(watched?.noRoutes == [Self.payload])
        }
        #expect(watched == nil)  // let go once they answered
    }
}
