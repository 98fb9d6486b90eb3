import ArgumentParser
import Glibc

/// The command line's flags: `--config PATH` and every setting of
/// `SettingsTable` as a flag; the same names are read from the environment
/// and the config file (flag > environment > file > default).
///
/// Only the flags and their resolution into `Settings` live here, in Config;
/// the command that runs the node (`SingyeongMain`, in Node) includes them
/// with `@OptionGroup`.
struct SettingsArguments: ParsableArguments {
    @Option(name: .customLong("config"), help: "KEY=value settings file (systemd EnvironmentFile syntax)")
    var config: String?

    @Option(name: .customLong("port"), help: settingHelp("PORT")) var port: String?
    @Option(name: .customLong("bind"), help: settingHelp("BIND")) var bind: String?
    @Option(name: .customLong("tls-cert"), help: settingHelp("TLS_CERT")) var tlsCert: String?
    @Option(name: .customLong("tls-key"), help: settingHelp("TLS_KEY")) var tlsKey: String?
    @Option(name: .customLong("heartbeat-interval"), help: settingHelp("HEARTBEAT_INTERVAL")) var heartbeatInterval: String?
    @Option(name: .customLong("idle-timeout"), help: settingHelp("IDLE_TIMEOUT")) var idleTimeout: String?
    @Option(name: .customLong("handshake-timeout"), help: settingHelp("HANDSHAKE_TIMEOUT")) var handshakeTimeout: String?
    @Option(name: .customLong("identify-timeout"), help: settingHelp("IDENTIFY_TIMEOUT")) var identifyTimeout: String?
    @Option(name: .customLong("identify-max-size"), help: settingHelp("IDENTIFY_MAX_SIZE")) var identifyMaxSize: String?
    @Option(name: .customLong("max-frame-size"), help: settingHelp("MAX_FRAME_SIZE")) var maxFrameSize: String?
    @Option(name: .customLong("max-frame-values"), help: settingHelp("MAX_FRAME_VALUES")) var maxFrameValues: String?
    @Option(name: .customLong("max-pending-bytes"), help: settingHelp("MAX_PENDING_BYTES")) var maxPendingBytes: String?
    @Option(name: .customLong("send-buffer-size"), help: settingHelp("SEND_BUFFER_SIZE")) var sendBufferSize: String?
    @Option(name: .customLong("max-body-size"), help: settingHelp("MAX_BODY_SIZE")) var maxBodySize: String?
    @Option(name: .customLong("shutdown-timeout"), help: settingHelp("SHUTDOWN_TIMEOUT")) var shutdownTimeout: String?
    @Option(name: .customLong("auth"), help: settingHelp("AUTH")) var auth: String?
    @Option(name: .customLong("auth-failures-per-minute"), help: settingHelp("AUTH_FAILURES_PER_MINUTE")) var authFailuresPerMinute: String?
    @Option(name: .customLong("metadata-max-keys"), help: settingHelp("METADATA_MAX_KEYS")) var metadataMaxKeys: String?
    @Option(name: .customLong("metadata-max-value-size"), help: settingHelp("METADATA_MAX_VALUE_SIZE")) var metadataMaxValueSize: String?
    @Option(name: .customLong("metadata-max-size"), help: settingHelp("METADATA_MAX_SIZE")) var metadataMaxSize: String?
    @Option(name: .customLong("metadata-queue-interval"), help: settingHelp("METADATA_QUEUE_INTERVAL")) var metadataQueueInterval: String?
    @Option(name: .customLong("metadata-update-strategy"), help: settingHelp("METADATA_UPDATE_STRATEGY")) var metadataUpdateStrategy: String?
    @Option(name: .customLong("clustering"), help: settingHelp("CLUSTERING")) var clustering: String?
    @Option(name: .customLong("redis-dsn"), help: settingHelp("REDIS_DSN")) var redisDSN: String?
    @Option(name: .customLong("cookie"), help: settingHelp("COOKIE")) var cookie: String?
    @Option(name: .customLong("cluster-group"), help: settingHelp("CLUSTER_GROUP")) var clusterGroup: String?
    @Option(name: .customLong("cluster-port"), help: settingHelp("CLUSTER_PORT")) var clusterPort: String?
    @Option(name: .customLong("cluster-advertise"), help: settingHelp("CLUSTER_ADVERTISE")) var clusterAdvertise: String?
    @Option(name: .customLong("cluster-tick-ms"), help: settingHelp("CLUSTER_TICK_MS")) var clusterTickMs: String?
    @Option(name: .customLong("cluster-query-timeout-ms"), help: settingHelp("CLUSTER_QUERY_TIMEOUT_MS")) var clusterQueryTimeoutMs: String?
    @Option(name: .customLong("load-balance"), help: settingHelp("LOAD_BALANCE")) var loadBalance: String?
    @Option(name: .customLong("proxy-timeout"), help: settingHelp("PROXY_TIMEOUT")) var proxyTimeout: String?
    @Option(name: .customLong("proxy-max-response-size"), help: settingHelp("PROXY_MAX_RESPONSE_SIZE")) var proxyMaxResponseSize: String?
    @Option(name: .customLong("proxy-max-buffered-bytes"), help: settingHelp("PROXY_MAX_BUFFERED_BYTES")) var proxyMaxBufferedBytes: String?
    @Option(name: .customLong("proxy-max-pending-lookups"), help: settingHelp("PROXY_MAX_PENDING_LOOKUPS")) var proxyMaxPendingLookups: String?
    @Option(name: .customLong("queue-store"), help: settingHelp("QUEUE_STORE")) var queueStore: String?
    @Option(name: .customLong("queue-ack-timeout"), help: settingHelp("QUEUE_ACK_TIMEOUT")) var queueAckTimeout: String?
    @Option(name: .customLong("queue-dlq-time"), help: settingHelp("QUEUE_DLQ_TIME")) var queueDLQTime: String?
    @Option(name: .customLong("queue-gc-interval"), help: settingHelp("QUEUE_GC_INTERVAL")) var queueGCInterval: String?
    @Option(name: .customLong("queue-max-messages"), help: settingHelp("QUEUE_MAX_MESSAGES")) var queueMaxMessages: String?
    @Option(name: .customLong("queue-max-targets"), help: settingHelp("QUEUE_MAX_TARGETS")) var queueMaxTargets: String?
    @Option(name: .customLong("queue-max-bytes"), help: settingHelp("QUEUE_MAX_BYTES")) var queueMaxBytes: String?
    @Option(name: .customLong("queue-max-total-bytes"), help: settingHelp("QUEUE_MAX_TOTAL_BYTES")) var queueMaxTotalBytes: String?
    @Option(name: .customLong("proxy-deny"), help: settingHelp("PROXY_DENY")) var proxyDeny: String?
    @Option(name: .customLong("log-level"), help: settingHelp("LOG_LEVEL")) var logLevel: String?

