import ArgumentParser
import Logging

/// `singyeong [--config PATH] [--port N] ...`: resolves the settings from the
/// flags (`SettingsArguments`, in Config), the environment and the config
/// file, sets up logging, then builds and runs the node. In Node because it
/// is the one place that starts everything.
public struct SingyeongMain: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "singyeong",
        abstract: "Singyeong: a metadata-routed message bus (신경 wire protocol).",
        discussion: """
        Every setting can be given as a flag (--port 4000), an environment variable (PORT=4000) \
        or a line in the --config file (PORT=4000). A flag beats the environment, which beats the \
        file, which beats the default. The config file uses systemd EnvironmentFile syntax.
        Signals: SIGTERM/SIGINT drain and exit (a second one exits at once); SIGHUP reloads TLS_CERT/TLS_KEY.
        """,
        version: SingyeongVersion.string
    )

    @OptionGroup var arguments: SettingsArguments

    public init() {}

    public func run() throws {
        let settings: Settings
        do {
            settings = try arguments.resolveSettings()
        } catch {
            throw ValidationError(error.description)
        }
        let level = Logger.Level(rawValue: settings.logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let node = try SingyeongNode(settings: settings)
        try node.run()
    }
}
