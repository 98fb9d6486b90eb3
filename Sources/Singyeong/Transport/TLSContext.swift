import COpenSSL
import Glibc

/// TLS configuration: one OpenSSL `SSL_CTX`, either the listener's (built
/// from a PEM certificate chain and key) or the client context peer links
/// dial with. Both follow one protocol policy (`applyPolicy`): TLS 1.2 with
/// ECDHE + AEAD suites only, TLS 1.3 with OpenSSL's default suites.
///
/// On SIGHUP the node builds a fresh context from the same paths and swaps it
/// in for new connections; existing sessions keep a reference to the context
/// they were created from (OpenSSL reference-counts it), so nothing is
/// dropped. A context that fails to load is reported and the old one stays.
final class TLSContext {
    let raw: OpaquePointer
    let certificatePath: String
    let keyPath: String

    /// Loads and checks the certificate chain and key. Throws a message that
    /// names the failing file and OpenSSL's reason.
    init(certificatePath: String, keyPath: String) throws(TLSContextError) {
        guard let method = TLS_server_method(), let ctx = SSL_CTX_new(method) else {
            throw TLSContextError(message: "SSL_CTX_new failed: \(TLSContext.drainErrors())")
        }
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        do {
            try TLSContext.applyPolicy(ctx)
        } catch {
            SSL_CTX_free(ctx)
            throw error
        }
        _ = sy_ssl_ctx_set_options(ctx, SY_SSL_OP_CIPHER_SERVER_PREFERENCE)
        // RELEASE_BUFFERS: an idle session gives back its ~34 KiB of record
        // buffers, which is what keeps idle TLS connections small.
        // Partial writes + moving buffer: our write path retries from a
        // rebuilt staging buffer with the same leading bytes.
        _ = sy_ssl_ctx_set_mode(ctx, SY_SSL_MODE_RELEASE_BUFFERS | SY_SSL_MODE_ENABLE_PARTIAL_WRITE | SY_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER)
        // No session cache: clients of a message bus hold long-lived
        // connections, and the cache would cost memory per session.
        _ = sy_ssl_ctx_set_session_cache_mode(ctx, SY_SSL_SESS_CACHE_OFF)
        SSL_CTX_set_num_tickets(ctx, 0)

        guard SSL_CTX_use_certificate_chain_file(ctx, certificatePath) == 1 else {
            let reason = TLSContext.drainErrors()
            SSL_CTX_free(ctx)
            throw TLSContextError(message: "TLS_CERT \(certificatePath): \(reason)")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, keyPath, SSL_FILETYPE_PEM) == 1 else {
            let reason = TLSContext.drainErrors()
            SSL_CTX_free(ctx)
            throw TLSContextError(message: "TLS_KEY \(keyPath): \(reason)")
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            let reason = TLSContext.drainErrors()
            SSL_CTX_free(ctx)
            throw TLSContextError(message: "TLS_KEY \(keyPath) does not match TLS_CERT \(certificatePath): \(reason)")
        }
        raw = ctx
    }

    /// TLS 1.2 cipher suites: forward-secret key exchange (ECDHE) with AEAD
    /// ciphers only — the TLS 1.2 part of Mozilla's "intermediate" profile
    /// minus its finite-field DHE suites (slow, and flagged by scanners for
    /// weak or unnegotiated groups). No static-RSA key exchange (no forward
    /// secrecy), no CBC (Lucky13/padding-oracle class), no SHA-1 MACs.
    /// ECDSA suites cover an ECDSA certificate; RSA ones an RSA certificate.
    static let tls12Ciphers = [
        "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    ].joined(separator: ":")

    /// The protocol policy shared by the listener and the peer-link dialer:
    /// TLS 1.2–1.3, the TLS 1.2 suites of `tls12Ciphers`, OpenSSL's TLS 1.3
    /// suites (all AEAD and forward-secret by construction), no compression
    /// (CRIME), no renegotiation.
    private static func applyPolicy(_ ctx: OpaquePointer) throws(TLSContextError) {
        guard sy_ssl_ctx_set_min_proto(ctx, SY_TLS1_2_VERSION) == 1,
              sy_ssl_ctx_set_max_proto(ctx, SY_TLS1_3_VERSION) == 1,
              SSL_CTX_set_cipher_list(ctx, tls12Ciphers) == 1 else {
            throw TLSContextError(message: "TLS policy rejected by OpenSSL: \(drainErrors())")
        }
        _ = sy_ssl_ctx_set_options(ctx, SY_SSL_OP_NO_COMPRESSION | SY_SSL_OP_NO_RENEGOTIATION)
    }

    /// A client context for dialing peer nodes over TLS: TLS 1.2–1.3, no
    /// certificate checks (the peer link authenticates with COOKIE, and
    /// binds that proof to this TLS session through a keying-material
    /// exporter, so a man in the middle cannot relay it).
    init(client: Void) throws(TLSContextError) {
        guard let method = TLS_client_method(), let ctx = SSL_CTX_new(method) else {
            throw TLSContextError(message: "SSL_CTX_new (client) failed: \(TLSContext.drainErrors())")
        }
        do {
            try TLSContext.applyPolicy(ctx)
        } catch {
            SSL_CTX_free(ctx)
            throw error
        }
        _ = sy_ssl_ctx_set_mode(ctx, SY_SSL_MODE_RELEASE_BUFFERS | SY_SSL_MODE_ENABLE_PARTIAL_WRITE | SY_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
        raw = ctx
        certificatePath = ""
        keyPath = ""
    }

    deinit { SSL_CTX_free(raw) }

    /// Empties OpenSSL's thread error queue into one line.
    static func drainErrors() -> String {
        var parts: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var text = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &text, text.count)
            parts.append(String(cString: text))
        }
        return parts.isEmpty ? "unknown error" : parts.joined(separator: "; ")
    }
}

/// A certificate or key that could not be loaded.
struct TLSContextError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
