/// `POST /api/v1/query` (rest.md §3.2): the body is a query; the answer is
/// the array of client descriptors the gateway's QUERY_NODES also returns.
///
/// Body rules: `RESTBody` (rest.md §2.2); an empty result then fails query
/// validation.
enum RESTQuery {
    static func respond(node: SingyeongNode, head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer,
                        later: @escaping (HTTPResponse) -> Void) -> HTTPResponse? {
        var value: Value
        switch RESTBody.fields(head, in: buffer, body: body) {
        case .success(let fields): value = .object(fields)
        case .failure(let response): return response
        }
        let query: Query
        switch Query.parse(value, context: "query") {
        case .success(let q): query = q
        case .failure(let error):
            var w = FrameWriter(encoding: .json)
            w.beginObject(count: 1)
            w.key("errors"); w.beginArray(count: 1); w.element(); w.string("invalid query: \(error.detail)"); w.endArray()
            w.endObject()
            return HTTPResponse(status: 400, headers: [("content-type", "application/json; charset=utf-8")], body: w.bytes)
        }
        var immediate: HTTPResponse?
        var synchronous = true
        let router = node.gateway.router
        // Peers get the query as JSON text (re-encoded: the body may have been
        // a non-object or another content type, which counts as `{}`).
        var encoded: [UInt8] = []
        let askPeers = router.mustAskPeers(query)
        if askPeers { value.appendJSON(to: &encoded) }
        encoded.withUnsafeBytes { bytes in
            router.resolve(query, encoded: askPeers ? bytes : nil, purpose: .list) { candidates in
                var w = FrameWriter(encoding: .json, capacity: 256 * max(candidates.count, 1))
                ClientDescriptor.writeList(candidates, into: &w)
                let response = HTTPResponse(status: 200, headers: [("content-type", "application/json; charset=utf-8")], body: w.bytes)
                if synchronous { immediate = response } else { later(response) }
            }
        }
        synchronous = false
        return immediate
    }
}
