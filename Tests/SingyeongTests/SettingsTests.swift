import Testing
@testable import Singyeong

/// Settings: precedence, validation messages, the config-file format.
@Suite struct SettingsTests {
    @Test func defaultsMatchTheSpec() throws {
        let s = Settings.defaults()
        #expect(s.port == 4000)
        #expect(s.bind == "::")
        #expect(s.heartbeatInterval == 45000)
        #expect(s.idleTimeout == 60000)
        #expect(s.maxFrameSize == 16 * 1024 * 1024)
        #expect(s.tlsCertificate == nil && s.tlsKey == nil)
        #expect(s.logLevel == "info")
    }

    @Test func flagBeatsEnvironmentBeatsFileBeatsDefault() throws {
        let file = ["PORT": "1001", "IDLE_TIMEOUT": "2000", "HEARTBEAT_INTERVAL": "3000"]
        let environment = ["PORT": "1002", "IDLE_TIMEOUT": "2001", "UNRELATED": "x"]
        let flags = ["PORT": "1003"]
        let s = try Settings.resolve(flags: flags, environment: environment, file: file)
        #expect(s.port == 1003)
        #expect(s.idleTimeout == 2001)
        #expect(s.heartbeatInterval == 3000)
        #expect(s.maxBodySize == 1_048_576)
    }

    @Test(arguments: [
        (["PORT": "70000"], "PORT=70000"),
        (["PORT": "abc"], "PORT=abc"),
        (["PORT": "-1"], "PORT=-1"),
        (["MAX_FRAME_SIZE": "10"], "MAX_FRAME_SIZE=10"),
        (["LOG_LEVEL": "loud"], "LOG_LEVEL=loud"),
        (["BIND": ""], "BIND"),
        (["TLS_CERT": "/nonexistent/cert.pem", "TLS_KEY": "/nonexistent/key.pem"], "TLS_CERT=/nonexistent/cert.pem"),
        (["MAX_FRAME_SIZE": "100000", "MAX_PENDING_BYTES": "65536"], "MAX_PENDING_BYTES"),
        (["PROXY_TIMEOUT": "50"], "PROXY_TIMEOUT=50"),
        (["PROXY_MAX_RESPONSE_SIZE": "-1"], "PROXY_MAX_RESPONSE_SIZE=-1"),
    ])
    func invalidValuesNameTheSetting(environment: [String: String], expected: String) {
        do {
            _ = try Settings.resolve(flags: [:], environment: environment, file: [:])
            Issue.record("accepted \(environment)")
        } catch {
            #expect(error.description.contains(expected), "message was: \(error.description)")
        }
    }

    @Test func proxyResponseLimitFitsTheOutputBound() throws {
        let clamped = try Settings.resolve(flags: [:], environment: ["MAX_PENDING_BYTES": "1048576", "MAX_FRAME_SIZE": "65536"], file: [:])
        #expect(clamped.proxyMaxResponseSize == 1048576 - 65536)
        let kept = try Settings.resolve(flags: [:], environment: ["PROXY_MAX_RESPONSE_SIZE": "1000"], file: [:])
        #expect(kept.proxyMaxResponseSize == 1000)
        #expect(Settings.defaults().proxyMaxResponseSize == 16_777_216)
    }

    /// MAX_FRAME_VALUES never refuses a metadata update the budget accepts:
    /// it is raised to what METADATA_MAX_SIZE and METADATA_MAX_KEYS need.
    @Test func frameValueLimitCoversTheMetadataBudget() throws {
        #expect(Settings.defaults().maxFrameValues == 131_072)
        let raised = try Settings.resolve(flags: [:], environment: ["METADATA_MAX_SIZE": "16777216"], file: [:])
        #expect(raised.maxFrameValues == 16_777_216 / 12 + 6 * 1024 + 4096)
        let kept = try Settings.resolve(flags: ["MAX_FRAME_VALUES": "2000000"], environment: ["METADATA_MAX_SIZE": "16777216"], file: [:])
        #expect(kept.maxFrameValues == 2_000_000)
        let low = try Settings.resolve(flags: ["MAX_FRAME_VALUES": "1024"], environment: [:], file: [:])
        #expect(low.maxFrameValues == 1_048_576 / 12 + 6 * 1024 + 4096)
    }

