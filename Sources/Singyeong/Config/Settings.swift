import Glibc

/// The node's validated settings. Built once at start-up from flags, the
/// environment and the config file (in that order of precedence, then the
/// table's defaults); an invalid value stops start-up with a message naming
/// the setting and where the value came from.
struct Settings: Sendable {
    var port: Int
    var bind: String
    var tlsCertificate: String?
    var tlsKey: String?
    var heartbeatInterval: Int
    var idleTimeout: Int
    var handshakeTimeout: Int
    var identifyTimeout: Int
    var identifyMaxSize: Int
    var maxFrameSize: Int
    /// Decoded values (tape nodes) one client frame may hold; an unexpanded
    /// SEND/BROADCAST payload counts as one.
    var maxFrameValues: Int
    var maxPendingBytes: Int
    /// SO_SNDBUF for client sockets; 0 leaves the kernel's autotuning on.
    var sendBufferSize: Int
    var maxBodySize: Int
    var shutdownTimeout: Int
    var logLevel: String
    var auth: String?
    var authFailuresPerMinute: Int
    /// METADATA_MAX_KEYS, METADATA_MAX_VALUE_SIZE, METADATA_MAX_SIZE: the
    /// per-client budget (the gateway builds its `MetadataBudget` from them).
    var metadataMaxKeys: Int
    var metadataMaxValueSize: Int
    var metadataMaxSize: Int
    var metadataQueueInterval: Int
    var metadataUpdateStrategy: String
    var clustering: Bool
    var redisDSN: String
    var cookie: String?
    /// Shortest COOKIE accepted when clustering.
    static let minimumCookieBytes = 16
    /// What the metadata budget counts per stored value besides its string
    /// bytes (`MetadataBudget.nodeCost`; a unit test keeps them equal),
    /// used for the MAX_FRAME_VALUES floor. Config sits below Metadata, so
    /// it has its own copy.
    static let storedValueBytes = 24
    var clusterGroup: String
    var clusterPort: Int
    var clusterAdvertise: String?
    var clusterTick: Int
    var clusterQueryTimeout: Int
    var loadBalance: Bool
    var proxyTimeout: Int
    var proxyMaxResponseSize: Int
    var proxyMaxBufferedBytes: Int
    var proxyMaxPendingLookups: Int
    /// "memory" or "redis" (resolved: never empty).
    var queueStore: String
    var queueAckTimeout: Int
    var queueDLQTime: Int
    var queueGCInterval: Int
    var queueMaxMessages: Int
    var queueMaxTargets: Int
    var queueMaxBytes: Int
    var queueMaxTotalBytes: Int
    /// PROXY_DENY; empty only when explicitly set to an empty value.
    var proxyDeny: [AddressBlock]

    /// Where a raw value came from, for error messages.
    enum Source: String { case flag = "command-line flag", environment = "environment", file = "config file", defaultValue = "default" }

