/// `application/x-www-form-urlencoded` query strings: `a=b&c=d`, `+` as a
/// space, `%XX` escapes. Invalid escapes are kept literally and invalid
/// UTF-8 is replaced (U+FFFD), as browsers' URLSearchParams do. Used for REST
/// parameters and the gateway's `?encoding=` (handshakes and REST calls only,
/// never per message). Hand-written: a few lines, no URL library needed.
enum URLQuery {
    static func pairs(_ bytes: UnsafeRawBufferPointer) -> [(String, String)] {
        var out: [(String, String)] = []
        var start = 0
        while start <= bytes.count {
            var end = start
            while end < bytes.count && bytes[end] != UInt8(ascii: "&") { end += 1 }
            if end > start {
                let part = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
                if let eq = part.firstIndex(of: UInt8(ascii: "=")) {
                    out.append((decode(UnsafeRawBufferPointer(rebasing: part[..<eq])),
                                decode(UnsafeRawBufferPointer(rebasing: part[(eq + 1)...]))))
                } else {
                    out.append((decode(part), ""))
                }
            }
            start = end + 1
        }
        return out
    }

    /// The first value of `name`, if present.
    static func value(of name: String, in bytes: UnsafeRawBufferPointer) -> String? {
        pairs(bytes).first { $0.0 == name }?.1
    }

    static func decode(_ bytes: UnsafeRawBufferPointer) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "+") {
                out.append(UInt8(ascii: " "))
            } else if b == UInt8(ascii: "%"), i + 2 < bytes.count, let hi = hexValue(bytes[i + 1]), let lo = hexValue(bytes[i + 2]) {
                out.append(hi << 4 | lo)
                i += 2
            } else {
                out.append(b)
            }
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// One hexadecimal digit's value.
    static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return b - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
