/// A CIDR block (`169.254.0.0/16`, `fe80::/10`, or one address).
///
/// IPv4 blocks match IPv4 addresses (IPv4-mapped IPv6 included), IPv6 blocks
/// the other IPv6 addresses; a block written as `::ffff:a.b.c.d/n` with
/// n ≥ 96 is the IPv4 block `a.b.c.d/(n-96)`.
///
/// In Config because PROXY_DENY is a setting, validated and parsed at
/// start-up; the proxy's `EgressPolicy` matches addresses against it.
struct AddressBlock: Hashable, Sendable, CustomStringConvertible {
    let base: IPAddress
    let prefixLength: Int

    func contains(_ address: IPAddress) -> Bool {
        guard address.isIPv4 == base.isIPv4 else { return false }
        let (highMask, lowMask) = Self.masks(prefixLength, width: base.bitWidth)
        return address.high & highMask == base.high && address.low & lowMask == base.low
    }

    var description: String { "\(base)/\(prefixLength)" }

    /// PROXY_DENY's default: link-local (where cloud metadata services live,
    /// 169.254.169.254) and the metadata addresses outside it (AWS's IPv6
    /// endpoint, Alibaba Cloud's).
    static let defaultDeny = "169.254.0.0/16,fe80::/10,fd00:ec2::254/128,100.100.100.200/32"

    /// The block, or why `text` is not one (for a start-up error message).
    static func parse(_ text: String) -> Result<AddressBlock, SettingsError> {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let addressText = String(parts[0])
        if addressText.contains("%") || addressText.hasPrefix("[") {
            return .failure(SettingsError("\"\(text)\": write a plain address, without brackets or %zone"))
        }
        guard let address = IPAddress(addressText) else {
            return .failure(SettingsError("\"\(text)\": \"\(addressText)\" is not a numeric IPv4 or IPv6 address"))
        }
        // A mapped IPv6 rule counts as its IPv4 rule: widths differ by 96.
        let mapped = address.isIPv4 && addressText.contains(":")
        let width = mapped ? 128 : address.bitWidth
        var length = width
        if parts.count == 2 {
            let digits = parts[1]
            guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  digits.count <= 3, !(digits.count > 1 && digits.hasPrefix("0")), let value = Int(digits), value <= width
            else {
                return .failure(SettingsError("\"\(text)\": the prefix length must be a number from 0 to \(width)"))
            }
            length = value
        }
        if mapped {
            guard length >= 96 else {
                return .failure(SettingsError("\"\(text)\": an IPv4-mapped block needs a prefix length of 96 or more (write the IPv4 block)"))
            }
            length -= 96
        }
        let (highMask, lowMask) = masks(length, width: address.bitWidth)
        guard address.high & ~highMask == 0, address.low & ~lowMask == 0 else {
            let network = address.masked(high: highMask, low: lowMask)
            return .failure(SettingsError("\"\(text)\": address bits set past the prefix (did you mean \(network)/\(length)?)"))
        }
        return .success(AddressBlock(base: address, prefixLength: length))
    }

    /// A comma-separated list (blanks around entries ignored). An empty or
    /// blank text is the empty list.
    static func parseList(_ text: String) -> Result<[AddressBlock], SettingsError> {
        let trimmed = text.trimmedBlanks
        if trimmed.isEmpty { return .success([]) }
        var blocks: [AddressBlock] = []
        for entry in trimmed.split(separator: ",", omittingEmptySubsequences: false) {
            let item = entry.trimmedBlanks
            guard !item.isEmpty else { return .failure(SettingsError("empty entry in the comma-separated list")) }
            switch parse(item) {
            case .success(let block): blocks.append(block)
            case .failure(let error): return .failure(error)
            }
        }
        return .success(blocks)
    }

    /// Masks keeping the first `length` bits of a `width`-bit address.
    private static func masks(_ length: Int, width: Int) -> (UInt64, UInt64) {
        if width == 32 {
            let mask: UInt64 = length == 0 ? 0 : (0xffff_ffff << UInt64(32 - length)) & 0xffff_ffff
            return (0, mask)
        }
        func word(_ bits: Int) -> UInt64 { bits <= 0 ? 0 : bits >= 64 ? ~0 : ~0 << UInt64(64 - bits) }
        return (word(length), word(length - 64))
    }
}
