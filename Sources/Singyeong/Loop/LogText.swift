/// Text from outside (a peer's node id, a reason it sent, a registry entry)
/// made safe for one log line.
///
/// The stderr log handler prints metadata values as they are, so a control
/// character would let whoever chose the text forge or split log lines, and a
/// long string would bloat every line that names it. Every such string goes
/// through `escape` before it reaches a logger.
///
/// In Loop, the bottom layer, because it is a plain logging helper that the
/// cluster, the proxy and anything else logging foreign text all need.
enum LogText {
    /// Longest escaped text kept (in characters of the escaped form); longer
    /// text is cut and says how many bytes the original had.
    static let defaultLimit = 160

    /// `text` with backslash, control characters (C0, DEL, C1), Unicode
    /// format characters (bidirectional overrides, zero-width ones) and line
    /// or paragraph separators written as escapes (`\n`, `\t`, `\u{202E}`),
    /// and cut after `limit` characters with a `…(N bytes)` marker.
    static func escape(_ text: String, limit: Int = defaultLimit) -> String {
        var out = ""
        out.reserveCapacity(min(text.utf8.count, limit) + 16)
        var kept = 0
        for scalar in text.unicodeScalars {
            let piece: String
            switch scalar {
            case "\\": piece = "\\\\"
            case "\n": piece = "\\n"
            case "\r": piece = "\\r"
            case "\t": piece = "\\t"
            default:
                piece = needsEscape(scalar) ? "\\u{\(String(scalar.value, radix: 16, uppercase: true))}" : String(scalar)
            }
            if kept + piece.count > limit {
                out += "…(\(text.utf8.count) bytes)"
                return out
            }
            out += piece
            kept += piece.count
        }
        return out
    }

    /// Whether `text` holds a character `escape` would rewrite as a control
    /// or invisible one (backslash alone does not count).
    static func hasControlCharacters(_ text: String) -> Bool {
        text.unicodeScalars.contains { $0 == "\n" || $0 == "\r" || $0 == "\t" || needsEscape($0) }
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .privateUse, .unassigned:
            return true
        default:
            return false
        }
    }
}
