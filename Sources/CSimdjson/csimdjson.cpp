// JSON → flat pre-order tape, with simdjson's On-Demand API.
//
// Every value is visited exactly once (nothing is skipped, so simdjson's lazy
// stage 2 validates the whole document). Spans:
//  * scalars: raw_json_token() with trailing whitespace trimmed;
//  * object keys: from the opening quote (key().raw() - 1) to just after the
//    closing quote, found by scanning for the first unescaped '"';
//  * containers: start at the opening bracket (raw_json_token() of the
//    container value); end = the first non-whitespace byte after the last
//    child's span end (or after the opening bracket when empty), which must be
//    the closing bracket, plus one. Only whitespace may separate the last child
//    from the closing bracket, so this is exact and needs no iterator internals.
// Numbers: a token with '.', 'e' or 'E' is a double (parsed by simdjson);
// otherwise it is an Int64 if it fits, else a UInt64 if it fits, else (beyond
// 64 bits) a double. Integers are parsed here (grammar -?(0|[1-9][0-9]*)
// checked). `-0` is therefore the integer 0. Doubles outside the binary64
// range (1e400) are rejected by simdjson; a root-level (scalar document)
// double longer than ~1080 characters is rejected too (simdjson limit).
#include "csimdjson.h"
#include <simdjson.h>
#include <cstring>
#include <cstdint>
#include <string_view>
#include <vector>

using namespace simdjson;

extern "C" size_t sy_json_padding(void) { return SIMDJSON_PADDING; }

// Swift pads every buffer it hands to simdjson with `InputBuffer.padding`
// bytes (Sources/Singyeong/Loop/InputBuffer.swift, 64): a simdjson that reads
// further ahead than that would read past those buffers. Raise that constant
// (and this bound) together if this ever fails.
static_assert(SIMDJSON_PADDING <= 64, "SIMDJSON_PADDING exceeds InputBuffer.padding (Loop/InputBuffer.swift)");

struct sy_json_parser {
    ondemand::parser parser;
};

extern "C" sy_json_parser *sy_json_parser_new(void) {
    return new (std::nothrow) sy_json_parser();
}

extern "C" void sy_json_parser_free(sy_json_parser *parser) { delete parser; }