    /// The process environment (`environ`), as ProcessInfo would give it.
    static func processEnvironment() -> [String: String] {
        var out: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let equals = text.firstIndex(of: "=") {
                out[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            entry += 1
        }
        return out
    }

    /// Flags that were given, keyed by setting name.
    private var flagValues: [String: String] {
        let pairs: [(String, String?)] = [
            ("PORT", port), ("BIND", bind), ("TLS_CERT", tlsCert), ("TLS_KEY", tlsKey),
            ("HEARTBEAT_INTERVAL", heartbeatInterval), ("IDLE_TIMEOUT", idleTimeout),
            ("HANDSHAKE_TIMEOUT", handshakeTimeout), ("MAX_FRAME_SIZE", maxFrameSize),
            ("MAX_FRAME_VALUES", maxFrameValues),
            ("MAX_PENDING_BYTES", maxPendingBytes), ("SEND_BUFFER_SIZE", sendBufferSize), ("MAX_BODY_SIZE", maxBodySize),
            ("SHUTDOWN_TIMEOUT", shutdownTimeout), ("LOG_LEVEL", logLevel), ("AUTH", auth),
            ("AUTH_FAILURES_PER_MINUTE", authFailuresPerMinute), ("METADATA_QUEUE_INTERVAL", metadataQueueInterval),
            ("METADATA_UPDATE_STRATEGY", metadataUpdateStrategy), ("CLUSTERING", clustering), ("REDIS_DSN", redisDSN),
            ("COOKIE", cookie), ("CLUSTER_GROUP", clusterGroup), ("CLUSTER_PORT", clusterPort),
            ("CLUSTER_ADVERTISE", clusterAdvertise), ("CLUSTER_TICK_MS", clusterTickMs),
            ("CLUSTER_QUERY_TIMEOUT_MS", clusterQueryTimeoutMs), ("LOAD_BALANCE", loadBalance),
            ("PROXY_TIMEOUT", proxyTimeout), ("PROXY_MAX_RESPONSE_SIZE", proxyMaxResponseSize),
            ("IDENTIFY_TIMEOUT", identifyTimeout), ("IDENTIFY_MAX_SIZE", identifyMaxSize),
            ("METADATA_MAX_KEYS", metadataMaxKeys), ("METADATA_MAX_VALUE_SIZE", metadataMaxValueSize),
            ("METADATA_MAX_SIZE", metadataMaxSize),
            ("PROXY_MAX_BUFFERED_BYTES", proxyMaxBufferedBytes), ("PROXY_MAX_PENDING_LOOKUPS", proxyMaxPendingLookups),
            ("QUEUE_STORE", queueStore), ("QUEUE_ACK_TIMEOUT", queueAckTimeout), ("QUEUE_DLQ_TIME", queueDLQTime), ("QUEUE_GC_INTERVAL", queueGCInterval),
            ("QUEUE_MAX_MESSAGES", queueMaxMessages), ("QUEUE_MAX_TARGETS", queueMaxTargets), ("QUEUE_MAX_BYTES", queueMaxBytes),
            ("QUEUE_MAX_TOTAL_BYTES", queueMaxTotalBytes),
            ("PROXY_DENY", proxyDeny),
        ]
        assert(pairs.count == SettingsTable.all.count, "every setting needs a flag")
        var values: [String: String] = [:]
        for case let (name, value?) in pairs { values[name] = value }
        return values
    }

    /// The settings these flags, the process environment and the `--config`
    /// file (if given) resolve to.
    func resolveSettings() throws(SettingsError) -> Settings {
        let file = try config.map { path throws(SettingsError) in try ConfigFile.load(path: path) } ?? [:]
        return try Settings.resolve(flags: flagValues, environment: SettingsArguments.processEnvironment(), file: file)
    }
}

/// `--help` text for one setting: its help line, variable name and default.
private func settingHelp(_ name: String) -> ArgumentHelp {
    guard let definition = SettingsTable.definition(name) else { return ArgumentHelp("(unknown setting \(name))") }
    let defaultText = definition.defaultValue.map { "default \($0)" } ?? "default unset"
    return ArgumentHelp("\(definition.help) [env \(name); \(defaultText)]")
}
