import CSystem
import Glibc
import Logging

/// The daemon side of systemd's readiness protocol (`sd_notify(3)`): state
/// changes sent as datagrams to the socket named by `$NOTIFY_SOCKET`, plus the
/// watchdog interval systemd asks for in `$WATCHDOG_USEC`.
///
/// Written against Glibc directly instead of linking libsystemd: the protocol
/// is one `sendto` of `KEY=value` lines on an `AF_UNIX`/`SOCK_DGRAM` socket,
/// tiny and stable since systemd 209, and leaving libsystemd out keeps the
/// package's runtime dependencies to the libraries the node really uses.
///
/// Without `$NOTIFY_SOCKET` (not started by systemd, or a unit without
/// `Type=notify`) every call is a no-op. The socket is opened once, at
/// initialisation, non-blocking and close-on-exec; sending never blocks the
/// loop. A failed send is logged once and later failures are ignored: systemd
/// readiness must never take the node down.
///
/// Usage from the node (all on the loop thread):
/// * `ready(status:)` once listening (`Type=notify` waits for it);
/// * `watchdog()` every `watchdogInterval` seconds when that is non-nil
///   (already half of `WatchdogSec=`);
/// * `reloading()` at the start of a SIGHUP reload and `ready(status:)` when it
///   is done (systemd ≥ 253 `Type=notify-reload` needs both; 252 ignores them);
/// * `stopping()` when shutdown starts, `status(_:)` for anything to show in
///   `systemctl status`.
///
/// `NOTIFY_SOCKET` is left in the environment: the node starts no children
/// that could misuse it.
final class SystemdNotifier {
    /// `$NOTIFY_SOCKET` as given, or nil when notifications are off.
    let socketName: String?
    /// How often to call `watchdog()`, seconds: half of `$WATCHDOG_USEC`, as
    /// `sd_watchdog_enabled(3)` recommends; nil when systemd expects no pings
    /// (unset, not a positive number, or `$WATCHDOG_PID` names another process).
    let watchdogInterval: Double?

    private let logger: Logger?
    private var descriptor: Int32 = -1
    private var address = sockaddr_un()
    private var addressLength: socklen_t = 0
    private var failureLogged = false

    /// True when datagrams are being sent.
    var isEnabled: Bool { descriptor >= 0 }

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from
    /// `environment` (tests pass a dictionary; the node passes the process
    /// environment, see `init(logger:)`). `pid` is the process `WATCHDOG_PID`
    /// must name.
    init(environment: [String: String], pid: pid_t = getpid(), logger: Logger? = nil) {
        self.logger = logger
        watchdogInterval = SystemdNotifier.watchdogInterval(environment: environment, pid: pid)
        guard let name = environment["NOTIFY_SOCKET"], !name.isEmpty else {
            socketName = nil
            return
        }
        socketName = name
        guard SystemdNotifier.fillAddress(name, into: &address, length: &addressLength) else {
            logger?.warning("NOTIFY_SOCKET is not a usable AF_UNIX path; systemd notifications disabled",
                            metadata: ["NOTIFY_SOCKET": "\(name)"])
            return
        }
        let fd = socket(AF_UNIX, SY_SOCK_DGRAM | SY_SOCK_CLOEXEC | SY_SOCK_NONBLOCK, 0)
        guard fd >= 0 else {
            logger?.warning("cannot open the systemd notification socket; notifications disabled",
                            metadata: ["reason": "\(String(cString: strerror(errno)))"])
            return
        }
        descriptor = fd
    }

    /// Reads the three variables from the process environment.
    convenience init(logger: Logger? = nil) {
        var environment: [String: String] = [:]
        for key in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            if let value = getenv(key) { environment[key] = String(cString: value) }
        }
        self.init(environment: environment, logger: logger)
    }

    deinit {
        if descriptor >= 0 { close(descriptor) }
    }

    /// Sends one datagram of newline-separated `KEY=value` assignments.
    /// Returns whether the whole datagram was sent (false when disabled).
    @discardableResult
    func notify(_ state: String) -> Bool {
        guard descriptor >= 0 else { return false }
        var bytes = Array(state.utf8)
        let sent = bytes.withUnsafeMutableBytes { buffer -> Int in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                    sendto(descriptor, buffer.baseAddress, buffer.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT),
                           socketAddress, addressLength)
                }
            }
        }
        if sent == bytes.count { return true }
        if !failureLogged {
            failureLogged = true
            let reason = sent < 0 ? String(cString: strerror(errno)) : "short write"
            logger?.warning("systemd notification failed; further failures are not logged",
                            metadata: ["socket": "\(socketName ?? "")", "reason": "\(reason)"])
        }
        return false
    }

    /// `READY=1`, with an optional `STATUS=` line.
    @discardableResult
    func ready(status: String? = nil) -> Bool {
        notify("READY=1" + (status.map { "\nSTATUS=" + SystemdNotifier.oneLine($0) } ?? ""))
    }

    /// `RELOADING=1` with the `MONOTONIC_USEC=` systemd ≥ 253 requires to
    /// order it; follow with `ready(status:)` when the reload is done.
    @discardableResult
    func reloading() -> Bool {
        notify("RELOADING=1\nMONOTONIC_USEC=\(SystemdNotifier.monotonicMicroseconds())")
    }

    /// `STOPPING=1`: shutdown has started.
    @discardableResult
    func stopping(status: String? = nil) -> Bool {
        notify("STOPPING=1" + (status.map { "\nSTATUS=" + SystemdNotifier.oneLine($0) } ?? ""))
    }

    /// `STATUS=`: free text shown by `systemctl status`.
    @discardableResult
    func status(_ text: String) -> Bool {
        notify("STATUS=" + SystemdNotifier.oneLine(text))
    }

    /// `WATCHDOG=1`: the keep-alive ping; send every `watchdogInterval`.
    @discardableResult
    func watchdog() -> Bool {
        notify("WATCHDOG=1")
    }

    // MARK: - Helpers

    /// CLOCK_MONOTONIC in microseconds, the clock systemd compares against.
    static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
    }

    /// Half of `WATCHDOG_USEC` in seconds, or nil (see `watchdogInterval`).
    static func watchdogInterval(environment: [String: String], pid: pid_t) -> Double? {
        guard let text = environment["WATCHDOG_USEC"], let usec = UInt64(text), usec > 0 else { return nil }
        if let owner = environment["WATCHDOG_PID"], !owner.isEmpty {
            guard let ownerPID = pid_t(owner), ownerPID == pid else { return nil }
        }
        return Double(usec) / 2 / 1_000_000
    }

    /// A newline would start a new assignment; STATUS stays one line.
    private static func oneLine(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 })
    }

    /// `/path` → a filesystem address; `@name` → an abstract one (leading NUL,
    /// length without a terminator, as systemd binds it). Anything else
    /// (relative paths, too long, `vsock:` of systemd ≥ 254) is refused.
    private static func fillAddress(_ name: String, into address: inout sockaddr_un, length: inout socklen_t) -> Bool {
        var path = Array(name.utf8)
        let abstract = path.first == UInt8(ascii: "@")
        guard abstract || path.first == UInt8(ascii: "/") else { return false }
        if abstract { path[0] = 0 } else { path.append(0) }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.count <= capacity, !(abstract && path.count < 2) else { return false }
        address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: path)
        }
        length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + path.count)
        return true
    }
}
