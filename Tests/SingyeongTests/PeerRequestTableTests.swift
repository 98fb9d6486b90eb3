import CLibev
import Glibc
import Testing
@testable import Singyeong

/// The one table of requests waiting on peers: answers, deadlines and lost
/// links each end a request exactly once, whatever its kind.
@Suite struct PeerRequestTableTests {
    /// A request that records how it ended.
    final class Probe: PeerRequestTable.Request {
        var endings: [PeerRequestTable.Ending] = []
        override func ended(_ ending: PeerRequestTable.Ending) { endings.append(ending) }
    }

    /// Another kind, to check that answers are matched by kind.
    final class OtherKind: PeerRequestTable.Request {}

    let loop = EventLoop(raw: ev_loop_new(0)!)
    /// Two live objects standing for two links (kept alive, so their
    /// identifiers differ).
    final class Anchor {}
    let anchors = (Anchor(), Anchor())
    var a: ObjectIdentifier { ObjectIdentifier(anchors.0) }
    var b: ObjectIdentifier { ObjectIdentifier(anchors.1) }

    @Test func endsWhenEveryPeerAnswered() {
        let table = PeerRequestTable()
        let deadlines = DeadlineQueue(loop: loop, duration: 60)
        let probe = Probe()
        let id = table.makeID()
        table.start(probe, id: id, waitingFor: [a, b], deadlines: deadlines)
        #expect(table.answer(id, from: a, as: Probe.self) === probe)
        table.endIfComplete(probe)
        #expect(probe.endings.isEmpty)
        #expect(table.answer(id, from: a, as: Probe.self) == nil, "a second answer from the same peer")
        #expect(table.answer(id, from: b, as: OtherKind.self) == nil, "the wrong kind")
        #expect(table.answer(id, from: b, as: Probe.self) === probe)
        table.endIfComplete(probe)
        #expect(probe.endings == [.answered])
        #expect(table.count == 0 && deadlines.count == 0)
        #expect(table.answer(id, from: b, as: Probe.self) == nil, "a late answer")
    }

    @Test func withNoPeerItEndsAtOnce() {
        let table = PeerRequestTable()
        let probe = Probe()
        table.start(probe, id: table.makeID(), waitingFor: [], deadlines: DeadlineQueue(loop: loop, duration: 60))
        table.endIfComplete(probe)
        #expect(probe.endings == [.answered])
    }

    @Test func aLostLinkEndsWhatWaitedOnlyForIt() {
        let table = PeerRequestTable()
        let deadlines = DeadlineQueue(loop: loop, duration: 60)
        let onlyA = Probe(), both = Probe(), onlyB = Probe()
        table.start(onlyA, id: table.makeID(), waitingFor: [a], deadlines: deadlines)
        table.start(both, id: table.makeID(), waitingFor: [a, b], deadlines: deadlines)
        table.start(onlyB, id: table.makeID(), waitingFor: [b], deadlines: deadlines)
        #expect(table.count(of: Probe.self, waitingFor: a) == 2)
        table.linkLost(a, reason: "closed")
        #expect(onlyA.endings == [.linkLost(reason: "closed")])
        #expect(both.endings.isEmpty && both.waiting == [b])
        #expect(onlyB.endings.isEmpty)
        table.linkLost(b, reason: "reset")
        #expect(both.endings == [.linkLost(reason: "reset")] && onlyB.endings == [.linkLost(reason: "reset")])
        #expect(table.count == 0 && deadlines.count == 0)
    }

    @Test func theDeadlineEndsIt() {
        let table = PeerRequestTable()
        let deadlines = DeadlineQueue(loop: loop, duration: 0.05)
        let probe = Probe()
        table.start(probe, id: table.makeID(), waitingFor: [a], deadlines: deadlines)
        #expect(drive(loop, seconds: 5) { !probe.endings.isEmpty })
        #expect(probe.endings == [.deadline])
        #expect(probe.waiting == [a], "still missing the silent peer")
        #expect(table.count == 0)
    }

    @Test func cancelledRequestsNeverEnd() {
        let table = PeerRequestTable()
        let deadlines = DeadlineQueue(loop: loop, duration: 0.05)
        let probe = Probe()
        let id = table.makeID()
        table.start(probe, id: id, waitingFor: [a], deadlines: deadlines)
        #expect(table.cancel(id) === probe)
        table.linkLost(a, reason: "closed")
        drive(loop, seconds: 0.2)
        #expect(probe.endings.isEmpty && table.count == 0 && deadlines.count == 0)
    }

    @Test func anEndedRequestCanStartAnother() {
        // `ended` runs after the request left the table: starting or ending
        // others from there is safe.
        final class Chain: PeerRequestTable.Request {
            let table: PeerRequestTable, next: Probe, deadlines: DeadlineQueue
            init(table: PeerRequestTable, next: Probe, deadlines: DeadlineQueue) {
                self.table = table; self.next = next; self.deadlines = deadlines
            }
            override func ended(_ ending: PeerRequestTable.Ending) {
                table.start(next, id: table.makeID(), waitingFor: [], deadlines: deadlines)
                table.endIfComplete(next)
            }
        }
        let table = PeerRequestTable()
        let deadlines = DeadlineQueue(loop: loop, duration: 60)
        let next = Probe()
        let chain = Chain(table: table, next: next, deadlines: deadlines)
        table.start(chain, id: table.makeID(), waitingFor: [a], deadlines: deadlines)
        table.linkLost(a, reason: "closed")
        #expect(next.endings == [.answered] && table.count == 0)
    }
}

/// Runs `loop` one turn at a time (a 10 ms timer keeps turns short) until
/// `condition` holds or `seconds` pass; returns whether it held.
@discardableResult
private func drive(_ loop: EventLoop, seconds: Double, until condition: () -> Bool = { false }) -> Bool {
    let wake = LoopTimer(loop: loop) {}
    wake.start(after: 0.01, repeating: 0.01)
    defer { wake.stop() }
    var start = timespec(), now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &start)
    repeat {
        if condition() { return true }
        ev_run(loop.raw, Int32(EVRUN_ONCE))
        clock_gettime(CLOCK_MONOTONIC, &now)
    } while Double(now.tv_sec - start.tv_sec) + Double(now.tv_nsec - start.tv_nsec) / 1e9 < seconds
    return condition()
}
