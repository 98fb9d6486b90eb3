/// `GET /api/v1/queues` (every queue) and `GET /api/v1/queues/<name>` (one,
/// the name percent-decoded): per queue the messages queued, unacknowledged
/// and dead, the clients waiting, the owner node and the age of the oldest
/// queued message (issue 14). A queue that holds nothing and has nobody
/// waiting does not exist (queues spring into existence when named), so
/// one by name answers zeros rather than 404.
enum RESTQueues {
    static let prefix: StaticString = "/api/v1/queues/"

    static func respondList(queues: QueueInspectionService) -> HTTPResponse {
        guard let all = queues.queueSummaries() else { return unavailable }
        let items = all.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }.map(json)
        let store = queues.queueStore()
        return .json(200, "{\"store\":\(JSONText.quoted(store?.kind ?? "memory")),\"store_available\":\(store?.available ?? false),"
                     + "\"queues\":[\(items.joined(separator: ","))]}")
    }

    /// `encodedName`: the path after the prefix.
    static func respondOne(queues: QueueInspectionService, encodedName: UnsafeRawBufferPointer) -> HTTPResponse {
        guard let name = percentDecoded(encodedName), (1...QueueName.maxLength).contains(name.utf8.count) else {
            return .json(400, "{\"status\":\"error\",\"error\":\"queue name: 1-\(QueueName.maxLength) bytes of UTF-8, percent-encoded\"}")
        }
        guard let summary = queues.queueSummary(named: name) else { return unavailable }
        return .json(200, json(summary))
    }

    private static var unavailable: HTTPResponse {
        .json(503, "{\"status\":\"error\",\"error\":\"queues are not available on this node\"}")
    }

    private static func json(_ q: QueueSummary) -> String {
        "{\"name\":\(JSONText.quoted(q.name)),\"queued\":\(q.queued),\"unacked\":\(q.unacked),\"dead\":\(q.dead),"
            + "\"waiting\":\(q.waiting),\"owner\":\(q.owner.map(JSONText.quoted) ?? "null"),\"loaded\":\(q.loaded),"
            + "\"oldest_queued_age_ms\":\(q.oldestQueuedAge.map(String.init) ?? "null")}"
    }

    /// A path segment's percent-decoding (`+` stays `+`); nil for a bad
    /// escape or bytes that are not UTF-8.
    static func percentDecoded(_ bytes: UnsafeRawBufferPointer) -> String? {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "%") {
                guard i + 2 < bytes.count,
                      let hi = URLQuery.hexValue(bytes[i + 1]), let lo = URLQuery.hexValue(bytes[i + 2]) else { return nil }
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(validating: out, as: UTF8.self)
    }
}
