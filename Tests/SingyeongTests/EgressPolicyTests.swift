import Testing
@testable import Singyeong

/// The proxy's egress policy as pure logic: PROXY_DENY parsing (a setting,
/// so bad input must stop start-up with a clear message), CIDR matching
/// (the default link-local / metadata rules are only ever tested here, never
/// with a connection), IPv4-mapped addresses, and this node's own ports.
@Suite struct EgressPolicyTests {
    static let defaults = try! AddressBlock.parseList(AddressBlock.defaultDeny).get()

    @Test(arguments: [
        ("169.254.0.0/16", "169.254.0.0/16"),
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("0.0.0.0/0", "0.0.0.0/0"),
        ("192.0.2.7", "192.0.2.7/32"),
        ("fe80::/10", "fe80::/10"),
        ("FE80::/10", "fe80::/10"),
        ("fd00:ec2::254", "fd00:ec2::254/128"),
        ("::/0", "::/0"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("::ffff:169.254.0.0/112", "169.254.0.0/16"),
        ("::ffff:10.1.2.3", "10.1.2.3/32"),
        ("::ffff:0:0/96", "0.0.0.0/0"),
    ])
    func blocksParse(text: String, normalised: String) throws {
        let block = try AddressBlock.parse(text).get()
        #expect(block.description == normalised)
    }

    @Test(arguments: [
        ("", "is not a numeric IPv4 or IPv6 address"),
        ("metadata.google.internal", "is not a numeric IPv4 or IPv6 address"),
        ("10.0.0/8", "is not a numeric IPv4 or IPv6 address"),
        ("010.0.0.0/8", "is not a numeric IPv4 or IPv6 address"),
        ("256.0.0.0/8", "is not a numeric IPv4 or IPv6 address"),
        ("/8", "is not a numeric IPv4 or IPv6 address"),
        ("10.0.0.0/", "prefix length must be a number from 0 to 32"),
        ("10.0.0.0/33", "prefix length must be a number from 0 to 32"),
        ("10.0.0.0/-1", "prefix length must be a number from 0 to 32"),
        ("10.0.0.0/ 8", "prefix length must be a number from 0 to 32"),
        ("10.0.0.0/08", "prefix length must be a number from 0 to 32"),
        ("10.0.0.0/8/8", "prefix length must be a number from 0 to 32"),
        ("10.0.0.0/99999999999999999999", "prefix length must be a number from 0 to 32"),
        ("fe80::/129", "prefix length must be a number from 0 to 128"),
        ("10.0.0.1/8", "did you mean 10.0.0.0/8?"),
        ("169.254.169.254/16", "did you mean 169.254.0.0/16?"),
        ("fe80::1/10", "did you mean fe80::/10?"),
        ("::ffff:10.0.0.0/95", "needs a prefix length of 96 or more"),
        ("fe80::1%eth0", "without brackets or %zone"),
        ("[::1]", "without brackets or %zone"),
    ])
    func badBlocksSayWhy(text: String, expected: String) {
        switch AddressBlock.parse(text) {
        case .success(let block): Issue.record("accepted \(text) as \(block)")
        case .failure(let error): #expect(error.description.contains(expected), "message was: \(error.description)")
        }
    }

    @Test(arguments: [
        ("169.254.0.0/16, fe80::/10", 2),
        (" 10.0.0.0/8 ,192.168.0.0/16,fc00::/7 ", 3),
        ("", 0),
        ("  ", 0),
    ])
    func listsParse(text: String, count: Int) throws {
        #expect(try AddressBlock.parseList(text).get().count == count)
    }

    @Test(arguments: ["10.0.0.0/8,", ",10.0.0.0/8", "10.0.0.0/8,,fe80::/10", "10.0.0.0/8 fe80::/10", "10.0.0.0/8;fe80::/10"])
    func badListsAreRefused(text: String) {
        if case .success(let blocks) = AddressBlock.parseList(text) { Issue.record("accepted \(text) as \(blocks)") }
    }

    /// The default rules: link-local and metadata addresses, in every
    /// spelling a socket address can take; their neighbours are allowed.
    @Test(arguments: [
        ("169.254.169.254", true), ("169.254.0.0", true), ("169.254.255.255", true),
        ("169.253.255.255", false), ("169.255.0.0", false),
        ("::ffff:169.254.169.254", true), ("::ffff:a9fe:a9fe", true), ("::ffff:169.253.1.1", false),
        ("fe80::1", true), ("fe80::a9fe:a9fe", true), ("febf:ffff::1", true), ("fe80::1%eth0", true),
        ("fec0::1", false), ("fe7f::1", false),
        ("fd00:ec2::254", true), ("fd00:ec2::253", false),
        ("100.100.100.200", true), ("100.100.100.201", false),
        ("127.0.0.1", false), ("::1", false), ("10.0.0.1", false), ("192.168.1.1", false), ("8.8.8.8", false),
        ("2001:db8::1", false),
        // IPv4-compatible (deprecated, not mapped) is an IPv6 address.
        ("::169.254.169.254", false),
    ])
    func defaultRules(address: String, denied: Bool) throws {
        let ip = try #require(IPAddress(address))
        let policy = EgressPolicy(deny: Self.defaults, interfaceAddresses: { [] })
        #expect((policy.refusal(address: ip, port: 80) != nil) == denied)
        if denied { #expect(policy.refusal(address: ip, port: 80)?.hasPrefix("egress denied: ") == true) }
    }

    @Test(arguments: [
        ("::ffff:127.0.0.2", "127.0.0.2", true),
        ("127.0.0.2", "::ffff:127.0.0.2", true),
        ("::ffff:7f00:2", "127.0.0.0/8", true),
        ("127.0.0.2", "::/0", false),
        ("::ffff:127.0.0.2", "::/0", false),
        ("2001:db8::1", "0.0.0.0/0", false),
        ("2001:db8::1", "::/0", true),
        ("10.255.255.255", "10.0.0.0/8", true),
        ("11.0.0.0", "10.0.0.0/8", false),
        ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::/32", true),
        ("2001:db9::", "2001:db8::/32", false),
        ("2001:db8::1", "2001:db8::1/128", true),
        ("2001:db8::2", "2001:db8::1/128", false),
        ("2001:db8::8000:0:0:0", "2001:db8::/65", false),
        ("2001:db8::7fff:0:0:0", "2001:db8::/65", true),
    ])
    func mappedAddressesMatchIPv4Rules(address: String, rule: String, matches: Bool) throws {
        let ip = try #require(IPAddress(address))
        let block = try AddressBlock.parse(rule).get()
        #expect(block.contains(ip) == matches)
    }

    @Test(arguments: [
        ("::ffff:1.2.3.4", "1.2.3.4", true),
        ("[::1]", "::1", false),
        ("fe80::1%eth0", "fe80::1", false),
        ("2001:DB8::0:1", "2001:db8::1", false),
        ("0.0.0.0", "0.0.0.0", true),
    ])
    func addressesParseAndPrint(text: String, printed: String, isIPv4: Bool) throws {
        let ip = try #require(IPAddress(text))
        #expect(ip.description == printed)
        #expect(ip.isIPv4 == isIPv4)
    }

    @Test(arguments: ["", "localhost", "1.2.3", "1.2.3.4:80", "::1::2", "[::1"])
    func namesAreNotAddresses(text: String) {
        #expect(IPAddress(text) == nil)
    }

    /// This node's ports on any local address: loopback, unspecified, BIND,
    /// an interface's address (mapped too); other hosts and ports are fine.
    @Test(arguments: [
        ("127.0.0.1", 4000, true), ("127.9.9.9", 4001, true), ("::1", 4000, true), ("::ffff:127.0.0.1", 4000, true),
        ("0.0.0.0", 4000, true), ("::", 4001, true),
        ("10.1.2.3", 4000, true), ("::ffff:10.1.2.3", 4000, true), ("fd12::5", 4001, true), ("192.0.2.7", 4000, true),
        ("127.0.0.1", 4002, false), ("10.1.2.3", 80, false), ("10.1.2.4", 4000, false), ("fd12::6", 4000, false),
        ("198.51.100.1", 4000, false),
    ])
    func ownPortsOnLocalAddresses(address: String, port: Int, refused: Bool) throws {
        let policy = EgressPolicy(deny: [], ownPorts: [4000, 4001], bindAddress: IPAddress("192.0.2.7"),
                                  interfaceAddresses: { [IPAddress("10.1.2.3")!, IPAddress("fd12::5")!] })
        let ip = try #require(IPAddress(address))
        let refusal = policy.refusal(address: ip, port: port)
        #expect((refusal != nil) == refused)
        if refused { #expect(refusal == "egress denied: \(ip) port \(port) (this node)") }
    }

    @Test func hostInterfacesIncludeLoopback() {
        #expect(EgressPolicy.hostInterfaceAddresses().contains(IPAddress("127.0.0.1")!))
    }

    @Test func settingDefaultsAndExplicitEmpty() throws {
        #expect(Settings.defaults().proxyDeny == Self.defaults)
        #expect(Self.defaults.count == 4)
        let none = try Settings.resolve(flags: [:], environment: ["PROXY_DENY": ""], file: [:])
        #expect(none.proxyDeny.isEmpty)
        let fromFile = try Settings.resolve(flags: [:], environment: [:], file: ["PROXY_DENY": "127.0.0.2/32"])
        #expect(fromFile.proxyDeny.map(\.description) == ["127.0.0.2/32"])
    }

    @Test(arguments: [
        (["PROXY_DENY": "10.0.0.1/8"], "PROXY_DENY=10.0.0.1/8 (environment)"),
        (["PROXY_DENY": "fe80::/10,"], "PROXY_DENY=fe80::/10, (environment): empty entry"),
        (["PROXY_DENY": "localhost"], "PROXY_DENY=localhost (environment)"),
        (["PROXY_MAX_BUFFERED_BYTES": "1000"], "PROXY_MAX_BUFFERED_BYTES=1000"),
        (["PROXY_MAX_PENDING_LOOKUPS": "0"], "PROXY_MAX_PENDING_LOOKUPS=0"),
    ])
    func badSettingsNameThemselves(environment: [String: String], expected: String) {
        do {
            _ = try Settings.resolve(flags: [:], environment: environment, file: [:])
            Issue.record("accepted \(environment)")
        } catch {
            #expect(error.description.contains(expected), "message was: \(error.description)")
        }
    }
}
