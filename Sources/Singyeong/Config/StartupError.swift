/// A start-up failure with a message for the operator (printed as
/// `Error: <description>`). In Config, next to `SettingsError`, because
/// both the node and the cluster fail start-up with it.
struct StartupError: Error, CustomStringConvertible {
    var description: String
}
