/// `POST /api/v1/query` (rest.md §3.2): the body is a query; the answer is
/// the array of client descriptors the gateway's QUERY_NODES also returns.
///
/// Body rules: `RESTBody` (rest.md §2.2); an empty result then fails query
/// validation.
enum RESTQuery {
    static func respond(clients: ClientQueryService, head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer,
                        body: UnsafeRawBufferPointer, later: @escaping (HTTPResponse) -> Void) -> HTTPResponse? {
        let value: Value
        switch RESTBody.fields(head, in: buffer, body: body) {
        case .success(let fields): value = .object(fields)
        case .failure(let response): return response
        }
        let query: Query
        switch Query.parse(value, context: "query") {
        case .success(let q): query = q
        case .failure(let error):
            // {"errors":["invalid query: …"]}
            var errorBody = Array("{\"errors\":[".utf8)
            RESTJSON.appendString("invalid query: \(error.detail)", to: &errorBody)
            errorBody.append(contentsOf: "]}".utf8)
            return RESTJSON.response(400, errorBody)
        }
        var immediate: HTTPResponse?
        var synchronous = true
        // Peers get the query as JSON text (re-encoded from `value`: the body
        // may have been a non-object or another content type, which counts
        // as `{}`).
        clients.describeClients(matching: query, value: value) { descriptors in
            let response = RESTJSON.response(200, descriptors)
            if synchronous { immediate = response } else { later(response) }
        }
        synchronous = false
        return immediate
    }
}
