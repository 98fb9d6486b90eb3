import CHiredis
import CLibev
import Foundation
import Glibc
import Logging
import Testing
@testable import Singyeong

/// The proxy's outgoing HTTP client (libcurl's multi-socket API on libev)
/// against real sockets: a tiny blocking HTTP/1.1 server on a background
/// thread answers scripted responses and records what it received. Each test
/// drives its own private libev loop, so these tests can run in parallel with
/// each other and with suites that drive the default loop.
@Suite struct UpstreamClientTests {
    init() {
        // The test server writes to sockets the client may have closed.
        signal(SIGPIPE, SIG_IGN)
    }

    @Test func getSendsExactlyTheGivenHeaders() throws {
        let server = try TestHTTPServer { request, _ in
            .respond(httpResponse(headers: [("Content-Type", "text/plain"), ("X-Echo-Target", request.target)],
                                  body: Array("hello".utf8)))
        }
        defer { server.stop() }
        let harness = Harness()
        defer { harness.close() }
        let result = harness.run(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/a//b/../c?q=1&r=%20",
                                                 headers: [("X-One", "1"), ("x-two", "a  b"), ("X-Empty", ""), ("X-One", "again")]))
        let response = try #require(try result?.get())
        #expect(response.status == 200)
        #expect(response.body == Array("hello".utf8))
        #expect(response.headers.contains { $0 == ("content-type", "text/plain") })
        #expect(response.headers.contains { $0 == ("x-echo-target", "/a//b/../c?q=1&r=%20") })
        #expect(response.headers.contains { $0 == ("content-length", "5") })
        #expect(!response.headers.contains { $0.0.hasPrefix("HTTP/") || $0.0 != $0.0.lowercased() })

