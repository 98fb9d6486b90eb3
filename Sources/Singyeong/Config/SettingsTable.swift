/// One setting: the same `NAME` is the environment variable, the config-file
/// key and (as `--name-with-dashes`) the command-line flag.
struct SettingDefinition: Sendable {
    /// What values a setting takes; used for validation and `--help`.
    enum Kind: Sendable {
        case integer(ClosedRange<Int>)
        case string
        case path
        /// Any string, never printed.
        case secret
        case boolean
        case choice([String])
        /// Comma-separated CIDR blocks (`AddressBlock`); an explicit empty value is the empty list.
        case addressBlocks
    }

    let name: String
    /// nil = unset by default.
    let defaultValue: String?
    let kind: Kind
    let help: String

    /// `PORT` → `port`, `TLS_CERT` → `tls-cert`.
    var flagName: String { String(name.lowercased().map { $0 == "_" ? "-" : $0 }) }
}

/// The single table of settings (names and defaults from spec/cluster.md §8.2
/// plus the ones this implementation adds). `--help`, the README table and
/// validation all come from here. Settings of the spec whose features are not
/// built yet are added together with those features, so nothing listed here
/// is inert.
enum SettingsTable {
    static let all: [SettingDefinition] = [
        .init(name: "PORT", defaultValue: "4000", kind: .integer(0...65535),
              help: "TCP port for HTTP, WebSocket and REST (0 = any free port)"),
        .init(name: "BIND", defaultValue: "::", kind: .string,
              help: "listen address; :: is dual-stack IPv6+IPv4"),
        .init(name: "TLS_CERT", defaultValue: nil, kind: .path,
              help: "PEM certificate chain; with TLS_KEY the listener speaks TLS only (1.2 with ECDHE + AEAD suites, or 1.3)"),
        .init(name: "TLS_KEY", defaultValue: nil, kind: .path,
              help: "PEM private key for TLS_CERT"),
        .init(name: "HEARTBEAT_INTERVAL", defaultValue: "45000", kind: .integer(1000...3_600_000),
              help: "heartbeat interval announced in HELLO, ms"),
        .init(name: "IDLE_TIMEOUT", defaultValue: "60000", kind: .integer(1000...86_400_000),
              help: "close a WebSocket or keep-alive HTTP connection after this long without input, ms"),
        .init(name: "HANDSHAKE_TIMEOUT", defaultValue: "10000", kind: .integer(100...600_000),
              help: "time allowed for the TLS handshake, each HTTP request head and body, and the peer-link handshake (at most 2 cluster ticks), ms"),
        .init(name: "IDENTIFY_TIMEOUT", defaultValue: "10000", kind: .integer(100...600_000),
              help: "a WebSocket that has not sent IDENTIFY this long after HELLO is closed, ms"),
        .init(name: "IDENTIFY_MAX_SIZE", defaultValue: "262144", kind: .integer(1024...1_073_741_824),
              help: "largest WebSocket message accepted before IDENTIFY, bytes (larger: close 1009)"),
        .init(name: "MAX_FRAME_SIZE", defaultValue: "16777216", kind: .integer(125...1_073_741_824),
              help: "largest accepted WebSocket message, bytes (larger: close 1009)"),
        .init(name: "MAX_FRAME_VALUES", defaultValue: "131072", kind: .integer(1024...100_000_000),
              help: "most values (objects, arrays, keys, scalars) one WebSocket message may hold outside a SEND/BROADCAST payload (more: op 8 and the connection is closed, as for undecodable input); raised to what METADATA_MAX_SIZE and METADATA_MAX_KEYS need"),
        .init(name: "MAX_PENDING_BYTES", defaultValue: "33554432", kind: .integer(65536...4_294_967_296),
              help: "unsent output one connection may queue before it is closed as a slow consumer, bytes"),
        .init(name: "SEND_BUFFER_SIZE", defaultValue: "0", kind: .integer(0...67_108_864),
              help: "kernel send buffer of each client socket (SO_SNDBUF), bytes; 0 = the kernel's autotuning"),
        .init(name: "MAX_BODY_SIZE", defaultValue: "1048576", kind: .integer(0...1_073_741_824),
              help: "largest accepted HTTP request body, bytes (larger: 413)"),
        .init(name: "SHUTDOWN_TIMEOUT", defaultValue: "5000", kind: .integer(0...600_000),
              help: "on SIGTERM/SIGINT, how long to drain connections before exiting, ms"),
        .init(name: "AUTH", defaultValue: nil, kind: .secret,
              help: "password for IDENTIFY and the REST API; unset or empty = no password"),
        .init(name: "AUTH_FAILURES_PER_MINUTE", defaultValue: "10", kind: .integer(0...1_000_000),
              help: "failed passwords allowed per source address per minute before it is refused (0 = no limit)"),
        .init(name: "METADATA_MAX_KEYS", defaultValue: "1024", kind: .integer(1...1_000_000),
              help: "metadata keys one client may set"),
        .init(name: "METADATA_MAX_VALUE_SIZE", defaultValue: "524288", kind: .integer(64...1_073_741_824),
              help: "largest metadata entry (key and value, as stored: 24 bytes per value or element plus string bytes), bytes"),
        .init(name: "METADATA_MAX_SIZE", defaultValue: "1048576", kind: .integer(64...1_073_741_824),
              help: "all metadata of one client, measured as METADATA_MAX_VALUE_SIZE is, bytes"),
        .init(name: "METADATA_QUEUE_INTERVAL", defaultValue: "500", kind: .integer(0...60_000),
              help: "metadata updates are applied in batches this often, ms (0 = at once)"),
        .init(name: "METADATA_UPDATE_STRATEGY", defaultValue: "merge", kind: .choice(["merge", "replace"]),
              help: "merge: update keys overwrite; replace: an update replaces all non-reserved keys"),
        .init(name: "CLUSTERING", defaultValue: "false", kind: .boolean,
              help: "true: register in Redis and form a cluster with the other registered nodes"),
        .init(name: "REDIS_DSN", defaultValue: "redis://127.0.0.1:6379/0", kind: .string,
              help: "registry Redis: redis://[[user]:password@]host[:port][/db]"),
        .init(name: "COOKIE", defaultValue: nil, kind: .secret,
              help: "shared cluster secret authenticating peer links (required when clustering, at least 16 bytes: openssl rand -hex 32; never sent)"),
        .init(name: "CLUSTER_GROUP", defaultValue: "singyeong", kind: .string,
              help: "registry group: nodes of one group form one cluster"),
        .init(name: "CLUSTER_PORT", defaultValue: nil, kind: .integer(0...65535),
              help: "peer-link listen port (default PORT + 1)"),
        .init(name: "CLUSTER_ADVERTISE", defaultValue: nil, kind: .string,
              help: "host:port other nodes dial (default: first non-loopback address and CLUSTER_PORT)"),
        .init(name: "CLUSTER_TICK_MS", defaultValue: "1000", kind: .integer(50...60_000),
              help: "registry, link health and load-balance period, ms"),
        .init(name: "CLUSTER_QUERY_TIMEOUT_MS", defaultValue: "5000", kind: .integer(10...600_000),
              help: "a node that has not answered a cluster query by then counts as having no matches, ms"),
        .init(name: "LOAD_BALANCE", defaultValue: "true", kind: .boolean,
              help: "when clustering, a node over its share of clients sends GOODBYE to the excess each tick"),
        .init(name: "PROXY_TIMEOUT", defaultValue: "60000", kind: .integer(100...3_600_000),
              help: "total time for one /api/v1/proxy upstream exchange (connect 15 s at most), ms"),
        .init(name: "PROXY_MAX_RESPONSE_SIZE", defaultValue: "16777216", kind: .integer(0...1_073_741_824),
              help: "largest upstream response body /api/v1/proxy relays, bytes (larger: 400; at most MAX_PENDING_BYTES - 65536)"),
        .init(name: "PROXY_MAX_BUFFERED_BYTES", defaultValue: "268435456", kind: .integer(65536...1_099_511_627_776),
              help: "upstream response bytes all /api/v1/proxy exchanges of this node may buffer together (past it: 503)"),
        .init(name: "PROXY_MAX_PENDING_LOOKUPS", defaultValue: "64", kind: .integer(1...4096),
              help: "/api/v1/proxy upstreams named by host name that may be resolving at once (more: 503)"),
        .init(name: "PROXY_DENY", defaultValue: AddressBlock.defaultDeny, kind: .addressBlocks,
              help: "CIDR blocks /api/v1/proxy never connects to, checked after DNS and redirects (explicitly empty = none)"),
        .init(name: "QUEUE_STORE", defaultValue: nil, kind: .choice(["memory", "redis"]),
              help: "where queue messages live: memory (this process only) or redis (REDIS_DSN; survives restarts); default redis when CLUSTERING=true, else memory"),
        .init(name: "QUEUE_ACK_TIMEOUT", defaultValue: "15000", kind: .integer(1...86_400_000),
              help: "how long a delivered queue message may stay unacknowledged before it is dead-lettered, ms"),
        .init(name: "QUEUE_DLQ_TIME", defaultValue: "15000", kind: .integer(0...86_400_000),
              help: "how long a dead-lettered queue message waits before it is queued again, ms"),
        .init(name: "QUEUE_GC_INTERVAL", defaultValue: "1000", kind: .integer(10...3_600_000),
              help: "how often each queue's acknowledgement timeouts and dead letters are checked, ms"),
        .init(name: "QUEUE_MAX_MESSAGES", defaultValue: "100000", kind: .integer(1...100_000_000),
              help: "messages one queue may hold (queued, unacknowledged and dead); past it QUEUE is refused"),
        .init(name: "QUEUE_MAX_TARGETS", defaultValue: "10000", kind: .integer(1...1_000_000),
              help: "distinct targets the messages of one queue may have; past it QUEUE with a new target is refused (bounds the work of each QUEUE_REQUEST)"),
        .init(name: "QUEUE_MAX_BYTES", defaultValue: "67108864", kind: .integer(1024...1_099_511_627_776),
              help: "bytes one queue may hold (nonce, target and payload plus 320 per message); past it QUEUE is refused"),
        .init(name: "QUEUE_MAX_TOTAL_BYTES", defaultValue: "268435456", kind: .integer(1024...1_099_511_627_776),
              help: "bytes all queues of this node may hold together; past it QUEUE is refused"),
        .init(name: "LOG_LEVEL", defaultValue: "info", kind: .choice(["trace", "debug", "info", "notice", "warning", "error", "critical"]),
              help: "least severe log level written to stderr"),
    ]

    static func definition(_ name: String) -> SettingDefinition? { all.first { $0.name == name } }
}
