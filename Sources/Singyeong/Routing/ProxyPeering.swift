/// `/api/v1/proxy` across nodes (cluster.md §4.5), in the two directions,
/// as protocols Routing owns so that Proxy and Cluster (one layer) never
/// name each other: the proxy forwards a request to the node holding the
/// chosen client (`ProxyForwarding`, the cluster implements it) and runs the
/// requests peers forward here (`LocalProxyRunner`, the proxy implements it).
protocol ProxyForwarding: AnyObject {
    /// Asks `node` to run the request for its client `handle`. `completion`
    /// gets the upstream's answer as relayed, or why it failed (the peer went
    /// away: 502; stayed silent: 504; ...). Returns the id to cancel it with,
    /// nil when it failed at once.
    func forwardProxy(_ request: ForwardedProxyRequest, handle: UInt64, callerIP: String, to node: RemoteNode,
                      completion: @escaping (ForwardedProxyOutcome) -> Void) -> UInt64?
    /// The caller went away: forget the request and stop it on the peer.
    func cancelForwardedProxy(_ id: UInt64)
}

/// The request line, headers and body of a proxied request, as forwarded.
struct ForwardedProxyRequest {
    var method: String
    var route: String
    var headers: [(String, String)]
    var body: [UInt8]?
}

/// How a forwarded proxied request ended.
enum ForwardedProxyOutcome {
    /// The upstream's response, as the peer relayed it (headers unfiltered).
    case relayed(status: Int, headers: [(String, String)], body: [UInt8])
    /// It did not get an answer: `reason` for the caller, with `status`.
    case failed(reason: String, status: Int)
}

/// Runs, on a local client, the proxied requests peers forward here.
protocol LocalProxyRunner: AnyObject {
    /// Runs the request on `record`'s proxy address; `completion` gets the
    /// response to relay (never inside this call). Returns the transfer to
    /// cancel it with, nil when it ended at once.
    func run(_ request: ForwardedProxyRequest, on record: ClientRecord, callerIP: String,
             completion: @escaping (HTTPResponse) -> Void) -> ProxyTransfer?
}

/// An upstream request in flight, cancellable.
protocol ProxyTransfer: AnyObject {
    func cancel()
}