namespace {

static inline bool is_ws(uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// MessagePack output for sy_json_to_msgpack. Containers get a 5-byte
// placeholder header (the count is known only at their end); `compact`
// then rewrites every header in its smallest form in one forward pass.
struct MsgpackOut {
    std::vector<uint8_t> bytes;
    struct Header { size_t position; uint32_t count; bool map; };
    std::vector<Header> headers;

    // The buffers live as long as the thread; one huge payload must not
    // pin its size forever.
    void clear() {
        if (bytes.capacity() > (size_t(1) << 20)) std::vector<uint8_t>().swap(bytes);
        if (headers.capacity() > (size_t(1) << 16)) std::vector<Header>().swap(headers);
        bytes.clear();
        headers.clear();
    }
    void byte(uint8_t b) { bytes.push_back(b); }
    template <typename T> void big_endian(T v) {
        for (int shift = int(sizeof(T)) * 8 - 8; shift >= 0; shift -= 8) bytes.push_back(uint8_t(uint64_t(v) >> shift));
    }
    void uint(uint64_t v) {
        if (v < 128) byte(uint8_t(v));
        else if (v <= 0xFF) { byte(0xCC); byte(uint8_t(v)); }
        else if (v <= 0xFFFF) { byte(0xCD); big_endian(uint16_t(v)); }
        else if (v <= 0xFFFFFFFFu) { byte(0xCE); big_endian(uint32_t(v)); }
        else { byte(0xCF); big_endian(v); }
    }
    void integer(int64_t v) {
        if (v >= 0) return uint(uint64_t(v));
        if (v >= -32) byte(uint8_t(int8_t(v)));
        else if (v >= -128) { byte(0xD0); byte(uint8_t(int8_t(v))); }
        else if (v >= -32768) { byte(0xD1); big_endian(uint16_t(int16_t(v))); }
        else if (v >= -2147483648LL) { byte(0xD2); big_endian(uint32_t(int32_t(v))); }
        else { byte(0xD3); big_endian(uint64_t(v)); }
    }
    void string(std::string_view s) {
        size_t n = s.size();
        if (n < 32) byte(uint8_t(0xA0 | n));
        else if (n <= 0xFF) { byte(0xD9); byte(uint8_t(n)); }
        else if (n <= 0xFFFF) { byte(0xDA); big_endian(uint16_t(n)); }
        else { byte(0xDB); big_endian(uint32_t(n)); }
        bytes.insert(bytes.end(), s.begin(), s.end());
    }
    size_t begin(bool map) {
        headers.push_back({bytes.size(), 0, map});
        bytes.insert(bytes.end(), 5, 0);
        return headers.size() - 1;
    }
    void compact() {
        size_t write = 0, read = 0;
        for (const Header &h : headers) {
            std::memmove(bytes.data() + write, bytes.data() + read, h.position - read);
            write += h.position - read;
            uint8_t *p = bytes.data() + write;
            uint32_t n = h.count;
            if (n < 16) { p[0] = uint8_t((h.map ? 0x80 : 0x90) | n); write += 1; }
            else if (n <= 0xFFFF) { p[0] = h.map ? 0xDE : 0xDC; p[1] = uint8_t(n >> 8); p[2] = uint8_t(n); write += 3; }
            else { p[0] = h.map ? 0xDF : 0xDD; p[1] = uint8_t(n >> 24); p[2] = uint8_t(n >> 16); p[3] = uint8_t(n >> 8); p[4] = uint8_t(n); write += 5; }
            read = h.position + 5;
        }
        std::memmove(bytes.data() + write, bytes.data() + read, bytes.size() - read);
        bytes.resize(write + bytes.size() - read);
    }
};

struct Walker {
    const uint8_t *base;
    size_t length;
    sy_tape_node *nodes;
    size_t node_capacity;
    uint32_t node_count = 0;
    uint8_t *strings;
    size_t string_capacity;
    size_t string_used = 0;
    const char *message = nullptr; // set for errors detected here
    bool lazy_payload = false;
    // While walking an unexpanded payload: nothing is written or counted;
    // `dry_start` catches the payload's own start offset (its first node).
    bool dry = false;
    uint32_t dry_start = 0;
    uint32_t unexpanded_count = 0;
    // Set for sy_json_to_msgpack: values go here instead of into nodes.
    MsgpackOut *emit = nullptr;
    // More nodes than this stops the walk (SY_JSON_TOO_MANY_VALUES): a
    // hostile frame costs at most this many nodes, not one per value.
    uint32_t max_nodes = UINT32_MAX;
    bool too_many = false;
    // SY_JSON_SKIP_KNOWN_TARGET: asked whether the first container under
    // the root's "d" named "target" is a span the caller has validated
    // before, byte for byte; if so it is skipped, not walked.
    sy_json_known_fn known = nullptr;
    void *known_context = nullptr;
    bool target_seen = false;

    // True (and the walk ends) once the node limit is passed.
    bool over_limit() {
        if (node_count <= max_nodes) return false;
        too_many = true;
        message = "too many values";
        return true;
    }

    // Where a value sits, for SY_JSON_LAZY_PAYLOAD: the root, the root's
    // "d", or anywhere else.
    enum Role { ROOT, D, OTHER };

    uint32_t add(uint8_t kind, uint32_t start, uint32_t end, uint64_t bits, uint32_t string_length) {
        if (dry) {
            if (dry_start == UINT32_MAX) dry_start = start;
            return UINT32_MAX;  // >= node_capacity: callers skip their fix-ups
        }
        if (emit) {
            switch (kind) {
            case SY_KIND_NULL: emit->byte(0xC0); break;
            case SY_KIND_BOOL: emit->byte(bits ? 0xC3 : 0xC2); break;
            case SY_KIND_INT: emit->integer(int64_t(bits)); break;
            case SY_KIND_UINT: emit->uint(bits); break;
            case SY_KIND_DOUBLE: emit->byte(0xCB); emit->big_endian(bits); break;
            case SY_KIND_OBJECT: return uint32_t(emit->begin(true));
            case SY_KIND_ARRAY: return uint32_t(emit->begin(false));
            default: break;  // strings: add_string
            }
            return UINT32_MAX;
        }
        uint32_t index = node_count++;
        if (index < node_capacity) {
            sy_tape_node &n = nodes[index];
            n.kind = kind;
            n.reserved[0] = n.reserved[1] = n.reserved[2] = 0;
            n.count = 0;
            n.next = index + 1;
            n.span_start = start;
            n.span_end = end;
            n.string_length = string_length;
            n.bits = bits;
        }
        return index;
    }

    uint32_t add_string(std::string_view s, uint32_t start, uint32_t end) {
        if (dry) return add(SY_KIND_STRING, start, end, 0, 0);
        if (emit) { emit->string(s); return UINT32_MAX; }
        size_t offset = string_used;
        string_used += s.size();
        if (string_used <= string_capacity && !s.empty()) std::memcpy(strings + offset, s.data(), s.size());
        return add(SY_KIND_STRING, start, end, offset, uint32_t(s.size()));
    }

    uint32_t offset_of(const char *p) const { return uint32_t(reinterpret_cast<const uint8_t *>(p) - base); }

    // [start, end) of a number/true/false/null token: it ends at the first
    // byte that cannot be part of one. (simdjson's raw token runs to the
    // next structural character, so at the root "null\0" would otherwise
    // span the NUL; cutting here lets the trailing-content check refuse it.
    // Found by the JSON fuzz target.)
    //
    // Returns false when anything but whitespace follows the atom inside the
    // token: simdjson leaves bytes that are neither structural nor
    // whitespace (`[2\0@]`) in the scalar's token, and nothing else would
    // refuse them (found by the JSON fuzz target: a payload `[2\0...\\",
    // null]` was accepted, and its span then failed to decode on its own).
    bool atom_span(std::string_view token, uint32_t &start, uint32_t &end) const {
        start = offset_of(token.data());
        size_t n = 0;
        while (n < token.size() && is_atom_char(uint8_t(token[n]))) n++;
        end = start + uint32_t(n);
        for (size_t i = n; i < token.size() && start + i < length; i++) {
            if (!is_ws(uint8_t(token[i]))) return false;
        }
        return true;
    }

    // [start, end) of a string token: from its opening quote to just past
    // the closing one; `escaped` says whether it holds a backslash.
    void string_span(std::string_view token, uint32_t &start, uint32_t &end, bool &escaped) const {
        start = offset_of(token.data());
        end = string_end(token.data() + 1, escaped);
    }

    // A string's contents [start + 1, end - 1) as they stand in the input.
    // Only for a string without a backslash: then unescaping cannot fail
    // (stage 1 already checked its UTF-8 and control characters) and would
    // only copy it, one virtual call per string, so it is skipped.
    std::string_view verbatim(uint32_t start, uint32_t end) const {
        return std::string_view(reinterpret_cast<const char *>(base) + start + 1, end - start - 2);
    }

    // Whether base[start, end) is exactly `word`.
    bool literal_is(uint32_t start, uint32_t end, const char *word) const {
        size_t n = std::strlen(word);
        return end - start == n && std::memcmp(base + start, word, n) == 0;
    }

    static bool is_atom_char(uint8_t c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '+' || c == '-' || c == '.';
    }

    // Offset just past the closing quote of the string whose contents start
    // at p; `escaped` is set if a backslash occurs in it.
    uint32_t string_end(const char *p, bool &escaped) const {
        const uint8_t *q = reinterpret_cast<const uint8_t *>(p);
        const uint8_t *limit = base + length;
        escaped = false;
        while (q < limit) {
            if (*q == '\\') { escaped = true; q += 2; continue; }
            if (*q == '"') return uint32_t(q + 1 - base);
            q++;
        }
        return uint32_t(length); // unreachable for a validated key
    }

    // Finds the closing bracket after `from` (whitespace only in between).
    error_code close(uint32_t from, uint8_t bracket, uint32_t &end) {
        size_t i = from;
        while (i < length && is_ws(base[i])) i++;
        if (i >= length || base[i] != bracket) { message = "unterminated container"; return TAPE_ERROR; }
        end = uint32_t(i + 1);
        return SUCCESS;
    }

    template <typename V> error_code number(V &v, std::string_view token, uint32_t &end) {
        uint32_t start;
        if (!atom_span(token, start, end)) { message = "invalid number"; return NUMBER_ERROR; }
        bool is_float = false;
        for (size_t i = start; i < end; i++) {
            uint8_t c = base[i];
            if (c == '.' || c == 'e' || c == 'E') { is_float = true; break; }
        }
        if (!is_float) {
            // Integers are parsed here, not by simdjson: its root-scalar path
            // copies at most 20 characters and so misreads longer integers.
            size_t i = start;
            bool negative = base[i] == '-';
            if (negative) i++;
            size_t digits = end - i;
            if (digits == 0 || (base[i] == '0' && digits > 1)) { message = "invalid number"; return NUMBER_ERROR; }
            uint64_t magnitude = 0;
            bool overflow = false;
            for (; i < end; i++) {
                uint8_t c = base[i];
                if (c < '0' || c > '9') { message = "invalid number"; return NUMBER_ERROR; }
                uint64_t digit = c - '0';
                if (magnitude > (UINT64_MAX - digit) / 10) overflow = true;
                else magnitude = magnitude * 10 + digit;
            }
            if (!overflow) {
                if (!negative && magnitude > uint64_t(INT64_MAX)) { add(SY_KIND_UINT, start, end, magnitude, 0); return SUCCESS; }
                if (!negative) { add(SY_KIND_INT, start, end, magnitude, 0); return SUCCESS; }
                if (magnitude <= uint64_t(INT64_MAX) + 1) { add(SY_KIND_INT, start, end, uint64_t(0) - magnitude, 0); return SUCCESS; }
            }
            // Beyond 64 bits: a double (simdjson parses the digits).
        }
        double d;
        auto error = v.get_double().get(d);
        if (error) return error;
        uint64_t bits;
        std::memcpy(&bits, &d, sizeof bits);
        add(SY_KIND_DOUBLE, start, end, bits, 0);
        return SUCCESS;
    }

    // A scalar value (`V` is ondemand::value or ondemand::document).
    template <typename V> error_code scalar(V &v, ondemand::json_type type, uint32_t &end) {
        std::string_view token = v.raw_json_token();
        uint32_t start;
        switch (type) {
        case ondemand::json_type::number:
            return number(v, token, end);
        case ondemand::json_type::string: {
            bool escaped;
            string_span(token, start, end, escaped);
            if (!escaped) {
                // The value must still be consumed: On-Demand checks what
                // follows a value only when it is (an unconsumed string in
                // an array let `["a":1]` through: found by the fuzzer).
                ondemand::raw_json_string raw;
                auto error = v.get_raw_json_string().get(raw);
                if (error) return error;
                add_string(verbatim(start, end), start, end);
                return SUCCESS;
            }
            std::string_view s;
            auto error = v.get_string().get(s);
            if (error) return error;
            add_string(s, start, end);
            return SUCCESS;
        }
        case ondemand::json_type::boolean: {
            if (!atom_span(token, start, end)) { message = "invalid literal"; return T_ATOM_ERROR; }
            bool b;
            auto error = v.get_bool().get(b);
            if (error) return error;
            // The literal must be exactly the word (simdjson's root path
            // accepted "truex\n"-like input in fuzzing).
            if (!literal_is(start, end, b ? "true" : "false")) { message = "invalid literal"; return b ? T_ATOM_ERROR : F_ATOM_ERROR; }
            add(SY_KIND_BOOL, start, end, b ? 1 : 0, 0);
            return SUCCESS;
        }
        case ondemand::json_type::null: {
            if (!atom_span(token, start, end)) { message = "invalid literal"; return N_ATOM_ERROR; }
            bool is_null;
            auto error = v.is_null().get(is_null);
            if (error) return error;
            if (!is_null || !literal_is(start, end, "null")) { message = "invalid literal"; return N_ATOM_ERROR; }
            add(SY_KIND_NULL, start, end, 0, 0);
            return SUCCESS;
        }
        default:
            message = "unexpected container";
            return TAPE_ERROR;
        }
    }

    // Offset just past the container that opens at `start`, by bracket
    // depth with strings and their escapes skipped; 0 when the input ends
    // first. Only the caller's answer makes the span trusted: a span it
    // has seen validated (identical bytes) is valid JSON, so its brackets
    // nest properly and simdjson's skip of it stops at `end - 1`.
    // `deepest`: the most containers open at once, the span's own included.
    uint32_t balanced_end(uint32_t start, long &deepest) const {
        long depth = 0;
        deepest = 0;
        bool in_string = false;
        for (size_t i = start; i < length; i++) {
            uint8_t c = base[i];
            if (in_string) {
                if (c == '\\') i++;
                else if (c == '"') in_string = false;
                continue;
            }
            if (c == '"') in_string = true;
            else if (c == '{' || c == '[') { if (++depth > deepest) deepest = depth; }
            else if ((c == '}' || c == ']') && --depth == 0) return uint32_t(i + 1);
        }
        return 0;
    }

    // SY_JSON_SKIP_KNOWN_TARGET: a container value whose exact bytes the
    // caller knows becomes one UNEXPANDED node and is left unconsumed.
    // `depth`: the value's own depth. Spans that would nest deeper here than
    // SY_JSON_MAX_DEPTH are walked (and refused) as usual: the span may
    // have been validated at a shallower depth.
    error_code skip_known(ondemand::value &v, int depth, uint32_t &end, bool &skipped) {
        skipped = false;
        ondemand::json_type type;
        auto error = v.type().get(type);
        if (error) return error;
        if (type != ondemand::json_type::object && type != ondemand::json_type::array) return SUCCESS;
        uint32_t start = offset_of(v.raw_json_token().data());
        long deepest;
        uint32_t stop = balanced_end(start, deepest);
        if (stop == 0 || depth + deepest > SY_JSON_MAX_DEPTH) return SUCCESS;
        if (!known(known_context, base + start, stop - start)) return SUCCESS;
        add(SY_KIND_UNEXPANDED, start, stop, 0, 0);
        unexpanded_count++;
        end = stop;
        skipped = true;
        return SUCCESS;
    }

    // Validates a container without writing nodes, then adds one
    // UNEXPANDED node with its span.
    error_code walk_unexpanded(ondemand::value &v, int depth, uint32_t &end) {
        dry = true;
        dry_start = UINT32_MAX;
        auto error = walk(v, depth, end, OTHER);
        dry = false;
        if (error) return error;
        add(SY_KIND_UNEXPANDED, dry_start, end, 0, 0);
        unexpanded_count++;
        return SUCCESS;
    }

    error_code walk(ondemand::value &v, int depth, uint32_t &end, Role role) {
        ondemand::json_type type;
        auto error = v.type().get(type);
        if (error) return error;
        if (type != ondemand::json_type::object && type != ondemand::json_type::array) return scalar(v, type, end);
        if (depth >= SY_JSON_MAX_DEPTH) { message = "nesting too deep"; return DEPTH_ERROR; }
        uint32_t start = offset_of(v.raw_json_token().data());
        uint32_t index = add(type == ondemand::json_type::object ? SY_KIND_OBJECT : SY_KIND_ARRAY, start, 0, 0, 0);
        uint32_t count = 0;
        uint32_t last_end = start + 1;
        if (type == ondemand::json_type::object) {
            ondemand::object object;
            if ((error = v.get_object().get(object))) return error;
            for (auto member : object) {
                ondemand::field field;
                if ((error = std::move(member).get(field))) return error;
                const char *raw = field.key().raw();
                uint32_t key_start = offset_of(raw) - 1;
                bool escaped;
                uint32_t key_end = string_end(raw, escaped);
                std::string_view key;
                if (!escaped) key = verbatim(key_start, key_end);
                else if ((error = field.unescaped_key().get(key))) return error;
                add_string(key, key_start, key_end);
                Role child = OTHER;
                if (lazy_payload && !dry) {
                    if (role == ROOT && key == "d") child = D;
                    else if (role == D && known && !target_seen && key == "target") {
                        target_seen = true;
                        ondemand::value value = field.value();
                        uint32_t target_end;
                        bool skipped;
                        if ((error = skip_known(value, depth + 1, target_end, skipped))) return error;
                        if (skipped) {
                            // Not consumed: the object iterator skips it.
                            last_end = target_end;
                            count++;
                            if (over_limit()) return TAPE_ERROR;
                            continue;
                        }
                        if ((error = walk(value, depth + 1, last_end, OTHER))) return error;
                        count++;
                        if (over_limit()) return TAPE_ERROR;
                        continue;
                    }
                    else if (role == D && key == "payload") {
                        ondemand::value value = field.value();
                        ondemand::json_type value_type;
                        if ((error = value.type().get(value_type))) return error;
                        if (value_type == ondemand::json_type::object || value_type == ondemand::json_type::array) {
                            error = walk_unexpanded(value, depth + 1, last_end);
                        } else {
                            error = walk(value, depth + 1, last_end, OTHER);
                        }
                        if (error) return error;
                        count++;
                        if (over_limit()) return TAPE_ERROR;
                        continue;
                    }
                }
                if ((error = walk(field.value(), depth + 1, last_end, child))) return error;
                count++;
                if (over_limit()) return TAPE_ERROR;
            }
            if ((error = close(last_end, '}', end))) return error;
        } else {
            ondemand::array array;
            if ((error = v.get_array().get(array))) return error;
            for (auto element : array) {
                ondemand::value child;
                if ((error = element.get(child))) return error;
                if ((error = walk(child, depth + 1, last_end, OTHER))) return error;
                count++;
                if (over_limit()) return TAPE_ERROR;
            }
            if ((error = close(last_end, ']', end))) return error;
        }
        if (emit) {
            emit->headers[index].count = count;
            return SUCCESS;
        }
        if (index < node_capacity) {
            nodes[index].count = count;
            nodes[index].next = node_count;
            nodes[index].span_end = end;
        }
        return SUCCESS;
    }
};

} // namespace

// The first non-whitespace byte opens a container whose closing bracket is
// the last non-whitespace byte.
static bool root_closes_input(const uint8_t *input, size_t length) {
    size_t first = 0;
    while (first < length && is_ws(input[first])) first++;
    size_t last = length;
    while (last > first && is_ws(input[last - 1])) last--;
    if (last <= first + 1) return false;
    uint8_t open = input[first], close = input[last - 1];
    return (open == '{' && close == '}') || (open == '[' && close == ']');
}

// Bracket depth returns to zero exactly at the end, never below (strings and
// their escapes skipped). Only run in the rare case above.
static bool brackets_balance(const uint8_t *input, size_t length) {
    long depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < length; i++) {
        uint8_t c = input[i];
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') in_string = true;
        else if (c == '{' || c == '[') depth++;
        else if (c == '}' || c == ']') { if (--depth < 0) return false; }
    }
    return depth == 0 && !in_string;
}

