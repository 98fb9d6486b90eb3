import Logging
import Testing
@testable import Singyeong

/// Membership and dialing without sockets: a fake transport records dials
/// and registry removals; fake links stand for peer links.
@Suite struct PeerMembershipTests {
    final class FakeLink: MembershipLink {
        var peerNodeID: String?
        let expectedNodeID: String?
        let isOutbound: Bool
        private(set) var abortedBecause: String?
        init(dialed node: String?, authenticatedAs id: String? = nil) {
            expectedNodeID = node
            isOutbound = node != nil
            peerNodeID = id
        }
        func abort(reason: String) { abortedBecause = reason }
    }

    final class FakeTransport: MembershipTransport {
        var refuse: Set<String> = []
        private(set) var dials: [(node: String, host: String, port: Int)] = []
        private(set) var links: [FakeLink] = []
        private(set) var removed: [String] = []
        func dial(node: String, host: String, port: Int, error: inout String) -> FakeLink? {
            dials.append((node, host, port))
            if refuse.contains(node) {
                error = "refused"
                return nil
            }
            let link = FakeLink(dialed: node)
            links.append(link)
            return link
        }
        func removeFromRegistry(_ node: String) { removed.append(node) }
    }

    let transport = FakeTransport()
    let membership: PeerMembership<FakeTransport>
    let tick = 0.2

    init() {
        var quiet = Logger(label: "test")
        quiet.logLevel = .critical
        membership = PeerMembership(nodeID: "m", tickSeconds: tick, logger: quiet, transport: transport)
    }

    @Test func dialsOnlyNodesWithALargerIdOnce() {
        let members = ["a": "127.0.0.2:4000", "m": "127.0.0.3:4000", "z": "127.0.0.4:4001", "y": "[::1]:4002"]
        membership.membersChanged(members, now: 0)
        #expect(transport.dials.map(\.node).sorted() == ["y", "z"])
        #expect(transport.dials.contains { $0.node == "y" && $0.host == "::1" && $0.port == 4002 })
        // Still dialing: the next registry read does not dial again.
        membership.membersChanged(members, now: 1)
        #expect(transport.dials.count == 2)
        #expect(Set(membership.dialing.keys) == ["y", "z"])
    }

    @Test func aLinkUpMovesFromDialingToLinksAndIsNotDialedAgain() {
        membership.membersChanged(["z": "127.0.0.4:4001"], now: 0)
        let link = transport.links[0]
        link.peerNodeID = "z"
        #expect(membership.linkUp(link))
        #expect(membership.links["z"] === link && membership.dialing.isEmpty)
        membership.membersChanged(["z": "127.0.0.4:4001"], now: 5)
        #expect(transport.dials.count == 1)
    }

    @Test func aLinkWithoutNodeIdChangesNothing() {
        #expect(!membership.linkUp(FakeLink(dialed: nil)))
        #expect(membership.links.isEmpty)
    }

    @Test func failedDialsBackOffOneTwoFourThenEightTicksAndLeaveTheRegistry() {
        let members = ["z": "127.0.0.4:4001"]
        var now = 0.0
        membership.membersChanged(members, now: now)
        for (failures, ticks) in [1, 2, 4, 8, 8].enumerated() {
            membership.linkClosed(transport.links.last!, wasUp: false, reason: "refused", now: now)
            #expect(membership.dialFailureCount("z") == failures + 1)
            let dials = transport.dials.count
            membership.membersChanged(members, now: now + Double(ticks) * tick - 0.001)
            #expect(transport.dials.count == dials, "dialed again before \(ticks) ticks")
            now += Double(ticks) * tick
            membership.membersChanged(members, now: now)
            #expect(transport.dials.count == dials + 1, "not dialed again after \(ticks) ticks")
        }
        #expect(transport.removed == Array(repeating: "z", count: 5))
    }

    @Test func aLinkUpResetsTheBackoff() {
        membership.membersChanged(["z": "127.0.0.4:4001"], now: 0)
        membership.linkClosed(transport.links[0], wasUp: false, reason: "refused", now: 0)
        membership.linkClosed(transport.links[0], wasUp: false, reason: "refused", now: 0)
        #expect(membership.dialFailureCount("z") == 2)
        let accepted = FakeLink(dialed: nil, authenticatedAs: "z")
        membership.linkUp(accepted)
        #expect(membership.dialFailureCount("z") == 0)
    }

    @Test func aDialThatCannotStartLeavesTheRegistryAndIsNotTracked() {
        transport.refuse = ["z"]
        membership.membersChanged(["z": "127.0.0.4:4001"], now: 0)
        #expect(transport.removed == ["z"])
        #expect(membership.dialing.isEmpty)
    }

    @Test func unusableAddressesAreNotDialed() {
        membership.membersChanged(["x": "nohost", "y": "h:99999", "z": "[::1]4000"], now: 0)
        #expect(transport.dials.isEmpty)
    }

    @Test func aNewerLinkReplacesTheOldOne() {
        let old = FakeLink(dialed: nil, authenticatedAs: "a")
        let new = FakeLink(dialed: nil, authenticatedAs: "a")
        membership.linkUp(old)
        membership.linkUp(new)
        #expect(old.abortedBecause == "replaced by a newer link")
        #expect(membership.links["a"] === new)
        // The old link's close does not remove the new one.
        membership.linkClosed(old, wasUp: true, reason: "aborted", now: 0)
        #expect(membership.links["a"] === new)
        membership.linkClosed(new, wasUp: true, reason: "idle", now: 0)
        #expect(membership.links.isEmpty)
        // An accepted link or one that was up is no reason to leave the registry.
        #expect(transport.removed.isEmpty)
    }

    @Test func backoffIsForgottenForNodesThatLeftTheRegistry() {
        membership.membersChanged(["z": "127.0.0.4:4001"], now: 0)
        membership.linkClosed(transport.links[0], wasUp: false, reason: "refused", now: 0)
        #expect(membership.dialFailureCount("z") == 1)
        membership.membersChanged([:], now: 0)
        #expect(membership.dialFailureCount("z") == 0)
        #expect(membership.members.isEmpty)
    }
}
