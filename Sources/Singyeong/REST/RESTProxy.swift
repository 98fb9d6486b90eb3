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
