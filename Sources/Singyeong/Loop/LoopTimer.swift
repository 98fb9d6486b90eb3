import CLibev

/// A libev timer that calls a Swift closure. Used for the handful of
/// process-wide timers (deadline queues, shutdown bound); per-connection
/// timeouts go through `DeadlineQueue` instead, so there is never a timer per
/// connection.
final class LoopTimer {
    private let loop: EventLoop
    private let watcher: UnsafeMutablePointer<ev_timer>
    private let action: () -> Void

    init(loop: EventLoop, action: @escaping () -> Void) {
        self.loop = loop
        self.action = action
        watcher = .allocate(capacity: 1)
        sy_ev_timer_init(watcher, { _, w, _ in
            guard let w, let data = sy_ev_get_data(w) else { return }
            Unmanaged<LoopTimer>.fromOpaque(data).takeUnretainedValue().action()
        }, 0, 0)
        sy_ev_set_data(watcher, Unmanaged.passUnretained(self).toOpaque())
    }

    deinit {
        ev_timer_stop(loop.raw, watcher)
        watcher.deallocate()
    }

    var isActive: Bool { sy_ev_is_active(watcher) != 0 }

    /// (Re)starts the timer to fire once after `seconds`, then every `repeat` seconds if > 0.
    func start(after seconds: Double, repeating interval: Double = 0) {
        ev_timer_stop(loop.raw, watcher)
        sy_ev_timer_set(watcher, max(seconds, 0), interval)
        ev_timer_start(loop.raw, watcher)
    }

    func stop() { ev_timer_stop(loop.raw, watcher) }
}

/// A libev signal watcher that calls a Swift closure on the loop thread
/// (libev turns the asynchronous signal into an ordinary loop event, so the
/// handler may touch any state).
final class SignalWatcher {
    private let loop: EventLoop
    private let watcher: UnsafeMutablePointer<ev_signal>
    private let action: () -> Void

    init(loop: EventLoop, signal: Int32, action: @escaping () -> Void) {
        self.loop = loop
        self.action = action
        watcher = .allocate(capacity: 1)
        sy_ev_signal_init(watcher, { _, w, _ in
            guard let w, let data = sy_ev_get_data(w) else { return }
            Unmanaged<SignalWatcher>.fromOpaque(data).takeUnretainedValue().action()
        }, signal)
        sy_ev_set_data(watcher, Unmanaged.passUnretained(self).toOpaque())
        ev_signal_start(loop.raw, watcher)
        // The watcher must not keep the loop alive on its own.
        ev_unref(loop.raw)
    }

    deinit {
        ev_ref(loop.raw)
        ev_signal_stop(loop.raw, watcher)
        watcher.deallocate()
    }
}
