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
