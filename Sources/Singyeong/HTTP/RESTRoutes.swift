/// The REST routes (rest.md §1). Only what exists in this build is routed;
/// every other path and method gets the spec's 404 body, without
/// authorization (§5).
enum RESTRoutes {
    /// `/gateway/websocket` or `/gateway/websocket/` (protocol.md §1.2).
    static func isGatewayPath(_ buffer: UnsafeRawBufferPointer, _ path: Range<Int>) -> Bool {
        matches(buffer, path, "/gateway/websocket") || matches(buffer, path, "/gateway/websocket/")
    }

    /// The response now, or nil when it will come through `later` (a query
    /// that waits for peer nodes).
    static func respond(node: SingyeongNode, head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer,
                        body: UnsafeRawBufferPointer, peer: PeerAddress, later: @escaping (HTTPResponse) -> Void) -> HTTPResponse? {
        let method = head.method, path = head.path
        if method == .get || method == .head {
            if matches(buffer, path, "/api/version") {
                return .json(200, "{\"api\":\"v1\",\"singyeong\":\(JSONText.quoted(SingyeongVersion.string))}")
            }
            if matches(buffer, path, "/") || path.isEmpty {
                var response = HTTPResponse(status: 302, headers: [("location", "/gateway/websocket"), ("content-type", "text/html; charset=utf-8")])
                response.body = Array("<html><body>You are being <a href=\"/gateway/websocket\">redirected</a>.</body></html>".utf8)
                return response
            }
        }
        if method == .post && matches(buffer, path, "/api/v1/query") {
            if let refusal = authorize(node: node, head: head, in: buffer, peer: peer) { return refusal }
            return RESTQuery.respond(node: node, head: head, in: buffer, body: body, later: later)
        }
        return notFound
    }

    /// rest.md §2.1: the raw first `Authorization` header must equal AUTH
    /// (constant-time); unset AUTH allows everything. Failures count toward
    /// the same per-address limit as gateway passwords.
    static func authorize(node: SingyeongNode, head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer, peer: PeerAddress) -> HTTPResponse? {
        let auth = node.gateway.auth
        guard auth.isEnabled else { return nil }
        let host = peer.host
        let now = node.loop.now
        if auth.isBlocked(host, now: now) {
            node.logger.warning("REST request refused: too many failed authentication attempts", metadata: ["peer": "\(host)"])
            return notAuthorized
        }
        if let value = head.firstValue(of: "authorization", in: buffer),
           auth.matches(Array(UnsafeRawBufferPointer(rebasing: buffer[value]))) {
            return nil
        }
        auth.recordFailure(host, now: now)
        return notAuthorized
    }

    static var notAuthorized: HTTPResponse { .json(401, "{\"status\":\"error\",\"error\":\"not authorized\"}") }

    /// rest.md §5: the same body for every unknown route and method.
    static var notFound: HTTPResponse { .json(404, "{\"code\":404,\"error\":\"not found\"}") }

    /// Exact byte comparison of a path with a literal.
    static func matches(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>, _ literal: StaticString) -> Bool {
        guard range.count == literal.utf8CodeUnitCount else { return false }
        let bytes = literal.utf8Start
        for i in 0..<range.count where buffer[range.lowerBound + i] != bytes[i] { return false }
        return true
    }
}
