import Glibc
import Testing
@testable import Singyeong

/// SystemdNotifier against a real AF_UNIX datagram socket standing in for
/// systemd's notification socket (filesystem path and abstract namespace).
@Suite struct SystemdNotifierTests {
    /// A bound SOCK_DGRAM socket playing systemd's part.
    final class FakeSystemd {
        let fd: Int32
        /// What goes into NOTIFY_SOCKET.
        let notifySocket: String
        private let directory: String?

        /// `abstract`: bind `\0name` and announce it as `@name`.
        init(abstract: Bool = false) throws {
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            try #require(fd >= 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            var path: [UInt8]
            if abstract {
                let name = "singyeong-test-\(getpid())-\(UInt32.random(in: 0 ... .max))"
                notifySocket = "@" + name
                directory = nil
                path = [0] + Array(name.utf8)
            } else {
                var template = Array("/tmp/singyeong-notify-XXXXXX".utf8CString)
                let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
                try #require(made != nil)
                let dir = String(cString: made!)
                directory = dir
                notifySocket = dir + "/notify.sock"
                path = Array(notifySocket.utf8) + [0]
            }
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path) }
            let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)! + path.count)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
            }
            try #require(bound == 0, "bind: \(String(cString: strerror(errno)))")
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }

        deinit {
            close(fd)
            if let directory {
                unlink(notifySocket)
                rmdir(directory)
            }
        }

        /// The next datagram, or nil after the 2 s receive timeout.
        func receive() -> String? {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count >= 0 else { return nil }
            return String(decoding: buffer[0 ..< count], as: UTF8.self)
        }

        /// The next datagram if one is already queued.
        func receiveNow() -> String? {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard count >= 0 else { return nil }
            return String(decoding: buffer[0 ..< count], as: UTF8.self)
        }
    }

    @Test func sendsEachStateAsOneDatagramToAFilesystemSocket() throws {
        let systemd = try FakeSystemd()
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": systemd.notifySocket])
        #expect(notifier.isEnabled)
        #expect(notifier.socketName == systemd.notifySocket)

        #expect(notifier.ready(status: "listening on port 4000"))
        #expect(systemd.receive() == "READY=1\nSTATUS=listening on port 4000")
        #expect(notifier.ready())
        #expect(systemd.receive() == "READY=1")
        #expect(notifier.status("3 clients"))
        #expect(systemd.receive() == "STATUS=3 clients")
        #expect(notifier.watchdog())
        #expect(systemd.receive() == "WATCHDOG=1")
        #expect(notifier.stopping())
        #expect(systemd.receive() == "STOPPING=1")
        #expect(notifier.notify("EXTEND_TIMEOUT_USEC=1000000"))
        #expect(systemd.receive() == "EXTEND_TIMEOUT_USEC=1000000")
        #expect(systemd.receiveNow() == nil)
    }

    @Test func abstractNamespaceSocket() throws {
        let systemd = try FakeSystemd(abstract: true)
        #expect(systemd.notifySocket.hasPrefix("@"))
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": systemd.notifySocket])
        #expect(notifier.isEnabled)
        #expect(notifier.ready(status: "up"))
        #expect(systemd.receive() == "READY=1\nSTATUS=up")
    }

    @Test func reloadingCarriesTheMonotonicClock() throws {
        let systemd = try FakeSystemd()
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": systemd.notifySocket])
        let before = SystemdNotifier.monotonicMicroseconds()
        #expect(notifier.reloading())
        let after = SystemdNotifier.monotonicMicroseconds()
        let datagram = try #require(systemd.receive())
        let lines = datagram.split(separator: "\n").map(String.init)
        #expect(lines.count == 2)
        #expect(lines.first == "RELOADING=1")
        let stamp = try #require(lines.last.flatMap { $0.hasPrefix("MONOTONIC_USEC=") ? UInt64($0.dropFirst(15)) : nil })
        #expect(before <= stamp && stamp <= after)
    }

    @Test func statusStaysOneAssignment() throws {
        let systemd = try FakeSystemd()
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": systemd.notifySocket])
        #expect(notifier.status("line one\nREADY=1"))
        #expect(systemd.receive() == "STATUS=line one READY=1")
        #expect(notifier.stopping(status: "draining\n2 connections"))
        #expect(systemd.receive() == "STOPPING=1\nSTATUS=draining 2 connections")
    }

    @Test func withoutNotifySocketEverythingIsANoOp() {
        let notifier = SystemdNotifier(environment: [:])
        #expect(!notifier.isEnabled)
        #expect(notifier.socketName == nil)
        #expect(!notifier.ready(status: "x"))
        #expect(!notifier.watchdog())
        #expect(!notifier.reloading())
        #expect(notifier.watchdogInterval == nil)
    }

    @Test(arguments: ["relative/path.sock", "@", "/" + String(repeating: "x", count: 200)])
    func unusableAddressDisablesNotifications(name: String) {
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": name])
        #expect(!notifier.isEnabled)
        #expect(!notifier.ready())
    }

    @Test func sendFailureIsReportedNotThrown() {
        // Nobody listens at this path: every send fails, none crashes.
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": "/nonexistent-singyeong-dir/notify.sock"])
        #expect(notifier.isEnabled)
        #expect(!notifier.ready())
        #expect(!notifier.watchdog())
    }

    @Test func watchdogIntervalIsHalfOfWatchdogUsec() {
        let pid = getpid()
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "30000000"]).watchdogInterval == 15)
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(pid)"]).watchdogInterval == 15)
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "500000"], pid: 42).watchdogInterval == 0.25)
        // Meant for another process (the variables leaked into a child).
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(pid + 1)"]).watchdogInterval == nil)
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "abc"]).watchdogInterval == nil)
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "0"]).watchdogInterval == nil)
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "-5"]).watchdogInterval == nil)
        #expect(SystemdNotifier(environment: ["WATCHDOG_USEC": "soon"]).watchdogInterval == nil)
        #expect(SystemdNotifier(environment: [:]).watchdogInterval == nil)
    }
}
