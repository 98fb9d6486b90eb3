import CHiredis
import CLibev
import Testing

/// Status reported by the connect callback (C callbacks cannot capture).
nonisolated(unsafe) private var hiredisConnectStatus: Int32 = 99

/// hiredis's async API attached to a libev loop through the CHiredis module's
/// adapter: the module the cluster registry is built on.
@Suite struct HiredisLibevTests {
    @Test func asyncConnectIsDrivenByTheLoop() {
        let loop = ev_loop_new(0)
        defer { ev_loop_destroy(loop) }
        // Port 1 on loopback: nothing listens, so the connect fails on the loop.
        guard let context = redisAsyncConnect("127.0.0.1", 1) else {
            Issue.record("redisAsyncConnect returned NULL")
            return
        }
        #expect(sy_redis_attach_libev(context, loop) == REDIS_OK)
        hiredisConnectStatus = 99
        redisAsyncSetConnectCallback(context) { _, status in hiredisConnectStatus = status }
        // The adapter's watchers keep the loop alive until hiredis gives up
        // (and frees the context); then ev_run returns.
        ev_run(loop, 0)
        #expect(hiredisConnectStatus == REDIS_ERR)
    }
}
