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
