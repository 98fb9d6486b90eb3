/// `GET /metrics` in the Prometheus text exposition format (version 0.0.4),
/// built on request from the node's counters and its live state (read
/// through `MetricsSource`). A scrape is rare next to messages, so plain
/// string building is fine here.
enum MetricsExposition {
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    static func render(_ node: some MetricsSource) -> String {
        var out = ""
        out.reserveCapacity(4096)
        let metrics = node.metrics
        let client = node.clientListenerGauges
        let cluster = node.clusterGauges

        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func sample(_ name: String, _ labels: String, _ value: String) {
            out += "\(name){\(labels)} \(value)\n"
        }
        func sample(_ name: String, _ value: String) {
            out += "\(name) \(value)\n"
        }

        family("singyeong_build_info", "gauge", "Version of the running binary.")
        sample("singyeong_build_info", "version=\"\(node.buildVersion)\"", "1")
        family("singyeong_ready", "gauge", "1 when the node serves (listening; registered when clustering), 0 while starting or stopping.")
        sample("singyeong_ready", node.isReady ? "1" : "0")

        family("singyeong_connections", "gauge", "Open connections on the client port (HTTP and WebSocket).")
        sample("singyeong_connections", "\(client.connections)")
        family("singyeong_connections_accepted_total", "counter", "Connections accepted on the client port.")
        sample("singyeong_connections_accepted_total", "\(client.acceptedTotal)")
        family("singyeong_clients", "gauge", "Identified gateway clients on this node.")
        sample("singyeong_clients", "\(node.identifiedClientCount)")

        family("singyeong_messages_routed_total", "counter", "Dispatch events accepted from clients for routing.")
        for event in Metrics.Event.allCases { sample("singyeong_messages_routed_total", "event=\"\(event.label)\"", "\(metrics.value(event, .routed))") }
        family("singyeong_messages_delivered_total", "counter", "Frames delivered to clients of this node.")
        for event in [Metrics.Event.send, .broadcast] {
            sample("singyeong_messages_delivered_total", "event=\"\(event.label)\"", "\(metrics.value(event, .delivered))")
        }
        family("singyeong_messages_no_route_total", "counter", "Messages with no target (sender told with op 3 no_route).")
        for event in [Metrics.Event.send, .broadcast] {
            sample("singyeong_messages_no_route_total", "event=\"\(event.label)\"", "\(metrics.value(event, .noRoute))")
        }
        family("singyeong_messages_dropped_total", "counter", "Droppable messages with no target, dropped as asked.")
        for event in [Metrics.Event.send, .broadcast] {
            sample("singyeong_messages_dropped_total", "event=\"\(event.label)\"", "\(metrics.value(event, .dropped))")
        }

        let listeners = [("client", client)] + (cluster.map { [("cluster", $0.listener)] } ?? [])
        family("singyeong_bytes_received_total", "counter", "Bytes read from sockets (after TLS), by listener.")
        for (name, listener) in listeners { sample("singyeong_bytes_received_total", "listener=\"\(name)\"", "\(listener.bytesIn)") }
        family("singyeong_bytes_sent_total", "counter", "Bytes written to sockets (before TLS), by listener.")
        for (name, listener) in listeners { sample("singyeong_bytes_sent_total", "listener=\"\(name)\"", "\(listener.bytesOut)") }
        family("singyeong_slow_consumer_disconnects_total", "counter", "Connections closed because their unsent output passed MAX_PENDING_BYTES.")
        sample("singyeong_slow_consumer_disconnects_total", "\(client.slowConsumerDisconnects)")

        let h = metrics.queryEvaluation
        family("singyeong_query_evaluation_seconds", "histogram",
               "Time to evaluate a routing query over this node's clients (1 in \(Metrics.sampleEvery) queries sampled).")
        var cumulative: UInt64 = 0
        for (i, bound) in h.bounds.enumerated() {
            cumulative &+= h.buckets[i]
            sample("singyeong_query_evaluation_seconds_bucket", "le=\"\(bound)\"", "\(cumulative)")
        }
        cumulative &+= h.buckets[h.bounds.count]
        sample("singyeong_query_evaluation_seconds_bucket", "le=\"+Inf\"", "\(cumulative)")
        sample("singyeong_query_evaluation_seconds_sum", "\(h.sum)")
        sample("singyeong_query_evaluation_seconds_count", "\(h.count)")

        family("singyeong_proxy_requests_total", "counter", "POST /api/v1/proxy answers by HTTP status (refusals and errors included).")
        for (status, n) in metrics.proxyResponses.sorted(by: { $0.key < $1.key }) {
            sample("singyeong_proxy_requests_total", "status=\"\(status)\"", "\(n)")
        }
        family("singyeong_proxy_upstream_in_flight", "gauge", "Upstream HTTP exchanges running on this node.")
        sample("singyeong_proxy_upstream_in_flight", "\(node.upstreamTransfersInFlight)")

        if let q = node.queueGauges {
            family("singyeong_queues", "gauge", "Queues holding messages or waiting clients.")
            sample("singyeong_queues", "\(q.queues)")
            family("singyeong_queue_messages", "gauge", "Messages held by every queue, by state.")
            sample("singyeong_queue_messages", "state=\"queued\"", "\(q.queued)")
            sample("singyeong_queue_messages", "state=\"unacked\"", "\(q.unacked)")
            sample("singyeong_queue_messages", "state=\"dead\"", "\(q.dead)")
            family("singyeong_queue_waiting_clients", "gauge", "Outstanding QUEUE_REQUESTs over every queue.")
            sample("singyeong_queue_waiting_clients", "\(q.waiting)")
            for (name, help, value) in [
                ("confirmed", "Messages stored (QUEUE_CONFIRM sent).", q.confirmed),
                ("delivered", "Queue deliveries, redeliveries included.", q.delivered),
                ("redelivered", "Deliveries of a message delivered before.", q.redelivered),
                ("acked", "Messages acknowledged.", q.acked),
                ("dead_lettered", "Messages moved to a dead-letter queue.", q.deadLettered),
            ] {
                family("singyeong_queue_\(name)_total", "counter", help)
                sample("singyeong_queue_\(name)_total", "\(value)")
            }
        }

        family("singyeong_clustering", "gauge", "1 when CLUSTERING=true.")
        sample("singyeong_clustering", cluster == nil ? "0" : "1")
        if let cluster {
            let up = cluster.linksUp
            family("singyeong_peer_links_up", "gauge", "Authenticated, healthy links to other nodes.")
            sample("singyeong_peer_links_up", "\(up.count)")
            family("singyeong_peer_rtt_seconds", "gauge", "Round trip of the last ping on each peer link.")
            for link in up.sorted(by: { ($0.nodeID ?? "") < ($1.nodeID ?? "") }) {
                if let rtt = link.roundTripSeconds {
                    sample("singyeong_peer_rtt_seconds", "node=\"\(escapeLabel(link.nodeID ?? ""))\"", "\(rtt)")
                }
            }
            family("singyeong_redis_connected", "gauge", "1 while the registry's Redis connection is up.")
            sample("singyeong_redis_connected", cluster.redisConnected ? "1" : "0")
            family("singyeong_registered", "gauge", "1 once this node has written itself into the registry.")
            sample("singyeong_registered", cluster.registered ? "1" : "0")
        }
        return out
    }

    /// A label value as the text format wants it: `\`, `"` and newlines escaped.
    static func escapeLabel(_ value: String) -> String {
        var out = ""
        for c in value {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }
}
