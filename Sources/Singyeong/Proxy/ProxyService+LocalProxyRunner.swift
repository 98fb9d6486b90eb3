/// The proxy runs the requests peers forward to this node's clients.
extension ProxyService: LocalProxyRunner {
    func run(_ request: ForwardedProxyRequest, on record: ClientRecord, callerIP: String,
             completion: @escaping (HTTPResponse) -> Void) -> ProxyTransfer? {
        execute(request.method, route: request.route, headers: request.headers, body: request.body, on: record,
                callerIP: callerIP, completion: completion)
    }
}

/// An upstream transfer is what a peer's forwarded request cancels.
extension UpstreamTransfer: ProxyTransfer {}