// Walks one document with `w` (which writes nodes or emits MessagePack).
// Returns SY_JSON_OK or SY_JSON_INVALID (with `result` filled in).
// `balanced`: the caller knows the brackets balance (a span this file's walk
// already validated), so the rare-case scan below can be skipped.
// `root_depth`: the depth the document's root sits at in an enclosing
// document (0 on its own), so a span checked alone obeys SY_JSON_MAX_DEPTH
// as it would in place.
static int walk_document(sy_json_parser *parser, const uint8_t *input, size_t length, Walker &w,
                         bool balanced, sy_json_result *result, int root_depth = 0) {
    result->node_count = 0;
    result->string_bytes = 0;
    result->simdjson_error = 0;
    result->message = nullptr;
    result->unexpanded_count = 0;
    if (length >= 0xFFFFFFFFu) { result->message = "document too large"; return SY_JSON_INVALID; }

    if (parser == nullptr) {
        // One parser per thread, created on first use, kept for the thread's life.
        static thread_local sy_json_parser thread_parser;
        parser = &thread_parser;
    }
    error_code error = SUCCESS;
    ondemand::document doc;
    error = parser->parser.iterate(padded_string_view(input, length, length + SIMDJSON_PADDING)).get(doc);
    if (!error) {
        bool is_scalar = false;
        error = doc.is_scalar().get(is_scalar);
        uint32_t end = 0;
        if (!error && is_scalar) {
            ondemand::json_type type;
            error = doc.type().get(type);
            if (!error) error = w.scalar(doc, type, end);
        } else if (!error) {
            // simdjson 3.0.1's On-Demand walks an unbalanced document past its
            // last structural index (into stale indexes of earlier documents:
            // an out-of-bounds read found by fuzzing). Its own root checks
            // (simdjson issue #1834) only run through document::get_object();
            // the same checks here, before walking: the root container must
            // end the input, and if the byte after the input could be read as
            // a closing bracket, the brackets must balance.
            if (!root_closes_input(input, length) ||
                (!balanced && (input[length] == '}' || input[length] == ']') && !brackets_balance(input, length))) {
                w.message = "unterminated container";
                error = TAPE_ERROR;
            } else {
                ondemand::value root;
                error = doc.get_value().get(root);
                if (!error) error = w.walk(root, root_depth, end, Walker::ROOT);
            }
        }
        // Only whitespace may follow the root value.
        if (!error) {
            for (size_t i = end; i < length; i++) {
                if (!is_ws(input[i])) { error = TRAILING_CONTENT; w.message = nullptr; break; }
            }
        }
    }
    if (error) {
        result->simdjson_error = w.too_many ? 0 : int32_t(error);
        result->message = w.message ? w.message : error_message(error);
        return w.too_many ? SY_JSON_TOO_MANY_VALUES : SY_JSON_INVALID;
    }
    return SY_JSON_OK;
}

