/// Many timeouts of the same length with one libev timer.
///
/// This is libev's recommended pattern for thousands of equal timeouts (its
/// manual, "Be smart about timeouts", strategy 4): because every entry gets the
/// same duration, appending at the tail keeps the list ordered by deadline, so
/// arming, re-arming ("touch") and cancelling are O(1) list operations and only
/// the head's deadline needs a timer. Touching an entry on every received frame
/// costs two pointer updates, never a timer restart.
///
/// Entries are intrusive (`DeadlineEntry` lives inside its owner), so the queue
/// allocates nothing per connection.
final class DeadlineQueue {
    /// Seconds from arming to expiry.
    private(set) var duration: Double
    private let loop: EventLoop
    private var head: DeadlineEntry?
    private var tail: DeadlineEntry?
    private var timer: LoopTimer!
    /// Number of armed entries (for metrics and tests).
    private(set) var count = 0

    init(loop: EventLoop, duration: Double) {
        self.loop = loop
        self.duration = duration
        timer = LoopTimer(loop: loop) { [unowned self] in self.expire() }
    }

    /// Arms (or re-arms) `entry` to expire `duration` seconds from now.
    func arm(_ entry: DeadlineEntry) {
        if entry.queue === self { unlink(entry) } else if let other = entry.queue { other.cancel(entry) }
        entry.deadline = loop.now + duration
        entry.queue = self
        entry.previous = tail
        entry.next = nil
        if let tail { tail.next = entry } else { head = entry }
        tail = entry
        count += 1
        if !timer.isActive { timer.start(after: duration) }
    }

    /// Disarms `entry` if it is in this queue.
    func cancel(_ entry: DeadlineEntry) {
        guard entry.queue === self else { return }
        unlink(entry)
        entry.queue = nil
        if head == nil { timer.stop() }
    }

    private func unlink(_ entry: DeadlineEntry) {
        if let previous = entry.previous { previous.next = entry.next } else { head = entry.next }
        if let next = entry.next { next.previous = entry.previous } else { tail = entry.previous }
        entry.previous = nil
        entry.next = nil
        count -= 1
    }

    private func expire() {
        let now = loop.now
        // Small tolerance: libev may wake a hair early relative to ev_now.
        while let first = head, first.deadline <= now + 0.001 {
            unlink(first)
            first.queue = nil
            first.onExpiry()
        }
        if let first = head { timer.start(after: first.deadline - now) }
    }
}

/// One slot in a `DeadlineQueue`, owned by a connection. `onExpiry` runs on
/// the loop when the deadline passes without the entry being re-armed or
/// cancelled.
final class DeadlineEntry {
    fileprivate var deadline: Double = 0
    fileprivate weak var queue: DeadlineQueue?
    fileprivate var previous: DeadlineEntry?
    fileprivate var next: DeadlineEntry?
    let onExpiry: () -> Void

    init(onExpiry: @escaping () -> Void) { self.onExpiry = onExpiry }

    var isArmed: Bool { queue != nil }

    /// Disarms the entry in whichever queue holds it.
    func cancel() { queue?.cancel(self) }
}
