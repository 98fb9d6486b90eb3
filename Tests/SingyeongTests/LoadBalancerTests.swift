import Testing
@testable import Singyeong

/// cluster.md §5's examples and edge cases for the GOODBYE formula.
@Suite struct LoadBalancerTests {
    @Test(arguments: [
        (10, [0], 4),          // avg 5, max 6
        (7, [1, 1], 2),        // avg 3, max 5
        (5, [5, 5], 0),
        (3, [], 0),            // alone: never
        (0, [10], 0),
        (6, [5], 0),           // avg round(5.5) = 6 (away from zero), max 7
        (100, [0, 0, 0], 72),  // avg 25, max 28
    ] as [(Int, [Int], Int)])
    func excess(local: Int, peers: [Int], expected: Int) {
        #expect(LoadBalancer.excess(local: local, peers: peers) == expected)
    }
}

/// `GoodbyeGrace`: tick by tick, (tick, local count, peers' counts,
/// GOODBYEs expected on that tick).
@Suite struct GoodbyeGraceTests {
    typealias Step = (tick: Int, local: Int, peers: [Int], goodbyes: Int)

    @Test(arguments: [
        // Issue 12.5: 7/1/1 sends 2; the ticks until they reconnect see
        // 5/1/1 (bare formula: 1 more) and send nobody; nor afterwards.
        (10, [(1, 7, [1, 1], 2), (2, 5, [1, 1], 0), (3, 5, [1, 1], 0), (4, 5, [1, 1], 0),
              (5, 5, [2, 1], 0), (6, 5, [2, 2], 0), (7, 5, [2, 2], 0), (30, 5, [2, 2], 0)]),
        // Nobody reconnects: one round per grace period (3 ticks here).
        (3, [(1, 10, [0], 4), (2, 6, [0], 0), (3, 6, [0], 0), (4, 6, [0], 2), (5, 4, [0], 0),
             (6, 4, [0], 0), (7, 4, [0], 1), (8, 3, [0], 0), (20, 3, [0], 0)]),
        // One of four arrives: the other three stay in flight until the
        // grace ends; then the bare formula (6/1: avg 4, max 5) sends one.
        (3, [(1, 10, [0], 4), (2, 6, [1], 0), (3, 6, [1], 0), (4, 6, [1], 1)]),
        // Grace ends as soon as the peers' counts show all of them: new
        // clients here are balanced on the next tick, not 10 ticks later.
        (10, [(1, 7, [1, 1], 2), (2, 5, [2, 2], 0), (3, 8, [2, 2], 2)]),
        // Arrivals go to the oldest round first: 2 sent, then 3 more for
        // new clients; the first 2 arrivals release only the first round.
        (10, [(1, 7, [1, 1], 2), (2, 10, [1, 1], 3), (3, 7, [2, 2], 0), (4, 7, [3, 3], 0), (5, 7, [4, 3], 0),
              (6, 10, [4, 3], 2)]),
        // Peers' counts falling (a client leaving B) are not arrivals;
        // rising again they are: released on tick 4, so 6 here sends one.
        (10, [(1, 7, [1, 1], 2), (2, 5, [1, 0], 0), (3, 5, [1, 1], 0), (4, 5, [2, 1], 0), (5, 6, [2, 1], 1)]),
        // A balanced cluster never sends anyone away.
        (2, [(1, 5, [5, 5], 0), (2, 6, [5, 5], 0), (5, 7, [5, 5], 0)]),
    ] as [(Int, [Step])])
    func sequence(graceTicks: Int, steps: [Step]) {
        var grace = GoodbyeGrace(graceTicks: graceTicks)
        for step in steps {
            let got = grace.goodbyes(tick: step.tick, local: step.local, peers: step.peers)
            #expect(got == step.goodbyes, "tick \(step.tick): \(step.local) / \(step.peers)")
        }
    }

    /// Counted as still here: the round just sent and the earlier ones not yet seen.
    @Test func inFlight() {
        var grace = GoodbyeGrace(graceTicks: 10)
        #expect(grace.goodbyes(tick: 1, local: 7, peers: [1, 1]) == 2)
        #expect(grace.inFlight == 2)
        #expect(grace.goodbyes(tick: 2, local: 5, peers: [2, 1]) == 0)
        #expect(grace.inFlight == 1)
        #expect(grace.goodbyes(tick: 3, local: 5, peers: [2, 2]) == 0)
        #expect(grace.inFlight == 0)
    }
}

/// The router's generator: deterministic per seed, and uniform enough that
/// a SEND's pick among n candidates is fair.
@Suite struct FastRandomTests {
    @Test func uniformOverSmallRanges() {
        var rng = FastRandom(seed: 7)
        for n in [2, 3, 7] {
            var counts = [Int](repeating: 0, count: n)
            let draws = 70_000
            for _ in 0..<draws { counts[Int.random(in: 0..<n, using: &rng)] += 1 }
            let expected = Double(draws) / Double(n)
            for c in counts { #expect(abs(Double(c) - expected) < expected * 0.05, "\(counts)") }
        }
    }

    @Test func sameSeedSameSequence() {
        var a = FastRandom(seed: 42), b = FastRandom(seed: 42), c = FastRandom(seed: 43)
        let x = (0..<8).map { _ in a.next() }
        #expect(x == (0..<8).map { _ in b.next() })
        #expect(x != (0..<8).map { _ in c.next() })
    }
}