    /// Settings sits below Metadata, so the MAX_FRAME_VALUES floor uses its
    /// own copy of the budget's per-value cost; the two must not drift.
    @Test func storedValueBytesMatchTheBudgetsNodeCost() {
        #expect(Settings.storedValueBytes == MetadataBudget.nodeCost)
    }

    @Test func invalidFlagSaysItCameFromTheFlag() {
        do {
            _ = try Settings.resolve(flags: ["IDLE_TIMEOUT": "soon"], environment: [:], file: [:])
            Issue.record("accepted")
        } catch {
            #expect(error.description.contains("IDLE_TIMEOUT=soon (command-line flag)"))
        }
    }

    @Test func tlsNeedsBothFiles() throws {
        do {
            _ = try Settings.resolve(flags: ["TLS_CERT": "/etc/hostname"], environment: [:], file: [:])
            Issue.record("accepted a certificate without a key")
        } catch {
            #expect(error.description.contains("TLS_CERT and TLS_KEY must be set together"))
        }
        // An empty value counts as unset (systemd files carry `KEY=`).
        let s = try Settings.resolve(flags: [:], environment: ["TLS_CERT": "", "TLS_KEY": ""], file: [:])
        #expect(s.tlsCertificate == nil)
    }

    @Test(arguments: [
        // (COOKIE, error text; nil: accepted)
        (nil, "COOKIE must be set when CLUSTERING=true"),
        ("s3cret", "COOKIE is 6 bytes; at least 16"),
        ("0123456789abcde", "COOKIE is 15 bytes; at least 16"),
        ("0123456789abcdef", nil),
    ] as [(String?, String?)])
    func clusteringNeedsALongCookie(cookie: String?, expected: String?) {
        var env = ["CLUSTERING": "true"]
        env["COOKIE"] = cookie
        do {
            _ = try Settings.resolve(flags: [:], environment: env, file: [:])
            #expect(expected == nil, "accepted COOKIE \(cookie ?? "unset")")
        } catch {
            #expect(error.description.contains(expected ?? "no error"), "\(error.description)")
            #expect(error.description.contains("openssl rand -hex 32"))
        }
        // Without clustering the cookie is not used, so not checked.
        #expect((try? Settings.resolve(flags: [:], environment: ["COOKIE": "x"], file: [:])) != nil)
    }

    @Test func configFileSyntax() throws {
        let text = """
        # comment
        ; also a comment

        PORT=4100
          BIND = 127.0.0.1
        LOG_LEVEL="debug"
        IDLE_TIMEOUT='5000'
        """
        let values = try ConfigFile.parse(text, path: "test.conf")
        #expect(values == ["PORT": "4100", "BIND": "127.0.0.1", "LOG_LEVEL": "debug", "IDLE_TIMEOUT": "5000"])
    }

    @Test(arguments: [
        ("PORT 4000", "test.conf line 1: expected KEY=value"),
        ("PORT=1\nPROT=2", "test.conf line 2: unknown setting PROT"),
    ])
    func configFileErrorsGiveTheLine(text: String, expected: String) {
        do {
            _ = try ConfigFile.parse(text, path: "test.conf")
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.description == expected)
        }
    }

    @Test func everySettingHasAFlagNameAndHelp() {
        for definition in SettingsTable.all {
            #expect(!definition.help.isEmpty)
            #expect(definition.flagName == definition.name.lowercased().replacingOccurrences(of: "_", with: "-"))
        }
        #expect(SettingsTable.definition("TLS_CERT")?.flagName == "tls-cert")
    }
}
