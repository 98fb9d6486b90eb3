/// The implementation's version, reported by `--version`, `/api/version`,
/// the metrics and the start-up log line. In Config, with the command-line
/// flags, so that every layer that reports it can see it.
enum SingyeongVersion {
    static let string = "0.1.0"
}
