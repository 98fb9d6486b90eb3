/// `POST /api/v1/proxy` (rest.md §4): body rules of §2.2, validation of
/// §4.2 (`ProxyRequest`), then `ProxyService` chooses the client and runs
/// the request on its node. Validation errors and "no matches" on a node
/// without peers are answered at once; everything else later (the upstream
/// exchange is asynchronous).
enum RESTProxy {
    static func respond(node: SingyeongNode, head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer,
                        peer: PeerAddress, later: @escaping (HTTPResponse) -> Void,
                        onCancel: (@escaping () -> Void) -> Void) -> HTTPResponse? {
        let fields: ValueObject
        switch RESTBody.fields(head, in: buffer, body: body) {
        case .success(let f): fields = f
        case .failure(let response):
            node.gateway.metrics.countProxyResponse(status: response.status)
            return response
        }
        let request: ProxyRequest
        switch ProxyRequest.validate(fields, cache: node.gateway.queryCache) {
        case .success(let r): request = r
        case .failure(let response):
            node.gateway.metrics.countProxyResponse(status: response.status)
            return response
        }
        var immediate: HTTPResponse?
        var synchronous = true
        let metrics = node.gateway.metrics
        let exchange = node.proxy.handle(request, callerIP: peer.host) { response in
            metrics.countProxyResponse(status: response.status)
            if synchronous { immediate = response } else { later(response) }
        }
        synchronous = false
        if immediate == nil { onCancel { exchange.cancel() } }
        return immediate
    }
}

/// `GET /api/v1/discovery/tags?q=<JSON array of strings>` (rest.md §6,
/// Recommended): the applications, anywhere in the cluster, with at least
/// one non-restricted client holding every requested tag; distinct,
/// ascending by bytes.
enum RESTDiscovery {
    static func respond(node: SingyeongNode, head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer,
                        later: @escaping (HTTPResponse) -> Void) -> HTTPResponse? {
        guard let range = head.query,
              let q = URLQuery.value(of: "q", in: UnsafeRawBufferPointer(rebasing: buffer[range])) else {
            return .json(400, "{\"status\":\"error\",\"error\":\"no query parameter\"}")
        }
        guard let tags = RESTBody.stringArray(q) else {
            return .json(400, "{\"status\":\"error\",\"error\":\"invalid query parameter\"}")
        }
        if tags.isEmpty { return answer([]) }
        let local = Set(node.gateway.store.applications(withTags: tags))
        guard let cluster = node.cluster else { return answer(local) }
        var immediate: HTTPResponse?
        var synchronous = true
        cluster.gatherTags(tags, local: local) { applications in
            let response = answer(applications)
            if synchronous { immediate = response } else { later(response) }
        }
        synchronous = false
        return immediate
    }

    private static func answer<S: Sequence>(_ applications: S) -> HTTPResponse where S.Element == String {
        let sorted = applications.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        var w = FrameWriter(encoding: .json, capacity: 64 + 32 * sorted.count)
        w.beginObject(count: 2)
        w.key("status"); w.string("ok")
        w.key("result"); w.beginArray(count: sorted.count)
        for id in sorted { w.element(); w.string(id) }
        w.endArray()
        w.endObject()
        return HTTPResponse(status: 200, headers: [("content-type", "application/json; charset=utf-8")], body: w.bytes)
    }
}
