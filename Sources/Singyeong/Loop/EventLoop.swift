import CLibev

/// The one libev loop that owns every socket, timer and signal of the node.
///
/// Everything that touches node state runs on this loop's thread, so no type
/// in the server takes a lock. The loop also runs the "flush at the end of the
/// turn" step (an `ev_prepare` watcher, which libev runs just before it blocks):
/// connections that produced output during a turn are written once, with one
/// `writev`, instead of once per frame — the µWebSockets "cork" idea.
final class EventLoop {
    /// libev's loop handle.
    let raw: OpaquePointer
    private let prepare: UnsafeMutablePointer<ev_prepare>
    /// Callbacks to run once at the end of the current turn (flushes). Kept as
    /// an array of objects that is reused, so scheduling allocates nothing.
    private var endOfTurn: [EndOfTurnTask] = []
    /// Buffers for routed messages' frames (see FramePool).
    let framePool = FramePool()
    private var runningEndOfTurn = false

    /// The node's loop: libev's default loop (the one that handles signals).
    convenience init() {
        guard let loop = sy_ev_default_loop() else {
            fatalError("libev: could not initialise the default loop (bad LIBEV_FLAGS?)")
        }
        self.init(raw: loop)
    }

    /// A loop over `loop` (from `ev_loop_new`: unit tests give each test its
    /// own, so tests running in parallel never share one). Never freed: the
    /// prepare watcher must outlive every watcher started on it.
    init(raw loop: OpaquePointer) {
        raw = loop
        prepare = .allocate(capacity: 1)
        sy_ev_prepare_init(prepare) { _, w, _ in
            guard let w, let data = sy_ev_get_data(w) else { return }
            Unmanaged<EventLoop>.fromOpaque(data).takeUnretainedValue().runEndOfTurn()
        }
        sy_ev_set_data(prepare, Unmanaged.passUnretained(self).toOpaque())
        ev_prepare_start(raw, prepare)
        endOfTurn.reserveCapacity(64)
    }

    /// The loop's cached time (seconds), updated once per turn: cheap to read many times.
    var now: Double { ev_now(raw) }

    /// Milliseconds since the Unix epoch, from the loop's cached time (for `ts` fields).
    var nowMilliseconds: Int64 { Int64(ev_now(raw) * 1000) }

    /// Runs until `stop()` is called.
    func run() { ev_run(raw, 0) }

    /// Makes `run()` return after the current turn.
    func stop() { ev_break(raw, Int32(EVBREAK_ALL)) }

    /// Schedules `task` to run once before the loop next blocks. A task that is
    /// already scheduled is not added twice (it tracks that itself).
    func runAtEndOfTurn(_ task: EndOfTurnTask) {
        if task.isScheduledForEndOfTurn { return }
        task.isScheduledForEndOfTurn = true
        endOfTurn.append(task)
    }

    private func runEndOfTurn() {
        if runningEndOfTurn { return }
        runningEndOfTurn = true
        // Tasks may schedule further tasks (a flush that closes a connection
        // may wake another); loop until the list stays empty.
        var index = 0
        while index < endOfTurn.count {
            let task = endOfTurn[index]
            task.isScheduledForEndOfTurn = false
            task.runEndOfTurn()
            index += 1
        }
        endOfTurn.removeAll(keepingCapacity: endOfTurn.capacity <= 4096)
        runningEndOfTurn = false
    }
}

/// Something that wants to run once at the end of a loop turn (a connection
/// with output to flush).
class EndOfTurnTask {
    /// Set by the loop while the task sits in its end-of-turn list.
    fileprivate(set) var isScheduledForEndOfTurn = false
    /// Overridden by subclasses.
    func runEndOfTurn() {}
}