    /// Merges the sources. `flags` and `file` hold only what was given;
    /// `environment` may hold anything (only known names are read).
    static func resolve(flags: [String: String], environment: [String: String], file: [String: String]) throws(SettingsError) -> Settings {
        var raw: [String: (String, Source)] = [:]
        for definition in SettingsTable.all {
            let name = definition.name
            if let value = flags[name] { raw[name] = (value, .flag) }
            else if let value = environment[name] { raw[name] = (value, .environment) }
            else if let value = file[name] { raw[name] = (value, .file) }
            else if let value = definition.defaultValue { raw[name] = (value, .defaultValue) }
        }
        func validated(_ name: String) throws(SettingsError) -> String? {
            guard let (value, source) = raw[name], let definition = SettingsTable.definition(name) else { return nil }
            switch definition.kind {
            case .integer(let range):
                guard let number = Int(value.trimmedBlanks), range.contains(number) else {
                    throw SettingsError("\(name)=\(value) (\(source.rawValue)): expected an integer in \(range.lowerBound)...\(range.upperBound)")
                }
                return String(number)
            case .boolean:
                switch value.lowercased() {
                case "true", "1", "yes", "on": return "true"
                case "false", "0", "no", "off": return "false"
                default: throw SettingsError("\(name)=\(value) (\(source.rawValue)): expected true or false")
                }
            case .choice(let choices):
                guard choices.contains(value) else {
                    throw SettingsError("\(name)=\(value) (\(source.rawValue)): expected one of \(choices.joined(separator: ", "))")
                }
                return value
            case .path:
                // An empty value counts as unset (systemd files often carry `KEY=`).
                if value.isEmpty { return nil }
                guard access(value, R_OK) == 0 else {
                    throw SettingsError("\(name)=\(value) (\(source.rawValue)): file does not exist or is not readable")
                }
                return value
            case .secret:
                // rest.md/cluster.md §8.2: an empty AUTH counts as unset.
                return value.isEmpty ? nil : value
            case .addressBlocks:
                if case .failure(let problem) = AddressBlock.parseList(value) {
                    throw SettingsError("\(name)=\(value) (\(source.rawValue)): \(problem.description)")
                }
                return value
            case .string:
                guard !value.isEmpty else { throw SettingsError("\(name) (\(source.rawValue)): must not be empty") }
                return value
            }
        }
        func integer(_ name: String) throws(SettingsError) -> Int { Int(try validated(name)!)! }

        var settings = Settings(
            port: try integer("PORT"),
            bind: try validated("BIND")!,
            tlsCertificate: try validated("TLS_CERT"),
            tlsKey: try validated("TLS_KEY"),
            heartbeatInterval: try integer("HEARTBEAT_INTERVAL"),
            idleTimeout: try integer("IDLE_TIMEOUT"),
            handshakeTimeout: try integer("HANDSHAKE_TIMEOUT"),
            identifyTimeout: try integer("IDENTIFY_TIMEOUT"),
            identifyMaxSize: try integer("IDENTIFY_MAX_SIZE"),
            maxFrameSize: try integer("MAX_FRAME_SIZE"),
            maxFrameValues: try integer("MAX_FRAME_VALUES"),
            maxPendingBytes: try integer("MAX_PENDING_BYTES"),
            sendBufferSize: try integer("SEND_BUFFER_SIZE"),
            maxBodySize: try integer("MAX_BODY_SIZE"),
            shutdownTimeout: try integer("SHUTDOWN_TIMEOUT"),
            logLevel: try validated("LOG_LEVEL")!,
            auth: try validated("AUTH"),
            authFailuresPerMinute: try integer("AUTH_FAILURES_PER_MINUTE"),
            metadataMaxKeys: try integer("METADATA_MAX_KEYS"),
            metadataMaxValueSize: try integer("METADATA_MAX_VALUE_SIZE"),
            metadataMaxSize: try integer("METADATA_MAX_SIZE"),
            metadataQueueInterval: try integer("METADATA_QUEUE_INTERVAL"),
            metadataUpdateStrategy: try validated("METADATA_UPDATE_STRATEGY")!,
            clustering: try validated("CLUSTERING") == "true",
            redisDSN: try validated("REDIS_DSN")!,
            cookie: try validated("COOKIE"),
            clusterGroup: try validated("CLUSTER_GROUP")!,
            clusterPort: try validated("CLUSTER_PORT").map { Int($0)! } ?? 0,
            clusterAdvertise: try validated("CLUSTER_ADVERTISE"),
            clusterTick: try integer("CLUSTER_TICK_MS"),
            clusterQueryTimeout: try integer("CLUSTER_QUERY_TIMEOUT_MS"),
            loadBalance: try validated("LOAD_BALANCE") == "true",
            proxyTimeout: try integer("PROXY_TIMEOUT"),
            proxyMaxResponseSize: try integer("PROXY_MAX_RESPONSE_SIZE"),
            proxyMaxBufferedBytes: try integer("PROXY_MAX_BUFFERED_BYTES"),
            proxyMaxPendingLookups: try integer("PROXY_MAX_PENDING_LOOKUPS"),
            queueStore: try validated("QUEUE_STORE") ?? "",
            queueAckTimeout: try integer("QUEUE_ACK_TIMEOUT"),
            queueDLQTime: try integer("QUEUE_DLQ_TIME"),
            queueGCInterval: try integer("QUEUE_GC_INTERVAL"),
            queueMaxMessages: try integer("QUEUE_MAX_MESSAGES"),
            queueMaxTargets: try integer("QUEUE_MAX_TARGETS"),
            queueMaxBytes: try integer("QUEUE_MAX_BYTES"),
            queueMaxTotalBytes: try integer("QUEUE_MAX_TOTAL_BYTES"),
            proxyDeny: try AddressBlock.parseList(validated("PROXY_DENY") ?? "").get()
        )
        if (settings.tlsCertificate == nil) != (settings.tlsKey == nil) {
            throw SettingsError("TLS_CERT and TLS_KEY must be set together (only \(settings.tlsCertificate == nil ? "TLS_KEY" : "TLS_CERT") is set)")
        }
        if settings.clustering && settings.cookie == nil {
            throw SettingsError("COOKIE must be set when CLUSTERING=true (it authenticates the peer links); generate one with `openssl rand -hex 32`")
        }
        if settings.clustering, let cookie = settings.cookie, cookie.utf8.count < Settings.minimumCookieBytes {
            // A short secret falls to guessing: a node that dials a hostile
            // registry entry hands it a proof to test guesses against.
            throw SettingsError("COOKIE is \(cookie.utf8.count) bytes; at least \(Settings.minimumCookieBytes) are required when CLUSTERING=true (generate one with `openssl rand -hex 32`)")
        }
        if settings.queueStore.isEmpty {
            // REDIS_DSN has a default, so its presence cannot decide.
            settings.queueStore = settings.clustering ? "redis" : "memory"
        }
        if settings.clustering && settings.queueStore == "memory" {
            throw SettingsError("QUEUE_STORE=memory cannot be used with CLUSTERING=true: every node would hold its own part of a queue; use QUEUE_STORE=redis")
        }
        if settings.clusterPort == 0 {
            // Not given: PORT + 1 (cluster.md §8.2); with PORT=0 any free port.
            settings.clusterPort = settings.port == 0 ? 0 : settings.port + 1
        }
        if settings.maxPendingBytes < settings.maxFrameSize + 14 + OutboundQueue.chunkOverhead {
            throw SettingsError("MAX_PENDING_BYTES (\(settings.maxPendingBytes)) must exceed MAX_FRAME_SIZE (\(settings.maxFrameSize)) plus a frame header, or no maximum-size frame could ever be queued")
        }
        // A metadata update the budget accepts must decode: per stored value
        // (≥ 24 bytes) at most two nodes (a map member is a key and a value),
        // plus a key's own wrapper ({"type": …, "value": …}: six nodes).
        let metadataNodes = settings.metadataMaxSize / (Settings.storedValueBytes / 2) + 6 * settings.metadataMaxKeys + 4096
        settings.maxFrameValues = max(settings.maxFrameValues, min(metadataNodes, 100_000_000))
        // Before IDENTIFY nothing larger than a regular message is accepted either.
        settings.identifyMaxSize = min(settings.identifyMaxSize, settings.maxFrameSize)
        // A relayed response is queued whole (body plus at most 64 KiB of
        // headers): it must fit, or the caller would be cut off as a slow
        // consumer. Clamped rather than refused, so lowering MAX_PENDING_BYTES
        // alone keeps working.
        settings.proxyMaxResponseSize = min(settings.proxyMaxResponseSize, settings.maxPendingBytes - 65536)
        return settings
    }

