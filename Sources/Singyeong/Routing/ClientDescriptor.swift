/// The client descriptor of `POST /api/v1/query` and QUERY_NODES (rest.md
/// §3.2): ids, metadata as set (reserved keys included), each key's type, the
/// queues the client waits on, and its proxy address.
enum ClientDescriptor {
    static func writeList(_ candidates: ArraySlice<Candidate>, into w: inout FrameWriter) {
        let listed = candidates.filter { $0.record != nil || $0.descriptor != nil }
        w.beginArray(count: listed.count)
        for candidate in listed {
            w.element()
            if let record = candidate.record {
                write(record, into: &w)
            } else if let descriptor = candidate.descriptor {
                // A peer's descriptor, as the MessagePack it sent.
                descriptor.withUnsafeBytes { w.messagePackValue($0) }
            }
        }
        w.endArray()
    }

    static func write(_ record: ClientRecord, into w: inout FrameWriter) {
        w.beginObject(count: 6)
        w.key("app_id"); w.string(record.applicationID)
        w.key("client_id"); w.string(record.clientID)
        w.key("metadata"); w.value(record.metadata.objectValue)
        w.key("metadata_types"); w.value(record.metadata.typesValue)
        w.key("queues"); w.beginArray(count: record.waitingQueues.count)
        for name in record.waitingQueues {
            w.element()
            w.string(name)
        }
        w.endArray()
        w.key("socket_ip")
        if let ip = record.socketIP { w.string(ip) } else { w.null() }
        w.endObject()
    }
}