extern "C" int sy_json_build_tape(sy_json_parser *parser, const uint8_t *input, size_t length,
                                  uint32_t flags, uint32_t max_nodes,
                                  sy_tape_node *nodes, size_t node_capacity,
                                  uint8_t *strings, size_t string_capacity,
                                  sy_json_result *result) {
    return sy_json_build_tape_known(parser, input, length, flags, max_nodes, nodes, node_capacity, strings,
                                    string_capacity, nullptr, nullptr, result);
}

extern "C" int sy_json_build_tape_known(sy_json_parser *parser, const uint8_t *input, size_t length,
                                        uint32_t flags, uint32_t max_nodes,
                                        sy_tape_node *nodes, size_t node_capacity,
                                        uint8_t *strings, size_t string_capacity,
                                        sy_json_known_fn known, void *known_context,
                                        sy_json_result *result) {
    Walker w{input, length, nodes, node_capacity, 0, strings, string_capacity};
    w.lazy_payload = (flags & SY_JSON_LAZY_PAYLOAD) != 0;
    if ((flags & SY_JSON_SKIP_KNOWN_TARGET) != 0 && w.lazy_payload) {
        w.known = known;
        w.known_context = known_context;
    }
    w.max_nodes = max_nodes;
    int status = walk_document(parser, input, length, w, (flags & SY_JSON_VALIDATED_SPAN) != 0, result);
    if (status != SY_JSON_OK) return status;
    result->node_count = w.node_count;
    result->string_bytes = uint32_t(w.string_used);
    result->unexpanded_count = w.unexpanded_count;
    if (w.node_count > node_capacity || w.string_used > string_capacity) return SY_JSON_NEED_CAPACITY;
    return SY_JSON_OK;
}

