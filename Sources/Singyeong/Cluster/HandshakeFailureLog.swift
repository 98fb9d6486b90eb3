/// Rate limit for the log lines of failed peer handshakes: anyone who can
/// reach the cluster port can fail a handshake as often as they like, and
/// one line per attempt would let them fill the disk.
///
/// Per source, the first failure is logged and starts a window; failures
/// inside the window are only counted, and when it ends with some counted
/// the caller logs one summary line (`expire`) and a new window starts, so a
/// source gets at most one line per window however often it fails. The table
/// is bounded: once `capacity` sources are tracked, new ones share one
/// `overflowSource` entry (an attacker cycling addresses gets one line per
/// window for all of them together). Pure logic, driven with `now` from the
/// loop.
struct HandshakeFailureLog {
    /// One source's current window.
    struct Entry: Equatable {
        var windowStart: Double
        /// Failures since the last line, not logged.
        var suppressed: Int
        /// The most recent suppressed failure's reason (already escaped).
        var lastReason: String
    }

    /// A window ended with failures that were not logged.
    struct Summary: Equatable {
        var source: String
        var suppressed: Int
        var lastReason: String
    }

    /// Key shared by the sources that found the table full.
    static let overflowSource = "(other sources)"

    let interval: Double
    let capacity: Int
    private(set) var entries: [String: Entry] = [:]

    init(interval: Double = 60, capacity: Int = 1024) {
        self.interval = interval
        self.capacity = capacity
    }

    /// Counts one failure from `source`. Returns the key it was counted
    /// under (`source`, or `overflowSource` when the table is full) and
    /// whether to log it now.
    mutating func record(source: String, reason: String, now: Double) -> (key: String, log: Bool) {
        var key = source
        if entries[key] == nil && entries.count >= capacity {
            key = HandshakeFailureLog.overflowSource
        }
        if var entry = entries[key], now - entry.windowStart < interval {
            entry.suppressed += 1
            entry.lastReason = reason
            entries[key] = entry
            return (key, false)
        }
        entries[key] = Entry(windowStart: now, suppressed: 0, lastReason: "")
        return (key, true)
    }

    /// Ends the windows that are over. Sources with suppressed failures are
    /// returned (log one line each) and start a new window; the others are
    /// forgotten.
    mutating func expire(now: Double) -> [Summary] {
        var out: [Summary] = []
        for (key, entry) in entries where now - entry.windowStart >= interval {
            if entry.suppressed > 0 {
                out.append(Summary(source: key, suppressed: entry.suppressed, lastReason: entry.lastReason))
                entries[key] = Entry(windowStart: now, suppressed: 0, lastReason: "")
            } else {
                entries[key] = nil
            }
        }
        return out.sorted { $0.source < $1.source }
    }
}
