/// `GET /api/v1/discovery/tags?q=<JSON array of strings>` (rest.md §6,
/// Recommended): the applications, anywhere in the cluster, with at least
/// one non-restricted client holding every requested tag; distinct,
/// ascending by bytes.
enum RESTDiscovery {
    static func respond(discovery: ApplicationDiscoveryService, head: HTTPRequestHead, in buffer: UnsafeRawBufferPointer,
                        later: @escaping (HTTPResponse) -> Void) -> HTTPResponse? {
        guard let range = head.query,
              let q = URLQuery.value(of: "q", in: UnsafeRawBufferPointer(rebasing: buffer[range])) else {
            return .json(400, "{\"status\":\"error\",\"error\":\"no query parameter\"}")
        }
        guard let tags = RESTBody.stringArray(q) else {
            return .json(400, "{\"status\":\"error\",\"error\":\"invalid query parameter\"}")
        }
        if tags.isEmpty { return answer([]) }
        var immediate: HTTPResponse?
        var synchronous = true
        discovery.discoverApplications(withTags: tags) { applications in
            let response = answer(applications)
            if synchronous { immediate = response } else { later(response) }
        }
        synchronous = false
        return immediate
    }

    /// `{"status":"ok","result":[…]}`.
    private static func answer<S: Sequence>(_ applications: S) -> HTTPResponse where S.Element == String {
        let sorted = applications.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        var body: [UInt8] = []
        body.reserveCapacity(64 + 32 * sorted.count)
        body.append(contentsOf: "{\"status\":\"ok\",\"result\":[".utf8)
        for (i, id) in sorted.enumerated() {
            if i > 0 { body.append(UInt8(ascii: ",")) }
            RESTJSON.appendString(id, to: &body)
        }
        body.append(contentsOf: "]}".utf8)
        return RESTJSON.response(200, body)
    }
}