extern "C" int sy_json_validate_container(const uint8_t *input, size_t length, uint32_t depth,
                                          sy_json_result *result) {
    result->message = nullptr;
    result->simdjson_error = 0;
    if (length < 2 || (input[0] != '{' && input[0] != '[') || (input[length - 1] != '}' && input[length - 1] != ']')) {
        result->message = "not exactly one array or object";
        return SY_JSON_INVALID;
    }
    if (depth >= SY_JSON_MAX_DEPTH) { result->message = "nesting too deep"; return SY_JSON_INVALID; }
    // A small span is checked in a copy followed by spaces: in place, the
    // byte after it is usually the frame's closing brace, which costs the
    // bracket-balance scan of walk_document (a byte loop, ~5 % of a SEND's
    // time when measured) that the copy (one memcpy) avoids.
    static thread_local std::vector<uint8_t> copy;
    const size_t max_copied = size_t(64) << 10;
    if (length <= max_copied) {
        copy.resize(length + SIMDJSON_PADDING);
        std::memcpy(copy.data(), input, length);
        std::memset(copy.data() + length, ' ', SIMDJSON_PADDING);
        input = copy.data();
    }
    Walker w{input, length, nullptr, 0, 0, nullptr, 0};
    // Dry: validated by the walk a lazy payload gets, nothing written.
    w.dry = true;
    w.dry_start = UINT32_MAX;
    return walk_document(nullptr, input, length, w, false, result, int(depth));
}

extern "C" int sy_json_to_msgpack(const uint8_t *input, size_t length, uint32_t flags,
                                  const uint8_t **out, size_t *out_length, sy_json_result *result) {
    static thread_local MsgpackOut output;
    output.clear();
    Walker w{input, length, nullptr, 0, 0, nullptr, 0};
    w.emit = &output;
    // Typical payloads shrink as MessagePack: the input's length is room
    // enough, and growing a 16 MiB vector by doubling copies and faults in
    // twice the memory.
    output.bytes.reserve(length + 64);
    int status = walk_document(nullptr, input, length, w, (flags & SY_JSON_VALIDATED_SPAN) != 0, result);
    if (status != SY_JSON_OK) return status;
    output.compact();
    *out = output.bytes.data();
    *out_length = output.bytes.size();
    return SY_JSON_OK;
}
