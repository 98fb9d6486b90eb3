/// Where and how to reach the Redis that holds the node registry
/// (cluster.md §2.1): `redis://[[user]:password@]host[:port][/db]`, or
/// `rediss://` for TLS.
///
/// The 2019 original used only the host and (sometimes the wrong piece of)
/// the user-info; this honours every part, so operators can point a node at
/// any port, database or ACL user.
struct RedisDSN: Equatable, Sendable, CustomStringConvertible {
    /// Host name or IP address; an IPv6 address without its brackets.
    var host: String
    var port: Int
    /// ACL user (`AUTH user password`); nil means `AUTH password`.
    var user: String?
    /// nil (or no user-info at all) means no `AUTH`.
    var password: String?
    var db: Int
    /// `rediss://`. Parsed so the registry can refuse it with a clear message:
    /// hiredis 0.14 has no TLS.
    var tls: Bool

    init(host: String, port: Int = 6379, user: String? = nil, password: String? = nil, db: Int = 0, tls: Bool = false) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.db = db
        self.tls = tls
    }

    /// Parses a DSN. User and password are percent-decoded. A user-info without
    /// a colon (`redis://secret@host`) is taken as the password, as the
    /// original and most Redis clients do, since `AUTH` needs a password.
    init(parsing text: String) throws {
        func fail(_ message: String) -> RedisDSNError { RedisDSNError("REDIS_DSN: \(message)") }

        guard let schemeEnd = RedisDSN.schemeSeparator(in: text) else {
            throw fail("missing scheme in '\(RedisDSN.redacted(text))' (expected redis://host[:port][/db] or rediss://...)")
        }
        let scheme = text[..<schemeEnd.lowerBound].lowercased()
        switch scheme {
        case "redis": tls = false
        case "rediss": tls = true
        default: throw fail("unknown scheme '\(scheme)://' (expected redis:// or rediss://)")
        }
        var rest = Substring(text[schemeEnd.upperBound...])
        if rest.contains("?") || rest.contains("#") {
            throw fail("query parameters and fragments are not supported (put the database in the path: redis://host:6379/2)")
        }

        // Authority ends at the first '/' after the user-info. The user-info is
        // everything before the LAST '@', so an unencoded '@' in a password still works.
        var userInfo: Substring?
        if let at = rest.lastIndex(of: "@") {
            userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
        }
        let authority: Substring
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            path = rest[rest.index(after: slash)...]
        } else {
            authority = rest
        }

        user = nil
        password = nil
        if let userInfo, !userInfo.isEmpty {
            if let colon = userInfo.firstIndex(of: ":") {
                let rawUser = userInfo[..<colon]
                let rawPassword = userInfo[userInfo.index(after: colon)...]
                guard let decodedUser = RedisDSN.percentDecode(rawUser) else { throw fail("bad percent-encoding in the user name") }
                guard let decodedPassword = RedisDSN.percentDecode(rawPassword) else { throw fail("bad percent-encoding in the password") }
                user = decodedUser.isEmpty ? nil : decodedUser
                password = decodedPassword.isEmpty ? nil : decodedPassword
                if user != nil && password == nil {
                    throw fail("user '\(decodedUser)' given without a password (use redis://user:password@host)")
                }
            } else {
                guard let decoded = RedisDSN.percentDecode(userInfo) else { throw fail("bad percent-encoding in the password") }
                password = decoded.isEmpty ? nil : decoded
            }
        }

        // Host and port; an IPv6 host must be bracketed, or its colons would be
        // taken for the port separator.
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw fail("unclosed '[' in the IPv6 host '\(authority)'") }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw fail("unexpected '\(after)' after the IPv6 host") }
                portText = after.dropFirst()
            }
            if host.isEmpty || !host.contains(":") { throw fail("'[\(host)]' is not an IPv6 address") }
        } else {
            let colons = authority.filter { $0 == ":" }.count
            if colons > 1 { throw fail("IPv6 host '\(authority)' must be in brackets (redis://[::1]:6379)") }
            if let colon = authority.firstIndex(of: ":") {
                host = String(authority[..<colon])
                portText = authority[authority.index(after: colon)...]
            } else {
                host = String(authority)
            }
        }
        if host.isEmpty { throw fail("missing host") }
        if host.contains(where: { $0 == " " || $0 == "%" || $0 == "[" || $0 == "]" }) {
            throw fail("bad host '\(host)'")
        }

        port = 6379
        if let portText {
            guard !portText.isEmpty, portText.allSatisfy({ $0.isASCII && $0.isNumber }), portText.count <= 5,
                  let value = Int(portText), (1...65535).contains(value) else {
                throw fail("bad port '\(portText)' (expected 1-65535)")
            }
            port = value
        }

        db = 0
        if !path.isEmpty {
            guard path.allSatisfy({ $0.isASCII && $0.isNumber }), path.count <= 9, let value = Int(path) else {
                throw fail("bad database '\(path)' (expected a number: redis://host:6379/2)")
            }
            db = value
        }
    }

    /// The DSN with the password hidden, for logs.
    var description: String {
        var text = tls ? "rediss://" : "redis://"
        if password != nil { text += "\(user ?? ""):***@" }
        text += host.contains(":") ? "[\(host)]" : host
        text += ":\(port)/\(db)"
        return text
    }

    /// Hides whatever sits between "://" and "@" so a DSN in an error message
    /// never leaks a password.
    private static func redacted(_ text: String) -> String {
        guard let at = text.lastIndex(of: "@") else { return text }
        let start = schemeSeparator(in: text)?.upperBound ?? text.startIndex
        guard start <= at else { return text }
        return String(text[..<start]) + "***" + String(text[at...])
    }

    /// The first "://" (without Foundation's `range(of:)`).
    private static func schemeSeparator(in text: String) -> Range<String.Index>? {
        var index = text.startIndex
        while index < text.endIndex {
            if text[index...].hasPrefix("://") { return index..<text.index(index, offsetBy: 3) }
            index = text.index(after: index)
        }
        return nil
    }

    /// RFC 3986 percent-decoding; nil on a malformed escape or invalid UTF-8.
    private static func percentDecode(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte != UInt8(ascii: "%") {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(URLQuery.hexValue), let low = iterator.next().flatMap(URLQuery.hexValue) else { return nil }
            bytes.append(high << 4 | low)
        }
        return String(validating: bytes, as: UTF8.self)
    }
}

/// A malformed `REDIS_DSN`; the message starts with `REDIS_DSN:` and names the problem.
struct RedisDSNError: Error, Equatable, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
