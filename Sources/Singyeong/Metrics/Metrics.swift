import Glibc

/// The node's counters, exposed by `GET /metrics` (MetricsExposition.swift).
///
/// Plain integers in one fixed allocation, written and read only on the
/// event thread: an increment is a load, an add and a store — no atomics, no
/// locks, no dictionary (why: counters sit on the per-message path, which
/// must not get slower for observability). Gauges (connections, clients,
/// links) are read from their owners at scrape time instead of being kept
/// here.
final class Metrics {
    /// The routed dispatch events, as the `event` label.
    enum Event: Int, CaseIterable {
        case send = 0, broadcast, queryNodes

        var label: String {
            switch self {
            case .send: return "SEND"
            case .broadcast: return "BROADCAST"
            case .queryNodes: return "QUERY_NODES"
            }
        }

        /// SEND or BROADCAST from the event name the routing code carries.
        init(_ name: StaticString) {
            self = name.utf8Start.pointee == UInt8(ascii: "B") ? .broadcast : .send
        }
    }

    /// What happened to a routed message.
    enum Outcome: Int, CaseIterable {
        /// Accepted from a client for routing.
        case routed = 0
        /// Frames handed to local recipients (per recipient).
        case delivered
        /// No target and not droppable: the sender got op 3 `no_route`.
        case noRoute
        /// No target and droppable: dropped silently, as asked.
        case dropped
    }

    private let counters: UnsafeMutablePointer<UInt64>
    private static let counterCount = Event.allCases.count * Outcome.allCases.count

    /// Query evaluation time (local collection over this node's clients),
    /// sampled: one resolution in `sampleEvery` is timed, so the clock is
    /// read twice per 64 queries rather than twice per query.
    let queryEvaluation = Histogram(bounds: [1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.1])
    static let sampleEvery: UInt64 = 64

    /// `/api/v1/proxy` answers by HTTP status (the status the caller got).
    private(set) var proxyResponses: [Int: UInt64] = [:]

    init() {
        // One more slot: the sampling countdown, kept in the same raw
        // allocation so updating it costs no exclusivity check (a class's
        // stored `var` would, on every query).
        counters = .allocate(capacity: Metrics.counterCount + 1)
        counters.initialize(repeating: 0, count: Metrics.counterCount + 1)
        counters[Metrics.counterCount] = 1
    }

    deinit { counters.deallocate() }

    @inline(__always) func count(_ event: Event, _ outcome: Outcome, _ n: Int = 1) {
        counters[outcome.rawValue * Event.allCases.count + event.rawValue] &+= UInt64(truncatingIfNeeded: n)
    }

    func value(_ event: Event, _ outcome: Outcome) -> UInt64 {
        counters[outcome.rawValue * Event.allCases.count + event.rawValue]
    }

    /// True once every `sampleEvery` calls: time this query.
    @inline(__always) func shouldSampleQuery() -> Bool {
        let countdown = counters + Metrics.counterCount
        countdown.pointee &-= 1
        if countdown.pointee != 0 { return false }
        countdown.pointee = Metrics.sampleEvery
        return true
    }

    func countProxyResponse(status: Int) { proxyResponses[status, default: 0] &+= 1 }

    /// Monotonic seconds with nanosecond resolution (vDSO, no system call).
    static func monotonicSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}

/// A Prometheus histogram with fixed upper bounds (seconds).
final class Histogram {
    let bounds: [Double]
    /// Per bucket (not cumulative; the exposition accumulates), plus +Inf.
    private(set) var buckets: [UInt64]
    private(set) var sum: Double = 0
    private(set) var count: UInt64 = 0

    init(bounds: [Double]) {
        self.bounds = bounds
        buckets = [UInt64](repeating: 0, count: bounds.count + 1)
    }

    func observe(_ value: Double) {
        var i = 0
        while i < bounds.count && value > bounds[i] { i += 1 }
        buckets[i] &+= 1
        sum += value
        count &+= 1
    }
}
