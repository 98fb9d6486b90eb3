// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Singyeong",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "singyeong", targets: ["singyeong"]),
        .executable(name: "singyeong-load", targets: ["singyeong-load"]),
        .library(name: "Singyeong", targets: ["Singyeong"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // libev: the one event loop. Its API is mostly macros; shim.h wraps them.
        .systemLibrary(name: "CLibev", path: "Sources/CLibev"),
        // hiredis with its libev adapter, for the cluster registry.
        .systemLibrary(name: "CHiredis", path: "Sources/CHiredis"),
        // OpenSSL (libssl + libcrypto): TLS termination, SHA-1 for the WebSocket accept key, randomness.
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL"),
        // Linux system calls the Glibc module does not export (accept4).
        .systemLibrary(name: "CSystem", path: "Sources/CSystem"),
        // libcurl: outgoing HTTP(S) for the proxy, driven by the libev loop (multi-socket API).
        .systemLibrary(name: "CCurl", path: "Sources/CCurl"),
        // simdjson (C++) behind a small C API: JSON parsing on the message path.
        .target(
            name: "CSimdjson",
            path: "Sources/CSimdjson",
            // -O2 in every configuration: simdjson's On-Demand API is
            // header-only templates, ~10x slower at the debug build's -O0,
            // and the test suite decodes 16 MiB documents. NDEBUG in release
            // only, as simdjson's own release builds do: without it the
            // On-Demand iterators' internal assert()s run (SIMDJSON_ASSUME,
            // ~1,300 instructions per SEND, BENCHMARKS.md); the debug build,
            // the tests and the fuzz targets (scripts/fuzz.sh) keep them.
            cxxSettings: [.unsafeFlags(["-O2"]), .define("NDEBUG", .when(configuration: .release))],
            linkerSettings: [.linkedLibrary("simdjson")]
        ),
        .target(
            name: "Singyeong",
            dependencies: [
                "CLibev", "CHiredis", "COpenSSL", "CSystem", "CSimdjson", "CCurl",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
            // Release is plain -O: bounds, overflow and precondition checks
            // stay on in what ships (BENCHMARKS.md, "Checked release build",
            // measures what they cost). No -Ounchecked: a missed check would
            // be a silent out-of-bounds read on input from the network.
        ),
        .executableTarget(name: "singyeong", dependencies: ["Singyeong"]),
        // Load generator for the gateway benchmarks (BENCHMARKS.md).
        .executableTarget(name: "singyeong-load", dependencies: ["CSystem"], path: "Sources/singyeong-load"),
        .testTarget(name: "SingyeongTests", dependencies: ["Singyeong"]),
    ],
    swiftLanguageModes: [.v5],  // why not 6: README, "Source layout"
    cxxLanguageStandard: .cxx17
)
