/// `POST /api/v1/proxy` (rest.md §4): body rules of §2.2, then the proxy
/// service validates the request (§4.2), chooses the client and runs the
/// request on its node. Validation errors and "no matches" on a node
/// without peers are answered at once; everything else later (the upstream
/// exchange is asynchronous). Every answer is counted by status.
enum RESTProxy {
    static func respond(proxy: ProxyExchangeService, metrics: Metrics, head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer,
                        body: UnsafeRawBufferPointer, peer: PeerAddress, later: @escaping (HTTPResponse) -> Void,
                        onCancel: (@escaping () -> Void) -> Void) -> HTTPResponse? {
        let fields: ValueObject
        switch RESTBody.fields(head, in: buffer, body: body) {
        case .success(let f): fields = f
        case .failure(let response):
            metrics.countProxyResponse(status: response.status)
            return response
        }
        var immediate: HTTPResponse?
        var synchronous = true
        let started = proxy.startExchange(fields, callerIP: peer.host) { response in
            metrics.countProxyResponse(status: response.status)
            if synchronous { immediate = response } else { later(response) }
        }
        synchronous = false
        switch started {
        case .failure(let response):
            metrics.countProxyResponse(status: response.status)
            return response
        case .success(let exchange):
            if immediate == nil { onCancel { exchange.cancel() } }
            return immediate
        }
    }
}
