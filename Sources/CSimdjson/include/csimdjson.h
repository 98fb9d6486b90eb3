#ifndef SINGYEONG_CSIMDJSON_H
#define SINGYEONG_CSIMDJSON_H
/* C API over simdjson (C++), so Swift can call it without C++ interop.
 *
 * One entry point decodes a JSON document into a flat pre-order "tape" of
 * nodes written into caller-provided memory (see DocumentTape.swift, whose
 * Node struct has exactly the layout of sy_tape_node). */
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes simdjson may read past the end of its input; every buffer handed to
 * sy_json_* must have this many readable bytes after `length`. */
size_t sy_json_padding(void);

/* Node kinds; the values match DocumentTape.Kind's raw values. */
enum {
    SY_KIND_NULL = 0,
    SY_KIND_BOOL = 1,
    SY_KIND_INT = 2,     /* bits: Int64 bit pattern */
    SY_KIND_UINT = 3,    /* bits: UInt64 > INT64_MAX */
    SY_KIND_DOUBLE = 4,  /* bits: IEEE-754 binary64 */
    SY_KIND_STRING = 5,  /* bits: arena offset; string_length: byte count */
    SY_KIND_ARRAY = 6,   /* count: elements */
    SY_KIND_OBJECT = 7,  /* count: members (each a key string node + a value node) */
    SY_KIND_UNEXPANDED = 8 /* a container validated but not decoded: only its span is set */
};

/* Flags for sy_json_build_tape. */
enum {
    /* The value of "payload" inside the root object's "d", when it is an
     * array or object, is validated but not decoded: one UNEXPANDED node
     * holds its span. A SEND's payload is forwarded as bytes, so a frame of
     * millions of small keys costs a walk, not millions of nodes. */
    SY_JSON_LAZY_PAYLOAD = 1,
    /* The input is a span that sy_json_build_tape already validated inside
     * a larger document (an UNEXPANDED node's span): its brackets are known
     * to balance, so that scan is skipped. Never set for other input. */
    SY_JSON_VALIDATED_SPAN = 2,
    /* With SY_JSON_LAZY_PAYLOAD, for sy_json_build_tape_known: the first
     * "target" inside the root object's "d", when it is an array or object
     * whose exact bytes `known` vouches for, is skipped, not walked: one
     * UNEXPANDED node holds its span. `known` must answer true only for
     * bytes it has seen validated as one JSON value (the gateway's query
     * cache, which holds only targets that decoded): a repeated SEND
     * target is then walked once, not per message. */
    SY_JSON_SKIP_KNOWN_TARGET = 4
};

/* Whether `bytes[0..length)` is a span the caller has seen validated; see
 * SY_JSON_SKIP_KNOWN_TARGET. */
typedef int (*sy_json_known_fn)(void *context, const uint8_t *bytes, size_t length);

/* One node, 32 bytes. `next` is the index just past the node's subtree (for a
 * scalar: its own index + 1). [span_start, span_end) are byte offsets of the
 * value's source text (containers: bracket to bracket, inclusive). */
typedef struct sy_tape_node {
    uint8_t kind;
    uint8_t reserved[3];
    uint32_t count;
    uint32_t next;
    uint32_t span_start;
    uint32_t span_end;
    uint32_t string_length;
    uint64_t bits;
} sy_tape_node;

/* Outcome of sy_json_build_tape. */
enum {
    SY_JSON_OK = 0,
    SY_JSON_NEED_CAPACITY = 1, /* node_count / string_bytes say how much is needed; call again */
    SY_JSON_INVALID = 2,       /* message says why */
    SY_JSON_TOO_MANY_VALUES = 3, /* more than max_nodes nodes; the walk stopped there */
};

typedef struct sy_json_result {
    uint32_t node_count;   /* nodes written (OK) or needed (NEED_CAPACITY) */
    uint32_t string_bytes; /* arena bytes written / needed */
    int32_t simdjson_error; /* simdjson::error_code, 0 for the checks done here */
    const char *message;   /* static text, set when INVALID */
    uint32_t unexpanded_count; /* UNEXPANDED nodes written (SY_JSON_LAZY_PAYLOAD) */
} sy_json_result;

/* Nesting depth limit: more than this many nested arrays/objects is INVALID. */
#define SY_JSON_MAX_DEPTH 64

typedef struct sy_json_parser sy_json_parser;

/* A reusable parser (holds simdjson's buffers, which grow to the largest
 * document seen). Not thread-safe: one per thread/loop. */
sy_json_parser *sy_json_parser_new(void);
void sy_json_parser_free(sy_json_parser *parser);

/* `parser` may be NULL: then a parser owned by the calling thread is used.
 * Decodes `input[0..length)` (with sy_json_padding() readable bytes after it)
 * into `nodes` (capacity `node_capacity`) and the unescaped strings into
 * `strings` (capacity `string_capacity`). Exactly one JSON value, optionally
 * surrounded by whitespace; UTF-8 is validated. Returns SY_JSON_OK,
 * SY_JSON_NEED_CAPACITY (nothing usable was written; the result holds the
 * exact sizes needed), SY_JSON_INVALID, or SY_JSON_TOO_MANY_VALUES once the
 * document needs more than `max_nodes` nodes (checked as they are counted,
 * so such a document costs about max_nodes nodes of work, whatever its
 * size). Inputs of 4 GiB or more are INVALID (offsets are 32-bit). */
int sy_json_build_tape(sy_json_parser *parser, const uint8_t *input, size_t length,
                       uint32_t flags, uint32_t max_nodes,
                       sy_tape_node *nodes, size_t node_capacity,
                       uint8_t *strings, size_t string_capacity,
                       sy_json_result *result);

/* sy_json_build_tape with SY_JSON_SKIP_KNOWN_TARGET's oracle (`known` may
 * be NULL: then the flag does nothing). */
int sy_json_build_tape_known(sy_json_parser *parser, const uint8_t *input, size_t length,
                             uint32_t flags, uint32_t max_nodes,
                             sy_tape_node *nodes, size_t node_capacity,
                             uint8_t *strings, size_t string_capacity,
                             sy_json_known_fn known, void *known_context,
                             sy_json_result *result);

/* Validates `input[0..length)` (same padding requirement) as exactly one
 * JSON array or object, first and last byte its brackets, by the rules of
 * sy_json_build_tape, writing nothing; `depth`: the depth it sits at in its
 * document (SY_JSON_MAX_DEPTH counts from that document's root). Returns
 * SY_JSON_OK or SY_JSON_INVALID (message set). For a frame that repeats a
 * validated envelope around a new payload (EnvelopeTemplate.swift). */
int sy_json_validate_container(const uint8_t *input, size_t length, uint32_t depth, sy_json_result *result);

/* Transcodes one JSON value (same rules and checks as sy_json_build_tape,
 * same padding requirement) straight to MessagePack, encoded exactly as
 * DocumentTape.appendMessagePack encodes a decoded tape (smallest integer
 * and header forms, strings as str, non-integers as float64), without
 * building a tape: a payload of millions of members costs its bytes, not
 * 32 bytes per node. `flags`: 0 or SY_JSON_VALIDATED_SPAN. On SY_JSON_OK, *out / *out_length hold the bytes in a
 * buffer owned by the calling thread, valid until its next call. */
int sy_json_to_msgpack(const uint8_t *input, size_t length, uint32_t flags,
                       const uint8_t **out, size_t *out_length, sy_json_result *result);

#ifdef __cplusplus
}
#endif
#endif
