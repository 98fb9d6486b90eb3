/// A node that holds some candidates, as routing sees it (the cluster's
/// peer link is the one conformer). Routing only carries it from the
/// cluster's answers to the cluster's delivery; owning the protocol here
/// keeps Routing below Cluster.
protocol RemoteNode: AnyObject {}

/// The peers routing may ask for candidates (the part of `PeerNetwork` that
/// `Router.plan` and `resolve` use).
protocol PeerCandidates: AnyObject {
    /// Whether some visible peer may hold clients of `application` (nil:
    /// any application), so resolving must wait for peers.
    func mayHaveCandidates(ofApplication application: String?) -> Bool

    /// The only peer that may hold candidates for `query`, when exactly one may.
    func onlyPeer(for query: Query) -> RemoteNode?

    /// Sends the query (its encoded bytes in `encoding`) to every visible
    /// peer that may have candidates and calls `completion` with their
    /// matches (and, with `withFallback`, the base-filter clients of peers
    /// without a match) once all answered or the deadline passed.
    func scatter(encodedQuery: UnsafeRawBufferPointer, encoding: PayloadEncoding, application: String?, descriptors: Bool,
                 withFallback: Bool, completion: @escaping ([Candidate], [Candidate]) -> Void)
}