    /// Settings with every default (for tests and tools).
    static func defaults() -> Settings {
        try! resolve(flags: [:], environment: [:], file: [:])
    }
}

/// An invalid setting; the message names it.
struct SettingsError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Reads a `KEY=value` config file — the format systemd's `EnvironmentFile=`
/// reads too, so one file serves both: `#` comments, blank lines, optional
/// matching single or double quotes around the value. Unknown keys are an
/// error (a typo should not silently fall back to a default).
enum ConfigFile {
    static func parse(_ text: String, path: String) throws(SettingsError) -> [String: String] {
        var values: [String: String] = [:]
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmedBlanks
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            guard let equals = line.firstIndex(of: "=") else {
                throw SettingsError("\(path) line \(index + 1): expected KEY=value")
            }
            let key = line[..<equals].trimmedBlanks
            var value = line[line.index(after: equals)...].trimmedBlanks
            if value.count >= 2, let first = value.first, first == "\"" || first == "'", value.last == first {
                value = String(value.dropFirst().dropLast())
            }
            guard SettingsTable.definition(key) != nil else {
                throw SettingsError("\(path) line \(index + 1): unknown setting \(key)")
            }
            values[key] = value
        }
        return values
    }

    static func load(path: String) throws(SettingsError) -> [String: String] {
        guard let bytes = readFile(path), let text = String(validating: bytes, as: UTF8.self) else {
            throw SettingsError("--config \(path): cannot read the file (or it is not UTF-8)")
        }
        return try parse(text, path: path)
    }

    /// The whole file, or nil. Start-up only, so plain blocking reads.
    private static func readFile(_ path: String) -> [UInt8]? {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n > 0 { bytes.append(contentsOf: chunk[0..<n]) }
            if n < chunk.count { return ferror(file) == 0 ? bytes : nil }
        }
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs and carriage returns (a
    /// config file written on Windows keeps working). Foundation-free: the
    /// binary does not link Foundation (and its ICU data).
    var trimmedBlanks: String {
        func blank(_ c: Character) -> Bool { c == " " || c == "\t" || c == "\r" }
        guard let first = firstIndex(where: { !blank($0) }) else { return "" }
        let last = lastIndex(where: { !blank($0) })!
        return String(self[first...last])
    }
}
