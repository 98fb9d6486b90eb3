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