        let received = try #require(server.requests.first)
        #expect(received.method == "GET")
        #expect(received.target == "/a//b/../c?q=1&r=%20")
        #expect(received.headers.map(\.0) == ["Host", "X-One", "x-two", "X-Empty", "X-One"])
        #expect(received.headers[0].1 == "127.0.0.1:\(server.port)")
        #expect(received.headers[1].1 == "1" && received.headers[2].1 == "a  b" && received.headers[3].1 == "" && received.headers[4].1 == "again")
        #expect(received.body.isEmpty)
        #expect(harness.client.activeTransfers == 0)
    }

    @Test func callerHeadersReplaceLibcurlDefaults() throws {
        let server = try TestHTTPServer { _, _ in .respond(httpResponse()) }
        defer { server.stop() }
        let harness = Harness()
        defer { harness.close() }
        let headers = [("Host", "example.test"), ("accept", "application/json"), ("User-Agent", "proxy-test"), ("Content-Type", "application/json")]
        _ = try #require(try harness.run(UpstreamRequest(method: "POST", url: "http://127.0.0.1:\(server.port)/x", headers: headers,
                                                         body: Array("{}".utf8)))?.get())
        let received = try #require(server.requests.first)
        #expect(received.headers.map(\.0) == ["Host", "accept", "User-Agent", "Content-Type", "Content-Length"])
        #expect(received.headers.map(\.1) == ["example.test", "application/json", "proxy-test", "application/json", "2"])
        #expect(received.body == Array("{}".utf8))
    }

    @Test(arguments: ["POST", "PUT", "PATCH", "DELETE"])
    func bodiesArriveIntact(method: String) throws {
        let server = try TestHTTPServer { request, _ in .respond(httpResponse(status: 201, reason: "Created", body: request.body)) }
        defer { server.stop() }
        let harness = Harness()
        defer { harness.close() }
        let big = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) }
        for body in [big, [0, 13, 10, 0, 255], []] as [[UInt8]] {
            let response = try #require(try harness.run(UpstreamRequest(method: method, url: "http://127.0.0.1:\(server.port)/items/1",
                                                                        headers: [("X-Id", "7")], body: body))?.get())
            #expect(response.status == 201)
            #expect(response.body == body)
            let received = try #require(server.requests.last)
            #expect(received.method == method)
            #expect(received.target == "/items/1")
            #expect(received.body == body)
            #expect(received.headers.map(\.0) == ["Host", "X-Id", "Content-Length"])
            #expect(received.headers.last?.1 == "\(body.count)")
        }
        // Without a body, only POST says "Content-Length: 0"; the others send no body framing at all.
        _ = try #require(try harness.run(UpstreamRequest(method: method, url: "http://127.0.0.1:\(server.port)/none"))?.get())
        let received = try #require(server.requests.last)
        #expect(received.method == method)
        #expect(received.headers.map(\.0) == (method == "POST" ? ["Host", "Content-Length"] : ["Host"]))
        #expect(server.acceptedConnections == 1)
    }

    @Test func headRequestsHaveNoBody() throws {
        let server = try TestHTTPServer { _, _ in
            .respond(Array("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-Kind: head\r\n\r\n".utf8))
        }
        defer { server.stop() }
        let harness = Harness()
        defer { harness.close() }
        let response = try #require(try harness.run(UpstreamRequest(method: "HEAD", url: "http://127.0.0.1:\(server.port)/h"))?.get())
        #expect(response.status == 200)
        #expect(response.body.isEmpty)
        #expect(response.headers.map(\.0) == ["content-length", "x-kind"])
        #expect(server.requests.first?.method == "HEAD")
        // The connection stays usable after a body-less response.
        _ = try #require(try harness.run(UpstreamRequest(method: "HEAD", url: "http://127.0.0.1:\(server.port)/h"))?.get())
        #expect(server.acceptedConnections == 1)
    }

    @Test func repeatedHeadersStaySeparateAndInOrder() throws {
        let server = try TestHTTPServer { _, _ in
            .respond(Array(("HTTP/1.1 404 Not Found\r\nSet-Cookie: a=1; Path=/\r\nX-Mid: m\r\nSET-COOKIE: b=2\r\n"
                + "X-Folded: one\r\n  two\r\nX-Spaces:   padded  \r\nContent-Length: 0\r\n\r\n").utf8))
        }
        defer { server.stop() }
        let harness = Harness()
        defer { harness.close() }
        let response = try #require(try harness.run(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/"))?.get())
        #expect(response.status == 404)
        #expect(response.headers.map(\.0) == ["set-cookie", "x-mid", "set-cookie", "x-folded", "x-spaces", "content-length"])
        #expect(response.headers.filter { $0.0 == "set-cookie" }.map(\.1) == ["a=1; Path=/", "b=2"])
        #expect(response.headers.first { $0.0 == "x-folded" }?.1 == "one two")
        #expect(response.headers.first { $0.0 == "x-spaces" }?.1 == "padded")
    }

    @Test func redirectsAreFollowedAndOnlyTheFinalHeadersKept() throws {
        let server = try TestHTTPServer { request, _ in
            switch request.target {
            case "/start":
                return .respond(httpResponse(status: 302, reason: "Found", headers: [("Location", "/middle"), ("X-First", "1")],
                                             body: Array("moved".utf8)))
            case "/middle":
                return .respond(httpResponse(status: 307, reason: "Temporary Redirect", headers: [("Location", "/final")]))
            default:
                return .respond(httpResponse(headers: [("X-Final", "1")], body: Array("final \(request.method)".utf8)))
            }
        }
        defer { server.stop() }
        let harness = Harness()
        defer { harness.close() }
        let response = try #require(try harness.run(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/start"))?.get())
        #expect(response.status == 200)
        #expect(response.body == Array("final GET".utf8))
        #expect(response.headers.map(\.0) == ["x-final", "content-length"])
        #expect(server.requests.map(\.target) == ["/start", "/middle", "/final"])

        // A loop ends after 10 redirects.
        let looping = try TestHTTPServer { _, _ in
            .respond(httpResponse(status: 302, reason: "Found", headers: [("Location", "/again")]))
        }
        defer { looping.stop() }
        let failure = harness.run(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(looping.port)/"))?.failureReason
        #expect(failure?.contains("redirects") == true, "\(failure ?? "nil")")
        #expect(looping.requests.count == 11)
    }

    @Test func connectionRefused() throws {
        let port = try unusedPort()
        let harness = Harness()
        defer { harness.close() }
        #expect(harness.run(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(port)/"))?.failureReason == ":econnrefused")
    }

    @Test func unknownHost() {
        let harness = Harness()
        defer { harness.close() }
        #expect(harness.run(UpstreamRequest(method: "GET", url: "http://no-such-host.invalid/"))?.failureReason == ":nxdomain")
    }

    @Test func silentServerTimesOut() throws {
        let server = try TestHTTPServer { _, _ in .hang }
        defer { server.stop() }
        let harness = Harness(totalTimeoutMilliseconds: 300)
        defer { harness.close() }
        let started = monotonicNow()
        #expect(harness.run(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/slow"))?.failureReason == ":timeout")
        let elapsed = monotonicNow() - started
        #expect(elapsed >= 0.25 && elapsed < 2, "\(elapsed)")
    }

    @Test func serverClosingWithoutAnswerIsClosed() throws {
        let server = try TestHTTPServer { _, _ in .close }
        defer { server.stop() }
        let harness = Harness()
        defer { harness.close() }
        #expect(harness.run(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/"))?.failureReason == ":closed")
    }

    @Test func tlsFailureIsDescribed() throws {
        // Plain bytes where a TLS ServerHello should be.
        let server = try TestHTTPServer(greeting: Array("HTTP/1.1 400 Bad Request\r\n\r\n".utf8)) { _, _ in .close }
        defer { server.stop() }
        let harness = Harness()
        defer { harness.close() }
        let reason = harness.run(UpstreamRequest(method: "GET", url: "https://127.0.0.1:\(server.port)/"))?.failureReason
        #expect(reason?.hasPrefix("tls: ") == true, "\(reason ?? "nil")")
        #expect((reason?.count ?? 0) > 6)
    }

    @Test func responseBodyOverTheLimit() throws {
        let server = try TestHTTPServer { request, _ in
            if request.target == "/chunked" {
                // No Content-Length: the running count catches it.
                let chunk = String(repeating: "x", count: 600)
                return .respond(Array(("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + "258\r\n\(chunk)\r\n258\r\n\(chunk)\r\n0\r\n\r\n").utf8))
            }
            if request.target == "/exact" { return .respond(httpResponse(body: [UInt8](repeating: 7, count: 1000))) }
            return .respond(httpResponse(body: [UInt8](repeating: 7, count: 5000)))
        }
        defer { server.stop() }
        let harness = Harness(maxResponseBodyBytes: 1000)
        defer { harness.close() }
        #expect(harness.run(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/big"))?.failureReason
            == "response body over 1000 bytes")
        #expect(harness.run(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/chunked"))?.failureReason
            == "response body over 1000 bytes")
        let exact = try #require(try harness.run(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/exact"))?.get())
        #expect(exact.body.count == 1000)
    }

    @Test func responseHeadersOverTheLimit() throws {
        let server = try TestHTTPServer { _, _ in
            let filler = (0..<800).map { "X-Filler-\($0): \(String(repeating: "f", count: 80))\r\n" }.joined()
            return .respond(Array("HTTP/1.1 200 OK\r\n\(filler)Content-Length: 0\r\n\r\n".utf8))
        }
        defer { server.stop() }
        let harness = Harness()
        defer { harness.close() }
        #expect(harness.run(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/"))?.failureReason
            == "response headers too large")
    }

    @Test func sequentialRequestsReuseTheConnection() throws {
        let server = try TestHTTPServer { request, index in .respond(httpResponse(body: Array("\(index) \(request.target)".utf8))) }
        defer { server.stop() }
        let harness = Harness()
        defer { harness.close() }
        let first = try #require(try harness.run(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/one"))?.get())
        let second = try #require(try harness.run(UpstreamRequest(method: "POST", url: "http://127.0.0.1:\(server.port)/two",
                                                                  body: Array("b".utf8)))?.get())
        #expect(first.body == Array("0 /one".utf8))
        #expect(second.body == Array("1 /two".utf8))
        #expect(server.acceptedConnections == 1)
    }

    @Test func finishedTransfersAreReleased() throws {
        let server = try TestHTTPServer { _, _ in .respond(httpResponse(body: [1, 2, 3])) }
        defer { server.stop() }
        let harness = Harness()
        defer { harness.close() }
        var done = false
        weak var transfer = harness.client.perform(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/")) { _ in done = true }
        #expect(transfer != nil)
        #expect(harness.drive(seconds: 5) { done })
        #expect(transfer == nil)
        weak var client = harness.client
        harness.close()
        #expect(client == nil)
        harness.reopen()
    }

    @Test func concurrentRequestsAllComplete() throws {
        let server = try TestHTTPServer { request, _ in .respond(httpResponse(body: Array(request.target.utf8))) }
        defer { server.stop() }
        let harness = Harness()
        defer { harness.close() }
        var results: [Int: Result<UpstreamResponse, UpstreamFailure>] = [:]
        for index in 0..<20 {
            harness.client.perform(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/\(index)")) { results[index] = $0 }
        }
        #expect(harness.client.activeTransfers == 20)
        #expect(harness.drive(seconds: 10) { results.count == 20 })
        for index in 0..<20 {
            #expect((try? results[index]?.get())?.body == Array("/\(index)".utf8))
        }
        #expect(harness.client.activeTransfers == 0)
    }

    @Test func transfersInFlightAreBounded() throws {
        let server = try TestHTTPServer { _, _ in .hang }
        defer { server.stop() }
        let harness = Harness(maxInFlight: 2)
        defer { harness.close() }
        var results: [Int: Result<UpstreamResponse, UpstreamFailure>] = [:]
        for index in 0..<3 {
            harness.client.perform(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/\(index)")) { results[index] = $0 }
        }
        #expect(harness.drive(seconds: 5) { results[2] != nil })
        #expect(results[2]?.failureReason == "too many proxied requests in flight (2)")
        #expect(results[0] == nil && results[1] == nil)
        #expect(harness.client.activeTransfers == 2)
    }

    @Test func deniedAddressIsNeverConnected() throws {
        let server = try TestHTTPServer { _, _ in .respond(httpResponse()) }
        defer { server.stop() }
        let deny = try AddressBlock.parseList("10.0.0.0/8, 127.0.0.1").get()
        let harness = Harness(egress: EgressPolicy(deny: deny))
        defer { harness.close() }
        #expect(harness.run(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/"))?.failureReason
            == "egress denied: 127.0.0.1")
        #expect(server.acceptedConnections == 0)
    }

    @Test func thisNodesOwnPortIsRefusedOnLocalAddresses() throws {
        let server = try TestHTTPServer { _, _ in .respond(httpResponse()) }
        defer { server.stop() }
        let harness = Harness(egress: EgressPolicy(ownPorts: [server.port]))
        defer { harness.close() }
        #expect(harness.run(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/"))?.failureReason
            == "egress denied: 127.0.0.1 port \(server.port) (this node)")
        #expect(server.acceptedConnections == 0)
    }

    @Test func bufferedBodiesShareOneBudget() throws {
        // Each response announces 1000 bytes, sends 600 and stalls.
        let server = try TestHTTPServer { _, _ in
            .respond(Array("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".utf8) + [UInt8](repeating: 1, count: 600))
        }
        defer { server.stop() }
        let harness = Harness(maxBufferedBytes: 1500)
        defer { harness.close() }
        var results: [Int: Result<UpstreamResponse, UpstreamFailure>] = [:]
        let first = harness.client.perform(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/0")) { results[0] = $0 }
        #expect(harness.drive(seconds: 5) { harness.client.bufferedBytes == 600 })
        // 1000 announced, 900 left: refused before any of it is buffered.
        harness.client.perform(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/1")) { results[1] = $0 }
        #expect(harness.drive(seconds: 5) { results[1] != nil })
        #expect(results[1]?.failureReason == "upstream responses buffered by this node are at their bound (1500 bytes); try again later")
        #expect((try? results[1]?.get()) == nil)
        #expect(harness.client.bufferedBytes == 600)
        first.cancel()
        #expect(harness.client.bufferedBytes == 0)
        #expect(results[0] == nil)
    }

    @Test func overloadFailuresAreMarkedAsSuch() {
        #expect(UpstreamFailure.buffersFull(limit: 1).isOverload)
        #expect(UpstreamFailure.tooManyLookups(1).isOverload)
    }

    @Test(arguments: [
        ("http://127.0.0.1:80/x", false), ("http://[::1]:8080/", false), ("https://10.0.0.1/a?b=c", false),
        ("http://[fe80::1%25eth0]:80/", false), ("http://localhost:1/", true), ("http://example.com/", true),
        ("http://user:pw@example.com:80/", true), ("http://1.2.3.4.example/", true), ("not a url", false),
    ])
    func hostNamesAreToldFromAddresses(url: String, isName: Bool) {
        #expect(UpstreamClient.hostIsName(url) == isName)
    }

    @Test func nameLookupsInFlightAreBounded() throws {
        let server = try TestHTTPServer { _, _ in .respond(httpResponse(body: [1])) }
        defer { server.stop() }
        let harness = Harness(maxPendingLookups: 1)
        defer { harness.close() }
        var results: [Int: Result<UpstreamResponse, UpstreamFailure>] = [:]
        for index in 0..<2 {
            harness.client.perform(UpstreamRequest(method: "GET", url: "http://localhost:\(server.port)/\(index)")) { results[index] = $0 }
        }
        // IP literals need no lookup and are not counted.
        harness.client.perform(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/2")) { results[2] = $0 }
        #expect(harness.client.pendingLookups == 1)
        #expect(harness.drive(seconds: 10) { results.count == 3 })
        #expect((try? results[0]?.get())?.body == [1])
        #expect(results[1]?.failureReason == "too many upstream host names being resolved (1); try again later")
        #expect((try? results[2]?.get())?.body == [1])
        #expect(harness.client.pendingLookups == 0)
        // A lookup abandoned by its transfer keeps its slot: libcurl's
        // detached helper thread may still be running it.
        let abandoned = harness.client.perform(UpstreamRequest(method: "GET", url: "http://localhost:\(server.port)/3")) { _ in }
        abandoned.cancel()
        #expect(harness.client.pendingLookups == 1)
        let refused = harness.run(UpstreamRequest(method: "GET", url: "http://localhost:\(server.port)/4"))
        #expect(refused?.failureReason == "too many upstream host names being resolved (1); try again later")
    }

    @Test func cancelledTransferNeverCompletes() throws {
        let server = try TestHTTPServer { _, _ in .hang }
        defer { server.stop() }
        let harness = Harness()
        defer { harness.close() }
        var calls = 0
        let transfer = harness.client.perform(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/")) { _ in calls += 1 }
        #expect(harness.drive(seconds: 5) { server.requests.count == 1 })
        transfer.cancel()
        #expect(harness.client.activeTransfers == 0)
        // The aborted connection is closed, not returned to the cache.
        #expect(harness.drive(seconds: 2) { server.openConnections == 0 })
        transfer.cancel()
        harness.drive(seconds: 0.2)
        #expect(calls == 0)

        // Cancelling before the loop even ran it, and cancelling a failure that was about to be reported.
        let early = harness.client.perform(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/")) { _ in calls += 1 }
        early.cancel()
        let invalid = harness.client.perform(UpstreamRequest(method: "GET", url: "http://127.0.0.1/", headers: [("Bad\nName", "x")])) { _ in calls += 1 }
        invalid.cancel()
        harness.drive(seconds: 0.2)
        #expect(calls == 0)
        #expect(harness.client.activeTransfers == 0)
    }

    @Test func completionsNeverRunInsidePerform() throws {
        let harness = Harness()
        defer { harness.close() }
        var reasons: [String] = []
        harness.client.perform(UpstreamRequest(method: "GET", url: "http://127.0.0.1/", headers: [("X", "a\r\nInjected: 1")])) {
            reasons.append($0.failureReason ?? "ok")
        }
        harness.client.perform(UpstreamRequest(method: "G E T", url: "http://127.0.0.1/")) { reasons.append($0.failureReason ?? "ok") }
        harness.client.perform(UpstreamRequest(method: "GET", url: "ftp://127.0.0.1/")) { reasons.append($0.failureReason ?? "ok") }
        harness.client.perform(UpstreamRequest(method: "GET", url: "not a url")) { reasons.append($0.failureReason ?? "ok") }
        #expect(reasons.isEmpty)
        #expect(harness.client.activeTransfers == 4)
        #expect(harness.drive(seconds: 5) { reasons.count == 4 })
        #expect(reasons.contains("invalid request header"))
        #expect(reasons.contains("invalid method"))
        #expect(reasons.contains { $0.contains("ftp") }, "\(reasons)")
        #expect(!reasons.contains("ok"))
    }

    @Test func shutdownFailsTransfersInFlight() throws {
        let server = try TestHTTPServer { request, _ in request.target == "/fast" ? .respond(httpResponse()) : .hang }
        defer { server.stop() }
        let harness = Harness()
        defer { harness.close() }
        // A cached idle connection, plus two transfers in flight.
        _ = try #require(try harness.run(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/fast"))?.get())
        var reasons: [String] = []
        harness.client.perform(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/a")) { reasons.append("a " + ($0.failureReason ?? "ok")) }
        harness.client.perform(UpstreamRequest(method: "POST", url: "http://127.0.0.1:\(server.port)/b", body: [1, 2])) {
            reasons.append("b " + ($0.failureReason ?? "ok"))
        }
        #expect(harness.drive(seconds: 5) { server.requests.count == 3 })
        harness.client.shutdown()
        #expect(reasons == ["a shutting down", "b shutting down"])
        #expect(harness.client.activeTransfers == 0)
        #expect(harness.drive(seconds: 2) { server.openConnections == 0 })

        // Afterwards requests fail, on a later turn; a second shutdown is harmless.
        var late: String?
        harness.client.perform(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/fast")) { late = $0.failureReason }
        #expect(late == nil)
        #expect(harness.drive(seconds: 1) { late != nil })
        #expect(late == "shutting down")
        harness.client.shutdown()
    }

    @Test func completionsMayStartCancelOrShutDown() throws {
        let server = try TestHTTPServer { request, _ in request.target == "/hang" ? .hang : .respond(httpResponse(body: Array(request.target.utf8))) }
        defer { server.stop() }
        let harness = Harness()
        defer { harness.close() }
        let base = "http://127.0.0.1:\(server.port)"
        var log: [String] = []
        let hanging = harness.client.perform(UpstreamRequest(method: "GET", url: "\(base)/hang")) { _ in log.append("hang completed") }
        harness.client.perform(UpstreamRequest(method: "GET", url: "\(base)/first")) { result in
            log.append(String(decoding: (try? result.get())?.body ?? [], as: UTF8.self))
            hanging.cancel()
            harness.client.perform(UpstreamRequest(method: "GET", url: "\(base)/second")) { result in
                log.append(String(decoding: (try? result.get())?.body ?? [], as: UTF8.self))
                harness.client.perform(UpstreamRequest(method: "GET", url: "\(base)/hang")) { log.append("third " + ($0.failureReason ?? "ok")) }
                harness.client.shutdown()
            }
        }
        #expect(harness.drive(seconds: 5) { log.count == 3 })
        harness.drive(seconds: 0.1)
        #expect(log == ["/first", "/second", "third shutting down"])
    }

    @Test func releasingTheClientFromItsOwnCompletionIsSafe() throws {
        let server = try TestHTTPServer { _, _ in .respond(httpResponse()) }
        defer { server.stop() }
        guard let loop = ev_loop_new(0) else { throw TestError("ev_loop_new failed") }
        defer { ev_loop_destroy(loop) }
        var client: UpstreamClient? = UpstreamClient(rawLoop: loop, logger: Logger(label: "test.upstream"), totalTimeoutMilliseconds: 5000,
                                                     maxResponseBodyBytes: 1000)
        var status = 0
        client?.perform(UpstreamRequest(method: "GET", url: "http://127.0.0.1:\(server.port)/")) { result in
            status = (try? result.get())?.status ?? -1
            client = nil
        }
        let deadline = monotonicNow() + 5
        while client != nil && monotonicNow() < deadline { ev_run(loop, Int32(EVRUN_ONCE)) }
        #expect(client == nil && status == 200)
    }
}

// MARK: - Helpers

/// A set-up step of a test failed (socket, bind, loop).
private struct TestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

private extension Result where Failure == UpstreamFailure {
    var failureReason: String? {
        if case .failure(let failure) = self { return failure.reason }
        return nil
    }
}

private func monotonicNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// A raw HTTP/1.1 response; Content-Length is added unless given.
private func httpResponse(status: Int = 200, reason: String = "OK", headers: [(String, String)] = [], body: [UInt8] = []) -> [UInt8] {
    var head = "HTTP/1.1 \(status) \(reason)\r\n"
    for (name, value) in headers { head += "\(name): \(value)\r\n" }
    if !headers.contains(where: { $0.0.lowercased() == "content-length" }) { head += "Content-Length: \(body.count)\r\n" }
    head += "\r\n"
    return Array(head.utf8) + body
}

/// A loopback port nothing listens on (bound, never listened, then closed).
private func unusedPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw TestError("socket failed") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
    }
    guard bound else { throw TestError("bind failed") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A private libev loop with a client on it, and a way to run the loop
/// until something happened.
private final class Harness {
    private(set) var loop: OpaquePointer!
    private(set) var client: UpstreamClient!
    private var wake: UnsafeMutablePointer<ev_timer>!
    private let totalTimeoutMilliseconds: Int
    private let maxResponseBodyBytes: Int
    private let maxInFlight: Int
    private let egress: EgressPolicy
    private let maxBufferedBytes: Int
    private let maxPendingLookups: Int

    init(totalTimeoutMilliseconds: Int = 5000, maxResponseBodyBytes: Int = 4 << 20, maxInFlight: Int = 1024,
         egress: EgressPolicy = EgressPolicy(), maxBufferedBytes: Int = .max, maxPendingLookups: Int = .max) {
        self.totalTimeoutMilliseconds = totalTimeoutMilliseconds
        self.maxResponseBodyBytes = maxResponseBodyBytes
        self.maxInFlight = maxInFlight
        self.egress = egress
        self.maxBufferedBytes = maxBufferedBytes
        self.maxPendingLookups = maxPendingLookups
        reopen()
    }

    /// A fresh loop and client (after `close`).
    func reopen() {
        loop = ev_loop_new(0)!
        var logger = Logger(label: "test.upstream")
        logger.logLevel = .critical
        client = UpstreamClient(rawLoop: loop, logger: logger, totalTimeoutMilliseconds: totalTimeoutMilliseconds,
                                connectTimeoutMilliseconds: 2000, maxResponseBodyBytes: maxResponseBodyBytes, maxConnections: 8,
                                maxInFlight: maxInFlight, egress: egress, maxBufferedBytes: maxBufferedBytes,
                                maxPendingLookups: maxPendingLookups)
        // Keeps each loop turn short, so `drive` re-checks its condition.
        wake = .allocate(capacity: 1)
        sy_ev_timer_init(wake, { _, _, _ in }, 0.01, 0.01)
    }

    /// Runs one request to completion (nil if it never completed).
    func run(_ request: UpstreamRequest, seconds: Double = 10) -> Result<UpstreamResponse, UpstreamFailure>? {
        var result: Result<UpstreamResponse, UpstreamFailure>?
        var calls = 0
        client.perform(request) { result = $0; calls += 1 }
        drive(seconds: seconds) { result != nil }
        // Exactly once: nothing more arrives on later turns.
        drive(seconds: 0.02)
        #expect(calls <= 1)
        return result
    }

    /// Runs the loop until `condition` holds or `seconds` pass; returns whether it held.
    @discardableResult
    func drive(seconds: Double, until condition: () -> Bool = { false }) -> Bool {
        ev_timer_start(loop, wake)
        defer { ev_timer_stop(loop, wake) }
        let deadline = monotonicNow() + seconds
        while monotonicNow() < deadline {
            if condition() { return true }
            ev_run(loop, Int32(EVRUN_ONCE))
        }
        return condition()
    }

    func close() {
        client.shutdown()
        client = nil
        ev_timer_stop(loop, wake)
        wake.deallocate()
        ev_loop_destroy(loop)
    }
}

/// A blocking HTTP/1.1 server on 127.0.0.1 with a thread per connection.
/// It reads a request head and a Content-Length body, records them, and does
/// what the handler says; connections are kept alive until the peer closes.
private final class TestHTTPServer: @unchecked Sendable {
    /// One request as it arrived on the wire.
    struct Received {
        var method: String
        var target: String
        var headers: [(String, String)]
        var body: [UInt8]
    }

    /// What to do with a request.
    enum Reply {
        case respond([UInt8])
        /// Never answer; wait for the peer to go away.
        case hang
        /// Close the connection without answering.
        case close
    }

    let port: Int
    private let listenFD: Int32
    private let greeting: [UInt8]?
    private let handler: (Received, Int) -> Reply
    private let lock = NSLock()
    private var stopped = false
    private var received: [Received] = []
    private var accepted = 0
    /// Open connection descriptors; only ever shut down or closed under `lock`,
    /// so a number reused by another test's socket is never touched.
    private var connections: Set<Int32> = []

    /// - Parameters:
    ///   - greeting: when set, written on accept, then the connection is closed (no HTTP).
    ///   - handler: gets each request and its index among all requests received.
    init(greeting: [UInt8]? = nil, handler: @escaping (Received, Int) -> Reply) throws {
        self.greeting = greeting
        self.handler = handler
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestError("socket failed") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 64) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard ok else {
            close(fd)
            throw TestError("bind/listen failed")
        }
        listenFD = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    var requests: [Received] { lock.withLock { received } }
    var acceptedConnections: Int { lock.withLock { accepted } }
    var openConnections: Int { lock.withLock { connections.count } }

    func stop() {
        lock.withLock {
            stopped = true
            // Wakes the blocked accept() and recv()s; the threads close their descriptors.
            Glibc.shutdown(listenFD, Int32(SHUT_RDWR))
            for fd in connections { Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    private func acceptLoop() {
        while true {
            let fd = accept(listenFD, nil, nil)
            if fd < 0 {
                if errno == EINTR { continue }
                break
            }
            let keep: Bool = lock.withLock {
                if stopped { return false }
                accepted += 1
                connections.insert(fd)
                return true
            }
            guard keep else {
                close(fd)
                break
            }
            Thread.detachNewThread { [self] in serve(fd) }
        }
        close(listenFD)
    }

    private func serve(_ fd: Int32) {
        defer {
            lock.withLock {
                connections.remove(fd)
                close(fd)
            }
        }
        if let greeting {
            writeAll(fd, greeting)
            return
        }
        var buffer: [UInt8] = []
        while let request = readRequest(fd, &buffer) {
            let index: Int = lock.withLock {
                received.append(request)
                return received.count - 1
            }
            switch handler(request, index) {
            case .respond(let bytes):
                guard writeAll(fd, bytes) else { return }
            case .hang:
                var scratch = [UInt8](repeating: 0, count: 4096)
                while recv(fd, &scratch, scratch.count, 0) > 0 {}
                return
            case .close:
                return
            }
        }
    }

    /// Reads one request (head + Content-Length body); nil when the peer closed.
    private func readRequest(_ fd: Int32, _ buffer: inout [UInt8]) -> Received? {
        let terminator: [UInt8] = [13, 10, 13, 10]
        var headEnd: Int?
        while true {
            if let end = find(terminator, in: buffer) {
                headEnd = end
                break
            }
            guard receive(fd, &buffer) else { return nil }
        }
        guard let headEnd else { return nil }
        let head = String(decoding: buffer[0..<headEnd], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        guard requestLine.count == 3 else { return nil }
        var headers: [(String, String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        let length = headers.first { $0.0.lowercased() == "content-length" }.flatMap { Int($0.1) } ?? 0
        let bodyStart = headEnd + 4
        while buffer.count < bodyStart + length {
            guard receive(fd, &buffer) else { return nil }
        }
        let body = Array(buffer[bodyStart..<(bodyStart + length)])
        buffer.removeFirst(bodyStart + length)
        return Received(method: String(requestLine[0]), target: String(requestLine[1]), headers: headers, body: body)
    }

    private func receive(_ fd: Int32, _ buffer: inout [UInt8]) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let count = recv(fd, &chunk, chunk.count, 0)
        if count <= 0 { return false }
        buffer.append(contentsOf: chunk[0..<count])
        return true
    }

    @discardableResult
    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written <= 0 { return false }
            offset += written
        }
        return true
    }

    private func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count) where haystack[start] == needle[0] {
            if Array(haystack[start..<(start + needle.count)]) == needle { return start }
        }
        return nil
    }
}
