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
        private(set) var closedBecause: String?
        init(dialed node: String?, authenticatedAs id: String? = nil) {
            expectedNodeID = node
            isOutbound = node != nil
            peerNodeID = id
        }
        func abort(reason: String) { abortedBecause = reason }
        func close(reason: String) { closedBecause = reason }
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

    @Test func dialsLargerIdsAtOnceAndSmallerIdsAfterTwoTicksWithoutALink() {
        let members = ["a": "127.0.0.2:4000", "m": "127.0.0.3:4000", "z": "127.0.0.4:4001", "y": "[::1]:4002"]
        membership.membersChanged(members, now: 0)
        #expect(transport.dials.map(\.node).sorted() == ["y", "z"])
        #expect(transport.dials.contains { $0.node == "y" && $0.host == "::1" && $0.port == 4002 })
        // Still dialing: the next registry read does not dial again; "a"
        // (smaller id) is expected to dial us first.
        membership.membersChanged(members, now: 2 * tick - 0.001)
        #expect(transport.dials.count == 2)
        #expect(Set(membership.dialing.keys) == ["y", "z"])
        // Two ticks without a link from "a": dial it ourselves (one-way cut).
        membership.membersChanged(members, now: 2 * tick)
        #expect(transport.dials.map(\.node).sorted() == ["a", "y", "z"])
    }

    @Test func aSmallerIdThatLinkedInTimeIsNotDialed() {
        membership.membersChanged(["a": "127.0.0.2:4000"], now: 0)
        membership.linkUp(FakeLink(dialed: nil, authenticatedAs: "a"), now: tick)
        membership.membersChanged(["a": "127.0.0.2:4000"], now: 5 * tick)
        #expect(transport.dials.isEmpty)
    }

    @Test func aLinkUpMovesFromDialingToLinksAndIsNotDialedAgain() {
        membership.membersChanged(["z": "127.0.0.4:4001"], now: 0)
        let link = transport.links[0]
        link.peerNodeID = "z"
        #expect(membership.linkUp(link, now: 0))
        #expect(membership.links["z"] === link && membership.dialing.isEmpty)
        membership.membersChanged(["z": "127.0.0.4:4001"], now: 5)
        #expect(transport.dials.count == 1)
    }

    @Test func aLinkWithoutNodeIdChangesNothing() {
        #expect(!membership.linkUp(FakeLink(dialed: nil), now: 0))
        #expect(membership.links.isEmpty)
    }

    @Test func failedDialsBackOffOneThenTwoTicksAndLeaveTheRegistry() {
        let members = ["z": "127.0.0.4:4001"]
        var now = 0.0
        membership.membersChanged(members, now: now)
        for (failures, ticks) in [1, 2, 2, 2, 2].enumerated() {
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
        membership.linkUp(accepted, now: 0)
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
        membership.linkUp(old, now: 0)
        membership.linkUp(new, now: 0)
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

    @Test func aFailedDialToANodeReachedTheOtherWayKeepsItInTheRegistry() {
        membership.membersChanged(["z": "127.0.0.4:4001"], now: 0)
        let dialed = transport.links[0]
        membership.linkUp(FakeLink(dialed: nil, authenticatedAs: "z"), now: 0.1)
        membership.linkClosed(dialed, wasUp: false, reason: "timed out", now: 1)
        #expect(transport.removed.isEmpty)
        #expect(membership.links["z"] != nil)
    }

    /// Two nodes that dialed each other at once: whichever order each sees
    /// the links come up in, both keep the one the smaller id dialed.
    @Test(arguments: [(true, true), (true, false), (false, true), (false, false)])
    func bothSidesKeepTheLinkTheSmallerIdDialed(aSeesItsOwnFirst: Bool, bSeesItsOwnFirst: Bool) {
        let quiet = Logger(label: "test")
        let ta = FakeTransport(), tb = FakeTransport()
        let a = PeerMembership(nodeID: "a", tickSeconds: tick, logger: quiet, transport: ta)
        let b = PeerMembership(nodeID: "b", tickSeconds: tick, logger: quiet, transport: tb)
        // Each connection as each side sees it.
        let abAtA = FakeLink(dialed: "b", authenticatedAs: "b"), abAtB = FakeLink(dialed: nil, authenticatedAs: "a")
        let baAtB = FakeLink(dialed: "a", authenticatedAs: "a"), baAtA = FakeLink(dialed: nil, authenticatedAs: "b")
        for link in aSeesItsOwnFirst ? [abAtA, baAtA] : [baAtA, abAtA] { a.linkUp(link, now: 0) }
        for link in bSeesItsOwnFirst ? [baAtB, abAtB] : [abAtB, baAtB] { b.linkUp(link, now: 0) }
        #expect(a.links["b"] === abAtA && b.links["a"] === abAtB)
        #expect(a.spares["b"]?.link === baAtA && b.spares["a"]?.link === baAtB)
        #expect([abAtA, abAtB, baAtA, baAtB].allSatisfy { $0.abortedBecause == nil })
        // Only the spare's dialer (b) closes it, and only after the grace.
        a.tick(now: 10)
        b.tick(now: 2 * tick - 0.001)
        #expect(baAtA.closedBecause == nil && baAtB.closedBecause == nil)
        b.tick(now: 2 * tick)
        #expect(baAtB.closedBecause == "duplicate link")
        b.linkClosed(baAtB, wasUp: true, reason: "duplicate link", now: 2 * tick)
        a.linkClosed(baAtA, wasUp: true, reason: "closed by peer", now: 2 * tick)
        #expect(a.links["b"] === abAtA && b.links["a"] === abAtB)
        #expect(a.spares.isEmpty && b.spares.isEmpty)
        #expect(ta.removed.isEmpty && tb.removed.isEmpty)
    }

    @Test func theSpareTakesOverWhenTheKeptLinkFails() {
        let kept = FakeLink(dialed: "z", authenticatedAs: "z")  // we ("m") dialed: kept
        let spare = FakeLink(dialed: nil, authenticatedAs: "z")
        membership.linkUp(kept, now: 0)
        membership.linkUp(spare, now: 0)
        #expect(membership.links["z"] === kept && membership.spares["z"]?.link === spare)
        #expect(membership.allLinks.count == 2)
        membership.linkClosed(kept, wasUp: true, reason: "no traffic", now: 1)
        #expect(membership.links["z"] === spare)
        #expect(membership.spares.isEmpty)
        // Now the only link: never closed as a duplicate.
        membership.tick(now: 100)
        #expect(spare.closedBecause == nil)
    }

    @Test func aNodeThatSaidItIsLeavingIsNotDialedAgain() {
        let link = FakeLink(dialed: nil, authenticatedAs: "z")
        membership.linkUp(link, now: 0)
        membership.departed("z")
        membership.linkClosed(link, wasUp: true, reason: "shutdown", now: 1)
        membership.membersChanged(["z": "127.0.0.4:4001"], now: 10)
        #expect(transport.dials.isEmpty)
        // Forgotten once the registry no longer lists it.
        membership.membersChanged([:], now: 11)
        membership.membersChanged(["z": "127.0.0.4:4001"], now: 12)
        #expect(transport.dials.map(\.node) == ["z"])
    }
}
