import CHiredis

/// A Redis reply copied out of hiredis's `redisReply` (which hiredis frees as
/// soon as the callback returns). Bulk strings keep their bytes: the queue
/// store keeps MessagePack payloads in them.
enum RedisValue: Equatable {
    case string([UInt8])
    case status(String)
    case error(String)
    case integer(Int)
    case null
    case array([RedisValue])

    init(_ reply: UnsafePointer<redisReply>) {
        let r = reply.pointee
        func bytes() -> UnsafeRawBufferPointer {
            guard let str = r.str else { return UnsafeRawBufferPointer(start: nil, count: 0) }
            return UnsafeRawBufferPointer(start: str, count: r.len)
        }
        switch r.type {
        case REDIS_REPLY_STRING: self = .string([UInt8](bytes()))
        case REDIS_REPLY_STATUS: self = .status(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_ERROR: self = .error(String(decoding: bytes(), as: UTF8.self))
        case REDIS_REPLY_INTEGER: self = .integer(Int(r.integer))
        case REDIS_REPLY_ARRAY:
            var items: [RedisValue] = []
            items.reserveCapacity(r.elements)
            for i in 0..<r.elements {
                if let element = r.element[i] { items.append(RedisValue(element)) } else { items.append(.null) }
            }
            self = .array(items)
        default: self = .null
        }
    }

    init(_ reply: UnsafeMutablePointer<redisReply>) { self.init(UnsafePointer(reply)) }

    /// The text of a bulk or status string.
    var text: String? {
        switch self {
        case .string(let s): return String(decoding: s, as: UTF8.self)
        case .status(let s): return s
        default: return nil
        }
    }

    var integer: Int? {
        if case .integer(let i) = self { return i }
        return nil
    }

    var isNull: Bool { self == .null }
}
